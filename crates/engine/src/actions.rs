//! Graph actions on calls: one function per action, dispatched from one table.

use crate::media;
use crate::model::*;
use crate::render::{self, Version};
use crate::*;
use graph::requests::*;
use serde_json::{Value, json};

type R = Result<Reply, ApiError>;

pub(crate) fn dispatch(
    e: &mut Engine,
    app: &AppCtx,
    call_id: Option<&str>,
    cmd: Command,
    ver: Version,
) -> R {
    if let Command::CreateCall(req) = cmd {
        return create_call(e, app, *req, ver);
    }
    if let Command::ListCalls = cmd {
        let mut calls: Vec<&Call> = e
            .calls
            .values()
            .filter(|c| c.app_id == app.app_id && c.tenant_id == app.tenant_id)
            .collect();
        calls.sort_by_key(|c| (c.created_at, c.id.clone()));
        let value: Vec<Value> = calls.into_iter().map(|c| render::call(c, ver)).collect();
        return Ok(Reply::json(200, json!({ "value": value })));
    }
    let id = call_id
        .ok_or_else(ApiError::call_not_found)?
        .to_ascii_lowercase();
    let Some(call) = e.calls.get(&id) else {
        return Err(ApiError::call_not_found());
    };
    // A token of another tenant is told so, as Graph does; another app of the same tenant
    // does not learn that the call exists (404).
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
    let id = id.as_str();
    match cmd {
        Command::CreateCall(_) | Command::ListCalls => unreachable!("handled above"),
        Command::GetCall => Ok(Reply::json(200, render::call(&e.calls[id], ver))),
        Command::DeleteCall => {
            hang_up(e, id);
            Ok(Reply::empty(204))
        }
        Command::KeepAlive => {
            let ka = e.now + e.cfg.keepalive_ms;
            if let Some(c) = e.calls.get_mut(id) {
                c.keepalive_at = ka;
            }
            e.touch_call(id);
            Ok(Reply::empty(200))
        }
        Command::Answer(req) => answer(e, id, req),
        Command::Reject(req) => reject(e, id, req),
        Command::Redirect(req) => legs::redirect(e, id, req),
        Command::Transfer(req) => legs::transfer(e, id, *req),
        Command::ListParticipants => {
            let c = &e.calls[id];
            let conf = &e.confs[&c.conf_id];
            let value: Vec<Value> = roster_for(c, conf)
                .into_iter()
                .map(|m| render::participant(m, None))
                .collect();
            Ok(Reply::json(200, json!({ "value": value })))
        }
        Command::GetParticipant(pid) => {
            let c = &e.calls[id];
            let conf = &e.confs[&c.conf_id];
            roster_for(c, conf)
                .into_iter()
                .find(|m| m.id.eq_ignore_ascii_case(&pid))
                .map(|m| Reply::json(200, render::participant(m, None)))
                .ok_or_else(|| ApiError::not_found("Participant", &pid))
        }
        Command::DeleteParticipant(pid) => delete_participant(e, id, &pid),
        Command::Invite(req) => legs::invite(e, id, req),
        Command::MuteAll(req) => mute_all(e, id, req),
        Command::MuteParticipant(pid, req) => mute_participant(e, id, &pid, req),
        Command::StartHoldMusic(pid, req) => media::start_hold_music(e, id, &pid, req),
        Command::StopHoldMusic(pid, req) => media::stop_hold_music(e, id, &pid, req),
        Command::CreateRoutingGroup(g) => create_routing_group(e, id, g),
        Command::ListRoutingGroups => {
            let value: Vec<Value> = e.calls[id]
                .routing_groups
                .iter()
                .map(render::routing_group)
                .collect();
            Ok(Reply::json(200, json!({ "value": value })))
        }
        Command::GetRoutingGroup(gid) => e.calls[id]
            .routing_groups
            .iter()
            .find(|g| g.id.as_deref() == Some(gid.as_str()))
            .map(|g| Reply::json(200, render::routing_group(g)))
            .ok_or_else(|| ApiError::not_found("Audio routing group", &gid)),
        Command::UpdateRoutingGroup(gid, patch) => update_routing_group(e, id, &gid, patch),
        Command::DeleteRoutingGroup(gid) => {
            let c = e.calls.get_mut(id).expect("checked");
            let before = c.routing_groups.len();
            c.routing_groups
                .retain(|g| g.id.as_deref() != Some(gid.as_str()));
            if c.routing_groups.len() == before {
                return Err(ApiError::not_found("Audio routing group", &gid));
            }
            e.touch_call(id);
            Ok(Reply::empty(204))
        }
        Command::AddLargeGalleryView(req) => {
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
        Command::PlayPrompt(req) => media::play_prompt(e, id, req),
        Command::RecordResponse(req) => media::record_response(e, id, req),
        Command::CancelMediaProcessing(req) => media::cancel_media(e, id, req),
        Command::SubscribeToTone(req) => {
            req.validate().map_err(ApiError::bad_request)?;
            require_service_hosted(e, id, "subscribeToTone")?;
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
        Command::SendDtmfTones(req) => media::send_dtmf(e, id, req),
        Command::Mute(req) => self_mute(e, id, req, true),
        Command::Unmute(req) => self_mute(e, id, req, false),
        Command::ChangeScreenSharingRole(req) => {
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
        Command::UpdateRecordingStatus(req) => {
            let status = req.status.ok_or_else(|| {
                ApiError::bad_request("status is required (notRecording, recording or failed)")
            })?;
            check_client_context(&req.client_context).map_err(ApiError::bad_request)?;
            if !matches!(
                status,
                RecordingStatus::NotRecording
                    | RecordingStatus::Recording
                    | RecordingStatus::Failed
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
        Command::StartRecording(req) => {
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
        Command::StopRecording(req) => {
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
        Command::StartTranscription(req) => transcription(e, id, req, true),
        Command::StopTranscription(req) => transcription(e, id, req, false),
        Command::ListOperations => {
            let value: Vec<Value> = e.calls[id]
                .operations
                .values()
                .map(render::operation)
                .collect();
            Ok(Reply::json(200, json!({ "value": value })))
        }
        Command::GetOperation(op) => e.calls[id]
            .operations
            .get(&op.to_ascii_lowercase())
            .map(|o| Reply::json(200, render::operation(o)))
            .ok_or_else(|| ApiError::not_found("Operation", &op)),
        Command::ListContentSharingSessions => {
            let conf = &e.confs[&e.calls[id].conf_id];
            let value: Vec<Value> = conf.sharing.iter().map(render::content_sharing).collect();
            Ok(Reply::json(200, json!({ "value": value })))
        }
        Command::GetContentSharingSession(sid) => e.confs[&e.calls[id].conf_id]
            .sharing
            .iter()
            .find(|s| s.id.eq_ignore_ascii_case(&sid))
            .map(|s| Reply::json(200, render::content_sharing(s)))
            .ok_or_else(|| ApiError::not_found("Content sharing session", &sid)),
    }
}

// ------------------------------------------------------------------ create / answer / reject

fn create_call(e: &mut Engine, app: &AppCtx, mut req: CreateCall, ver: Version) -> R {
    req.validate().map_err(ApiError::bad_request)?;
    if let Some(t) = &req.tenant_id
        && !t.eq_ignore_ascii_case(&app.tenant_id)
    {
        return Err(ApiError {
            status: 403,
            code: "Forbidden".into(),
            message: "request authorization tenant mismatch".into(),
        });
    }
    let in_tenant = e
        .calls
        .values()
        .filter(|c| c.tenant_id == app.tenant_id)
        .count();
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
    // An app may be in one meeting several times, each with its own identity; rejoining with
    // the same identity (a crashed bot re-creating its call) replaces the old call.
    if let Some(mid) = &meeting_id
        && let Some(existing) = e.meetings[mid]
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
    e.calls.insert(call_id.clone(), call);
    e.touch_call(&call_id);
    add_bot_member(e, &conf_id, &call_id, &my_pid, source, false);
    e.notify_call(&call_id, json!({}));
    if let Some(MediaConfig::ServiceHosted {
        pre_fetch_media, ..
    }) = &req.media_config
    {
        for m in pre_fetch_media {
            e.effect(Effect::FetchPrompt {
                call_id: call_id.clone(),
                op_id: String::new(),
                index: 0,
                uri: m.uri.clone(),
                resource_id: m.resource_id.clone(),
            });
        }
    }
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

/// End the call's recording (stopRecording, or the call ending): the room closes the file.
fn stop_call_recording(e: &mut Engine, id: &str) {
    let Some(c) = e.calls.get_mut(id) else { return };
    if !c.recording {
        return;
    }
    c.recording = false;
    let conf_id = c.conf_id.clone();
    e.touch_call(id);
    e.effect(Effect::Media(::media::Cmd::StopRecording {
        conf_id,
        call_id: id.to_string(),
    }));
}

pub(crate) fn add_bot_member(
    e: &mut Engine,
    conf_id: &str,
    call_id: &str,
    pid: &str,
    info: ParticipantInfo,
    joined: bool,
) {
    let hidden = info
        .identity
        .application_instance
        .as_ref()
        .and_then(|i| i.extra.get("hidden"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let out_of_default = e
        .calls
        .get(call_id)
        .and_then(|c| c.media_config.as_ref())
        .is_some_and(MediaConfig::removes_from_default_group);
    let conf = e.confs.get_mut(conf_id).expect("conference exists");
    let bot = MemberEndpoint::Bot {
        call_id: call_id.to_string(),
    };
    let m = conf.push_member(pid.to_string(), info, bot, joined);
    m.hidden = hidden;
    m.in_default_group = !out_of_default;
    e.roster_changed(conf_id);
}

/// The bot's leg is connected: `established`, media active, bot visible in the roster.
pub(crate) fn establish(e: &mut Engine, call_id: &str) {
    let Some(c) = e.calls.get_mut(call_id) else {
        return;
    };
    if c.state == CallState::Established {
        return;
    }
    c.state = CallState::Established;
    c.media_active = true;
    c.answer_deadline = None;
    let (conf_id, pid) = (c.conf_id.clone(), c.my_participant_id.clone());
    e.touch_call(call_id);
    e.notify_call(
        call_id,
        json!({"mediaState":{"@odata.type":"#microsoft.graph.callMediaState","audio":"active"}}),
    );
    update_member(e, &conf_id, &pid, |m| m.joined = true);
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
    let caller = legs::caller_leg(e, id);
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
    if let Some(leg) = legs::caller_leg(e, id) {
        e.leg_action(LegAction::Reject {
            leg_id: leg.clone(),
            sip_code: sip,
        });
        legs::end_leg(e, &leg, "left");
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
        if let Some(leg) = legs::caller_leg(e, id) {
            e.leg_action(LegAction::Reject {
                leg_id: leg.clone(),
                sip_code: 603,
            });
            legs::end_leg(e, &leg, "left");
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

/// End a call: fail its running operations, leave the conference, `deleted` + `terminated`.
pub(crate) fn terminate(
    e: &mut Engine,
    id: &str,
    result: ResultInfo,
    termination_reason: Option<&str>,
) {
    let Some(c) = e.calls.get_mut(id) else { return };
    if c.state == CallState::Terminated {
        return;
    }
    // Mark first: leaving the conference below can re-enter terminate for this call.
    c.state = CallState::Terminated;
    stop_call_recording(e, id);
    let c = e.calls.get_mut(id).expect("exists");
    let running: Vec<String> = c
        .operations
        .values()
        .filter(|o| !o.is_final())
        .map(|o| o.id.clone())
        .collect();
    for op in running {
        finish_op(
            e,
            id,
            &op,
            OperationStatus::Failed,
            Some(ResultInfo::new(
                410,
                8510,
                "The call ended before the operation completed.",
            )),
            None,
        );
    }
    let (conf_id, pid, kind) = {
        let c = &e.calls[id];
        (
            c.conf_id.clone(),
            c.my_participant_id.clone(),
            c.kind.clone(),
        )
    };
    // Legs rung on behalf of this call stop ringing.
    let owned: Vec<String> = e
        .legs
        .values()
        .filter(|l| l.state == LegState::Ringing && matches!(&l.role, LegRole::Member { call_id } | LegRole::RedirectTarget { call_id } | LegRole::TransferTarget { call_id } | LegRole::Transferee { call_id } if call_id == id))
        .map(|l| l.id.clone())
        .collect();
    for leg in owned {
        e.leg_action(LegAction::Cancel {
            leg_id: leg.clone(),
        });
        legs::end_leg(e, &leg, "cancelled");
    }
    remove_member(e, &conf_id, &pid, "left");
    // In a peer-to-peer call the other party goes too.
    if kind == CallKind::PeerToPeer {
        let others: Vec<String> = e
            .confs
            .get(&conf_id)
            .map(|c| {
                c.members
                    .iter()
                    .filter_map(|m| match &m.endpoint {
                        MemberEndpoint::Leg { leg_id } => Some(leg_id.clone()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        for leg in others {
            if e.legs
                .get(&leg)
                .is_some_and(|l| l.state != LegState::Ended && l.role != LegRole::Bridged)
            {
                e.leg_action(LegAction::Hangup {
                    leg_id: leg.clone(),
                    reason: "the application hung up".into(),
                });
                legs::end_leg(e, &leg, "left");
            }
        }
    }
    let c = e.calls.get_mut(id).expect("exists");
    c.state = CallState::Terminated;
    c.media_active = false;
    c.result_info = Some(result.clone());
    c.termination_reason = termination_reason.map(str::to_string);
    let mut data = json!({
        "@odata.type":"#microsoft.graph.call","@odata.id":format!("/communications/calls/{id}"),"id":id,
        "state":"terminated","resultInfo":result.to_value(),
    });
    if let Some(r) = termination_reason {
        data["terminationReason"] = r.into();
    }
    if let Some(a) = &c.answered_by {
        data["answeredBy"] = render::participant_info(a);
    }
    e.notify(id, ChangeType::Deleted, "", data);
    e.calls.remove(id);
    e.touch_call(id);
    gc_conference(e, &conf_id);
}

pub(crate) fn gc_conference(e: &mut Engine, conf_id: &str) {
    let Some(conf) = e.confs.get(conf_id) else {
        return;
    };
    if conf.members.is_empty() {
        if let Some(mid) = conf.meeting_id.clone()
            && let Some(m) = e.meetings.get_mut(&mid)
        {
            m.conf_id = None;
            e.touch_meeting(&mid);
        }
        e.confs.remove(conf_id);
        e.touch_conf(conf_id);
    }
}

// ------------------------------------------------------------------ roster

pub(crate) fn update_member(e: &mut Engine, conf_id: &str, pid: &str, f: impl FnOnce(&mut Member)) {
    let Some(conf) = e.confs.get_mut(conf_id) else {
        return;
    };
    conf.seq += 1;
    let seq = conf.seq;
    if let Some(m) = conf.members.iter_mut().find(|m| m.id == pid) {
        f(m);
        m.seq = seq;
    }
    e.roster_changed(conf_id);
}

fn update_bot_member(e: &mut Engine, call_id: &str, f: impl FnOnce(&mut Member)) {
    let (conf, pid) = (
        e.calls[call_id].conf_id.clone(),
        e.calls[call_id].my_participant_id.clone(),
    );
    update_member(e, &conf, &pid, f);
}

pub(crate) fn remove_member(e: &mut Engine, conf_id: &str, pid: &str, reason: &str) {
    let Some(conf) = e.confs.get_mut(conf_id) else {
        return;
    };
    let Some(i) = conf.members.iter().position(|m| m.id == pid) else {
        return;
    };
    let mut m = conf.members.remove(i);
    let ended_sharing = conf.sharing.take_if(|s| s.presenter == m.id);
    conf.seq += 1;
    m.seq = conf.seq;
    if m.joined {
        conf.removed.push(Tombstone {
            member: m,
            reason: reason.to_string(),
        });
        if conf.removed.len() > 64 {
            conf.removed.remove(0);
        }
    }
    e.roster_changed(conf_id);
    if let Some(s) = ended_sharing {
        sharing_changed(e, conf_id, ChangeType::Deleted, &s);
    }
}

/// contentSharingSession notifications to the bots that asked for them (callOptions).
pub(crate) fn sharing_changed(
    e: &mut Engine,
    conf_id: &str,
    change: ChangeType,
    s: &ContentSharing,
) {
    let Some(conf) = e.confs.get(conf_id) else {
        return;
    };
    let bots: Vec<String> = conf
        .members
        .iter()
        .filter_map(|m| match &m.endpoint {
            MemberEndpoint::Bot { call_id } => Some(call_id.clone()),
            _ => None,
        })
        .filter(|c| {
            e.calls.get(c).is_some_and(|c| {
                c.call_options.is_content_sharing_notification_enabled == Some(true)
                    && matches!(c.state, CallState::Established | CallState::Hold)
            })
        })
        .collect();
    for call_id in bots {
        e.notify(
            &call_id,
            change,
            "/contentsharingsessions",
            Value::Array(vec![render::content_sharing(s)]),
        );
    }
}

/// What a bot sees in its roster: joined members, hidden ones only if it is them.
pub(crate) fn roster_for<'a>(c: &Call, conf: &'a Conference) -> Vec<&'a Member> {
    conf.members
        .iter()
        .filter(|m| m.joined && (!m.hidden || m.id == c.my_participant_id))
        .collect()
}

/// Roster notifications to every bot in the conference (reference §9.3): the full roster, or
/// only what changed since the last one when `isDeltaRosterEnabled`.
pub(crate) fn send_rosters(e: &mut Engine, conf_id: &str) {
    let Some(conf) = e.confs.get(conf_id) else {
        return;
    };
    let bots: Vec<String> = conf
        .members
        .iter()
        .filter_map(|m| match &m.endpoint {
            MemberEndpoint::Bot { call_id } => Some(call_id.clone()),
            _ => None,
        })
        .collect();
    for call_id in bots {
        let Some(c) = e.calls.get(&call_id) else {
            continue;
        };
        if c.kind == CallKind::PeerToPeer
            || !matches!(c.state, CallState::Established | CallState::Hold)
        {
            continue;
        }
        let conf = &e.confs[conf_id];
        if c.roster_sent_seq >= conf.seq {
            continue;
        }
        let delta = c.call_options.is_delta_roster_enabled.unwrap_or(false);
        let data: Vec<Value> = if delta {
            let mut v: Vec<Value> = roster_for(c, conf)
                .into_iter()
                .filter(|m| m.seq > c.roster_sent_seq)
                .map(|m| render::participant(m, None))
                .collect();
            v.extend(
                conf.removed
                    .iter()
                    .filter(|t| t.member.seq > c.roster_sent_seq && (!t.member.hidden))
                    .map(|t| render::participant(&t.member, Some(&t.reason))),
            );
            v
        } else {
            roster_for(c, conf)
                .into_iter()
                .map(|m| render::participant(m, None))
                .collect()
        };
        let seq = conf.seq;
        e.calls.get_mut(&call_id).expect("exists").roster_sent_seq = seq;
        e.touch_call(&call_id);
        if delta && data.is_empty() {
            continue;
        }
        e.notify(
            &call_id,
            ChangeType::Updated,
            "/participants",
            Value::Array(data),
        );
    }
}

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
            legs::end_leg(e, leg_id, "removedByApplication");
            if let Some((call, op)) = &m.invited_by {
                legs::invitee_resolved(
                    e,
                    call,
                    op,
                    &m.id,
                    Some("The invitation was cancelled.".into()),
                );
            }
            legs::after_member_left(e, &conf_id);
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
        let now = e.now;
        e.calls.get_mut(id).expect("exists").transcription =
            Some((TranscriptionState::Inactive, now));
        e.touch_call(id);
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

pub(crate) fn new_op(
    e: &mut Engine,
    call_id: &str,
    kind: OpKind,
    cc: Option<String>,
    status: OperationStatus,
) -> String {
    let id = e.id();
    let op = Operation {
        id: id.clone(),
        kind,
        status,
        client_context: cc,
        result_info: None,
        completion_reason: None,
        recording_location: None,
        recording_access_token: None,
        participants: None,
        media: None,
        due: None,
        pending: vec![],
        failures: vec![],
    };
    e.calls
        .get_mut(call_id)
        .expect("call exists")
        .operations
        .insert(id.clone(), op);
    e.touch_call(call_id);
    id
}

pub(crate) fn set_op_due(e: &mut Engine, call_id: &str, op: &str, due: Ms) {
    if let Some(o) = e
        .calls
        .get_mut(call_id)
        .and_then(|c| c.operations.get_mut(op))
    {
        o.due = Some(due);
    }
    e.touch_call(call_id);
}

pub(crate) fn op_reply(e: &Engine, call_id: &str, op: &str, status: u16) -> R {
    let o = &e.calls[call_id].operations[op];
    Ok(Reply {
        status,
        body: Some(render::operation(o)),
        location: Some(format!("/communications/calls/{call_id}/operations/{op}")),
    })
}

/// Move a running operation to its final status and send its one `deleted` notification.
pub(crate) fn finish_op(
    e: &mut Engine,
    call_id: &str,
    op: &str,
    status: OperationStatus,
    result: Option<ResultInfo>,
    reason: Option<&str>,
) {
    let Some(o) = e
        .calls
        .get_mut(call_id)
        .and_then(|c| c.operations.get_mut(op))
    else {
        return;
    };
    if o.is_final() {
        return;
    }
    o.status = status;
    o.result_info = result.or_else(|| {
        (status == OperationStatus::Completed).then(|| ResultInfo::new(200, 0, "Success"))
    });
    o.due = None;
    if let Some(r) = reason {
        o.completion_reason = Some(r.to_string());
    }
    if o.kind == OpKind::Record && status == OperationStatus::Failed {
        o.recording_location.get_or_insert_with(String::new);
        o.recording_access_token.get_or_insert_with(String::new);
    }
    let data = render::operation(o);
    let suppress =
        o.media.as_ref().is_some_and(|m| m.loop_forever) && status == OperationStatus::Completed;
    e.touch_call(call_id);
    if let Some(c) = e.calls.get_mut(call_id) {
        c.media_queue.retain(|x| x != op);
    }
    if !suppress {
        e.notify(
            call_id,
            ChangeType::Deleted,
            &format!("/operations/{op}"),
            data,
        );
    }
}

// ------------------------------------------------------------------ guards

pub(crate) fn require_group(e: &Engine, id: &str, action: &str) -> Result<(), ApiError> {
    if e.calls[id].kind == CallKind::PeerToPeer {
        return Err(ApiError::bad_request(format!(
            "{action} is only supported in group calls and meetings, not in a peer-to-peer call."
        )));
    }
    Ok(())
}

pub(crate) fn require_established(e: &Engine, id: &str, action: &str) -> Result<(), ApiError> {
    let s = e.calls[id].state;
    if !matches!(s, CallState::Established | CallState::Hold) {
        return Err(ApiError::wrong_state(action, s));
    }
    Ok(())
}

pub(crate) fn require_not_ended(e: &Engine, id: &str, action: &str) -> Result<(), ApiError> {
    let s = e.calls[id].state;
    if matches!(
        s,
        CallState::Terminating | CallState::Terminated | CallState::Incoming
    ) {
        return Err(ApiError::wrong_state(action, s));
    }
    Ok(())
}

pub(crate) fn require_service_hosted(e: &Engine, id: &str, action: &str) -> Result<(), ApiError> {
    if !e.calls[id]
        .media_config
        .as_ref()
        .is_some_and(MediaConfig::is_service_hosted)
    {
        return Err(ApiError::bad_request(format!(
            "{action} is only supported for calls with serviceHostedMediaConfig."
        )));
    }
    Ok(())
}

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
    for l in e.legs.values() {
        if let LegRole::Member { call_id: owner } = &l.role
            && owner == call_id
            && l.state == LegState::Ringing
        {
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
        if let Some(leg) = legs::caller_leg(e, call_id) {
            e.leg_action(LegAction::Reject {
                leg_id: leg.clone(),
                sip_code: 408,
            });
            legs::end_leg(e, &leg, "left");
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
        .legs
        .values()
        .filter(|l| {
            l.state == LegState::Ringing
                && l.ring_deadline.is_some_and(|d| d <= now)
                && matches!(&l.role, LegRole::Member { call_id: o } if o == call_id)
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
            let now = e.now;
            e.calls.get_mut(call_id).expect("exists").transcription =
                Some((TranscriptionState::Active, now));
            let t = render::transcription(&e.calls[call_id]);
            e.notify_call(call_id, json!({ "transcription": t }));
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
