//! Members of a conference and what bots are told about them: roster changes, the bot's
//! own member, screen sharing, and a call becoming established.

use crate::core::Engine;
use crate::model::*;
use crate::render;
use graph::*;
use serde_json::{Value, json};

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

pub(crate) fn update_bot_member(e: &mut Engine, call_id: &str, f: impl FnOnce(&mut Member)) {
    let (conf, pid) = (
        e.calls[call_id].conf_id.clone(),
        e.calls[call_id].my_participant_id.clone(),
    );
    update_member(e, &conf, &pid, f);
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
    crate::streams::open(e, call_id);
}
