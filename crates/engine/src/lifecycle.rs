//! How calls, members and legs end: terminating a call, a member leaving, a leg ending, and
//! what is left of a conference afterwards.

use crate::core::Engine;
use crate::model::*;
use crate::ops::finish_op;
use crate::render;
use crate::roster::sharing_changed;
use crate::types::*;
use graph::*;
use serde_json::json;

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
    crate::transcripts::stop(e, id);
    crate::streams::close(e, id);
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
        .legs_of(id)
        .filter(|l| l.state == LegState::Ringing && !matches!(l.role, LegRole::Caller { .. }))
        .map(|l| l.id.clone())
        .collect();
    for leg in owned {
        e.leg_action(LegAction::Cancel {
            leg_id: leg.clone(),
        });
        end_leg(e, &leg, "cancelled");
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
                end_leg(e, &leg, "left");
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
    e.remove_call(id);
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

/// End the call's recording (stopRecording, or the call ending): the room closes the file.
pub(crate) fn stop_call_recording(e: &mut Engine, id: &str) {
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

/// A leg is over: forget it and take it out of its conference's roster, with `reason` as
/// its `removedState` in delta rosters.
pub(crate) fn end_leg(e: &mut Engine, leg_id: &str, reason: &str) {
    let Some(l) = e.legs.remove(leg_id) else {
        return;
    };
    e.touch_leg(leg_id);
    if let Some(conf) = l.conf_id
        && let Some(pid) = member_id_of_leg(e, &conf, leg_id)
    {
        remove_member(e, &conf, &pid, reason);
        after_member_left(e, &conf);
    }
}

/// A bot-less bridge (after redirect/transfer) ends when one side is left alone;
/// an ad-hoc group call ends when all others left.
pub(crate) fn after_member_left(e: &mut Engine, conf_id: &str) {
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
    let legs: Vec<String> = conf
        .members
        .iter()
        .filter_map(|m| match &m.endpoint {
            MemberEndpoint::Leg { leg_id } => Some(leg_id.clone()),
            _ => None,
        })
        .collect();
    let is_meeting = conf.meeting_id.is_some();
    if bots.is_empty() && !is_meeting && legs.len() == 1 {
        let last = legs[0].clone();
        if e.legs
            .get(&last)
            .is_some_and(|l| l.role == LegRole::Bridged)
        {
            e.leg_action(LegAction::Hangup {
                leg_id: last.clone(),
                reason: "the other party hung up".into(),
            });
            end_leg(e, &last, "left");
        }
    }
    if bots.len() == 1 && legs.is_empty() && !is_meeting {
        let call_id = &bots[0];
        let alone = e
            .calls
            .get(call_id)
            .is_some_and(|c| c.kind == CallKind::Group && c.state == CallState::Established);
        let pending_invites = e
            .legs
            .values()
            .any(|l| l.state == LegState::Ringing && l.conf_id.as_deref() == Some(conf_id));
        if alone
            && !pending_invites
            && e.confs.get(conf_id).is_some_and(|c| {
                c.removed
                    .iter()
                    .any(|t| matches!(t.member.endpoint, MemberEndpoint::Leg { .. }))
            })
        {
            let id = call_id.clone();
            terminate(
                e,
                &id,
                ResultInfo::new(200, 5002, "Ended because all other participants left."),
                None,
            );
        }
    }
    gc_conference(e, conf_id);
}

pub(crate) fn caller_leg(e: &Engine, call_id: &str) -> Option<String> {
    e.legs
        .values()
        .find(|l| {
            matches!(&l.role, LegRole::Caller { call_id: c } if c == call_id)
                && l.state != LegState::Ended
        })
        .map(|l| l.id.clone())
}

pub(crate) fn member_id_of_leg(e: &Engine, conf_id: &str, leg_id: &str) -> Option<String> {
    e.confs
        .get(conf_id)?
        .members
        .iter()
        .find(|m| {
            m.endpoint
                == MemberEndpoint::Leg {
                    leg_id: leg_id.to_string(),
                }
        })
        .map(|m| m.id.clone())
}
