//! Media operations: the per-call FIFO of playPrompt / recordResponse (reference §9.2),
//! tones, DTMF and hold music. Timing comes from the real prompt files, fetched by the host.

use crate::core::Engine;
use crate::model::*;
use crate::ops::{self, *};
use crate::render;
use crate::roster::*;
use crate::types::*;
use graph::requests::*;
use graph::*;
use serde_json::{Value, json};

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
        audio: vec![None; req.prompts.len()],
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
        audio: vec![None; req.prompts.len()],
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

/// Fail every queued and running media operation with 400/8508 (reference §7.21), and stop
/// the room playing or recording for this bot.
fn cancel_all(e: &mut Engine, id: &str) {
    let ops: Vec<String> = e.calls[id].media_queue.iter().cloned().collect();
    let running = ops.iter().any(|op| {
        e.calls[id].operations[op]
            .media
            .as_ref()
            .is_some_and(|m| m.phase == MediaPhase::Running)
    });
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
    if running {
        let conf_id = e.calls[id].conf_id.clone();
        e.effect(Effect::Media(::media::Cmd::Cancel {
            conf_id,
            call_id: id.to_string(),
        }));
    }
}

pub(crate) fn cancel_media(e: &mut Engine, id: &str, req: ClientContext) -> R {
    req.validate().map_err(ApiError::bad_request)?;
    require_service_hosted(e, id, "cancelMediaProcessing")?;
    ops::require_not_ended(e, id, "cancelMediaProcessing")?;
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
    let gap_ms = req.delay_between_tones_ms.unwrap_or(0) as u64;
    let op = new_op(
        e,
        id,
        OpKind::SendDtmfTones,
        req.client_context.clone(),
        OperationStatus::Running,
    );
    let conf_id = e.calls[id].conf_id.clone();
    e.effect(Effect::Media(::media::Cmd::SendTones {
        conf_id,
        call_id: id.to_string(),
        op_id: op.clone(),
        tones: req.tones.iter().map(|t| t.to_char()).collect(),
        tone_ms: e.cfg.tone_ms,
        gap_ms,
    }));
    op_reply(e, id, &op, 200)
}

pub(crate) fn prompt_fetched(
    e: &mut Engine,
    call_id: &str,
    op_id: &str,
    index: usize,
    result: Result<::media::Audio, String>,
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
        Ok(audio) => {
            if let Some(m) = &mut o.media {
                if m.audio.len() < m.prompts.len() {
                    m.audio.resize(m.prompts.len(), None);
                }
                if let Some(slot) = m.audio.get_mut(index) {
                    *slot = Some(audio);
                }
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

/// Start the head of the media FIFO once its prompts are fetched.
pub(crate) fn advance(e: &mut Engine, call_id: &str) {
    let Some(c) = e.calls.get_mut(call_id) else {
        return;
    };
    let conf_id = c.conf_id.clone();
    let Some(head) = c.media_queue.front().cloned() else {
        return;
    };
    let Some(work) = c.operations.get_mut(&head).and_then(|o| o.media.as_mut()) else {
        c.media_queue.pop_front();
        return;
    };
    if work.phase == MediaPhase::Running {
        return;
    }
    let fetched = work.audio.len() == work.prompts.len() && work.audio.iter().all(Option::is_some);
    if !fetched {
        if work.phase == MediaPhase::Queued {
            work.phase = MediaPhase::Fetching;
            e.touch_call(call_id);
        }
        return;
    }
    work.phase = MediaPhase::Running;
    let prompts = work
        .prompts
        .iter()
        .zip(&work.audio)
        .map(|(p, a)| ::media::Prompt {
            audio: a.clone().expect("fetched"),
            times: p.loop_count.unwrap_or(1).max(1) as u32,
        })
        .collect();
    let loop_forever = work.loop_forever;
    let record = work.record.clone();
    let record = record.map(|r| ::media::RecordSpec {
        recording_id: e.id(),
        beep: r.play_beep.unwrap_or(true),
        max_ms: r.max_record_duration_in_seconds.unwrap_or(5) as u64 * 1000,
        initial_silence_ms: r.initial_silence_timeout_in_seconds.unwrap_or(5) as u64 * 1000,
        max_silence_ms: r.max_silence_timeout_in_seconds.unwrap_or(5) as u64 * 1000,
        stop_tones: r.stop_tones().iter().map(|t| t.to_char()).collect(),
    });
    e.touch_call(call_id);
    e.effect(Effect::Media(::media::Cmd::Run {
        conf_id,
        call_id: call_id.to_string(),
        op_id: head,
        prompts,
        loop_forever,
        record,
    }));
}

pub(crate) fn resume(e: &mut Engine) {
    let confs: Vec<String> = e.confs.keys().cloned().collect();
    for conf_id in &confs {
        e.touch_conf(conf_id);
        let held: Vec<String> = e.confs[conf_id]
            .members
            .iter()
            .filter(|m| m.hold_music)
            .map(|m| m.id.clone())
            .collect();
        for member_id in held {
            e.effect(Effect::Media(::media::Cmd::HoldMusic {
                conf_id: conf_id.clone(),
                member_id,
                audio: None,
            }));
        }
    }
    let mut calls: Vec<String> = e.calls.keys().cloned().collect();
    calls.sort();
    for id in calls {
        let c = &e.calls[&id];
        if c.state == CallState::Terminated {
            continue;
        }
        let ops: Vec<(String, OpKind, Vec<MediaPrompt>)> = c
            .operations
            .values()
            .filter(|o| !o.is_final())
            .map(|o| {
                let prompts = o
                    .media
                    .as_ref()
                    .map(|m| m.prompts.clone())
                    .unwrap_or_default();
                (o.id.clone(), o.kind.clone(), prompts)
            })
            .collect();
        for (op, kind, prompts) in ops {
            match kind {
                OpKind::SendDtmfTones => finish_op(
                    e,
                    &id,
                    &op,
                    OperationStatus::Failed,
                    Some(ResultInfo::new(
                        500,
                        0,
                        "Sending the tones was interrupted by a restart of ringside.",
                    )),
                    Some("unknown"),
                ),
                _ if !prompts.is_empty() || kind == OpKind::Record => {
                    let c = e.calls.get_mut(&id).expect("exists");
                    if let Some(m) = c.operations.get_mut(&op).and_then(|o| o.media.as_mut()) {
                        m.phase = if kind == OpKind::StartHoldMusic {
                            MediaPhase::Fetching
                        } else {
                            MediaPhase::Queued
                        };
                        m.audio = vec![None; m.prompts.len()];
                    }
                    e.touch_call(&id);
                    fetch_prompts(e, &id, &op, &prompts);
                }
                _ => {}
            }
        }
        advance(e, &id);
        if e.calls[&id].recording {
            start_call_recording(e, &id);
        }
        crate::transcripts::resume(e, &id);
        crate::streams::resume(e, &id);
    }
}

/// A new call-recording file for the call: listed at once (in progress), recorded by its room.
pub(crate) fn start_call_recording(e: &mut Engine, call_id: &str) {
    let c = &e.calls[call_id];
    let (conf_id, tenant_id, app_id) = (c.conf_id.clone(), c.tenant_id.clone(), c.app_id.clone());
    let recording_id = e.id();
    e.effect(Effect::SaveRecording {
        id: recording_id.clone(),
        call_id: call_id.to_string(),
        tenant_id,
        app_id,
        kind: RecordingKind::Call,
        duration_ms: None,
    });
    let tracks = e.cfg.record_tracks;
    e.effect(Effect::Media(::media::Cmd::StartRecording {
        conf_id,
        call_id: call_id.to_string(),
        recording_id,
        tracks,
    }));
}

/// What the media room reports.
pub(crate) fn on_media_event(e: &mut Engine, ev: ::media::Event) {
    match ev {
        ::media::Event::Done {
            call_id,
            op_id,
            reason,
            recording,
        } => {
            let Some(o) = e.calls.get(&call_id).and_then(|c| c.operations.get(&op_id)) else {
                return;
            };
            if o.is_final() {
                return;
            }
            match (&o.kind, recording) {
                (OpKind::Record, Some(rec)) => {
                    finish_recording(e, &call_id, &op_id, reason, rec);
                }
                (OpKind::Record, None) => finish_op(
                    e,
                    &call_id,
                    &op_id,
                    OperationStatus::Failed,
                    Some(ResultInfo::new(
                        500,
                        8502,
                        "The recording could not be saved.",
                    )),
                    Some(reason),
                ),
                _ => finish_op(
                    e,
                    &call_id,
                    &op_id,
                    OperationStatus::Completed,
                    None,
                    Some(reason),
                ),
            }
            advance(e, &call_id);
        }
        ::media::Event::Utterance(_) => {} // the node's speech-to-text takes these
        ::media::Event::Transcribed {
            utterance,
            text,
            gap,
        } => crate::transcripts::transcribed(e, utterance, text, gap),
        ::media::Event::Tone { call_id, key } => {
            if let Some(tone) = Tone::from_char(key) {
                on_tone(e, &call_id, tone);
            }
        }
        ::media::Event::RecordingSaved {
            call_id,
            recording_id,
            duration_ms,
            tracks,
        } => {
            e.effect(Effect::SaveRecording {
                id: recording_id.clone(),
                call_id: call_id.clone(),
                tenant_id: String::new(),
                app_id: String::new(),
                kind: RecordingKind::Call,
                duration_ms: Some(duration_ms),
            });
            for t in tracks {
                e.effect(Effect::SaveRecording {
                    id: t.recording_id,
                    call_id: call_id.clone(),
                    tenant_id: String::new(),
                    app_id: String::new(),
                    kind: RecordingKind::Track {
                        parent: recording_id.clone(),
                        participant_id: t.participant_id,
                    },
                    duration_ms: Some(t.duration_ms),
                });
            }
        }
    }
}

fn finish_recording(e: &mut Engine, call_id: &str, op: &str, reason: &str, rec: ::media::Recorded) {
    let token = format!("{}{}", e.id().replace('-', ""), e.id().replace('-', ""));
    let location = format!(
        "{}/recordings/{}",
        e.cfg.public_url.trim_end_matches('/'),
        rec.recording_id
    );
    if let Some(o) = e
        .calls
        .get_mut(call_id)
        .and_then(|c| c.operations.get_mut(op))
    {
        o.recording_location = Some(location);
        o.recording_access_token = Some(token.clone());
    }
    let (tenant_id, app_id) = e
        .calls
        .get(call_id)
        .map(|c| (c.tenant_id.clone(), c.app_id.clone()))
        .unwrap_or_default();
    e.effect(Effect::SaveRecording {
        id: rec.recording_id,
        call_id: call_id.into(),
        tenant_id,
        app_id,
        kind: RecordingKind::Response { token },
        duration_ms: Some(rec.duration_ms),
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

/// A DTMF key the bot heard: toneInfo for subscribers (stop tones are the room's business).
pub(crate) fn on_tone(e: &mut Engine, call_id: &str, tone: Tone) {
    let Some(c) = e.calls.get_mut(call_id) else {
        return;
    };
    if !matches!(c.state, CallState::Established | CallState::Hold) || !c.tone_subscribed {
        return;
    }
    c.tone_seq += 1;
    c.tone_info = Some((c.tone_seq, tone));
    e.touch_call(call_id);
    let t = render::tone_info(&e.calls[call_id]);
    e.notify_call(call_id, json!({ "toneInfo": t }));
}

/// The media room's picture of a conference: joined members, who is muted or held, and the
/// routes of every bot's audio routing groups (oneToOne both ways, multicast one way).
pub(crate) fn room_spec(e: &Engine, conf_id: &str) -> ::media::RoomSpec {
    let mut spec = ::media::RoomSpec {
        conf_id: conf_id.to_string(),
        ..Default::default()
    };
    let Some(conf) = e.confs.get(conf_id) else {
        return spec;
    };
    for m in conf.members.iter().filter(|m| m.joined) {
        let endpoint = match &m.endpoint {
            MemberEndpoint::Bot { call_id } => {
                let Some(c) = e.calls.get(call_id) else {
                    continue;
                };
                if matches!(c.state, CallState::Terminated) {
                    continue;
                }
                for g in &c.routing_groups {
                    spec.routes.push(::media::RouteSpec {
                        sources: g.sources.clone(),
                        receivers: g.receivers.clone(),
                    });
                    if g.routing_mode == RoutingMode::OneToOne {
                        spec.routes.push(::media::RouteSpec {
                            sources: g.receivers.clone(),
                            receivers: g.sources.clone(),
                        });
                    }
                }
                ::media::Endpoint::Bot(call_id.clone())
            }
            // A leg has audio once connected (an incoming caller rings until the bot answers).
            MemberEndpoint::Leg { leg_id } => {
                if e.legs.get(leg_id).map(|l| &l.state) != Some(&LegState::Connected) {
                    continue;
                }
                ::media::Endpoint::Leg(leg_id.clone())
            }
        };
        spec.members.push(::media::MemberSpec {
            id: m.id.clone(),
            endpoint,
            muted: m.muted,
            held: m.held,
            hold_music: m.hold_music,
            in_default_group: m.in_default_group,
            listens_for_tones: match &m.endpoint {
                MemberEndpoint::Bot { call_id } => {
                    e.calls.get(call_id).is_some_and(|c| c.tone_subscribed)
                }
                MemberEndpoint::Leg { .. } => false,
            },
            stream: match &m.endpoint {
                MemberEndpoint::Bot { call_id } => crate::streams::mix_of(e, call_id),
                MemberEndpoint::Leg { .. } => None,
            },
        });
    }
    spec
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
                audio: vec![None],
                loop_forever: true,
                phase: MediaPhase::Fetching,
                record: None,
            });
            fetch_prompts(e, id, &op, &[p]);
        }
        None => {
            let now = e.now;
            ops::set_op_due(e, id, &op, now);
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
    let audio = o
        .media
        .as_ref()
        .and_then(|m| m.audio.first().cloned().flatten());
    let conf = e.calls[call_id].conf_id.clone();
    let present = e
        .confs
        .get(&conf)
        .and_then(|c| c.members.iter().find(|m| m.id == pid && m.joined))
        .is_some_and(|m| matches!(m.endpoint, MemberEndpoint::Leg { .. }));
    if present {
        e.effect(Effect::Media(::media::Cmd::HoldMusic {
            conf_id: conf.clone(),
            member_id: pid.clone(),
            audio,
        }));
        update_member(e, &conf, &pid, |m| m.hold_music = true);
        if let Some(o) = e
            .calls
            .get_mut(call_id)
            .and_then(|c| c.operations.get_mut(op))
        {
            o.media = None;
        }
        finish_op(e, call_id, op, OperationStatus::Completed, None, None);
    } else {
        finish_op(
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
        )
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
    let mid = m.id.clone();
    update_member(e, &conf, &mid, |m| m.hold_music = false);
    let op = new_op(
        e,
        id,
        OpKind::StopHoldMusic,
        req.client_context,
        OperationStatus::Completed,
    );
    op_reply(e, id, &op, 202)
}
