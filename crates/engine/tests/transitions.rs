//! One test per call-state transition of reference §9.1 and per operation rule of §9.2,
//! driven with injected time and ids: no sockets, no sleeps.

use engine::*;
use graph::*;
use serde_json::{Value, json};

const T0: u64 = 1_700_000_000_000;

struct World {
    e: Engine,
    now: u64,
    notes: Vec<(String, String, Value)>,
    legs: Vec<LegAction>,
    fetches: Vec<(String, String, usize)>,
    media: Vec<media::Cmd>,
}

fn bot() -> AppCtx {
    AppCtx {
        tenant_id: "t1".into(),
        app_id: "app1".into(),
        app_name: Some("Bot".into()),
    }
}

impl World {
    fn new() -> World {
        World {
            e: Engine::new(Config::default(), Box::new(SeqIds(0))),
            now: T0,
            notes: vec![],
            legs: vec![],
            fetches: vec![],
            media: vec![],
        }
    }

    fn drain(&mut self) {
        for eff in self.e.drain_effects() {
            match eff {
                Effect::Notify(n) => {
                    let item = n.body["value"][0].clone();
                    self.notes.push((
                        item["changeType"].as_str().unwrap().into(),
                        item["resourceUrl"].as_str().unwrap().into(),
                        item["resourceData"].clone(),
                    ));
                }
                Effect::Leg(a) => self.legs.push(a),
                Effect::FetchPrompt {
                    call_id,
                    op_id,
                    index,
                    ..
                } => self.fetches.push((call_id, op_id, index)),
                Effect::SaveRecording { .. }
                | Effect::Transcript(_)
                | Effect::TranscriptLine(_)
                | Effect::Stream(_) => {}
                Effect::Media(c) => self.media.push(c),
            }
        }
    }

    fn api(&mut self, call: Option<&str>, cmd: Command) -> Result<Reply, ApiError> {
        let r = self
            .e
            .handle_api(self.now, &bot(), call, cmd, Version::Beta);
        self.drain();
        r
    }

    fn media_event(&mut self, ev: media::Event) {
        self.e.media_event(self.now, ev);
        self.drain();
    }

    fn leg(&mut self, leg: &str, ev: LegEvent) {
        self.e.handle_leg(self.now, leg, ev);
        self.drain();
    }

    fn advance(&mut self, ms: u64) {
        self.now += ms;
        self.e.handle_timeout(self.now);
        self.drain();
    }

    /// States notified for a call, in order ("deleted:terminated" for the final one).
    fn states(&self, call: &str) -> Vec<String> {
        let url = format!("/communications/calls/{call}");
        self.notes
            .iter()
            .filter(|(_, u, d)| *u == url && d.get("state").is_some())
            .map(|(c, _, d)| {
                let s = d["state"].as_str().unwrap();
                if c == "deleted" {
                    format!("deleted:{s}")
                } else {
                    s.to_string()
                }
            })
            .collect()
    }

    fn last_call_note(&self, call: &str) -> Value {
        let url = format!("/communications/calls/{call}");
        self.notes
            .iter()
            .rev()
            .find(|(_, u, _)| *u == url)
            .map(|n| n.2.clone())
            .unwrap()
    }

    fn ring_leg(&self) -> String {
        self.legs
            .iter()
            .rev()
            .find_map(|a| match a {
                LegAction::Ring { leg_id, .. } => Some(leg_id.clone()),
                _ => None,
            })
            .expect("a leg was rung")
    }

    fn outgoing(&mut self, user: &str) -> (String, String) {
        let body: requests::CreateCall = serde_json::from_value(json!({
            "callbackUri": "https://bot/cb", "requestedModalities": ["audio"],
            "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
            "targets": [{"identity": {"user": {"id": user}}}],
        }))
        .unwrap();
        let r = self.api(None, Command::CreateCall(Box::new(body))).unwrap();
        assert_eq!(r.status, 201);
        (
            r.body.unwrap()["id"].as_str().unwrap().to_string(),
            self.ring_leg(),
        )
    }

    fn established(&mut self, user: &str) -> (String, String) {
        let (c, l) = self.outgoing(user);
        self.leg(&l, LegEvent::Ringing);
        self.leg(&l, LegEvent::Answered);
        (c, l)
    }

    fn incoming(&mut self) -> (String, String) {
        let caller = ParticipantInfo {
            identity: IdentitySet::user("caller", Some("Caller")),
            ..Default::default()
        };
        let r = self
            .e
            .incoming_call(self.now, &bot(), "https://bot/incoming", caller, None);
        self.drain();
        r
    }
}

fn p<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn service_hosted() -> Value {
    json!({"mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}})
}

#[test]
fn establishing_then_ringing_then_established_on_answer() {
    let mut w = World::new();
    let (c, l) = w.outgoing("alice");
    assert_eq!(w.states(&c), ["establishing"]);
    w.leg(&l, LegEvent::Ringing);
    w.leg(&l, LegEvent::Answered);
    assert_eq!(w.states(&c), ["establishing", "ringing", "established"]);
    assert_eq!(w.last_call_note(&c)["mediaState"]["audio"], "active");
}

#[test]
fn ringing_times_out_with_408() {
    let mut w = World::new();
    let (c, l) = w.outgoing("alice");
    w.leg(&l, LegEvent::Ringing);
    w.advance(59_999);
    assert_eq!(w.states(&c), ["establishing", "ringing"]);
    w.advance(1);
    assert_eq!(
        w.states(&c),
        ["establishing", "ringing", "deleted:terminated"]
    );
    assert_eq!(w.last_call_note(&c)["resultInfo"]["code"], 408);
    assert!(
        w.legs
            .iter()
            .any(|a| *a == LegAction::Cancel { leg_id: l.clone() }),
        "the phone stops ringing"
    );
}

#[test]
fn busy_callee_terminates_with_486() {
    let mut w = World::new();
    let (c, l) = w.outgoing("bob");
    w.leg(
        &l,
        LegEvent::Failed {
            sip_code: 486,
            reason: "busy".into(),
        },
    );
    assert_eq!(w.states(&c), ["establishing", "deleted:terminated"]);
    assert_eq!(w.last_call_note(&c)["resultInfo"]["code"], 486);
    assert!(w.e.call(&c).is_none());
}

#[test]
fn incoming_then_answer_then_established() {
    let mut w = World::new();
    let (c, leg) = w.incoming();
    assert_eq!(w.notes[0].0, "created");
    assert_eq!(w.notes[0].2["state"], "incoming");
    w.api(Some(&c), Command::Answer(p(service_hosted())))
        .unwrap();
    assert!(w.legs.contains(&LegAction::Answer {
        leg_id: leg.clone()
    }));
    assert_eq!(w.states(&c), ["incoming", "establishing"]);
    w.leg(&leg, LegEvent::Answered);
    assert_eq!(w.states(&c), ["incoming", "establishing", "established"]);
}

#[test]
fn incoming_rejected_is_deleted_and_the_caller_hears_busy() {
    let mut w = World::new();
    let (c, leg) = w.incoming();
    w.api(Some(&c), Command::Reject(p(json!({"reason": "busy"}))))
        .unwrap();
    assert!(w.legs.contains(&LegAction::Reject {
        leg_id: leg,
        sip_code: 486
    }));
    assert_eq!(w.states(&c), ["incoming", "deleted:terminated"]);
}

#[test]
fn incoming_not_handled_within_15_s_ends_with_408_1106() {
    let mut w = World::new();
    let (c, leg) = w.incoming();
    w.advance(14_999);
    assert!(w.e.call(&c).is_some());
    w.advance(1);
    assert!(w.legs.contains(&LegAction::Reject {
        leg_id: leg,
        sip_code: 408
    }));
    let r = &w.last_call_note(&c)["resultInfo"];
    assert_eq!(
        (r["code"].as_i64(), r["subcode"].as_i64()),
        (Some(408), Some(1106))
    );
}

#[test]
fn redirect_goes_through_redirecting_and_ends_with_answered_by() {
    let mut w = World::new();
    let (c, _caller) = w.incoming();
    w.api(
        Some(&c),
        Command::Redirect(p(
            json!({"targets": [{"identity": {"user": {"id": "dana"}}}], "timeout": 15}),
        )),
    )
    .unwrap();
    let target = w.ring_leg();
    w.leg(&target, LegEvent::Answered);
    assert_eq!(
        w.states(&c),
        ["incoming", "redirecting", "deleted:terminated"]
    );
    assert_eq!(
        w.last_call_note(&c)["answeredBy"]["identity"]["user"]["id"],
        "dana"
    );
}

#[test]
fn redirect_nobody_answers_within_timeout() {
    let mut w = World::new();
    let (c, caller) = w.incoming();
    w.api(
        Some(&c),
        Command::Redirect(p(
            json!({"targets": [{"identity": {"user": {"id": "dana"}}}], "timeout": 15}),
        )),
    )
    .unwrap();
    w.advance(15_000);
    assert_eq!(w.last_call_note(&c)["resultInfo"]["code"], 408);
    assert!(w.legs.contains(&LegAction::Reject {
        leg_id: caller,
        sip_code: 408
    }));
}

#[test]
fn held_and_resumed_by_the_far_end() {
    let mut w = World::new();
    let (c, l) = w.established("alice");
    w.leg(&l, LegEvent::Held);
    w.leg(&l, LegEvent::Resumed);
    assert_eq!(w.states(&c)[3..], ["hold", "established"]);
}

#[test]
fn blind_transfer_transferring_accepted_terminated_7015() {
    let mut w = World::new();
    let (c, _) = w.established("alice");
    w.api(
        Some(&c),
        Command::Transfer(Box::new(p(
            json!({"transferTarget": {"identity": {"user": {"id": "carol"}}}}),
        ))),
    )
    .unwrap();
    let target = w.ring_leg();
    w.leg(&target, LegEvent::Answered);
    assert_eq!(
        w.states(&c)[3..],
        ["transferring", "transferAccepted", "deleted:terminated"]
    );
    let r = &w.last_call_note(&c)["resultInfo"];
    assert_eq!(
        (r["code"].as_i64(), r["subcode"].as_i64()),
        (Some(0), Some(7015))
    );
}

#[test]
fn failed_transfer_returns_to_established_with_500_7000() {
    let mut w = World::new();
    let (c, _) = w.established("alice");
    w.api(
        Some(&c),
        Command::Transfer(Box::new(p(
            json!({"transferTarget": {"identity": {"user": {"id": "carol"}}}}),
        ))),
    )
    .unwrap();
    let target = w.ring_leg();
    w.leg(
        &target,
        LegEvent::Failed {
            sip_code: 603,
            reason: "declined".into(),
        },
    );
    assert_eq!(w.states(&c)[3..], ["transferring", "established"]);
    assert_eq!(w.last_call_note(&c)["resultInfo"]["subcode"], 7000);
}

#[test]
fn delete_goes_terminating_then_terminated_and_hangs_up_the_other_party() {
    let mut w = World::new();
    let (c, l) = w.established("alice");
    assert_eq!(w.api(Some(&c), Command::DeleteCall).unwrap().status, 204);
    assert_eq!(w.states(&c)[3..], ["terminating", "deleted:terminated"]);
    assert!(
        w.legs
            .iter()
            .any(|a| matches!(a, LegAction::Hangup { leg_id, .. } if *leg_id == l))
    );
    assert_eq!(w.api(Some(&c), Command::GetCall).unwrap_err().code, "8522");
}

#[test]
fn keep_alive_moves_the_45_minute_deadline() {
    let mut w = World::new();
    let (c, _) = w.established("alice");
    w.advance(44 * 60_000);
    w.api(Some(&c), Command::KeepAlive).unwrap();
    w.advance(44 * 60_000);
    assert!(w.e.call(&c).is_some(), "keepAlive extended the call");
    w.advance(60_000);
    let r = &w.last_call_note(&c)["resultInfo"];
    assert_eq!(
        (r["code"].as_i64(), r["subcode"].as_i64()),
        (Some(408), Some(8537))
    );
}

#[test]
fn play_prompt_runs_once_fetched_and_completes_when_the_room_says_so() {
    let mut w = World::new();
    let (c, _) = w.established("alice");
    let prompt = json!({"prompts": [{"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": {"uri": "https://x/a.wav"}}], "clientContext": "cc"});
    let r = w.api(Some(&c), Command::PlayPrompt(p(prompt))).unwrap();
    let op = r.body.unwrap()["id"].as_str().unwrap().to_string();
    assert_eq!(
        r.location.unwrap(),
        format!("/communications/calls/{c}/operations/{op}")
    );
    let (fc, fo, fi) = w.fetches.pop().unwrap();
    assert!(w.media.iter().all(|m| !matches!(m, media::Cmd::Run { .. })));
    w.e.prompt_fetched(w.now, &fc, &fo, fi, Ok(vec![7i16; 19_200].into()));
    w.drain();
    let run = w
        .media
        .iter()
        .find_map(|m| match m {
            media::Cmd::Run { op_id, prompts, .. } => Some((op_id.clone(), prompts[0].audio.len())),
            _ => None,
        })
        .expect("the prompt runs once fetched");
    assert_eq!(run, (op.clone(), 19_200));
    w.advance(60_000);
    let op_url = format!("/communications/calls/{c}/operations/{op}");
    assert!(
        !w.notes.iter().any(|n| n.1 == op_url),
        "no timer finishes it"
    );
    w.media_event(media::Event::Done {
        call_id: c.clone(),
        op_id: op.clone(),
        reason: "completedSuccessfully",
        recording: None,
    });
    let done: Vec<_> = w.notes.iter().filter(|n| n.1 == op_url).collect();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].0, "deleted");
    assert_eq!(done[0].2["status"], "completed");
    assert_eq!(done[0].2["clientContext"], "cc");
    // The finished operation is still there to read, without the samples it played.
    let kept = &w.e.call(&c).unwrap().operations[&op];
    assert!(
        kept.media.as_ref().is_some_and(|m| m.audio.is_empty()),
        "a finished prompt lets go of its audio"
    );
}

#[test]
fn operations_returned_completed_are_never_notified() {
    let mut w = World::new();
    let (c, _) = w.established("alice");
    let before = w.notes.len();
    let r = w
        .api(Some(&c), Command::SubscribeToTone(p(json!({}))))
        .unwrap();
    assert_eq!(r.body.unwrap()["status"], "completed");
    let r = w
        .api(Some(&c), Command::CancelMediaProcessing(p(json!({}))))
        .unwrap();
    assert_eq!(r.body.unwrap()["status"], "completed");
    w.advance(10_000);
    assert_eq!(w.notes.len(), before);
}

#[test]
fn tones_after_subscribe_count_up_from_one() {
    let mut w = World::new();
    let (c, l) = w.established("alice");
    let _ = l;
    let key = |k: char| media::Event::Tone {
        call_id: c.clone(),
        key: k,
    };
    w.media_event(key('5'));
    w.api(Some(&c), Command::SubscribeToTone(p(json!({}))))
        .unwrap();
    for k in ['1', '*'] {
        w.media_event(key(k));
    }
    let seqs: Vec<(i64, String)> = w
        .notes
        .iter()
        .filter_map(|n| n.2.get("toneInfo"))
        .map(|t| {
            (
                t["sequenceId"].as_i64().unwrap(),
                t["tone"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        seqs,
        [(1, "tone1".to_string()), (2, "star".to_string())],
        "keys before subscribing are not reported"
    );
}

#[test]
fn wrong_state_actions_are_refused_without_change() {
    let mut w = World::new();
    let (c, _) = w.outgoing("alice");
    let before = w.notes.len();
    for cmd in [
        Command::Answer(p(service_hosted())),
        Command::Reject(p(json!({}))),
        Command::Mute(p(json!({}))),
    ] {
        assert_eq!(w.api(Some(&c), cmd).unwrap_err().status, 400);
    }
    assert_eq!(w.notes.len(), before);
    assert_eq!(w.e.call(&c).unwrap().state, CallState::Establishing);
}

#[test]
fn a_removed_participant_leaves_the_delta_roster_with_the_reason() {
    let mut w = World::new();
    let body: requests::CreateCall = serde_json::from_value(json!({
        "callbackUri": "https://bot/cb", "requestedModalities": ["audio"],
        "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
        "targets": [{"identity": {"user": {"id": "alice"}}}, {"identity": {"user": {"id": "bob"}}}],
        "callOptions": {"isDeltaRosterEnabled": true},
    }))
    .unwrap();
    let c = w
        .api(None, Command::CreateCall(Box::new(body)))
        .unwrap()
        .body
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let rung: Vec<String> = w
        .legs
        .iter()
        .filter_map(|a| match a {
            LegAction::Ring { leg_id, .. } => Some(leg_id.clone()),
            _ => None,
        })
        .collect();
    for l in &rung {
        w.leg(l, LegEvent::Answered);
    }
    let alice =
        w.e.conference(&w.e.call(&c).unwrap().conf_id)
            .unwrap()
            .members
            .iter()
            .find(|m| m.info.identity.party() == Some(Party::User("alice".into())))
            .unwrap()
            .id
            .clone();
    assert_eq!(
        w.api(Some(&c), Command::DeleteParticipant(alice.clone()))
            .unwrap()
            .status,
        204
    );
    let last_roster = w
        .notes
        .iter()
        .rev()
        .find(|n| n.1.ends_with("/participants"))
        .unwrap()
        .2
        .clone();
    let gone = last_roster
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == alice.as_str())
        .expect("the departure is in the delta");
    assert_eq!(gone["removedState"]["reason"], "removedByApplication");
}

/// A transfer of alice's call to carol, with alice's endpoint able to take REFER: returns
/// (call, alice's leg, the Refer-To token).
fn transfer_by_refer(w: &mut World) -> (String, String, String) {
    let (c, l) = w.established("alice");
    w.leg(&l, LegEvent::ReferSupported);
    let rings = |w: &World| {
        w.legs
            .iter()
            .filter(|a| matches!(a, LegAction::Ring { .. }))
            .count()
    };
    let before = rings(w);
    w.api(
        Some(&c),
        Command::Transfer(Box::new(p(
            json!({"transferTarget": {"identity": {"user": {"id": "carol"}}}}),
        ))),
    )
    .unwrap();
    let token = w
        .legs
        .iter()
        .find_map(|a| match a {
            LegAction::Refer { leg_id, token } if *leg_id == l => Some(token.clone()),
            _ => None,
        })
        .expect("alice was sent a REFER");
    assert_eq!(
        rings(w),
        before,
        "carol rings only when alice's new call comes"
    );
    (c, l, token)
}

#[test]
fn transfer_by_refer_rings_the_target_when_the_transferees_new_call_comes() {
    let mut w = World::new();
    let (c, old, token) = transfer_by_refer(&mut w);
    let rings = w
        .legs
        .iter()
        .filter(|a| matches!(a, LegAction::Ring { .. }))
        .count();
    assert_eq!(w.e.referred(w.now, "xfer-unknown"), Err(404));
    let new =
        w.e.referred(w.now, &token)
            .expect("the transfer is waiting");
    w.drain();
    let target = w.ring_leg();
    assert_eq!(
        w.legs
            .iter()
            .filter(|a| matches!(a, LegAction::Ring { .. }))
            .count(),
        rings + 1,
        "carol rings now"
    );
    assert_eq!(
        w.e.referred(w.now, &token),
        Err(404),
        "a token is good for one call"
    );
    w.leg(&target, LegEvent::Answered);
    assert!(
        w.legs
            .iter()
            .any(|a| matches!(a, LegAction::Answer { leg_id } if *leg_id == new)),
        "alice's new call is answered"
    );
    assert!(
        w.legs
            .iter()
            .any(|a| matches!(a, LegAction::Hangup { leg_id, .. } if *leg_id == old)),
        "alice's original call ends"
    );
    assert_eq!(
        w.states(&c)[3..],
        ["transferring", "transferAccepted", "deleted:terminated"]
    );
    assert_eq!(w.last_call_note(&c)["resultInfo"]["subcode"], 7015);
}

#[test]
fn a_refused_refer_falls_back_to_ringing_the_target_for_the_original_call() {
    let mut w = World::new();
    let (c, old, _) = transfer_by_refer(&mut w);
    w.leg(
        &old,
        LegEvent::ReferFailed {
            accepted: false,
            sip_code: 603,
        },
    );
    let target = w.ring_leg();
    assert_ne!(target, old);
    w.leg(&target, LegEvent::Answered);
    assert!(
        !w.legs
            .iter()
            .any(|a| matches!(a, LegAction::Hangup { leg_id, .. } if *leg_id == old)),
        "alice stays, bridged to carol"
    );
    assert_eq!(
        w.states(&c)[3..],
        ["transferring", "transferAccepted", "deleted:terminated"]
    );
}

#[test]
fn a_refer_reported_failed_keeps_the_call_established_with_500_7000() {
    let mut w = World::new();
    let (c, old, token) = transfer_by_refer(&mut w);
    w.leg(
        &old,
        LegEvent::ReferFailed {
            accepted: true,
            sip_code: 486,
        },
    );
    assert_eq!(w.states(&c)[3..], ["transferring", "established"]);
    let r = &w.last_call_note(&c)["resultInfo"];
    assert_eq!(
        (r["code"].as_i64(), r["subcode"].as_i64()),
        (Some(500), Some(7000))
    );
    assert_eq!(
        w.e.referred(w.now, &token),
        Err(404),
        "nothing waits any more"
    );
}

#[test]
fn a_target_that_declines_a_refer_transfer_refuses_the_new_call_and_keeps_the_original() {
    let mut w = World::new();
    let (c, old, token) = transfer_by_refer(&mut w);
    let new = w.e.referred(w.now, &token).unwrap();
    w.drain();
    let target = w.ring_leg();
    w.leg(
        &target,
        LegEvent::Failed {
            sip_code: 603,
            reason: "declined".into(),
        },
    );
    assert!(
        w.legs
            .iter()
            .any(|a| matches!(a, LegAction::Reject { leg_id, .. } if *leg_id == new)),
        "alice's new call is refused"
    );
    assert!(
        !w.legs
            .iter()
            .any(|a| matches!(a, LegAction::Hangup { leg_id, .. } if *leg_id == old))
    );
    assert_eq!(w.states(&c)[3..], ["transferring", "established"]);
}

#[test]
fn a_transferee_that_ends_its_original_call_early_does_not_stop_the_transfer() {
    let mut w = World::new();
    let (c, old, token) = transfer_by_refer(&mut w);
    w.e.referred(w.now, &token).unwrap();
    w.drain();
    let target = w.ring_leg();
    w.leg(&old, LegEvent::HungUp);
    assert_eq!(
        w.states(&c)[3..],
        ["transferring"],
        "the call waits for carol"
    );
    w.leg(&target, LegEvent::Answered);
    assert_eq!(
        w.states(&c)[3..],
        ["transferring", "transferAccepted", "deleted:terminated"]
    );
    assert_eq!(w.last_call_note(&c)["resultInfo"]["subcode"], 7015);
}

/// The concurrent-call limits count the calls that are live now: calls that ended free
/// their place, incoming calls count, and a restored engine counts what it restored.
#[test]
fn the_concurrent_call_limit_counts_live_calls_and_frees_ended_ones() {
    let mut w = World::new();
    w.e = Engine::new(
        Config {
            max_calls_per_app: 2,
            ..Config::default()
        },
        Box::new(SeqIds(0)),
    );
    let (first, _) = w.established("u1");
    let (_incoming, _) = w.incoming();
    let body: requests::CreateCall = serde_json::from_value(json!({
        "callbackUri": "https://bot/cb", "requestedModalities": ["audio"],
        "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
        "targets": [{"identity": {"user": {"id": "u2"}}}],
    }))
    .unwrap();
    let refused = w
        .api(None, Command::CreateCall(Box::new(body.clone())))
        .unwrap_err();
    assert_eq!(refused.status, 429, "{}", refused.message);
    assert!(
        refused.message.contains("limit of 2"),
        "{}",
        refused.message
    );
    assert_eq!(w.e.calls_of_app("app1"), 2);

    w.api(Some(&first), Command::DeleteCall).unwrap();
    assert_eq!(
        w.e.calls_of_app("app1"),
        1,
        "a call that ended frees its place"
    );
    let r = w
        .api(None, Command::CreateCall(Box::new(body.clone())))
        .unwrap();
    assert_eq!(r.status, 201);

    // What is stored restores into an engine that counts the same calls.
    let mut restored = Engine::new(
        Config {
            max_calls_per_app: 2,
            ..Config::default()
        },
        Box::new(SeqIds(1 << 40)),
    );
    let mut objects: Vec<(ObjKind, Value)> =
        w.e.all_calls()
            .map(|c| (ObjKind::Call, serde_json::to_value(c).unwrap()))
            .collect();
    objects.extend(
        w.e.all_conferences()
            .map(|c| (ObjKind::Conference, serde_json::to_value(c).unwrap())),
    );
    objects.extend(
        w.e.all_legs()
            .map(|l| (ObjKind::Leg, serde_json::to_value(l).unwrap())),
    );
    objects.sort_by_key(|(k, _)| *k == ObjKind::Call);
    for (k, v) in objects {
        restored.restore(k, v).unwrap();
    }
    assert_eq!(restored.calls_of_app("app1"), 2);
    let again = restored
        .handle_api(
            w.now,
            &bot(),
            None,
            Command::CreateCall(Box::new(body)),
            Version::Beta,
        )
        .unwrap_err();
    assert_eq!(again.status, 429);
}

/// A ringing leg belongs to the call that rang it: another call's end does not cancel it,
/// and its own call's ring timeout does (each call finds its legs through its own index).
#[test]
fn a_ringing_legs_timeout_belongs_to_the_call_that_rang_it() {
    let mut w = World::new();
    let (a, _) = w.established("u1");
    let (b, _) = w.outgoing("u2");
    let leg_b = w.ring_leg();
    w.leg(&leg_b, LegEvent::Ringing);
    // Call a ending does not cancel the leg call b rang.
    w.api(Some(&a), Command::DeleteCall).unwrap();
    assert!(
        !w.legs
            .iter()
            .any(|x| matches!(x, LegAction::Cancel { leg_id } if *leg_id == leg_b)),
        "another call's end left b's leg ringing"
    );
    w.advance(Config::default().default_ring_ms + 1);
    assert!(
        w.legs
            .iter()
            .any(|x| matches!(x, LegAction::Cancel { leg_id } if *leg_id == leg_b)),
        "b's leg is cancelled when its ring time is up"
    );
    assert_eq!(
        w.states(&b).last().map(String::as_str),
        Some("deleted:terminated")
    );
}

/// A batch whose commit failed is undone: the engine goes back to the committed objects (the
/// store's versions, here a map), so a refused create leaves no call, a refused hang-up
/// leaves the call up, and no timer of the undone work fires later.
#[test]
fn a_batch_that_could_not_be_committed_is_undone() {
    let mut w = World::new();
    let mut stored: std::collections::HashMap<(ObjKind, String), Value> = Default::default();
    let mut commit = |e: &mut Engine| {
        for (k, id, v) in e.take_dirty() {
            match v {
                Some(v) => stored.insert((k, id), v),
                None => stored.remove(&(k, id)),
            };
        }
    };
    let (first, _) = w.established("u1");
    commit(&mut w.e);

    // The failed batch: a new call and the first call's hang-up.
    let (second, _) = w.outgoing("u2");
    w.api(Some(&first), Command::DeleteCall).unwrap();
    let touched: Vec<(ObjKind, String, Option<Value>)> =
        w.e.take_dirty()
            .into_iter()
            .map(|(k, id, _)| {
                let v = stored.get(&(k, id.clone())).cloned();
                (k, id, v)
            })
            .collect();
    w.e.roll_back(touched).unwrap();
    w.drain();

    assert!(w.e.call(&second).is_none(), "the refused call is gone");
    let c = w.e.call(&first).expect("the first call is still there");
    assert_eq!(serde_json::to_value(c.state).unwrap(), "established");
    assert_eq!(w.e.call_count(), 1);
    assert_eq!(w.e.calls_of_app("app1"), 1);
    // Long after every deadline of the undone work: nothing about the refused call.
    let undone_notes = w.notes.len();
    w.advance(120_000);
    assert!(
        w.notes[undone_notes..]
            .iter()
            .all(|(_, url, _)| !url.contains(&second)),
        "no timer of the refused call fired"
    );
}
