//! Random interleavings of API commands, endpoint events, prompt fetches and time, with the
//! engine's invariants checked after every step. A failure prints its seed; rerun one seed
//! with `RINGSIDE_SIM_SEED=<n> cargo test -p engine --test simulation`.

use engine::*;
use graph::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};

const USERS: &[&str] = &["u1", "u2", "u3", "u4", "u5"];
const THREADS: &[&str] = &["19:meeting_a@thread.v2", "19:meeting_b@thread.v2"];

fn app(n: usize) -> AppCtx {
    AppCtx {
        tenant_id: "t1".into(),
        app_id: format!("app{n}"),
        app_name: None,
    }
}

fn cmd<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("test command parses")
}

#[derive(Default)]
struct Observed {
    /// Per call: notifications in order (change, resource suffix, data).
    by_call: HashMap<String, Vec<(String, String, Value)>>,
    /// Operations returned to the API, with the status they were returned in.
    returned_ops: HashMap<String, (String, String)>,
    op_finals: HashMap<String, usize>,
    deleted_calls: HashSet<String>,
    fetches: Vec<(String, String, usize)>,
    /// Media work handed to rooms: (call, op, recording id).
    media_jobs: Vec<(String, String, Option<String>)>,
    live_legs: Vec<String>,
    /// Refer-To tokens the engine handed out (some already used or stale).
    refer_tokens: Vec<String>,
    store: BTreeMap<(ObjKind, String), Value>,
}

struct Sim {
    e: Engine,
    now: u64,
    rng: StdRng,
    obs: Observed,
    seed: u64,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let cfg = Config {
            keepalive_ms: 60_000,
            answer_deadline_ms: 15_000,
            default_ring_ms: 20_000,
            ..Config::default()
        };
        Sim {
            e: Engine::new(cfg, Box::new(SeqIds(seed << 20))),
            now: 1_700_000_000_000,
            rng: StdRng::seed_from_u64(seed),
            obs: Observed::default(),
            seed,
        }
    }

    fn drain(&mut self) {
        for eff in self.e.drain_effects() {
            match eff {
                Effect::Notify(n) => {
                    let item = &n.body["value"][0];
                    let url = item["resourceUrl"].as_str().unwrap().to_string();
                    let change = item["changeType"].as_str().unwrap().to_string();
                    let call = n.call_id.clone();
                    let suffix = url
                        .trim_start_matches(&format!("/communications/calls/{call}"))
                        .to_string();
                    assert!(
                        !self.obs.deleted_calls.contains(&call),
                        "seed {}: notification after the call was deleted: {url} {change}",
                        self.seed
                    );
                    if suffix.is_empty() && change == "deleted" {
                        self.obs.deleted_calls.insert(call.clone());
                        assert_eq!(
                            item["resourceData"]["state"], "terminated",
                            "seed {}",
                            self.seed
                        );
                    }
                    if let Some(op) = suffix.strip_prefix("/operations/") {
                        assert_eq!(change, "deleted", "seed {}", self.seed);
                        *self.obs.op_finals.entry(op.to_string()).or_default() += 1;
                        let status = item["resourceData"]["status"].as_str().unwrap();
                        assert!(
                            status == "completed" || status == "failed",
                            "seed {}: final status {status}",
                            self.seed
                        );
                    }
                    self.obs.by_call.entry(call).or_default().push((
                        change,
                        suffix,
                        item["resourceData"].clone(),
                    ));
                }
                Effect::Leg(LegAction::Ring { leg_id, .. }) => self.obs.live_legs.push(leg_id),
                Effect::Leg(LegAction::Refer { token, .. }) => self.obs.refer_tokens.push(token),
                Effect::Leg(_) => {}
                Effect::FetchPrompt {
                    call_id,
                    op_id,
                    index,
                    ..
                } => {
                    if !op_id.is_empty() {
                        self.obs.fetches.push((call_id, op_id, index));
                    }
                }
                Effect::SaveRecording { .. }
                | Effect::Transcript(_)
                | Effect::TranscriptLine(_)
                | Effect::Stream(_) => {}
                Effect::Media(media::Cmd::Room(spec)) => {
                    let mut ids: Vec<&String> = spec.members.iter().map(|m| &m.id).collect();
                    ids.sort();
                    ids.dedup();
                    assert_eq!(
                        ids.len(),
                        spec.members.len(),
                        "seed {}: a member twice in room {}",
                        self.seed,
                        spec.conf_id
                    );
                }
                Effect::Media(media::Cmd::Run {
                    call_id,
                    op_id,
                    record,
                    loop_forever,
                    ..
                }) => {
                    // Nothing starts before the call is up; once up, queued media goes on
                    // while the far end holds or a transfer is under way.
                    let st = self.e.call(&call_id).map(|c| c.state);
                    assert!(
                        matches!(
                            st,
                            Some(
                                CallState::Established
                                    | CallState::Hold
                                    | CallState::Transferring
                                    | CallState::TransferAccepted
                            )
                        ),
                        "seed {}: media started on a call that is {st:?}",
                        self.seed
                    );
                    // A room never finishes a looping prompt by itself: it plays until
                    // cancelled, so no Done is made up for one.
                    if !loop_forever {
                        self.obs
                            .media_jobs
                            .push((call_id, op_id, record.map(|r| r.recording_id)));
                    }
                }
                Effect::Media(media::Cmd::SendTones { call_id, op_id, .. }) => {
                    self.obs.media_jobs.push((call_id, op_id, None))
                }
                Effect::Media(_) => {}
            }
        }
        for (k, id, v) in self.e.take_dirty() {
            match v {
                Some(v) => self.obs.store.insert((k, id), v),
                None => self.obs.store.remove(&(k, id)),
            };
        }
    }

    fn pick<T: Clone>(&mut self, v: &[T]) -> Option<T> {
        if v.is_empty() {
            None
        } else {
            Some(v[self.rng.random_range(0..v.len())].clone())
        }
    }

    fn call_ids(&self) -> Vec<String> {
        let mut v: Vec<String> = self.e.all_calls().map(|c| c.id.clone()).collect();
        v.sort();
        v
    }

    fn participant_ids(&self, call: &str) -> Vec<String> {
        let Some(c) = self.e.call(call) else {
            return vec![];
        };
        let mut v: Vec<String> = self
            .e
            .conference(&c.conf_id)
            .map(|cf| cf.members.iter().map(|m| m.id.clone()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    fn api(&mut self, app_n: usize, call: Option<String>, c: Command) {
        let ver = if self.rng.random_bool(0.5) {
            Version::V1
        } else {
            Version::Beta
        };
        let desc = format!("{c:?}");
        trace(&format!(
            "api app{app_n} {call:?} {}",
            &desc[..desc.len().min(160)]
        ));
        let r = self
            .e
            .handle_api(self.now, &app(app_n), call.as_deref(), c, ver);
        if let Ok(reply) = &r
            && let Some(b) = &reply.body
            && let Some(t) = b["@odata.type"].as_str()
            && t.ends_with("Operation")
        {
            let id = b["id"].as_str().unwrap().to_string();
            let status = b["status"].as_str().unwrap().to_string();
            assert!(
                self.obs
                    .returned_ops
                    .insert(id.clone(), (call.clone().unwrap_or_default(), status))
                    .is_none(),
                "seed {}: operation id {id} reused",
                self.seed
            );
        }
        trace(&format!(
            "  -> {:?}",
            r.as_ref().map(|r| r.status).map_err(|e| e.message.clone())
        ));
        if let Err(e) = &r {
            assert!(
                e.status >= 400 && e.status < 500,
                "seed {}: engine error {e:?}",
                self.seed
            );
        }
    }

    fn prompt(&mut self) -> Value {
        json!({"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": {"uri": format!("https://x/{}.wav", self.rng.random_range(0..3))}})
    }

    fn step(&mut self) {
        let calls = self.call_ids();
        let call = self.pick(&calls);
        let app_n = if self.rng.random_bool(0.9) { 1 } else { 2 };
        let roll = self.rng.random_range(0..100);
        match roll {
            0..=7 => {
                let n = self.rng.random_range(1..=3);
                let targets: Vec<Value> = (0..n).map(|i| json!({"identity": {"user": {"id": USERS[(i + self.rng.random_range(0..5)) % 5]}}})).collect();
                let mut body = json!({"callbackUri": "https://bot/cb", "requestedModalities": ["audio"], "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}, "targets": targets});
                if self.rng.random_bool(0.3) {
                    body["callOptions"] = json!({"isDeltaRosterEnabled": true});
                }
                self.api(app_n, None, Command::CreateCall(Box::new(cmd(body))));
            }
            8..=11 => {
                let thread = self.pick(THREADS).unwrap();
                let mut body = json!({"callbackUri": "https://bot/cb", "requestedModalities": ["audio"], "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
                    "chatInfo": {"threadId": thread}, "meetingInfo": {"@odata.type": "#microsoft.graph.organizerMeetingInfo", "organizer": {"user": {"id": "org"}}},
                    "callOptions": {"isContentSharingNotificationEnabled": true}});
                if self.rng.random_bool(0.5) {
                    body["source"] = json!({"identity": {"applicationInstance": {"id": format!("seat{}", self.rng.random_range(0..2))}}});
                }
                self.api(app_n, None, Command::CreateCall(Box::new(cmd(body))));
            }
            12..=16 => {
                let user = self.pick(USERS).unwrap();
                let caller = ParticipantInfo {
                    identity: IdentitySet::user(user, None),
                    ..Default::default()
                };
                trace(&format!("incoming from {user}"));
                let (_, leg) =
                    self.e
                        .incoming_call(self.now, &app(1), "https://bot/incoming", caller, None);
                self.obs.live_legs.push(leg);
            }
            17..=40 => {
                // An endpoint event on a random leg.
                let legs: Vec<String> = self.e.all_legs().map(|l| l.id.clone()).collect::<Vec<_>>();
                let mut legs = legs;
                legs.sort();
                if let Some(leg) = self.pick(&legs) {
                    let ev = match self.rng.random_range(0..14) {
                        11 => LegEvent::ReferSupported,
                        12 => LegEvent::ReferFailed {
                            accepted: self.rng.random_bool(0.5),
                            sip_code: 486,
                        },
                        13 => {
                            // The transferee's new call at a REFER (maybe a stale token).
                            if let Some(token) = self.pick(&self.obs.refer_tokens.clone()) {
                                trace(&format!("referred {token}"));
                                if let Ok(leg) = self.e.referred(self.now, &token) {
                                    self.obs.live_legs.push(leg);
                                }
                            }
                            self.drain();
                            self.check();
                            return;
                        }
                        9 => LegEvent::SharingStarted,
                        10 => LegEvent::SharingStopped,
                        0 => LegEvent::Ringing,
                        1 | 2 => LegEvent::Answered,
                        3 => LegEvent::Failed {
                            sip_code: *self.pick(&[404u16, 480, 486, 603]).as_ref().unwrap(),
                            reason: "sim".into(),
                        },
                        4 => LegEvent::HungUp,
                        5 => LegEvent::Held,
                        _ => LegEvent::Resumed,
                    };
                    trace(&format!("leg {leg} {ev:?}"));
                    self.e.handle_leg(self.now, &leg, ev);
                }
            }
            41..=42 => {
                // The media room reports: a job done (maybe one already cancelled) or a key.
                if self.rng.random_bool(0.3) {
                    if let Some(call) = call {
                        let key = *self.pick(&['1', '#', '*']).as_ref().unwrap();
                        trace(&format!("tone {key} on {call}"));
                        self.e
                            .media_event(self.now, media::Event::Tone { call_id: call, key });
                    }
                } else if !self.obs.media_jobs.is_empty() {
                    let i = self.rng.random_range(0..self.obs.media_jobs.len());
                    let (call_id, op_id, rec) = self.obs.media_jobs.swap_remove(i);
                    let reason = match rec {
                        Some(_) => *self
                            .pick(&[
                                "stopToneDetected",
                                "maxSilenceTimeout",
                                "initialSilenceTimeout",
                            ])
                            .as_ref()
                            .unwrap(),
                        None => "completedSuccessfully",
                    };
                    trace(&format!("media done {op_id} {reason}"));
                    let recording = rec.map(|recording_id| media::Recorded {
                        recording_id,
                        duration_ms: 1000,
                    });
                    self.e.media_event(
                        self.now,
                        media::Event::Done {
                            call_id,
                            op_id,
                            reason,
                            recording,
                        },
                    );
                }
            }
            43..=45 => {
                if !self.obs.fetches.is_empty() {
                    let i = self.rng.random_range(0..self.obs.fetches.len());
                    let (c, op, idx) = self.obs.fetches.swap_remove(i);
                    let r = if self.rng.random_bool(0.85) {
                        let n = self.rng.random_range(1600..48_000);
                        Ok(vec![0i16; n].into())
                    } else {
                        Err("404".to_string())
                    };
                    self.e.prompt_fetched(self.now, &c, &op, idx, r);
                }
            }
            46..=55 => {
                self.now += self.rng.random_range(0..8_000);
                trace(&format!("time -> {}", self.now));
                self.e.handle_timeout(self.now);
            }
            _ => {
                let Some(call) = call else { return };
                let pids = self.participant_ids(&call);
                let pid = self.pick(&pids).unwrap_or_else(|| "nobody".into());
                let user = self.pick(USERS).unwrap();
                let cc = json!({"clientContext": "cc"});
                let c = match self.rng.random_range(0..24) {
                    0 => Command::Answer(cmd(
                        json!({"mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}, "callOptions": {"isDeltaRosterEnabled": self.rng.random_bool(0.5)}}),
                    )),
                    1 => Command::Reject(cmd(json!({"reason": "busy"}))),
                    2 => Command::Redirect(cmd(
                        json!({"targets": [{"identity": {"user": {"id": user}}}], "timeout": 20}),
                    )),
                    3 => Command::Transfer(Box::new(cmd(
                        json!({"transferTarget": {"identity": {"user": {"id": user}}}}),
                    ))),
                    4 => {
                        let other = self.pick(&calls).unwrap();
                        Command::Transfer(Box::new(cmd(
                            json!({"transferTarget": {"identity": {"user": {"id": user}}, "replacesCallId": other}}),
                        )))
                    }
                    5 => Command::DeleteCall,
                    6 => Command::KeepAlive,
                    7 => Command::Invite(cmd(
                        json!({"participants": [{"identity": {"user": {"id": user}}}], "clientContext": "inv"}),
                    )),
                    8 => {
                        let other = self.pick(&calls).unwrap();
                        Command::Invite(cmd(
                            json!({"participants": [{"identity": {"user": {"id": user}}, "replacesCallId": other}]}),
                        ))
                    }
                    9 => Command::MuteParticipant(pid, cmd(cc)),
                    10 => Command::DeleteParticipant(pid),
                    11 => Command::Mute(cmd(cc)),
                    12 => Command::PlayPrompt(cmd(
                        json!({"prompts": [self.prompt(), self.prompt()], "loop": self.rng.random_bool(0.1)}),
                    )),
                    13 => Command::RecordResponse(cmd(
                        json!({"prompts": [self.prompt()], "stopTones": ["#"], "bargeInAllowed": self.rng.random_bool(0.3), "maxRecordDurationInSeconds": 3}),
                    )),
                    14 => Command::CancelMediaProcessing(cmd(cc)),
                    15 => Command::SubscribeToTone(cmd(cc)),
                    16 => Command::SendDtmfTones(cmd(
                        json!({"tones": ["tone1", "tone2"], "delayBetweenTonesMs": 100}),
                    )),
                    17 => Command::StartHoldMusic(pid, cmd(json!({}))),
                    18 => Command::StopHoldMusic(pid, cmd(cc)),
                    19 => Command::CreateRoutingGroup(cmd(
                        json!({"routingMode": "multicast", "sources": [self.e.call(&call).map(|c| c.my_participant_id.clone()).unwrap_or_default()], "receivers": [pid]}),
                    )),
                    20 => Command::StartRecording(cmd(cc)),
                    21 => Command::AddLargeGalleryView(cmd(cc)),
                    22 => Command::UpdateRecordingStatus(cmd(json!({"status": "recording"}))),
                    _ => Command::StartTranscription(cmd(json!({"language": "en-us"}))),
                };
                self.api(app_n, Some(call), c);
            }
        }
        self.drain();
        self.check();
    }

    fn check(&self) {
        let s = self.seed;
        for c in self.e.all_calls() {
            assert_ne!(
                c.state,
                CallState::Terminated,
                "seed {s}: terminated call {} still live",
                c.id
            );
            assert!(
                !self.obs.deleted_calls.contains(&c.id),
                "seed {s}: deleted call {} still live",
                c.id
            );
            let conf = self
                .e
                .conference(&c.conf_id)
                .unwrap_or_else(|| panic!("seed {s}: call {} lost its conference", c.id));
            assert!(
                conf.members.iter().any(|m| m.id == c.my_participant_id),
                "seed {s}: bot of {} not in its conference",
                c.id
            );
            for op in c.operations.values() {
                // A running invite waits for invitees who are still ringing, nothing else.
                if op.kind == OpKind::InviteParticipants
                    && op.status == OperationStatus::Running
                    && op.due.is_none()
                {
                    assert!(
                        !op.pending.is_empty(),
                        "seed {s}: invite {} running with nobody pending",
                        op.id
                    );
                    for p in &op.pending {
                        assert!(
                            conf.members.iter().any(|m| &m.id == p
                                && m.invited_by.as_ref().is_some_and(|(_, o)| *o == op.id)),
                            "seed {s}: invite {} waits for {p}, who is not ringing",
                            op.id
                        );
                    }
                }
                if let Some(f) = self.obs.op_finals.get(&op.id) {
                    assert_eq!(*f, 1, "seed {s}: operation {} finished {f} times", op.id);
                }
            }
            // toneInfo sequence ids increase by one.
            if let Some(notes) = self.obs.by_call.get(&c.id) {
                let seqs: Vec<i64> = notes
                    .iter()
                    .filter_map(|(_, _, d)| d["toneInfo"]["sequenceId"].as_i64())
                    .collect();
                for (i, q) in seqs.iter().enumerate() {
                    assert_eq!(*q, i as i64 + 1, "seed {s}: tone sequence {seqs:?}");
                }
            }
        }
        for conf in self.e.all_conferences() {
            for m in &conf.members {
                match &m.endpoint {
                    MemberEndpoint::Leg { leg_id } => {
                        let leg = self.e.leg(leg_id).unwrap_or_else(|| {
                            panic!(
                                "seed {s}: roster of {} lists departed leg {leg_id}",
                                conf.id
                            )
                        });
                        assert_ne!(leg.state, LegState::Ended, "seed {s}");
                    }
                    MemberEndpoint::Bot { call_id } => {
                        assert!(
                            self.e.call(call_id).is_some(),
                            "seed {s}: roster of {} lists ended call {call_id}",
                            conf.id
                        );
                    }
                }
            }
            if let Some(sh) = &conf.sharing {
                assert!(
                    conf.members.iter().any(|m| m.id == sh.presenter),
                    "seed {s}: presenter {} left but still shares",
                    sh.presenter
                );
            }
            let mut ids: Vec<&String> = conf.members.iter().map(|m| &m.id).collect();
            ids.sort();
            ids.dedup();
            assert_eq!(
                ids.len(),
                conf.members.len(),
                "seed {s}: duplicate participant ids"
            );
        }
        for (op, f) in &self.obs.op_finals {
            assert_eq!(*f, 1, "seed {s}: operation {op} finished {f} times");
            if let Some((_, st)) = self.obs.returned_ops.get(op) {
                assert_eq!(
                    st, "running",
                    "seed {s}: operation {op} returned {st} yet notified"
                );
            }
        }
    }

    /// Hang everything up, let time pass: every call ends exactly once, every running
    /// operation ends exactly once, and the persisted objects restore to the same engine.
    fn finish(&mut self) {
        // The store mirror restores into an engine with the same calls.
        let mut restored = Engine::new(Config::default(), Box::new(SeqIds(1 << 40)));
        let (calls, rest): (Vec<_>, Vec<_>) = self
            .obs
            .store
            .iter()
            .partition(|((k, _), _)| *k == ObjKind::Call);
        for ((k, _), v) in rest.into_iter().chain(calls) {
            restored
                .restore(*k, v.clone())
                .unwrap_or_else(|e| panic!("seed {}: restore failed: {e}", self.seed));
        }
        let mut a: Vec<(String, CallState)> = self
            .e
            .all_calls()
            .map(|c| (c.id.clone(), c.state))
            .collect();
        let mut b: Vec<(String, CallState)> = restored
            .all_calls()
            .map(|c| (c.id.clone(), c.state))
            .collect();
        a.sort();
        b.sort();
        assert_eq!(
            a, b,
            "seed {}: persisted state differs from live state",
            self.seed
        );

        for id in self.call_ids() {
            let app_n = self
                .e
                .call(&id)
                .map(|c| if c.app_id == "app1" { 1 } else { 2 })
                .unwrap();
            self.api(app_n, Some(id), Command::DeleteCall);
            self.drain();
        }
        self.now += 24 * 3600 * 1000;
        self.e.handle_timeout(self.now);
        self.drain();
        assert_eq!(self.e.call_count(), 0, "seed {}", self.seed);
        for (op, (_, st)) in &self.obs.returned_ops {
            let finals = self.obs.op_finals.get(op).copied().unwrap_or(0);
            let expect = if st == "running" { 1 } else { 0 };
            // A looping prompt that completes is never notified; one that is cut off is.
            assert!(
                finals == expect,
                "seed {}: operation {op} returned {st} ended {finals} times",
                self.seed
            );
        }
        self.check();
    }
}

fn trace(s: &str) {
    if std::env::var("RINGSIDE_SIM_TRACE").is_ok() {
        eprintln!("{s}");
    }
}

#[test]
fn random_interleavings_keep_every_invariant() {
    let seeds: Vec<u64> = match std::env::var("RINGSIDE_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("seed")],
        Err(_) => (1..=400).collect(),
    };
    for seed in seeds {
        let mut sim = Sim::new(seed);
        for _ in 0..150 {
            sim.step();
        }
        sim.finish();
    }
}
