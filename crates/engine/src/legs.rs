//! Legs: the parties the engine rings, answers and bridges through endpoints
//! (simulated users now; SIP and WebRTC later), and the actions built on them:
//! incoming calls, invite, redirect, transfer, meetings.

use crate::core::Engine;
use crate::lifecycle::*;
use crate::model::*;
use crate::ops::{self, *};
use crate::render;
use crate::roster::{self, *};
use crate::types::*;
use graph::requests::*;
use graph::*;
use serde_json::{Value, json};

fn new_leg(
    e: &mut Engine,
    party: Party,
    info: ParticipantInfo,
    role: LegRole,
    conf_id: Option<String>,
    ring_ms: Option<u64>,
    script: Option<Value>,
) -> String {
    let id = e.id();
    let leg = Leg {
        id: id.clone(),
        party,
        info,
        state: LegState::Ringing,
        role,
        conf_id,
        participant_id: None,
        ring_deadline: ring_ms.map(|m| e.now + m),
        script,
        refer: false,
    };
    e.insert_leg(leg);
    e.touch_leg(&id);
    id
}

fn script_of(t: &InvitationParticipantInfo) -> Option<Value> {
    t.extra
        .get("ringside")
        .cloned()
        .or_else(|| t.identity.extra.get("ringside").cloned())
}

fn info_of_target(t: &InvitationParticipantInfo) -> ParticipantInfo {
    let mut identity = t.identity.clone();
    identity.extra.remove("ringside");
    ParticipantInfo {
        identity,
        endpoint_type: t.endpoint_type,
        ..Default::default()
    }
}

/// Ring `target` as a future member of `conf_id` on behalf of `call_id`; returns the pending participant id.
pub(crate) fn ring_member(
    e: &mut Engine,
    call_id: &str,
    conf_id: &str,
    target: &InvitationParticipantInfo,
    ring_ms: u64,
    invite_op: Option<&str>,
) -> String {
    let party = target.identity.party().expect("validated target");
    let info = info_of_target(target);
    let script = script_of(target);
    let leg = new_leg(
        e,
        party.clone(),
        info.clone(),
        LegRole::Member {
            call_id: call_id.to_string(),
        },
        Some(conf_id.to_string()),
        Some(ring_ms),
        script.clone(),
    );
    let pid = target
        .participant_id
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| e.id());
    let conf = e.confs.get_mut(conf_id).expect("conference");
    let m = conf.push_member(
        pid.clone(),
        info,
        MemberEndpoint::Leg {
            leg_id: leg.clone(),
        },
        false,
    );
    m.hidden = target.hidden.unwrap_or(false);
    m.in_default_group = !target
        .remove_from_default_audio_routing_group
        .unwrap_or(false);
    m.invited_by = invite_op.map(|op| (call_id.to_string(), op.to_string()));
    e.touch_conf(conf_id);
    if let Some(l) = e.legs.get_mut(&leg) {
        l.participant_id = Some(pid.clone());
    }
    let from = e
        .calls
        .get(call_id)
        .map(|c| c.source.clone())
        .unwrap_or_default();
    e.leg_action(LegAction::Ring {
        leg_id: leg,
        to: party,
        from: Box::new(from),
        script,
    });
    pid
}

/// A caller rings an app: the incoming call and its `created` notification (reference §7.5).
pub(crate) fn incoming(
    e: &mut Engine,
    app: &AppCtx,
    webhook: &str,
    caller: ParticipantInfo,
    script: Option<Value>,
    target: Option<IdentitySet>,
) -> (String, String) {
    let call_id = e.id();
    let conf_id = e.id();
    let my_pid = e.id();
    let chain = e.id();
    let party = caller
        .identity
        .party()
        .unwrap_or(Party::Guest("anonymous".into()));
    let leg = new_leg(
        e,
        party,
        caller.clone(),
        LegRole::Caller {
            call_id: call_id.clone(),
        },
        Some(conf_id.clone()),
        None,
        script,
    );
    if let Some(l) = e.legs.get_mut(&leg) {
        l.state = LegState::Connected;
    }
    let target = InvitationParticipantInfo {
        identity: target
            .unwrap_or_else(|| IdentitySet::application(&app.app_id, app.app_name.as_deref())),
        ..Default::default()
    };
    let call = Call {
        id: call_id.clone(),
        tenant_id: app.tenant_id.clone(),
        app_id: app.app_id.clone(),
        app_name: app.app_name.clone(),
        direction: CallDirection::Incoming,
        state: CallState::Incoming,
        kind: CallKind::PeerToPeer,
        callback_uri: webhook.to_string(),
        source: caller.clone(),
        targets: vec![target.clone()],
        requested_modalities: vec![Modality::Audio],
        media_config: None,
        chat_info: None,
        meeting_info: None,
        subject: None,
        call_options: CallOptions::default(),
        ringing_timeout_s: None,
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
        answer_deadline: Some(e.now + e.cfg.answer_deadline_ms),
        roster_sent_seq: 0,
        transfer: None,
        redirect: None,
        created_at: e.now,
        extra: Default::default(),
    };
    e.confs.insert(
        conf_id.clone(),
        Conference::new(conf_id.clone(), app.tenant_id.clone(), None),
    );
    let created = json!({
        "@odata.type":"#microsoft.graph.call","@odata.id":format!("/communications/calls/{call_id}"),
        "id": call_id, "state":"incoming","direction":"incoming","callbackUri": webhook,
        "source": render::participant_info(&caller),
        "targets": [render::invitation_info(&target)],
        "requestedModalities":["audio"], "tenantId": app.tenant_id, "myParticipantId": my_pid,
        "callChainId": call.call_chain_id,
    });
    e.insert_call(call);
    e.touch_call(&call_id);
    let caller_pid = e.id();
    let conf = e.confs.get_mut(&conf_id).expect("just made");
    conf.push_member(
        caller_pid,
        caller,
        MemberEndpoint::Leg {
            leg_id: leg.clone(),
        },
        true,
    );
    e.touch_conf(&conf_id);
    roster::add_bot_member(
        e,
        &conf_id,
        &call_id,
        &my_pid,
        ParticipantInfo {
            identity: target.identity,
            ..Default::default()
        },
        false,
    );
    e.notify(&call_id, ChangeType::Created, "", created);
    (call_id, leg)
}

/// What happens when an endpoint reports on a leg.
pub(crate) fn on_event(e: &mut Engine, leg_id: &str, ev: LegEvent) {
    let Some(leg) = e.legs.get(leg_id).cloned() else {
        return;
    };
    match ev {
        LegEvent::Ringing => {
            if let LegRole::Member { call_id } = &leg.role
                && e.calls.get(call_id).is_some_and(|c| {
                    c.kind == CallKind::PeerToPeer && c.state == CallState::Establishing
                })
            {
                e.set_state(call_id, CallState::Ringing);
            }
        }
        LegEvent::Answered => on_answered(e, &leg),
        LegEvent::Failed { sip_code, reason } => on_failed(e, &leg, sip_code, &reason),
        LegEvent::HungUp => on_hung_up(
            e,
            &leg,
            ResultInfo::new(
                200,
                4521,
                "Call ended by the other participant of a P2P call.",
            ),
        ),
        LegEvent::MediaLost { reason } => on_hung_up(
            e,
            &leg,
            ResultInfo::new(
                410,
                301005,
                &format!("Media connectivity failure: {reason}."),
            ),
        ),
        LegEvent::ReferSupported => {
            if let Some(l) = e.legs.get_mut(leg_id) {
                l.refer = true;
            }
            e.touch_leg(leg_id);
        }
        LegEvent::ReferFailed { accepted, sip_code } => refer_failed(e, leg_id, accepted, sip_code),
        LegEvent::Held | LegEvent::Resumed => {
            let held = ev == LegEvent::Held;
            if let Some(conf) = &leg.conf_id
                && let Some(pid) = member_id_of_leg(e, conf, leg_id)
            {
                update_member(e, conf, &pid, |m| m.held = held);
                for call_id in p2p_calls_of(e, conf) {
                    let s = e.calls[&call_id].state;
                    if held && s == CallState::Established {
                        e.set_state(&call_id, CallState::Hold);
                    } else if !held && s == CallState::Hold {
                        e.set_state(&call_id, CallState::Established);
                    }
                }
            }
        }
        LegEvent::SharingStarted | LegEvent::SharingStopped => {
            let Some(conf) = leg.conf_id.clone() else {
                return;
            };
            let Some(pid) = member_id_of_leg(e, &conf, leg_id) else {
                return;
            };
            let start = ev == LegEvent::SharingStarted;
            let current = e.confs[&conf].sharing.clone();
            match (start, current) {
                (true, None) => {
                    let s = ContentSharing {
                        id: e.id(),
                        presenter: pid.clone(),
                    };
                    e.confs.get_mut(&conf).expect("conference").sharing = Some(s.clone());
                    update_member(e, &conf, &pid, |m| m.screen_sharing = true);
                    roster::sharing_changed(e, &conf, ChangeType::Created, &s);
                }
                (false, Some(s)) if s.presenter == pid => {
                    e.confs.get_mut(&conf).expect("conference").sharing = None;
                    update_member(e, &conf, &pid, |m| m.screen_sharing = false);
                    roster::sharing_changed(e, &conf, ChangeType::Deleted, &s);
                }
                _ => {}
            }
        }
    }
}

fn p2p_calls_of(e: &Engine, conf_id: &str) -> Vec<String> {
    e.calls
        .values()
        .filter(|c| c.conf_id == conf_id && c.kind == CallKind::PeerToPeer)
        .map(|c| c.id.clone())
        .collect()
}

fn on_answered(e: &mut Engine, leg: &Leg) {
    match &leg.role {
        LegRole::Caller { call_id } => {
            // The caller's endpoint confirmed our answer (ACK): media flows.
            if e.calls
                .get(call_id)
                .is_some_and(|c| c.state == CallState::Establishing)
            {
                establish(e, call_id);
            }
        }
        LegRole::Member { call_id } => {
            let Some(l) = e.legs.get_mut(&leg.id) else {
                return;
            };
            if l.state != LegState::Ringing {
                return;
            }
            l.state = LegState::Connected;
            l.ring_deadline = None;
            e.touch_leg(&leg.id);
            let conf = leg.conf_id.clone().unwrap_or_default();
            let Some(pid) = member_id_of_leg(e, &conf, &leg.id) else {
                return;
            };
            let invited_by = e.confs[&conf]
                .members
                .iter()
                .find(|m| m.id == pid)
                .and_then(|m| m.invited_by.clone());
            update_member(e, &conf, &pid, |m| {
                m.joined = true;
                m.invited_by = None;
            });
            if e.calls.get(call_id).is_some_and(|c| {
                c.kind == CallKind::PeerToPeer
                    && matches!(c.state, CallState::Establishing | CallState::Ringing)
            }) {
                establish(e, call_id);
            }
            if let Some((c, op)) = invited_by {
                invitee_resolved(e, &c, &op, &pid, None);
            }
        }
        LegRole::RedirectTarget { call_id } => {
            let Some(c) = e.calls.get(call_id) else {
                return;
            };
            let Some(r) = c.redirect.clone() else { return };
            let conf_id = c.conf_id.clone();
            for other in r.legs.iter().filter(|l| **l != leg.id) {
                if e.legs.contains_key(other) {
                    e.leg_action(LegAction::Cancel {
                        leg_id: other.clone(),
                    });
                    end_leg(e, other, "left");
                }
            }
            let caller = caller_leg(e, call_id);
            if let Some(l) = e.legs.get_mut(&leg.id) {
                l.state = LegState::Connected;
                l.role = LegRole::Bridged;
                l.conf_id = Some(conf_id.clone());
                e.touch_leg(&leg.id);
            }
            if let Some(cl) = &caller {
                e.leg_action(LegAction::Answer { leg_id: cl.clone() });
                if let Some(l) = e.legs.get_mut(cl) {
                    l.role = LegRole::Bridged;
                }
                e.touch_leg(cl);
            }
            join_bridge(e, &conf_id, leg);
            let c = e.calls.get_mut(call_id).expect("exists");
            c.redirect = None;
            c.answered_by = Some(leg.info.clone());
            terminate(
                e,
                call_id,
                ResultInfo::new(200, 5001, "The call was redirected and answered."),
                None,
            );
        }
        LegRole::TransferTarget { call_id } => transfer_answered(e, call_id, leg),
        LegRole::Transferee { .. } | LegRole::Bridged => {}
    }
}

/// Add a connected leg as a joined member of a bot-less conference.
fn join_bridge(e: &mut Engine, conf_id: &str, leg: &Leg) {
    let pid = e.id();
    let Some(conf) = e.confs.get_mut(conf_id) else {
        return;
    };
    conf.push_member(
        pid,
        leg.info.clone(),
        MemberEndpoint::Leg {
            leg_id: leg.id.clone(),
        },
        true,
    );
    if let Some(l) = e.legs.get_mut(&leg.id) {
        l.conf_id = Some(conf_id.to_string());
        l.role = LegRole::Bridged;
    }
    e.touch_leg(&leg.id);
    e.roster_changed(conf_id);
}

fn failure_result(sip_code: u16, reason: &str) -> ResultInfo {
    match sip_code {
        486 => ResultInfo::new(486, 10076, &format!("Callee is busy: {reason}")),
        603 => ResultInfo::new(603, 10076, &format!("Callee declined the call: {reason}")),
        404 => ResultInfo::new(480, 10037, &format!("No callee endpoints found: {reason}")),
        408 => ResultInfo::new(
            408,
            10057,
            &format!("Timed out: no answer from the callee ({reason})."),
        ),
        403 => ResultInfo::new(403, 10076, &format!("Callee refused the call: {reason}")),
        _ => ResultInfo::new(
            480,
            10076,
            &format!("Callee could not be reached: {reason}"),
        ),
    }
}

fn on_failed(e: &mut Engine, leg: &Leg, sip_code: u16, reason: &str) {
    // Who invited this leg must be read before the leg (and its roster entry) goes.
    let conf = leg.conf_id.clone().unwrap_or_default();
    let pid = member_id_of_leg(e, &conf, &leg.id);
    let invited_by = pid.as_ref().and_then(|p| {
        e.confs
            .get(&conf)?
            .members
            .iter()
            .find(|m| &m.id == p)?
            .invited_by
            .clone()
    });
    // Removed here, not by end_leg: the invite must be resolved before the conference
    // reacts to the departure (after_member_left below).
    if let Some(p) = &pid {
        remove_member(e, &conf, p, "failed");
    }
    end_leg(e, &leg.id, "failed");
    match &leg.role {
        LegRole::Member { call_id } => {
            if e.calls.get(call_id).is_some_and(|c| {
                c.kind == CallKind::PeerToPeer
                    && matches!(c.state, CallState::Establishing | CallState::Ringing)
            }) {
                terminate(e, call_id, failure_result(sip_code, reason), None);
                return;
            }
            if let (Some((c, op)), Some(p)) = (invited_by, pid) {
                let r = failure_result(sip_code, reason);
                invitee_resolved(
                    e,
                    &c,
                    &op,
                    &p,
                    Some(format!(
                        "{} ({}/{})",
                        r.message.unwrap_or_default(),
                        r.code,
                        r.subcode
                    )),
                );
            }
            after_member_left(e, &conf);
        }
        LegRole::RedirectTarget { call_id } => {
            let Some(c) = e.calls.get_mut(call_id) else {
                return;
            };
            if let Some(r) = &mut c.redirect {
                r.legs.retain(|l| *l != leg.id);
                if r.legs.is_empty() {
                    redirect_failed(e, call_id, failure_result(sip_code, reason));
                }
            }
        }
        LegRole::TransferTarget { call_id } => transfer_failed(
            e,
            call_id,
            &format!("The transfer target failed: {reason} ({sip_code})."),
        ),
        LegRole::Transferee { call_id } => transfer_failed(
            e,
            call_id,
            &format!("The transferee gave up its new call: {reason} ({sip_code})."),
        ),
        LegRole::Caller { call_id } => {
            terminate(
                e,
                call_id,
                ResultInfo::new(200, 4521, "The caller hung up."),
                None,
            );
        }
        LegRole::Bridged => after_member_left(e, &conf),
    }
}

/// The leg is gone (hung up, or its media was lost: `result` ends a P2P call).
fn on_hung_up(e: &mut Engine, leg: &Leg, result: ResultInfo) {
    // The transferee ends its original call once its new one (by REFER) is under way: the
    // transfer goes on.
    if transferring(e, |t| t.replaced_leg.as_deref() == Some(leg.id.as_str())).is_some() {
        end_leg(e, &leg.id, "left");
        return;
    }
    // Hanging up before answering is a failed attempt, whoever rang the leg.
    if leg.state == LegState::Ringing && !matches!(leg.role, LegRole::Caller { .. }) {
        on_failed(e, leg, 487, "the callee hung up before answering");
        return;
    }
    end_leg(e, &leg.id, "left");
    let p2p_call = match &leg.role {
        LegRole::Caller { call_id } => Some(call_id),
        LegRole::Member { call_id }
            if e.calls
                .get(call_id)
                .is_some_and(|c| c.kind == CallKind::PeerToPeer) =>
        {
            Some(call_id)
        }
        _ => None,
    };
    // Anyone else: end_leg already took the leg out of its conference.
    if let Some(call_id) = p2p_call {
        terminate(e, call_id, result, None);
    }
}

// ------------------------------------------------------------------ invite

pub(crate) fn invite(e: &mut Engine, id: &str, mut req: Invite) -> Result<Reply, ApiError> {
    req.validate().map_err(ApiError::bad_request)?;
    ops::require_established(e, id, "invite")?;
    let c = &e.calls[id];
    let conf_id = c.conf_id.clone();
    let app_id = c.app_id.clone();
    // The same identity can't be invited twice (reference §11).
    for p in &req.participants {
        let party = p.identity.party();
        if e.confs[&conf_id]
            .members
            .iter()
            .any(|m| m.info.identity.party() == party)
        {
            return Err(ApiError::conflict(format!(
                "{} is already in the call or being invited.",
                describe(&p.identity)
            )));
        }
        if let Some(r) = &p.replaces_call_id {
            let rc = e
                .calls
                .get(&r.to_ascii_lowercase())
                .filter(|rc| rc.app_id == app_id);
            match rc {
                None => {
                    return Err(ApiError::bad_request(format!(
                        "replacesCallId '{r}' is not a call of this application."
                    )));
                }
                Some(rc) if rc.id == id => {
                    return Err(ApiError::bad_request(
                        "replacesCallId cannot be the call itself.",
                    ));
                }
                Some(rc) if !matches!(rc.state, CallState::Established | CallState::Hold) => {
                    return Err(ApiError::bad_request(format!(
                        "The call to replace is {}, not established.",
                        rc.state
                    )));
                }
                _ => {}
            }
        }
    }
    let mut unique = std::collections::BTreeSet::new();
    if !req
        .participants
        .iter()
        .all(|p| unique.insert(p.identity.party()))
    {
        return Err(ApiError::bad_request(
            "The same identity appears twice in participants.",
        ));
    }
    // A peer-to-peer call is escalated to a group call by an invite (reference §9.4).
    if e.calls[id].kind == CallKind::PeerToPeer {
        e.calls.get_mut(id).expect("exists").kind = CallKind::Group;
        e.roster_changed(&conf_id);
    }
    let op = ops::new_op(
        e,
        id,
        OpKind::InviteParticipants,
        req.client_context.clone(),
        OperationStatus::Running,
    );
    let mut shown = vec![];
    let mut pending = vec![];
    for p in &req.participants {
        let mut shown_p = render::invitation_info(p);
        if let Some(r) = &p.replaces_call_id {
            let pid = move_from_call(e, &r.to_ascii_lowercase(), &conf_id, p);
            shown_p["participantId"] = pid.into();
        } else {
            let ring = e.cfg.default_ring_ms;
            let pid = ring_member(e, id, &conf_id, p, ring, Some(&op));
            shown_p["participantId"] = pid.clone().into();
            pending.push(pid);
        }
        shown.push(shown_p);
    }
    let now = e.now;
    let o = e
        .calls
        .get_mut(id)
        .expect("exists")
        .operations
        .get_mut(&op)
        .expect("op");
    o.participants = Some(Value::Array(shown));
    o.pending = pending.clone();
    if pending.is_empty() {
        o.due = Some(now);
    }
    ops::op_reply(e, id, &op, 200)
}

fn describe(i: &IdentitySet) -> String {
    match i.party() {
        Some(Party::User(id)) => format!("User {id}"),
        Some(Party::Application(id)) => format!("Application {id}"),
        Some(Party::ApplicationInstance(id)) => format!("Application instance {id}"),
        Some(Party::Phone(id)) => format!("Phone {id}"),
        Some(Party::Guest(id)) => format!("Guest {id}"),
        None => "The participant".into(),
    }
}

/// Escalation / moving a participant: take the matching (or only) other leg of call `from`
/// into `conf_id`, then end `from` (reference §9.4).
fn move_from_call(
    e: &mut Engine,
    from: &str,
    conf_id: &str,
    p: &InvitationParticipantInfo,
) -> String {
    let from_conf = e.calls[from].conf_id.clone();
    let want = p.identity.party();
    let candidates: Vec<Member> = e.confs[&from_conf]
        .members
        .iter()
        .filter(|m| matches!(m.endpoint, MemberEndpoint::Leg { .. }) && m.joined)
        .cloned()
        .collect();
    let chosen = candidates
        .iter()
        .find(|m| {
            p.participant_id
                .as_deref()
                .is_some_and(|pid| pid.eq_ignore_ascii_case(&m.id))
        })
        .or_else(|| candidates.iter().find(|m| m.info.identity.party() == want))
        .or_else(|| candidates.first())
        .cloned();
    let pid = e.id();
    if let Some(m) = chosen {
        let MemberEndpoint::Leg { leg_id } = &m.endpoint else {
            unreachable!()
        };
        // Detach the leg from the old conference quietly: it is not hung up, it moves.
        detach_member(e, &from_conf, &m.id);
        if let Some(l) = e.legs.get_mut(leg_id) {
            l.conf_id = Some(conf_id.to_string());
            l.role = LegRole::Member {
                call_id: e
                    .calls
                    .values()
                    .find(|c| c.conf_id == conf_id)
                    .map(|c| c.id.clone())
                    .unwrap_or_default(),
            };
        }
        if let Some(role) = e.legs.get(leg_id).map(|l| l.role.clone()) {
            e.index_leg(leg_id, &role);
        }
        e.touch_leg(leg_id);
        let conf = e.confs.get_mut(conf_id).expect("conference");
        conf.seq += 1;
        let source_id = conf.next_source_id;
        conf.next_source_id += 10;
        conf.members.push(Member {
            id: pid.clone(),
            seq: conf.seq,
            source_id,
            joined: true,
            invited_by: None,
            ..m
        });
        e.roster_changed(conf_id);
    }
    terminate(
        e,
        from,
        ResultInfo::new(
            200,
            5000,
            "The call was replaced: its participant moved to another call.",
        ),
        None,
    );
    pid
}

pub(crate) fn invitee_resolved(
    e: &mut Engine,
    call_id: &str,
    op: &str,
    pid: &str,
    failure: Option<String>,
) {
    let Some(o) = e
        .calls
        .get_mut(call_id)
        .and_then(|c| c.operations.get_mut(op))
    else {
        return;
    };
    o.pending.retain(|p| p != pid);
    if let Some(f) = failure {
        o.failures.push(f);
    }
    e.touch_call(call_id);
    check_invite_done(e, call_id, op);
}

pub(crate) fn check_invite_done(e: &mut Engine, call_id: &str, op: &str) {
    let Some(o) = e.calls.get(call_id).and_then(|c| c.operations.get(op)) else {
        return;
    };
    if !o.pending.is_empty() {
        return;
    }
    if o.failures.is_empty() {
        finish_op(e, call_id, op, OperationStatus::Completed, None, None);
    } else {
        let msg = format!("addParticipants failed: {}", o.failures.join("; "));
        finish_op(
            e,
            call_id,
            op,
            OperationStatus::Failed,
            Some(ResultInfo::new(412, 9999, &msg)),
            None,
        );
    }
}

// ------------------------------------------------------------------ redirect

pub(crate) fn redirect(e: &mut Engine, id: &str, mut req: Redirect) -> Result<Reply, ApiError> {
    req.validate().map_err(ApiError::bad_request)?;
    let c = &e.calls[id];
    if c.state != CallState::Incoming {
        return Err(ApiError::wrong_state("redirect", c.state));
    }
    let Some(caller) = caller_leg(e, id) else {
        return Err(ApiError::wrong_state("redirect", c.state));
    };
    let from = if req.mask_caller.unwrap_or(false) {
        ParticipantInfo {
            identity: IdentitySet::application(&c.app_id, c.app_name.as_deref()),
            ..Default::default()
        }
    } else {
        e.legs[&caller].info.clone()
    };
    let timeout_ms = req.timeout_seconds() as u64 * 1000;
    let c = e.calls.get_mut(id).expect("exists");
    if let Some(cb) = req.callback_uri.clone() {
        c.callback_uri = cb;
    }
    c.answer_deadline = None;
    let mut legs = vec![];
    for t in &req.targets {
        let party = t.identity.party().expect("validated");
        let script = script_of(t);
        let leg = new_leg(
            e,
            party.clone(),
            info_of_target(t),
            LegRole::RedirectTarget {
                call_id: id.to_string(),
            },
            None,
            None,
            script.clone(),
        );
        e.leg_action(LegAction::Ring {
            leg_id: leg.clone(),
            to: party,
            from: Box::new(from.clone()),
            script,
        });
        legs.push(leg);
    }
    let deadline = e.now + timeout_ms;
    e.calls.get_mut(id).expect("exists").redirect = Some(RedirectState { legs, deadline });
    e.set_state(id, CallState::Redirecting);
    e.touch_call(id);
    Ok(Reply::empty(202))
}

pub(crate) fn redirect_failed(e: &mut Engine, call_id: &str, result: ResultInfo) {
    let Some(c) = e.calls.get_mut(call_id) else {
        return;
    };
    let legs = c.redirect.take().map(|r| r.legs).unwrap_or_default();
    for l in legs {
        if e.legs.contains_key(&l) {
            e.leg_action(LegAction::Cancel { leg_id: l.clone() });
            end_leg(e, &l, "left");
        }
    }
    if let Some(cl) = caller_leg(e, call_id) {
        e.leg_action(LegAction::Reject {
            leg_id: cl.clone(),
            sip_code: if result.code == 408 { 408 } else { 480 },
        });
        end_leg(e, &cl, "left");
    }
    terminate(e, call_id, result, None);
}

// ------------------------------------------------------------------ transfer

pub(crate) fn transfer(e: &mut Engine, id: &str, mut req: Transfer) -> Result<Reply, ApiError> {
    req.validate().map_err(ApiError::bad_request)?;
    let c = &e.calls[id];
    if c.state != CallState::Established {
        return Err(ApiError::wrong_state("transfer", c.state));
    }
    let conf_id = c.conf_id.clone();
    let target = req.transfer_target.clone().expect("validated");
    // The transferee: the other party of a P2P call, or the named participant of a group call.
    let transferee = match (&c.kind, &req.transferee) {
        (CallKind::PeerToPeer, _) => e.confs[&conf_id]
            .members
            .iter()
            .find(|m| matches!(m.endpoint, MemberEndpoint::Leg { .. }) && m.joined)
            .cloned(),
        (_, Some(t)) => {
            let want = t.identity.party();
            e.confs[&conf_id]
                .members
                .iter()
                .find(|m| {
                    m.joined
                        && (t
                            .participant_id
                            .as_deref()
                            .is_some_and(|p| p.eq_ignore_ascii_case(&m.id))
                            || (want.is_some() && m.info.identity.party() == want))
                })
                .cloned()
        }
        (_, None) => {
            return Err(ApiError::bad_request(
                "transferee is required when transferring from a group call.",
            ));
        }
    };
    let Some(transferee) = transferee else {
        return Err(ApiError::bad_request(
            "The transferee is not a participant of this call.",
        ));
    };
    let MemberEndpoint::Leg {
        leg_id: transferee_leg,
    } = transferee.endpoint.clone()
    else {
        return Err(ApiError::bad_request(
            "An application cannot be transferred.",
        ));
    };
    if let Some(r) = &target.replaces_call_id {
        // Consultative transfer: bridge the transferee with the party of the other call.
        let rid = r.to_ascii_lowercase();
        let Some(rc) = e
            .calls
            .get(&rid)
            .filter(|rc| rc.app_id == e.calls[id].app_id && rc.id != id)
        else {
            return Err(ApiError::bad_request(format!(
                "replacesCallId '{r}' is not another call of this application."
            )));
        };
        if rc.state != CallState::Established {
            return Err(ApiError::bad_request(format!(
                "The call to replace is {}, not established.",
                rc.state
            )));
        }
        let rconf = rc.conf_id.clone();
        let Some(other) = e.confs[&rconf]
            .members
            .iter()
            .find(|m| matches!(m.endpoint, MemberEndpoint::Leg { .. }) && m.joined)
            .cloned()
        else {
            return Err(ApiError::bad_request(
                "The call to replace has no party to transfer to.",
            ));
        };
        let MemberEndpoint::Leg { leg_id: other_leg } = other.endpoint.clone() else {
            unreachable!()
        };
        e.set_state(id, CallState::Transferring);
        e.set_state(id, CallState::TransferAccepted);
        let bridge = detach_into_bridge(e, &conf_id, &transferee_leg, &transferee);
        detach_member(e, &rconf, &other.id);
        if let Some(l) = e.legs.get(&other_leg).cloned() {
            join_bridge(e, &bridge, &l);
        }
        terminate(
            e,
            &rid,
            ResultInfo::new(200, 7015, "GracefulTransferCompleted"),
            Some("AppTransferred"),
        );
        finish_transfer(e, id);
        return Ok(Reply::empty(202));
    }
    let deadline = e.now + e.cfg.default_ring_ms;
    let by_refer = e.legs.get(&transferee_leg).is_some_and(|l| l.refer);
    let mut t = TransferState {
        target_leg: None,
        transferee_leg: transferee_leg.clone(),
        deadline,
        refer_token: None,
        replaced_leg: None,
        target: None,
    };
    if by_refer {
        // The transferee's phone makes the new call itself (REFER), to a ringside URI
        // that stands for this transfer; ringside rings the target when that call comes.
        let token = format!("xfer-{}", e.id());
        e.leg_action(LegAction::Refer {
            leg_id: transferee_leg,
            token: token.clone(),
        });
        t.refer_token = Some(token);
        t.target = Some(target);
        e.calls.get_mut(id).expect("exists").transfer = Some(t);
    } else {
        e.calls.get_mut(id).expect("exists").transfer = Some(t);
        ring_transfer_target(e, id, &target);
    }
    e.set_state(id, CallState::Transferring);
    e.touch_call(id);
    Ok(Reply::empty(202))
}

/// Ring the transfer target of `call_id` on behalf of its transferee.
fn ring_transfer_target(e: &mut Engine, call_id: &str, target: &InvitationParticipantInfo) {
    let Some(t) = e.calls.get(call_id).and_then(|c| c.transfer.clone()) else {
        return;
    };
    let from = e
        .legs
        .get(&t.transferee_leg)
        .map(|l| l.info.clone())
        .unwrap_or_default();
    let party = target.identity.party().expect("validated");
    let script = script_of(target);
    let leg = new_leg(
        e,
        party.clone(),
        info_of_target(target),
        LegRole::TransferTarget {
            call_id: call_id.to_string(),
        },
        None,
        None,
        script.clone(),
    );
    e.leg_action(LegAction::Ring {
        leg_id: leg.clone(),
        to: party,
        from: Box::new(from),
        script,
    });
    if let Some(t) = e.calls.get_mut(call_id).and_then(|c| c.transfer.as_mut()) {
        t.target_leg = Some(leg);
    }
    e.touch_call(call_id);
}

/// The transferee's new call arrived (it was asked for it by REFER with `token`): it waits,
/// unanswered, while the target rings.
pub(crate) fn referred(e: &mut Engine, token: &str) -> Result<String, u16> {
    let Some(call_id) = transferring(e, |t| t.refer_token.as_deref() == Some(token)) else {
        return Err(404);
    };
    let t = e.calls[&call_id].transfer.clone().expect("found");
    let Some(old) = e.legs.get(&t.transferee_leg).cloned() else {
        return Err(404);
    };
    let leg = new_leg(
        e,
        old.party.clone(),
        old.info.clone(),
        LegRole::Transferee {
            call_id: call_id.clone(),
        },
        None,
        None,
        None,
    );
    let t = e
        .calls
        .get_mut(&call_id)
        .and_then(|c| c.transfer.as_mut())
        .expect("found");
    t.replaced_leg = Some(old.id);
    t.transferee_leg = leg.clone();
    ring_awaited_target(e, &call_id);
    Ok(leg)
}

/// The call whose transfer matches `pred`.
fn transferring(e: &Engine, pred: impl Fn(&TransferState) -> bool) -> Option<String> {
    e.calls
        .values()
        .find(|c| c.transfer.as_ref().is_some_and(&pred))
        .map(|c| c.id.clone())
}

/// The REFER is settled (the new call came, or it will not): ring the target kept for it.
fn ring_awaited_target(e: &mut Engine, call_id: &str) {
    let Some(t) = e.calls.get_mut(call_id).and_then(|c| c.transfer.as_mut()) else {
        return;
    };
    t.refer_token = None;
    if let Some(target) = t.target.take() {
        ring_transfer_target(e, call_id, &target);
    }
    e.touch_call(call_id);
}

/// A REFER did not bring the transferee's new call.
fn refer_failed(e: &mut Engine, leg_id: &str, accepted: bool, sip_code: u16) {
    let Some(call_id) = transferring(e, |t| t.transferee_leg == leg_id && t.refer_token.is_some())
    else {
        return;
    };
    if accepted {
        transfer_failed(
            e,
            &call_id,
            &format!("The transferee could not reach the transfer target ({sip_code})."),
        );
        return;
    }
    // The phone does not take REFER after all: ringside bridges the call itself.
    ring_awaited_target(e, &call_id);
}

/// Take a member out of a conference without ending its leg (it moves elsewhere): no
/// tombstone, but a roster change, and its screen sharing ends.
fn detach_member(e: &mut Engine, conf_id: &str, pid: &str) {
    let Some(conf) = e.confs.get_mut(conf_id) else {
        return;
    };
    conf.members.retain(|m| m.id != pid);
    conf.seq += 1;
    let ended = conf.sharing.take_if(|s| s.presenter == pid);
    e.roster_changed(conf_id);
    if let Some(s) = ended {
        roster::sharing_changed(e, conf_id, ChangeType::Deleted, &s);
    }
}

/// Take the transferee out of the call's conference into a new bot-less bridge.
fn detach_into_bridge(e: &mut Engine, conf_id: &str, leg_id: &str, member: &Member) -> String {
    detach_member(e, conf_id, &member.id);
    let bridge = e.id();
    let tenant = e
        .confs
        .get(conf_id)
        .map(|c| c.tenant_id.clone())
        .unwrap_or_default();
    e.confs.insert(
        bridge.clone(),
        Conference::new(bridge.clone(), tenant, None),
    );
    if let Some(l) = e.legs.get(leg_id).cloned() {
        join_bridge(e, &bridge, &l);
    }
    bridge
}

fn transfer_answered(e: &mut Engine, call_id: &str, target: &Leg) {
    let Some(t) = e.calls.get(call_id).and_then(|c| c.transfer.clone()) else {
        return;
    };
    if let Some(l) = e.legs.get_mut(&target.id) {
        l.state = LegState::Connected;
    }
    e.set_state(call_id, CallState::TransferAccepted);
    let conf_id = e.calls[call_id].conf_id.clone();
    if let Some(old) = t.replaced_leg.clone() {
        // By REFER: the transferee's new call is answered and bridged to the target; its
        // original call with the bot ends.
        let new = t.transferee_leg.clone();
        e.leg_action(LegAction::Answer {
            leg_id: new.clone(),
        });
        if let Some(l) = e.legs.get_mut(&new) {
            l.state = LegState::Connected;
        }
        let bridge = e.id();
        let tenant = e.confs[&conf_id].tenant_id.clone();
        e.confs.insert(
            bridge.clone(),
            Conference::new(bridge.clone(), tenant, None),
        );
        for l in [new, target.id.clone()] {
            if let Some(l) = e.legs.get(&l).cloned() {
                join_bridge(e, &bridge, &l);
            }
        }
        if e.legs.contains_key(&old) {
            e.leg_action(LegAction::Hangup {
                leg_id: old.clone(),
                reason: "transferred".into(),
            });
            end_leg(e, &old, "left");
        }
        finish_transfer(e, call_id);
        return;
    }
    let Some(member) = e.confs[&conf_id]
        .members
        .iter()
        .find(|m| {
            m.endpoint
                == MemberEndpoint::Leg {
                    leg_id: t.transferee_leg.clone(),
                }
        })
        .cloned()
    else {
        transfer_failed(
            e,
            call_id,
            "The transferee left before the transfer completed.",
        );
        return;
    };
    let bridge = detach_into_bridge(e, &conf_id, &t.transferee_leg, &member);
    if let Some(l) = e.legs.get(&target.id).cloned() {
        join_bridge(e, &bridge, &l);
    }
    finish_transfer(e, call_id);
}

fn finish_transfer(e: &mut Engine, call_id: &str) {
    let Some(c) = e.calls.get_mut(call_id) else {
        return;
    };
    c.transfer = None;
    c.media_active = false;
    e.touch_call(call_id);
    if e.calls[call_id].kind == CallKind::PeerToPeer {
        terminate(
            e,
            call_id,
            ResultInfo::new(0, 7015, "GracefulTransferCompleted"),
            None,
        );
    } else {
        e.calls.get_mut(call_id).expect("exists").media_active = true;
        e.set_state(call_id, CallState::Established);
    }
}

pub(crate) fn transfer_failed(e: &mut Engine, call_id: &str, message: &str) {
    let Some(c) = e.calls.get_mut(call_id) else {
        return;
    };
    let Some(t) = c.transfer.take() else { return };
    if let Some(l) = t.target_leg
        && e.legs.contains_key(&l)
    {
        e.leg_action(LegAction::Cancel { leg_id: l.clone() });
        end_leg(e, &l, "left");
    }
    if let Some(old) = t.replaced_leg {
        // By REFER: the transferee's new call is refused; its original call goes on.
        if e.legs.contains_key(&t.transferee_leg) {
            e.leg_action(LegAction::Reject {
                leg_id: t.transferee_leg.clone(),
                sip_code: 480,
            });
            end_leg(e, &t.transferee_leg, "left");
        }
        if !e.legs.contains_key(&old) {
            // ...unless the transferee already hung it up.
            terminate(e, call_id, ResultInfo::new(500, 7000, message), None);
            return;
        }
    }
    let c = e.calls.get_mut(call_id).expect("exists");
    c.state = CallState::Established;
    let r = ResultInfo::new(500, 7000, message);
    c.result_info = Some(r.clone());
    e.touch_call(call_id);
    e.notify_call(call_id, json!({ "resultInfo": r.to_value() }));
}

// ------------------------------------------------------------------ meetings

/// Find the meeting a create-call body joins (reference §3.5). An unknown chat thread with an
/// organizer creates the meeting on first join, so bots can meet on any agreed thread id.
pub(crate) fn resolve_meeting(
    e: &mut Engine,
    app: &AppCtx,
    req: &CreateCall,
) -> Result<String, ApiError> {
    let tenant = &app.tenant_id;
    match req.meeting_info.as_ref().expect("checked") {
        MeetingInfo::Organizer { organizer, .. } => {
            let thread = req
                .chat_info
                .as_ref()
                .and_then(|c| c.thread_id.clone())
                .expect("validated");
            if let Some(m) = e
                .meetings
                .values()
                .find(|m| &m.tenant_id == tenant && m.thread_id == thread)
            {
                return Ok(m.id.clone());
            }
            let id = e.id();
            e.meetings.insert(
                id.clone(),
                Meeting {
                    id: id.clone(),
                    tenant_id: tenant.clone(),
                    thread_id: thread,
                    join_meeting_id: String::new(),
                    passcode: String::new(),
                    organizer: (**organizer).clone(),
                    subject: req.subject.clone(),
                    join_web_url: String::new(),
                    created_at: e.now,
                    start: None,
                    end: None,
                    conf_id: None,
                },
            );
            e.touch_meeting(&id);
            Ok(id)
        }
        MeetingInfo::Token { token, .. } => e
            .meetings
            .values()
            .find(|m| &m.tenant_id == tenant && (m.id == *token || m.join_web_url == *token))
            .map(|m| m.id.clone())
            .ok_or_else(|| ApiError::not_found("Meeting for tokenMeetingInfo", token)),
        MeetingInfo::JoinMeetingId {
            join_meeting_id,
            passcode,
            ..
        } => {
            let wanted: String = join_meeting_id
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            let m = e
                .meetings
                .values()
                .find(|m| {
                    &m.tenant_id == tenant
                        && !m.join_meeting_id.is_empty()
                        && m.join_meeting_id == wanted
                })
                .ok_or_else(|| {
                    ApiError::not_found("Meeting with joinMeetingId", join_meeting_id)
                })?;
            if passcode.as_deref().unwrap_or("") != m.passcode {
                return Err(ApiError {
                    status: 403,
                    code: "Forbidden".into(),
                    message: "The meeting passcode is wrong or missing.".into(),
                });
            }
            Ok(m.id.clone())
        }
    }
}

pub(crate) fn join_meeting(
    e: &mut Engine,
    tenant_id: &str,
    who: ParticipantInfo,
    meeting: MeetingRef,
) -> Result<String, ApiError> {
    let mid = match meeting {
        MeetingRef::Thread(t) => e
            .meetings
            .values()
            .find(|m| m.tenant_id == tenant_id && m.thread_id == t)
            .map(|m| m.id.clone())
            .ok_or_else(|| ApiError::not_found("Meeting with threadId", &t))?,
        MeetingRef::JoinMeetingId { id, passcode } => {
            let wanted: String = id.chars().filter(|c| !c.is_whitespace()).collect();
            let m = e
                .meetings
                .values()
                .find(|m| {
                    m.tenant_id == tenant_id
                        && !m.join_meeting_id.is_empty()
                        && m.join_meeting_id == wanted
                })
                .ok_or_else(|| ApiError::not_found("Meeting with joinMeetingId", &id))?;
            if passcode.as_deref().unwrap_or("") != m.passcode {
                return Err(ApiError {
                    status: 403,
                    code: "Forbidden".into(),
                    message: "The meeting passcode is wrong or missing.".into(),
                });
            }
            m.id.clone()
        }
    };
    let party = who
        .identity
        .party()
        .ok_or_else(|| ApiError::bad_request("The participant has no identity."))?;
    let conf = meeting_conference(e, &mid);
    if e.confs[&conf]
        .members
        .iter()
        .any(|m| m.info.identity.party() == Some(party.clone()))
    {
        return Err(ApiError::conflict(
            "This participant is already in the meeting.",
        ));
    }
    let leg = new_leg(
        e,
        party,
        who,
        LegRole::Bridged,
        Some(conf.clone()),
        None,
        None,
    );
    if let Some(l) = e.legs.get_mut(&leg) {
        l.state = LegState::Connected;
    }
    let l = e.legs[&leg].clone();
    join_bridge(e, &conf, &l);
    Ok(leg)
}

/// The conference of a meeting, created on first join: everyone in one meeting is in one call.
pub(crate) fn meeting_conference(e: &mut Engine, meeting_id: &str) -> String {
    if let Some(c) = e.meetings[meeting_id].conf_id.clone()
        && e.confs.contains_key(&c)
    {
        return c;
    }
    let conf_id = e.id();
    let tenant = e.meetings[meeting_id].tenant_id.clone();
    e.confs.insert(
        conf_id.clone(),
        Conference::new(conf_id.clone(), tenant, Some(meeting_id.to_string())),
    );
    e.meetings.get_mut(meeting_id).expect("exists").conf_id = Some(conf_id.clone());
    e.touch_meeting(meeting_id);
    e.touch_conf(&conf_id);
    conf_id
}
