//! Media operations: the per-call FIFO of playPrompt / recordResponse (reference §9.2),
//! tones, DTMF and hold music. Timing comes from the real prompt files, fetched by the host.

use crate::actions::{
    self, finish_op, new_op, op_reply, require_established, require_group, require_service_hosted,
    update_member,
};
use crate::model::*;
use crate::*;
use graph::requests::*;
use serde_json::json;

type R = Result<Reply, ApiError>;

fn fetch_prompts(e: &mut Engine, call_id: &str, op: &str, prompts: &[MediaPrompt]) {
    for (i, p) in prompts.iter().enumerate() {
        e.effect(Effect::FetchPrompt {
            call_id: call_id.into(),
            op_id: op.into(),
            index: i,
            uri: p.media_info.uri.clone(),
            resource_id: p.media_info.resource_id.clone(),
        });
    }
}

pub(crate) fn play_prompt(e: &mut Engine, id: &str, req: PlayPrompt) -> R {
    req.validate().map_err(ApiError::bad_request)?;
    require_service_hosted(e, id, "playPrompt")?;
    require_established(e, id, "playPrompt")?;
    let op = new_op(
        e,
        id,
        OpKind::PlayPrompt,
        req.client_context.clone(),
        OperationStatus::Running,
    );
    let work = MediaWork {
        durations: vec![None; req.prompts.len()],
        prompts: req.prompts.clone(),
        loop_forever: req.loop_forever.unwrap_or(false),
        phase: MediaPhase::Queued,
        record: None,
    };
    queue(e, id, &op, work);
    fetch_prompts(e, id, &op, &req.prompts);
    let reply = op_reply(e, id, &op, 200);
    advance(e, id);
    reply
}

pub(crate) fn record_response(e: &mut Engine, id: &str, req: RecordResponse) -> R {
    req.validate().map_err(ApiError::bad_request)?;
    require_service_hosted(e, id, "recordResponse")?;
    require_established(e, id, "recordResponse")?;
    if req.barge_in_allowed.unwrap_or(false) {
        cancel_all(e, id);
    }
    let op = new_op(
        e,
        id,
        OpKind::Record,
        req.client_context.clone(),
        OperationStatus::Running,
    );
    let work = MediaWork {
        durations: vec![None; req.prompts.len()],
        prompts: req.prompts.clone(),
        loop_forever: false,
        phase: MediaPhase::Queued,
        record: Some(req.clone()),
    };
    queue(e, id, &op, work);
    fetch_prompts(e, id, &op, &req.prompts);
    let reply = op_reply(e, id, &op, 200);
    advance(e, id);
    reply
}

fn queue(e: &mut Engine, id: &str, op: &str, work: MediaWork) {
    let c = e.calls.get_mut(id).expect("exists");
    c.operations.get_mut(op).expect("op").media = Some(work);
    c.media_queue.push_back(op.to_string());
    e.touch_call(id);
}

/// Fail every queued and running media operation with 400/8508 (reference §7.21).
fn cancel_all(e: &mut Engine, id: &str) {
    let ops: Vec<String> = e.calls[id].media_queue.iter().cloned().collect();
    for op in ops {
        let kind = e.calls[id].operations[&op].kind.clone();
        let reason = if kind == OpKind::Record {
            "operationCanceled"
        } else {
            "mediaOperationCanceled"
        };
        finish_op(
            e,
            id,
            &op,
            OperationStatus::Failed,
            Some(ResultInfo::new(
                400,
                8508,
                "Action failed, the operation was cancelled.",
            )),
            Some(reason),
        );
    }
    e.calls.get_mut(id).expect("exists").media_queue.clear();
}

pub(crate) fn cancel_media(e: &mut Engine, id: &str, req: ClientContext) -> R {
    req.validate().map_err(ApiError::bad_request)?;
    require_service_hosted(e, id, "cancelMediaProcessing")?;
    actions::require_not_ended(e, id, "cancelMediaProcessing")?;
    let op = new_op(
        e,
        id,
        OpKind::CancelMediaProcessing,
        req.client_context,
        OperationStatus::Completed,
    );
    let reply = op_reply(e, id, &op, 200);
    cancel_all(e, id);
    reply
}

pub(crate) fn send_dtmf(e: &mut Engine, id: &str, req: SendDtmfTones) -> R {
    req.validate().map_err(ApiError::bad_request)?;
    require_established(e, id, "sendDtmfTones")?;
    let delay = req.delay_between_tones_ms.unwrap_or(0) as u64;
    let n = req.tones.len() as u64;
    let due = e.now + n * e.cfg.tone_ms + n.saturating_sub(1) * delay;
    let conf = e.calls[id].conf_id.clone();
    let legs: Vec<String> = e.confs[&conf]
        .members
        .iter()
        .filter(|m| m.joined)
        .filter_map(|m| match &m.endpoint {
            MemberEndpoint::Leg { leg_id } => Some(leg_id.clone()),
            _ => None,
        })
        .collect();
    let op = new_op(
        e,
        id,
        OpKind::SendDtmfTones,
        req.client_context.clone(),
        OperationStatus::Running,
    );
    for leg in legs {
        e.leg_action(LegAction::SendTones {
            leg_id: leg,
            tones: req.tones.clone(),
            delay_ms: delay,
        });
    }
    actions::set_op_due(e, id, &op, due);
    op_reply(e, id, &op, 200)
}

pub(crate) fn prompt_fetched(
    e: &mut Engine,
    call_id: &str,
    op_id: &str,
    index: usize,
    result: Result<u64, String>,
) {
    let Some(o) = e
        .calls
        .get_mut(call_id)
        .and_then(|c| c.operations.get_mut(op_id))
    else {
        return;
    };
    if o.is_final() {
        return;
    }
    match result {
        Ok(ms) => {
            if let Some(m) = &mut o.media
                && let Some(slot) = m.durations.get_mut(index)
            {
                *slot = Some(ms);
            }
            let hold = o.kind == OpKind::StartHoldMusic;
            e.touch_call(call_id);
            if hold {
                hold_music_started(e, call_id, op_id);
            } else {
                advance(e, call_id);
            }
        }
        Err(why) => {
            let reason = match &o.kind {
                OpKind::Record => Some("playPromptFailed"),
                OpKind::PlayPrompt => Some("unknown"),
                _ => None,
            };
            finish_op(
                e,
                call_id,
                op_id,
                OperationStatus::Failed,
                Some(ResultInfo::new(
                    400,
                    8509,
                    &format!("The prompt could not be played: {why}"),
                )),
                reason,
            );
            advance(e, call_id);
        }
    }
}

pub(crate) fn phase_deadline(p: &MediaPhase) -> Option<Ms> {
    match p {
        MediaPhase::Queued | MediaPhase::Fetching => None,
        MediaPhase::Playing { until } => *until,
        MediaPhase::Beep { until } => Some(*until),
        MediaPhase::Recording {
            max_until,
            silence_until,
            ..
        } => Some((*max_until).min(*silence_until)),
    }
}

/// Move the head of the media FIFO as far as `now` allows.
pub(crate) fn advance(e: &mut Engine, call_id: &str) {
    let now = e.now;
    let beep_ms = e.cfg.beep_ms;
    loop {
        let Some(c) = e.calls.get_mut(call_id) else {
            return;
        };
        let Some(head) = c.media_queue.front().cloned() else {
            return;
        };
        let Some(op) = c.operations.get_mut(&head) else {
            c.media_queue.pop_front();
            continue;
        };
        let Some(work) = op.media.as_mut() else {
            c.media_queue.pop_front();
            continue;
        };
        let next = match &work.phase {
            MediaPhase::Queued | MediaPhase::Fetching => {
                if work.durations.iter().all(Option::is_some) {
                    let single: u64 = work
                        .durations
                        .iter()
                        .flatten()
                        .zip(&work.prompts)
                        .map(|(d, p)| d * p.loop_count.unwrap_or(1).max(1) as u64)
                        .sum();
                    if work.record.is_some() && work.prompts.is_empty() {
                        Some(after_prompt(work, now, beep_ms))
                    } else if work.loop_forever {
                        Some(MediaPhase::Playing { until: None })
                    } else {
                        Some(MediaPhase::Playing {
                            until: Some(now + single),
                        })
                    }
                } else if work.phase == MediaPhase::Queued {
                    Some(MediaPhase::Fetching)
                } else {
                    None
                }
            }
            MediaPhase::Playing { until: Some(t) } if *t <= now => {
                if work.record.is_some() {
                    Some(after_prompt(work, now, beep_ms))
                } else {
                    finish_op(
                        e,
                        call_id,
                        &head,
                        OperationStatus::Completed,
                        None,
                        Some("completedSuccessfully"),
                    );
                    continue;
                }
            }
            MediaPhase::Beep { until } if *until <= now => Some(recording_phase(work, now)),
            MediaPhase::Recording {
                started,
                max_until,
                silence_until,
            } if (*max_until).min(*silence_until) <= now => {
                let reason = if *max_until <= *silence_until {
                    "maxRecordDurationReached"
                } else {
                    "initialSilenceTimeout"
                };
                let duration = now.saturating_sub(*started);
                finish_recording(e, call_id, &head, reason, duration);
                continue;
            }
            _ => None,
        };
        match next {
            Some(p) => {
                let changed = work.phase != p;
                work.phase = p;
                e.touch_call(call_id);
                if !changed {
                    return;
                }
            }
            None => return,
        }
    }
}

fn after_prompt(work: &MediaWork, now: Ms, beep_ms: u64) -> MediaPhase {
    if work
        .record
        .as_ref()
        .and_then(|r| r.play_beep)
        .unwrap_or(true)
    {
        MediaPhase::Beep {
            until: now + beep_ms,
        }
    } else {
        recording_phase(work, now)
    }
}

fn recording_phase(work: &MediaWork, now: Ms) -> MediaPhase {
    let r = work.record.as_ref();
    let max = r
        .and_then(|r| r.max_record_duration_in_seconds)
        .unwrap_or(5) as u64
        * 1000;
    let initial = r
        .and_then(|r| r.initial_silence_timeout_in_seconds)
        .unwrap_or(5) as u64
        * 1000;
    MediaPhase::Recording {
        started: now,
        max_until: now + max,
        silence_until: now + initial,
    }
}

fn finish_recording(e: &mut Engine, call_id: &str, op: &str, reason: &str, duration_ms: u64) {
    let rec_id = e.id();
    let token = format!("{}{}", e.id().replace('-', ""), e.id().replace('-', ""));
    let location = format!(
        "{}/recordings/{}",
        e.cfg.public_url.trim_end_matches('/'),
        rec_id
    );
    if let Some(o) = e
        .calls
        .get_mut(call_id)
        .and_then(|c| c.operations.get_mut(op))
    {
        o.recording_location = Some(location);
        o.recording_access_token = Some(token.clone());
    }
    e.effect(Effect::SaveRecording {
        id: rec_id,
        call_id: call_id.into(),
        token,
        duration_ms,
    });
    finish_op(
        e,
        call_id,
        op,
        OperationStatus::Completed,
        None,
        Some(reason),
    );
}

/// A DTMF digit heard in the call: toneInfo for subscribers, stopTones for a recording.
pub(crate) fn on_tone(e: &mut Engine, call_id: &str, tone: Tone) {
    let Some(c) = e.calls.get_mut(call_id) else {
        return;
    };
    if !matches!(c.state, CallState::Established | CallState::Hold) {
        return;
    }
    if c.tone_subscribed {
        c.tone_seq += 1;
        c.tone_info = Some((c.tone_seq, tone));
        e.touch_call(call_id);
        let t = render::tone_info(&e.calls[call_id]);
        e.notify_call(call_id, json!({ "toneInfo": t }));
    }
    let now = e.now;
    let Some(c) = e.calls.get(call_id) else {
        return;
    };
    if let Some(head) = c.media_queue.front()
        && let Some(o) = c.operations.get(head)
        && let Some(MediaWork {
            phase: MediaPhase::Recording { started, .. },
            record: Some(r),
            ..
        }) = &o.media
        && r.stop_tones().contains(&tone)
    {
        let (head, started) = (head.clone(), *started);
        finish_recording(
            e,
            call_id,
            &head,
            "stopToneDetected",
            now.saturating_sub(started),
        );
        advance(e, call_id);
    }
}

// ------------------------------------------------------------------ hold music

pub(crate) fn start_hold_music(e: &mut Engine, id: &str, pid: &str, req: StartHoldMusic) -> R {
    check_client_context(&req.client_context).map_err(ApiError::bad_request)?;
    if let Some(p) = &req.custom_prompt {
        PlayPrompt {
            prompts: vec![p.clone()],
            ..Default::default()
        }
        .validate()
        .map_err(ApiError::bad_request)?;
    }
    require_group(e, id, "startHoldMusic")?;
    require_established(e, id, "startHoldMusic")?;
    let conf = e.calls[id].conf_id.clone();
    let Some(m) = e.confs[&conf]
        .members
        .iter()
        .find(|m| m.joined && m.id.eq_ignore_ascii_case(pid))
    else {
        return Err(ApiError::not_found("Participant", pid));
    };
    if matches!(m.endpoint, MemberEndpoint::Bot { .. }) {
        return Err(ApiError::bad_request(
            "Hold music can only be played to a participant that is not an application.",
        ));
    }
    if let Some(other) = e.confs[&conf].members.iter().find(|m| m.hold_music) {
        return Err(ApiError::bad_request(format!(
            "Participant '{}' is already on hold; only one participant can be on hold at a time.",
            other.id
        )));
    }
    let running = e.calls[id]
        .operations
        .values()
        .any(|o| o.kind == OpKind::StartHoldMusic && !o.is_final());
    if running {
        return Err(ApiError::bad_request(
            "A startHoldMusic operation is already running; only one participant can be on hold at a time.",
        ));
    }
    let mid = m.id.clone();
    let op = new_op(
        e,
        id,
        OpKind::StartHoldMusic,
        req.client_context,
        OperationStatus::Running,
    );
    let o = e
        .calls
        .get_mut(id)
        .expect("exists")
        .operations
        .get_mut(&op)
        .expect("op");
    o.participants = Some(json!([mid]));
    match req.custom_prompt {
        Some(p) => {
            o.media = Some(MediaWork {
                prompts: vec![p.clone()],
                durations: vec![None],
                loop_forever: true,
                phase: MediaPhase::Fetching,
                record: None,
            });
            fetch_prompts(e, id, &op, &[p]);
        }
        None => {
            let now = e.now;
            actions::set_op_due(e, id, &op, now);
        }
    }
    op_reply(e, id, &op, 202)
}

pub(crate) fn hold_music_started(e: &mut Engine, call_id: &str, op: &str) {
    let Some(o) = e.calls.get(call_id).and_then(|c| c.operations.get(op)) else {
        return;
    };
    let pid = o
        .participants
        .as_ref()
        .and_then(|p| p.get(0))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let conf = e.calls[call_id].conf_id.clone();
    let leg = e
        .confs
        .get(&conf)
        .and_then(|c| c.members.iter().find(|m| m.id == pid))
        .and_then(|m| match &m.endpoint {
            MemberEndpoint::Leg { leg_id } => Some(leg_id.clone()),
            _ => None,
        });
    match leg {
        Some(leg_id) => {
            update_member(e, &conf, &pid, |m| m.hold_music = true);
            e.leg_action(LegAction::HoldMusic { leg_id, on: true });
            if let Some(o) = e
                .calls
                .get_mut(call_id)
                .and_then(|c| c.operations.get_mut(op))
            {
                o.media = None;
            }
            finish_op(e, call_id, op, OperationStatus::Completed, None, None);
        }
        None => finish_op(
            e,
            call_id,
            op,
            OperationStatus::Failed,
            Some(ResultInfo::new(
                404,
                0,
                "The participant left before hold music started.",
            )),
            None,
        ),
    }
}

pub(crate) fn stop_hold_music(e: &mut Engine, id: &str, pid: &str, req: ClientContext) -> R {
    req.validate().map_err(ApiError::bad_request)?;
    require_group(e, id, "stopHoldMusic")?;
    let conf = e.calls[id].conf_id.clone();
    let Some(m) = e.confs[&conf]
        .members
        .iter()
        .find(|m| m.joined && m.id.eq_ignore_ascii_case(pid))
    else {
        return Err(ApiError::not_found("Participant", pid));
    };
    if !m.hold_music {
        return Err(ApiError::bad_request(format!(
            "Participant '{pid}' is not on hold."
        )));
    }
    let (mid, leg) = (m.id.clone(), m.endpoint.clone());
    update_member(e, &conf, &mid, |m| m.hold_music = false);
    if let MemberEndpoint::Leg { leg_id } = leg {
        e.leg_action(LegAction::HoldMusic { leg_id, on: false });
    }
    let op = new_op(
        e,
        id,
        OpKind::StopHoldMusic,
        req.client_context,
        OperationStatus::Completed,
    );
    op_reply(e, id, &op, 202)
}
