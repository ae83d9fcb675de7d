//! Graph actions on calls: one function per action, dispatched from one table.

use crate::core::Engine;
use crate::legs;
use crate::lifecycle::{self, *};
use crate::media;
use crate::model::*;
use crate::ops::*;
use crate::queries;
use crate::render::{self, Version};
use crate::roster::*;
use crate::types::*;
use graph::requests::*;
use graph::*;
use serde_json::{Value, json};

type R = Result<Reply, ApiError>;

/// The calls a command may act on: the app's own, in its tenant. A token of another tenant
/// is told so, as Graph does; another app of the same tenant does not learn that the call
/// exists (404).
fn own_call(e: &Engine, app: &AppCtx, call_id: Option<&str>) -> Result<String, ApiError> {
    let id = call_id
        .ok_or_else(ApiError::call_not_found)?
        .to_ascii_lowercase();
    let Some(call) = e.calls.get(&id) else {
        return Err(ApiError::call_not_found());
    };
    if call.tenant_id != app.tenant_id {
        return Err(ApiError {
            status: 403,
            code: "Forbidden".into(),
            message: "request authorization tenant mismatch".into(),
        });
    }
    if call.app_id != app.app_id {
        return Err(ApiError::call_not_found());
    }
    Ok(id)
}

pub(crate) fn dispatch(
    e: &mut Engine,
    app: &AppCtx,
    call_id: Option<&str>,
    cmd: Command,
    ver: Version,
) -> R {
    match cmd {
        Command::CreateCall(req) => return create_call(e, app, *req, ver),
        Command::ListCalls => return queries::list_calls(e, app, ver),
        _ => {}
    }
    let id = own_call(e, app, call_id)?;
    on_call(e, &id, cmd, ver)
}

/// A command on one of the app's calls.
// shape: one flat match
fn on_call(e: &mut Engine, id: &str, cmd: Command, ver: Version) -> R {
    match cmd {
        Command::CreateCall(_) | Command::ListCalls => unreachable!("not about one call"),
        Command::GetCall => queries::get_call(e, id, ver),
        Command::DeleteCall => delete_call(e, id),
        Command::KeepAlive => keep_alive(e, id),
        Command::Answer(req) => answer(e, id, req),
        Command::Reject(req) => reject(e, id, req),
        Command::Redirect(req) => legs::redirect(e, id, req),
        Command::Transfer(req) => legs::transfer(e, id, *req),
        Command::ListParticipants => queries::list_participants(e, id),
        Command::GetParticipant(pid) => queries::get_participant(e, id, &pid),
        Command::DeleteParticipant(pid) => delete_participant(e, id, &pid),
        Command::Invite(req) => legs::invite(e, id, req),
        Command::MuteAll(req) => mute_all(e, id, req),
        Command::MuteParticipant(pid, req) => mute_participant(e, id, &pid, req),
        Command::StartHoldMusic(pid, req) => media::start_hold_music(e, id, &pid, req),
        Command::StopHoldMusic(pid, req) => media::stop_hold_music(e, id, &pid, req),
        Command::CreateRoutingGroup(g) => create_routing_group(e, id, g),
        Command::ListRoutingGroups => queries::list_routing_groups(e, id),
        Command::GetRoutingGroup(gid) => queries::get_routing_group(e, id, &gid),
        Command::UpdateRoutingGroup(gid, patch) => update_routing_group(e, id, &gid, patch),
        Command::DeleteRoutingGroup(gid) => delete_routing_group(e, id, &gid),
        Command::AddLargeGalleryView(req) => add_large_gallery_view(e, id, req),
        Command::PlayPrompt(req) => media::play_prompt(e, id, req),
        Command::RecordResponse(req) => media::record_response(e, id, req),
        Command::CancelMediaProcessing(req) => media::cancel_media(e, id, req),
        Command::SubscribeToTone(req) => subscribe_to_tone(e, id, req),
        Command::SendDtmfTones(req) => media::send_dtmf(e, id, req),
        Command::Mute(req) => self_mute(e, id, req, true),
        Command::Unmute(req) => self_mute(e, id, req, false),
        Command::ChangeScreenSharingRole(req) => change_screen_sharing_role(e, id, req),
        Command::UpdateRecordingStatus(req) => update_recording_status(e, id, req),
        Command::StartRecording(req) => start_recording(e, id, req),
        Command::StopRecording(req) => stop_recording(e, id, req),
        Command::StartTranscription(req) => transcription(e, id, req, true),
        Command::StopTranscription(req) => transcription(e, id, req, false),
        Command::ListOperations => queries::list_operations(e, id),
        Command::GetOperation(op) => queries::get_operation(e, id, &op),
        Command::ListContentSharingSessions => queries::list_content_sharing(e, id),
        Command::GetContentSharingSession(sid) => queries::get_content_sharing(e, id, &sid),
    }
}

fn delete_call(e: &mut Engine, id: &str) -> R {
    hang_up(e, id);
    Ok(Reply::empty(204))
}

fn keep_alive(e: &mut Engine, id: &str) -> R {
    let ka = e.now + e.cfg.keepalive_ms;
    if let Some(c) = e.calls.get_mut(id) {
        c.keepalive_at = ka;
    }
    e.touch_call(id);
    Ok(Reply::empty(200))
}

fn delete_routing_group(e: &mut Engine, id: &str, gid: &str) -> R {
    let c = e.calls.get_mut(id).expect("checked");
    let before = c.routing_groups.len();
    c.routing_groups.retain(|g| g.id.as_deref() != Some(gid));
    if c.routing_groups.len() == before {
        return Err(ApiError::not_found("Audio routing group", gid));
    }
    e.touch_call(id);
    Ok(Reply::empty(204))
}

fn add_large_gallery_view(e: &mut Engine, id: &str, req: ClientContext) -> R {
    req.validate().map_err(ApiError::bad_request)?;
    require_established(e, id, "addLargeGalleryView")?;
    let due = e.now;
    let op = new_op(
        e,
        id,
        OpKind::AddLargeGalleryView,
        req.client_context,
        OperationStatus::Running,
    );
    set_op_due(e, id, &op, due);
    op_reply(e, id, &op, 202)
}

fn subscribe_to_tone(e: &mut Engine, id: &str, req: ClientContext) -> R {
    req.validate().map_err(ApiError::bad_request)?;
    // An app that streams its own media still hears keys as toneInfo.
    if e.calls[id].stream.is_none() {
        require_service_hosted(e, id, "subscribeToTone")?;
    }
    require_not_ended(e, id, "subscribeToTone")?;
    let c = e.calls.get_mut(id).expect("checked");
    c.tone_subscribed = true;
    // The room starts looking for in-band keys for this bot.
    let conf = c.conf_id.clone();
    e.media_dirty.insert(conf);
    let op = new_op(
        e,
        id,
        OpKind::SubscribeToTone,
        req.client_context,
        OperationStatus::Completed,
    );
    op_reply(e, id, &op, 200)
}

fn change_screen_sharing_role(e: &mut Engine, id: &str, req: ChangeScreenSharingRole) -> R {
    let role = req
        .role
        .ok_or_else(|| ApiError::bad_request("role is required (viewer or sharer)"))?;
    require_group(e, id, "changeScreenSharingRole")?;
    require_established(e, id, "changeScreenSharingRole")?;
    if e.calls[id]
        .media_config
        .as_ref()
        .is_some_and(MediaConfig::is_service_hosted)
    {
        return Err(ApiError::bad_request(
            "changeScreenSharingRole needs a call with appHostedMediaConfig",
        ));
    }
    update_bot_member(e, id, |m| {
        m.screen_sharing = role == ScreenSharingRole::Sharer
    });
    Ok(Reply::empty(202))
}

fn update_recording_status(e: &mut Engine, id: &str, req: UpdateRecordingStatus) -> R {
    let status = req.status.ok_or_else(|| {
        ApiError::bad_request("status is required (notRecording, recording or failed)")
    })?;
    check_client_context(&req.client_context).map_err(ApiError::bad_request)?;
    if !matches!(
        status,
        RecordingStatus::NotRecording | RecordingStatus::Recording | RecordingStatus::Failed
    ) {
        return Err(ApiError::bad_request(
            "status must be notRecording, recording or failed",
        ));
    }
    require_established(e, id, "updateRecordingStatus")?;
    let who = e.calls[id].source.identity.clone();
    update_bot_member(e, id, |m| m.recording = Some((status, who)));
    let op = new_op(
        e,
        id,
        OpKind::UpdateRecordingStatus,
        req.client_context,
        OperationStatus::Completed,
    );
    op_reply(e, id, &op, 200)
}

fn start_recording(e: &mut Engine, id: &str, req: ClientContext) -> R {
    req.validate().map_err(ApiError::bad_request)?;
    require_established(e, id, "startRecording")?;
    if e.calls[id].recording {
        return Err(ApiError::bad_request("The call is already being recorded."));
    }
    let due = e.now;
    let op = new_op(
        e,
        id,
        OpKind::StartRecording,
        req.client_context,
        OperationStatus::Running,
    );
    set_op_due(e, id, &op, due);
    op_reply(e, id, &op, 202)
}

fn stop_recording(e: &mut Engine, id: &str, req: ClientContext) -> R {
    req.validate().map_err(ApiError::bad_request)?;
    require_established(e, id, "stopRecording")?;
    if !e.calls[id].recording {
        return Err(ApiError::bad_request("The call is not being recorded."));
    }
    stop_call_recording(e, id);
    let who = e.calls[id].source.identity.clone();
    update_bot_member(e, id, |m| {
        m.recording = Some((RecordingStatus::NotRecording, who))
    });
    let op = new_op(
        e,
        id,
        OpKind::StopRecording,
        req.client_context,
        OperationStatus::Completed,
    );
    op_reply(e, id, &op, 202)
}

// ------------------------------------------------------------------ create / answer / reject

/// Whether the app may place another call: its tenant, and the concurrent-call limits of
/// the tenant and the app.
fn admit(e: &Engine, app: &AppCtx, req: &CreateCall) -> Result<(), ApiError> {
    if let Some(t) = &req.tenant_id
        && !t.eq_ignore_ascii_case(&app.tenant_id)
    {
        return Err(ApiError {
            status: 403,
            code: "Forbidden".into(),
            message: "request authorization tenant mismatch".into(),
        });
    }
    let in_tenant = e.calls_per_tenant.get(&app.tenant_id).copied().unwrap_or(0);
    if in_tenant >= e.cfg.max_calls_per_tenant {
        return Err(ApiError {
            status: 429,
            code: "TooManyRequests".into(),
            message: format!(
                "The tenant has reached its limit of {} concurrent calls; retry after 1 s.",
                e.cfg.max_calls_per_tenant
            ),
        });
    }
    if e.calls_of_app(&app.app_id) >= e.cfg.max_calls_per_app {
        return Err(ApiError {
            status: 429,
            code: "TooManyRequests".into(),
            message: format!(
                "The application has reached its limit of {} concurrent calls; retry after 1 s.",
                e.cfg.max_calls_per_app
            ),
        });
    }
    Ok(())
}

/// An app may be in one meeting several times, each with its own identity; rejoining with
/// the same identity (a crashed bot re-creating its call) replaces the old call.
fn replace_rejoined(e: &mut Engine, mid: &str, source: &ParticipantInfo) {
    if let Some(existing) = e.meetings[mid]
        .conf_id
        .clone()
        .filter(|c| e.confs.contains_key(c))
    {
        let key = source.identity.party();
        let replaced: Vec<String> = e.confs[&existing]
            .members
            .iter()
            .filter_map(|m| match &m.endpoint {
                MemberEndpoint::Bot { call_id } if m.info.identity.party() == key => {
                    Some(call_id.clone())
                }
                _ => None,
            })
            .collect();
        for old in replaced {
            terminate(
                e,
                &old,
                ResultInfo::new(
                    200,
                    5000,
                    "Removed: the application rejoined the meeting with the same identity.",
                ),
                None,
            );
        }
    }
}

/// preFetchMedia: the prompts a call will play, fetched (and cached) now.
fn prefetch(e: &mut Engine, call_id: &str, media_config: &Option<MediaConfig>) {
    if let Some(MediaConfig::ServiceHosted {
        pre_fetch_media, ..
    }) = media_config
    {
        for m in pre_fetch_media {
            e.effect(Effect::FetchPrompt {
                call_id: call_id.to_string(),
                op_id: String::new(),
                index: 0,
                uri: m.uri.clone(),
                resource_id: m.resource_id.clone(),
            });
        }
    }
}

fn create_call(e: &mut Engine, app: &AppCtx, mut req: CreateCall, ver: Version) -> R {
    req.validate().map_err(ApiError::bad_request)?;
    admit(e, app, &req)?;
    let joins_meeting = req.meeting_info.is_some();
    let meeting_id = if joins_meeting {
        Some(legs::resolve_meeting(e, app, &req)?)
    } else {
        None
    };

    let mut source = req.source.clone().unwrap_or_default();
    if source.identity.application.is_none() {
        source.identity.application = Some(Identity::new(&app.app_id, app.app_name.as_deref()));
    }
    let call_id = e.id();
    let my_pid = e.id();
    let chain = e.id();
    let kind = if joins_meeting {
        CallKind::Meeting
    } else if req.targets.len() > 1 {
        CallKind::Group
    } else {
        CallKind::PeerToPeer
    };
    if let Some(mid) = &meeting_id {
        replace_rejoined(e, mid, &source);
    }
    let conf_id = match &meeting_id {
        Some(mid) => legs::meeting_conference(e, mid),
        None => {
            let conf_id = e.id();
            e.confs.insert(
                conf_id.clone(),
                Conference::new(conf_id.clone(), app.tenant_id.clone(), None),
            );
            conf_id
        }
    };
    let ring_s = req.ringing_timeout_in_seconds;
    let call = Call {
        id: call_id.clone(),
        tenant_id: app.tenant_id.clone(),
        app_id: app.app_id.clone(),
        app_name: app.app_name.clone(),
        direction: CallDirection::Outgoing,
        state: CallState::Establishing,
        kind: kind.clone(),
        callback_uri: req.callback_uri.clone().unwrap_or_default(),
        source: source.clone(),
        targets: req.targets.clone(),
        requested_modalities: req.requested_modalities.clone(),
        media_config: req.media_config.clone(),
        chat_info: match (&meeting_id, &req.chat_info) {
            (Some(mid), _) => Some(ChatInfo {
                thread_id: Some(e.meetings[mid].thread_id.clone()),
                message_id: Some("0".into()),
                reply_chain_message_id: None,
            }),
            (None, ci) => ci.clone(),
        },
        meeting_info: req.meeting_info.clone(),
        subject: req.subject.clone(),
        call_options: req.call_options.clone().unwrap_or_default(),
        ringing_timeout_s: ring_s,
        my_participant_id: my_pid.clone(),
        call_chain_id: chain,
        conf_id: conf_id.clone(),
        media_active: false,
        result_info: None,
        termination_reason: None,
        answered_by: None,
        tone_subscribed: false,
        tone_seq: 0,
        tone_info: None,
        transcription: None,
        transcript: None,
        stream: None,
        recording: false,
        operations: Default::default(),
        media_queue: Default::default(),
        routing_groups: vec![],
        keepalive_at: e.now + e.cfg.keepalive_ms,
        answer_deadline: None,
        roster_sent_seq: 0,
        transfer: None,
        redirect: None,
        created_at: e.now,
        extra: req.extra.clone(),
    };
    let body = render::call(&call, ver);
    e.insert_call(call);
    e.touch_call(&call_id);
    add_bot_member(e, &conf_id, &call_id, &my_pid, source, false);
    e.notify_call(&call_id, json!({}));
    prefetch(e, &call_id, &req.media_config);
    let ring_ms = ring_s
        .map(|s| s as u64 * 1000)
        .unwrap_or(e.cfg.default_ring_ms);
    match kind {
        CallKind::PeerToPeer => {
            let target = req.targets[0].clone();
            legs::ring_member(e, &call_id, &conf_id, &target, ring_ms, None);
        }
        CallKind::Group => {
            establish(e, &call_id);
            for t in req.targets.clone() {
                legs::ring_member(e, &call_id, &conf_id, &t, ring_ms, None);
            }
        }
        CallKind::Meeting => establish(e, &call_id),
    }
    Ok(Reply {
        status: 201,
        body: Some(body),
        location: Some(format!("/communications/calls/{call_id}")),
    })
}

fn answer(e: &mut Engine, id: &str, req: Answer) -> R {
    req.validate().map_err(ApiError::bad_request)?;
    let c = &e.calls[id];
    if c.state != CallState::Incoming {
        return Err(ApiError::wrong_state("answer", c.state));
    }
    let c = e.calls.get_mut(id).expect("checked");
    if let Some(cb) = req.callback_uri {
        c.callback_uri = cb;
    }
    c.media_config = req.media_config.clone();
    let out_of_default = req
        .media_config
        .as_ref()
        .is_some_and(MediaConfig::removes_from_default_group);
    let (conf_id, pid) = (c.conf_id.clone(), c.my_participant_id.clone());
    if let Some(m) = e
        .confs
        .get_mut(&conf_id)
        .and_then(|cf| cf.members.iter_mut().find(|m| m.id == pid))
    {
        m.in_default_group = !out_of_default;
    }
    e.touch_conf(&conf_id);
    let c = e.calls.get_mut(id).expect("checked");
    if let Some(o) = req.call_options {
        c.call_options = o;
    }
    if !req.accepted_modalities.is_empty() {
        c.requested_modalities = req.accepted_modalities;
    }
    c.answer_deadline = None;
    let caller = lifecycle::caller_leg(e, id);
    e.set_state(id, CallState::Establishing);
    if let Some(MediaConfig::ServiceHosted {
        pre_fetch_media, ..
    }) = &req.media_config
    {
        for m in pre_fetch_media {
            e.effect(Effect::FetchPrompt {
                call_id: id.to_string(),
                op_id: String::new(),
                index: 0,
                uri: m.uri.clone(),
                resource_id: m.resource_id.clone(),
            });
        }
    }
    if let Some(leg) = caller {
        e.leg_action(LegAction::Answer { leg_id: leg });
    }
    Ok(Reply::empty(202))
}

fn reject(e: &mut Engine, id: &str, req: Reject) -> R {
    let c = &e.calls[id];
    if c.state != CallState::Incoming {
        return Err(ApiError::wrong_state("reject", c.state));
    }
    if let Some(cb) = &req.callback_uri {
        check_callback_uri(cb).map_err(ApiError::bad_request)?;
        e.calls.get_mut(id).expect("checked").callback_uri = cb.clone();
    }
    let (sip, text) = match req.reason.unwrap_or(RejectReason::None) {
        RejectReason::Busy => (486, "busy"),
        RejectReason::Forbidden => (403, "forbidden"),
        _ => (603, "declined"),
    };
    if let Some(leg) = lifecycle::caller_leg(e, id) {
        e.leg_action(LegAction::Reject {
            leg_id: leg.clone(),
            sip_code: sip,
        });
        lifecycle::end_leg(e, &leg, "left");
    }
    terminate(
        e,
        id,
        ResultInfo::new(
            200,
            7000,
            &format!("The call was rejected by the application ({text})."),
        ),
        None,
    );
    Ok(Reply::empty(202))
}

/// DELETE on the call: the bot's leg leaves (reference §7.3).
pub(crate) fn hang_up(e: &mut Engine, id: &str) {
    let state = e.calls[id].state;
    if state == CallState::Incoming {
        if let Some(leg) = lifecycle::caller_leg(e, id) {
            e.leg_action(LegAction::Reject {
                leg_id: leg.clone(),
                sip_code: 603,
            });
            lifecycle::end_leg(e, &leg, "left");
        }
    } else {
        e.set_state(id, CallState::Terminating);
    }
    terminate(
        e,
        id,
        ResultInfo::new(200, 5001, "The conversation has ended."),
        None,
    );
}

// ------------------------------------------------------------------ roster

fn delete_participant(e: &mut Engine, id: &str, pid: &str) -> R {
    require_group(e, id, "Removing a participant")?;
    let c = &e.calls[id];
    let conf_id = c.conf_id.clone();
    if pid.eq_ignore_ascii_case(&c.my_participant_id) {
        return Err(ApiError::bad_request(
            "To leave the call, DELETE the call itself.",
        ));
    }
    let Some(m) = e.confs[&conf_id]
        .members
        .iter()
        .find(|m| m.id.eq_ignore_ascii_case(pid))
        .cloned()
    else {
        return Err(ApiError::not_found("Participant", pid));
    };
    match &m.endpoint {
        MemberEndpoint::Bot { call_id } => {
            terminate(
                e,
                call_id,
                ResultInfo::new(
                    200,
                    5000,
                    "Removed from the conversation by another participant.",
                ),
                None,
            );
        }
        MemberEndpoint::Leg { leg_id } => {
            let ringing = e
                .legs
                .get(leg_id)
                .is_some_and(|l| l.state == LegState::Ringing);
            e.leg_action(if ringing {
                LegAction::Cancel {
                    leg_id: leg_id.clone(),
                }
            } else {
                LegAction::Hangup {
                    leg_id: leg_id.clone(),
                    reason: "removed by another participant".into(),
                }
            });
            // The invitation is resolved before the conference reacts to the departure.
            remove_member(e, &conf_id, &m.id, "removedByApplication");
            lifecycle::end_leg(e, leg_id, "removedByApplication");
            if let Some((call, op)) = &m.invited_by {
                legs::invitee_resolved(
                    e,
                    call,
                    op,
                    &m.id,
                    Some("The invitation was cancelled.".into()),
                );
            }
            lifecycle::after_member_left(e, &conf_id);
        }
    }
    Ok(Reply::empty(204))
}

fn mute_participant(e: &mut Engine, id: &str, pid: &str, req: ClientContext) -> R {
    req.validate().map_err(ApiError::bad_request)?;
    require_group(e, id, "mute")?;
    require_established(e, id, "mute")?;
    let conf_id = e.calls[id].conf_id.clone();
    let Some(m) = e.confs[&conf_id]
        .members
        .iter()
        .find(|m| m.joined && m.id.eq_ignore_ascii_case(pid))
    else {
        return Err(ApiError::not_found("Participant", pid));
    };
    let mid = m.id.clone();
    update_member(e, &conf_id, &mid, |m| m.muted = true);
    let op = new_op(
        e,
        id,
        OpKind::MuteParticipant,
        req.client_context,
        OperationStatus::Completed,
    );
    op_reply(e, id, &op, 200)
}

fn mute_all(e: &mut Engine, id: &str, req: MuteAll) -> R {
    check_client_context(&req.client_context).map_err(ApiError::bad_request)?;
    require_group(e, id, "muteAll")?;
    require_established(e, id, "muteAll")?;
    let c = &e.calls[id];
    let conf_id = c.conf_id.clone();
    let me = c.my_participant_id.clone();
    let members: Vec<String> = e.confs[&conf_id]
        .members
        .iter()
        .filter(|m| m.joined)
        .map(|m| m.id.clone())
        .collect();
    let targets: Vec<String> = if req.participants.is_empty() {
        members.iter().filter(|m| **m != me).cloned().collect()
    } else {
        for p in &req.participants {
            if !members.iter().any(|m| m.eq_ignore_ascii_case(p)) {
                return Err(ApiError::not_found("Participant", p));
            }
        }
        members
            .iter()
            .filter(|m| req.participants.iter().any(|p| p.eq_ignore_ascii_case(m)))
            .cloned()
            .collect()
    };
    for t in &targets {
        update_member(e, &conf_id, t, |m| m.muted = true);
    }
    let op = new_op(
        e,
        id,
        OpKind::MuteParticipants,
        req.client_context,
        OperationStatus::Completed,
    );
    e.calls
        .get_mut(id)
        .expect("exists")
        .operations
        .get_mut(&op)
        .expect("op")
        .participants = Some(json!(targets));
    op_reply(e, id, &op, 200)
}

fn self_mute(e: &mut Engine, id: &str, req: ClientContext, mute: bool) -> R {
    req.validate().map_err(ApiError::bad_request)?;
    let action = if mute { "mute" } else { "unmute" };
    require_group(e, id, action)?;
    require_established(e, id, action)?;
    update_bot_member(e, id, |m| m.muted = mute);
    let kind = if mute {
        OpKind::MuteParticipant
    } else {
        OpKind::UnmuteParticipant
    };
    let op = new_op(e, id, kind, req.client_context, OperationStatus::Completed);
    op_reply(e, id, &op, 200)
}

fn transcription(e: &mut Engine, id: &str, req: Transcription, start: bool) -> R {
    req.validate().map_err(ApiError::bad_request)?;
    require_established(
        e,
        id,
        if start {
            "startTranscription"
        } else {
            "stopTranscription"
        },
    )?;
    let active = matches!(
        e.calls[id].transcription,
        Some((TranscriptionState::Active, _))
    );
    if start == active {
        return Err(ApiError::bad_request(if start {
            "Transcription is already active."
        } else {
            "Transcription is not active."
        }));
    }
    if start {
        let due = e.now;
        let op = new_op(
            e,
            id,
            OpKind::StartTranscription,
            req.client_context,
            OperationStatus::Running,
        );
        set_op_due(e, id, &op, due);
        op_reply(e, id, &op, 202)
    } else {
        crate::transcripts::stop(e, id);
        let t = render::transcription(&e.calls[id]);
        e.notify_call(id, json!({ "transcription": t }));
        let op = new_op(
            e,
            id,
            OpKind::StopTranscription,
            req.client_context,
            OperationStatus::Completed,
        );
        op_reply(e, id, &op, 202)
    }
}

// ------------------------------------------------------------------ routing groups

fn check_routing_group(e: &Engine, id: &str, g: &AudioRoutingGroup) -> Result<(), ApiError> {
    match g.routing_mode {
        RoutingMode::OneToOne if g.sources.len() != 1 || g.receivers.len() != 1 => {
            return Err(ApiError::bad_request(
                "A oneToOne routing group has exactly one source and one receiver.",
            ));
        }
        RoutingMode::Multicast if g.sources.len() != 1 || g.receivers.is_empty() => {
            return Err(ApiError::bad_request(
                "A multicast routing group has exactly one source and at least one receiver.",
            ));
        }
        RoutingMode::UnknownFutureValue => {
            return Err(ApiError::bad_request(
                "routingMode must be oneToOne or multicast.",
            ));
        }
        _ => {}
    }
    let c = &e.calls[id];
    let conf = &e.confs[&c.conf_id];
    for p in g.sources.iter().chain(g.receivers.iter()) {
        if !conf
            .members
            .iter()
            .any(|m| m.joined && m.id.eq_ignore_ascii_case(p))
        {
            return Err(ApiError::bad_request(format!(
                "Participant '{p}' is not in the call."
            )));
        }
    }
    if g.sources.iter().any(|s| g.receivers.contains(s)) {
        return Err(ApiError::bad_request(
            "A participant cannot be both source and receiver of one routing group.",
        ));
    }
    Ok(())
}

fn create_routing_group(e: &mut Engine, id: &str, mut g: AudioRoutingGroup) -> R {
    require_established(e, id, "Creating an audio routing group")?;
    check_routing_group(e, id, &g)?;
    if g.id.as_ref().is_none_or(|s| s.is_empty()) {
        g.id = Some(e.id());
    }
    if g.id.as_ref().is_some_and(|s| s.len() > 128) {
        return Err(ApiError::bad_request("id is too long"));
    }
    let c = e.calls.get_mut(id).expect("checked");
    if c.routing_groups.iter().any(|x| x.id == g.id) {
        return Err(ApiError::conflict(format!(
            "An audio routing group with id '{}' already exists.",
            g.id.clone().unwrap_or_default()
        )));
    }
    if c.routing_groups.len() >= 64 {
        return Err(ApiError::bad_request(
            "A call can have at most 64 audio routing groups.",
        ));
    }
    let body = render::routing_group(&g);
    c.routing_groups.push(g);
    e.touch_call(id);
    Ok(Reply::json(200, body))
}

fn update_routing_group(e: &mut Engine, id: &str, gid: &str, patch: Value) -> R {
    let Some(mut g) = e.calls[id]
        .routing_groups
        .iter()
        .find(|g| g.id.as_deref() == Some(gid))
        .cloned()
    else {
        return Err(ApiError::not_found("Audio routing group", gid));
    };
    let Value::Object(p) = patch else {
        return Err(ApiError::bad_request("The body must be a JSON object."));
    };
    let list = |v: &Value, name: &str| -> Result<Vec<String>, ApiError> {
        serde_json::from_value::<Vec<String>>(v.clone()).map_err(|_| {
            ApiError::bad_request(format!("{name} must be an array of participant ids"))
        })
    };
    if let Some(v) = p.get("sources") {
        g.sources = list(v, "sources")?;
    }
    if let Some(v) = p.get("receivers") {
        g.receivers = list(v, "receivers")?;
    }
    if let Some(v) = p.get("routingMode") {
        g.routing_mode = serde_json::from_value(v.clone())
            .map_err(|e| ApiError::bad_request(format!("routingMode: {e}")))?;
    }
    check_routing_group(e, id, &g)?;
    let body = render::routing_group(&g);
    let c = e.calls.get_mut(id).expect("checked");
    if let Some(slot) = c
        .routing_groups
        .iter_mut()
        .find(|x| x.id.as_deref() == Some(gid))
    {
        *slot = g;
    }
    e.touch_call(id);
    Ok(Reply::json(200, body))
}

// ------------------------------------------------------------------ operations

// ------------------------------------------------------------------ guards

// ------------------------------------------------------------------ timers

pub(crate) fn next_deadline(e: &Engine, call_id: &str) -> Option<Ms> {
    let c = e.calls.get(call_id)?;
    let mut due = vec![
        Some(c.keepalive_at),
        c.answer_deadline,
        c.redirect.as_ref().map(|r| r.deadline),
        c.transfer.as_ref().map(|t| t.deadline),
    ];
    for o in c.operations.values().filter(|o| !o.is_final()) {
        due.push(o.due);
    }
    for l in e.legs_of(call_id) {
        if matches!(l.role, LegRole::Member { .. }) && l.state == LegState::Ringing {
            due.push(l.ring_deadline);
        }
    }
    due.into_iter().flatten().min()
}

pub(crate) fn fire_timers(e: &mut Engine, call_id: &str) {
    let now = e.now;
    let Some(c) = e.calls.get(call_id) else {
        return;
    };
    if c.keepalive_at <= now {
        terminate(
            e,
            call_id,
            ResultInfo::new(
                408,
                8537,
                "Keep Alive timeout: the call was inactive and has been cleaned up.",
            ),
            None,
        );
        return;
    }
    if c.answer_deadline.is_some_and(|d| d <= now) {
        if let Some(leg) = lifecycle::caller_leg(e, call_id) {
            e.leg_action(LegAction::Reject {
                leg_id: leg.clone(),
                sip_code: 408,
            });
            lifecycle::end_leg(e, &leg, "left");
        }
        terminate(
            e,
            call_id,
            ResultInfo::new(408, 1106, "Call acceptance was not acknowledged in time."),
            None,
        );
        return;
    }
    if c.redirect.as_ref().is_some_and(|r| r.deadline <= now) {
        legs::redirect_failed(
            e,
            call_id,
            ResultInfo::new(408, 10057, "Redirect timed out: no target answered."),
        );
        return;
    }
    if c.transfer.as_ref().is_some_and(|t| t.deadline <= now) {
        legs::transfer_failed(e, call_id, "The transfer target did not answer in time.");
    }
    let ringing: Vec<String> = e
        .legs_of(call_id)
        .filter(|l| {
            l.state == LegState::Ringing
                && l.ring_deadline.is_some_and(|d| d <= now)
                && matches!(l.role, LegRole::Member { .. })
        })
        .map(|l| l.id.clone())
        .collect();
    for leg in ringing {
        e.leg_action(LegAction::Cancel {
            leg_id: leg.clone(),
        });
        legs::on_event(
            e,
            &leg,
            LegEvent::Failed {
                sip_code: 408,
                reason: "no answer".into(),
            },
        );
    }
    let Some(c) = e.calls.get(call_id) else {
        return;
    };
    let due_ops: Vec<(String, OpKind)> = c
        .operations
        .values()
        .filter(|o| !o.is_final() && o.due.is_some_and(|d| d <= now))
        .map(|o| (o.id.clone(), o.kind.clone()))
        .collect();
    for (op, kind) in due_ops {
        complete_timed_op(e, call_id, &op, kind);
    }
}

/// Operations whose effect happens on the next tick after they are accepted.
fn complete_timed_op(e: &mut Engine, call_id: &str, op: &str, kind: OpKind) {
    match kind {
        OpKind::AddLargeGalleryView => update_bot_member(e, call_id, |m| m.large_gallery = true),
        OpKind::StartRecording => {
            e.calls.get_mut(call_id).expect("exists").recording = true;
            media::start_call_recording(e, call_id);
            let who = e.calls[call_id].source.identity.clone();
            update_bot_member(e, call_id, |m| {
                m.recording = Some((RecordingStatus::Recording, who))
            });
        }
        OpKind::StartTranscription => {
            if let Some(why) = crate::transcripts::start(e, call_id) {
                finish_op(e, call_id, op, OperationStatus::Failed, Some(why), None);
                return;
            }
        }
        OpKind::InviteParticipants => {
            legs::check_invite_done(e, call_id, op);
            return;
        }
        OpKind::StartHoldMusic => {
            media::hold_music_started(e, call_id, op);
            return;
        }
        _ => {}
    }
    finish_op(e, call_id, op, OperationStatus::Completed, None, None);
}
