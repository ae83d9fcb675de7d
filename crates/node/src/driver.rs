//! The call driver: one thread owning the engine and the store. It takes a batch of inputs,
//! feeds them to the engine, commits the changed objects and the new notifications in one
//! transaction (group commit), and only then replies and carries out the effects.

use crate::clock::now_ms;
use crate::inputs::{Control, FetchJob, Msg};
use crate::stats::DriverStats;
use engine::{ApiError, Effect, Engine, Reply};
use serde_json::Value;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use store::{OutboxRow, Store};

/// Where effects go once committed.
pub struct Sinks {
    pub outbox: tokio::sync::mpsc::UnboundedSender<OutboxRow>,
    pub legs: tokio::sync::mpsc::UnboundedSender<Control>,
    pub fetch: tokio::sync::mpsc::UnboundedSender<FetchJob>,
    pub media: std::sync::Arc<media::runtime::Media>,
    pub speech: std::sync::Arc<crate::speech::Speech>,
    /// How long recordings stay downloadable.
    pub retention_ms: u64,
    pub stats: std::sync::Arc<DriverStats>,
    pub journal: std::sync::Arc<crate::journal::Journal>,
    /// The calls and meetings held here, in a cluster (requests for others are forwarded).
    pub owned: Option<std::sync::Arc<crate::cluster::Owned>>,
}

const MAX_BATCH: usize = 512;
const EXPIRY_EVERY_MS: u64 = 60_000;

/// A reply held back until the batch it belongs to is committed (`true`) or failed to be.
type Held = Box<dyn FnOnce(bool)>;

struct Driver {
    engine: Engine,
    store: Store,
    sinks: Sinks,
    last_expiry: u64,
    /// What happened outside (leg and media events, fetched prompts, delivery outcomes) in a
    /// batch that could not be committed: fed again ahead of the next batch, so a storage
    /// outage delays these facts instead of losing them.
    replay: Vec<Msg>,
}

pub fn run(engine: Engine, store: Store, rx: mpsc::Receiver<Msg>, sinks: Sinks) {
    let mut d = Driver {
        engine,
        store,
        sinks,
        last_expiry: 0,
        replay: Vec::new(),
    };
    let mut just_started = true;
    loop {
        d.expire_recordings();
        // The first pass carries out what the restore queued (media rooms, fetches) at once.
        let wait = if std::mem::take(&mut just_started) {
            Some(0)
        } else {
            d.engine.poll_timeout()
        };
        let wait = wait
            .map(|t| t.min(d.last_expiry + EXPIRY_EVERY_MS))
            .map(|t| Duration::from_millis(t.saturating_sub(now_ms())))
            .unwrap_or(Duration::from_millis(EXPIRY_EVERY_MS));
        let first = match rx.recv_timeout(wait) {
            Ok(m) => Some(m),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let mut batch: Vec<Msg> = first.into_iter().collect();
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        d.run_batch(batch);
    }
}

impl Driver {
    /// Recordings past their retention are forgotten and their files removed.
    fn expire_recordings(&mut self) {
        if now_ms().saturating_sub(self.last_expiry) < EXPIRY_EVERY_MS {
            return;
        }
        self.last_expiry = now_ms();
        match self.store.expire_recordings(self.last_expiry as i64) {
            Ok(paths) => {
                for p in paths {
                    let _ = std::fs::remove_file(p);
                }
            }
            Err(e) => tracing::warn!(error = %e, "recording expiry failed"),
        }
    }

    /// Feed a batch to the engine, commit what it changed, then reply and carry out effects.
    fn run_batch(&mut self, batch: Vec<Msg>) {
        let began = Instant::now();
        let messages = batch.len();
        let now = now_ms();
        let mut held: Vec<Held> = Vec::new();
        let mut changes = Vec::new();
        let mut facts: Vec<Msg> = Vec::new();
        let mut reads: Vec<Msg> = Vec::new();
        let replayed = std::mem::take(&mut self.replay);
        for m in replayed.into_iter().chain(batch) {
            if let Some(f) = fact(&m) {
                facts.push(f);
            }
            match m {
                Msg::Outbox(c) => changes.push(c),
                Msg::Api { ref cmd, .. } if cmd.is_read() => reads.push(m),
                m => self.feed(now, m, &mut held),
            }
        }
        guarded("timeout", || self.engine.handle_timeout(now_ms()));
        let effects = self.engine.drain_effects();
        let dirty = self.engine.take_dirty();
        let notes: Vec<engine::Notification> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Notify(n) => Some(n.clone()),
                _ => None,
            })
            .collect();
        let committing = Instant::now();
        let committed = match self.store.commit_with(&dirty, &notes, &changes, &effects) {
            Ok(rows) => Some(rows),
            Err(e) => {
                tracing::error!(error = %e, requests = held.len(), events_kept = facts.len(), "store commit failed; replying 503 and undoing the batch");
                None
            }
        };
        let ok = committed.is_some();
        self.sinks
            .stats
            .record(messages, committing - began, committing.elapsed());
        if !ok {
            // Nothing of the batch happened: memory goes back to what is stored, its effects
            // are dropped, its requests get 503, and the outside events come again next batch.
            self.roll_back(&dirty);
            self.replay = facts;
            for r in held {
                r(false);
            }
            self.answer_reads(reads);
            return;
        }
        // Recordings are registered before the notifications that announce them go out.
        for e in &effects {
            if let Effect::SaveRecording { .. } = e {
                self.save_recording(now, e);
            }
        }
        if let Some(o) = &self.sinks.owned {
            o.update(dirty.iter().map(|(k, id, v)| (*k, id.as_str(), v.as_ref())));
        }
        for r in held {
            r(true);
        }
        self.answer_reads(reads);
        self.tell_journal(&dirty);
        for c in &changes {
            if let store::OutboxChange::Dead { seq, .. } = c {
                self.sinks.journal.dead_letter_committed(*seq);
            }
        }
        for row in committed.into_iter().flatten() {
            let _ = self.sinks.outbox.send(row);
        }
        for e in effects {
            self.carry_out(e);
        }
    }

    /// Reads, answered after the batch's commit (or its undoing): they see committed state
    /// only, and a failed commit does not fail them.
    fn answer_reads(&mut self, reads: Vec<Msg>) {
        let now = now_ms();
        for m in reads {
            if let Msg::Api {
                app,
                call_id,
                cmd,
                ver,
                reply,
            } = m
            {
                let r = guarded("api", || {
                    self.engine
                        .handle_api(now, &app, call_id.as_deref(), cmd, ver)
                })
                .unwrap_or_else(|| Err(internal()));
                let _ = reply.send(r);
            }
        }
    }

    /// Put the engine back to the committed versions of what a failed batch changed, and
    /// re-describe the media rooms it touched.
    fn roll_back(&mut self, dirty: &[(engine::ObjKind, String, Option<Value>)]) {
        let keys: Vec<(engine::ObjKind, String)> =
            dirty.iter().map(|(k, id, _)| (*k, id.clone())).collect();
        let undone = self
            .store
            .committed_objects(&keys)
            .map_err(|e| e.to_string())
            .and_then(|committed| self.engine.roll_back(committed));
        if let Err(e) = undone {
            // Reading failed too: memory keeps the uncommitted changes (they are written with
            // the next batch that commits).
            tracing::error!(error = %e, "undoing a failed batch failed");
        }
        for e in self.engine.drain_effects() {
            if let Effect::Media(_) = e {
                self.carry_out(e);
            }
        }
    }

    /// One input: engine inputs are handled now, their replies held until the commit.
    fn feed(&mut self, now: u64, m: Msg, held: &mut Vec<Held>) {
        let engine = &mut self.engine;
        match m {
            Msg::Api {
                app,
                call_id,
                cmd,
                ver,
                reply,
            } => {
                let r = guarded("api", || {
                    engine.handle_api(now, &app, call_id.as_deref(), cmd, ver)
                })
                .unwrap_or_else(|| Err(internal()));
                held.push(Box::new(move |ok| {
                    let _ = reply.send(if ok { r } else { Err(unavailable()) });
                }));
            }
            Msg::Incoming {
                app,
                webhook,
                caller,
                script,
                target,
                leg,
                reply,
            } => {
                let r = guarded("incoming", || {
                    engine.incoming_call_to(now, &app, &webhook, caller, script, target.map(|t| *t))
                });
                if let Some(r) = r {
                    let legs = self.sinks.legs.clone();
                    // Same channel as the leg actions that follow: ordered before them.
                    let added = tell(&legs, leg.control(&r.1));
                    held.push(Box::new(move |ok| {
                        if ok {
                            let _ = reply.send(r);
                        } else if added {
                            // Dropping the reply refuses the call (a phone hears 503).
                            let _ = legs.send(Control::Forget { leg: r.1 });
                        }
                    }));
                }
            }
            Msg::Leg { leg_id, event } => {
                guarded("leg", || engine.handle_leg(now, &leg_id, event));
            }
            Msg::Referred { token, reply } => {
                let r = guarded("referred", || engine.referred(now, &token)).unwrap_or(Err(500));
                let legs = self.sinks.legs.clone();
                if let Ok(leg) = &r {
                    // Ordered before the leg actions that follow (see Incoming).
                    let _ = legs.send(Control::AddSip { leg: leg.clone() });
                }
                held.push(Box::new(move |ok| {
                    if !ok && let Ok(leg) = &r {
                        let _ = legs.send(Control::Forget { leg: leg.clone() });
                    }
                    let _ = reply.send(if ok { r } else { Err(503) });
                }));
            }
            Msg::Fetched {
                call_id,
                op_id,
                index,
                result,
            } => {
                guarded("fetch", || {
                    engine.prompt_fetched(now, &call_id, &op_id, index, result)
                });
            }
            Msg::Media(ev) => {
                guarded("media", || engine.media_event(now, ev));
            }
            Msg::CreateMeeting {
                app,
                subject,
                organizer,
                start,
                end,
                reply,
            } => {
                let v = engine.create_meeting(now, &app, subject, organizer, start, end);
                held.push(Box::new(move |ok| {
                    let _ = reply.send(if ok { Ok(v) } else { Err(unavailable()) });
                }));
            }
            Msg::JoinMeeting {
                tenant,
                who,
                meeting,
                leg,
                reply,
            } => {
                let r = guarded("join", || engine.join_meeting(now, &tenant, who, meeting))
                    .unwrap_or_else(|| Err(internal()));
                let legs = self.sinks.legs.clone();
                // Ordered before the leg actions that follow (see Incoming).
                let added = match &r {
                    Ok(id) => tell(&legs, leg.control(id)).then(|| id.clone()),
                    Err(_) => None,
                };
                let r = r.map(|leg| Reply::json(201, serde_json::json!({ "legId": leg })));
                held.push(Box::new(move |ok| {
                    if !ok && let Some(leg) = added {
                        let _ = legs.send(Control::Forget { leg });
                    }
                    let _ = reply.send(if ok { r } else { Err(unavailable()) });
                }));
            }
            Msg::Adopt { node } => self.adopt(now, &node),
            m => self.query(now, m),
        }
    }

    /// Take over a stopped node: restore its objects, send its undelivered notifications,
    /// and end its live legs (their media was on that node) so their calls end as calls
    /// whose media is lost do.
    fn adopt(&mut self, now: u64, node: &str) {
        let adopted = match self.store.adopt(node) {
            Ok(Some(a)) => a,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(node = %node, error = %e, "taking over a stopped node failed");
                return;
            }
        };
        let id = |v: &Value| v["id"].as_str().unwrap_or_default().to_string();
        let legs: std::collections::HashSet<String> = adopted
            .objects
            .iter()
            .filter(|(k, _)| *k == engine::ObjKind::Leg)
            .map(|(_, v)| id(v))
            .collect();
        if let Some(o) = &self.sinks.owned {
            let ids: Vec<_> = adopted.objects.iter().map(|(k, v)| (*k, id(v))).collect();
            o.update(ids.iter().map(|(k, i)| (*k, i.as_str(), Some(&()))));
        }
        let calls = adopted
            .objects
            .iter()
            .filter(|(k, _)| *k == engine::ObjKind::Call)
            .count();
        let (call_objs, others): (Vec<_>, Vec<_>) = adopted
            .objects
            .into_iter()
            .partition(|(k, _)| *k == engine::ObjKind::Call);
        for (k, v) in others.into_iter().chain(call_objs) {
            if let Err(e) = self.engine.restore(k, v) {
                tracing::error!(node = %node, error = %e, "an adopted object could not be restored");
            }
        }
        let notes = adopted.outbox.len();
        for row in adopted.outbox {
            let _ = self.sinks.outbox.send(row);
        }
        let live: Vec<String> = self
            .engine
            .live_legs()
            .into_iter()
            .map(|(leg, ..)| leg)
            .filter(|leg| legs.contains(leg))
            .collect();
        for leg in &live {
            let ev = engine::LegEvent::MediaLost {
                reason: format!("node {node} stopped, and the media of this leg with it"),
            };
            guarded("adopt", || self.engine.handle_leg(now, leg, ev));
        }
        tracing::warn!(node = %node, calls, legs_ended = live.len(), notifications = notes, "took over a stopped node");
    }

    /// Questions about what is stored or running: answered at once, nothing to commit.
    fn query(&mut self, now: u64, m: Msg) {
        let store = &mut self.store;
        match m {
            Msg::GetMeeting { tenant, id, reply } => {
                let _ = reply.send(self.engine.get_meeting(&tenant, &id));
            }
            Msg::Ping { reply } => {
                let _ = reply.send(store.ping().map_err(|e| e.to_string()));
            }
            Msg::DeadLetters { reply } => {
                let _ = reply.send(store.dead_letters().unwrap_or_default());
            }
            Msg::Redeliver { seq, reply } => {
                let row = store.redeliver(seq).unwrap_or(None);
                if let Some(r) = &row {
                    let _ = self.sinks.outbox.send(r.clone());
                }
                let _ = reply.send(row);
            }
            Msg::LogQuality {
                tenant,
                app,
                json,
                reply,
            } => {
                let r = store.log_device_quality(&tenant, &app, now as i64, &json);
                let _ = reply.send(r.map_err(|e| e.to_string()));
            }
            Msg::ListQuality { tenant, reply } => {
                let _ = reply.send(store.device_quality(&tenant).unwrap_or_default());
            }
            Msg::GetRecording { id, reply } => {
                let _ = reply.send(store.recording(&id).unwrap_or(None));
            }
            Msg::CallRecordings { call_id, reply } => {
                let _ = reply.send(store.recordings_of_call(&call_id).unwrap_or_default());
            }
            Msg::Transcripts {
                owner,
                by_meeting,
                reply,
            } => {
                let all = store
                    .transcripts_of(&owner, by_meeting)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| {
                        let lines = store.transcript_lines(&t.id).unwrap_or_default();
                        (t, lines)
                    })
                    .collect();
                let _ = reply.send(all);
            }
            Msg::Snapshot { reply } => {
                let _ = reply.send(snapshot(&self.engine));
            }
            Msg::ConsoleViews { reply } => {
                let e = &self.engine;
                let mut v: Vec<Value> = e
                    .all_calls()
                    .filter_map(|c| e.console_view(&c.id))
                    .collect();
                v.sort_by_key(|c| c["createdMs"].as_u64());
                let _ = reply.send(v);
            }
            Msg::RecentRecordings { limit, reply } => {
                let _ = reply.send(store.recent_recordings(limit).unwrap_or_default());
            }
            _ => unreachable!("engine inputs and outbox changes are not queries"),
        }
    }

    /// Tell the journal which calls changed; while a console listens, with how they look now
    /// (a roster change shows on every call of the conference).
    fn tell_journal(&self, dirty: &[(engine::ObjKind, String, Option<Value>)]) {
        let journal = &self.sinks.journal;
        let watched = journal.watched();
        let now = now_ms();
        let view = |id: &str| {
            if watched {
                self.engine.console_view(id)
            } else {
                None
            }
        };
        let mut told = std::collections::HashSet::new();
        for (kind, id, stored) in dirty {
            if *kind == engine::ObjKind::Call {
                told.insert(id.as_str());
                journal.call_changed(id, stored.as_ref(), view(id), now);
            }
        }
        if !watched {
            return;
        }
        for (kind, id, _) in dirty {
            if *kind == engine::ObjKind::Conference {
                for call in self.engine.calls_in_conference(id) {
                    if told.insert(call)
                        && let Some(v) = view(call)
                    {
                        journal.call_view(call, v);
                    }
                }
            }
        }
    }

    /// Register a recording the engine started or finished, so it can be listed and fetched.
    fn save_recording(&mut self, now: u64, e: &Effect) {
        let Effect::SaveRecording {
            id,
            call_id,
            tenant_id,
            app_id,
            kind,
            duration_ms,
        } = e
        else {
            return;
        };
        let path = self.sinks.media.recordings_dir.join(format!("{id}.wav"));
        let (kind, token, parent, participant) = match kind {
            engine::RecordingKind::Response { token } => ("response", token.clone(), None, None),
            engine::RecordingKind::Call => ("call", String::new(), None, None),
            engine::RecordingKind::Track {
                parent,
                participant_id,
            } => (
                "track",
                String::new(),
                Some(parent.clone()),
                Some(participant_id.clone()),
            ),
        };
        // A track belongs to whoever owns its recording.
        let (tenant_id, app_id) = match &parent {
            Some(p) => self
                .store
                .recording(p)
                .ok()
                .flatten()
                .map(|r| (r.tenant_id, r.app_id))
                .unwrap_or_default(),
            None => (tenant_id.clone(), app_id.clone()),
        };
        let rec = store::Recording {
            id: id.clone(),
            call_id: call_id.clone(),
            tenant_id,
            app_id,
            kind: kind.into(),
            parent_id: parent,
            participant_id: participant,
            token,
            path: path.display().to_string(),
            created_ms: now as i64,
            // A recording in progress never expires; retention starts when it ends.
            expires_ms: match duration_ms {
                Some(_) => (now + self.sinks.retention_ms) as i64,
                None => i64::MAX,
            },
            duration_ms: duration_ms.map(|d| d as i64),
        };
        match self.store.save_recording(&rec) {
            Ok(()) => self
                .sinks
                .journal
                .publish(&serde_json::json!({"type": "recording", "id": rec.id})),
            Err(e) => tracing::error!(error = %e, "cannot register recording"),
        }
    }

    /// A committed effect, handed to the part of the node that carries it out.
    fn carry_out(&self, e: Effect) {
        if let Effect::Media(media::Cmd::StartTranscription { .. }) = &e {
            self.sinks.speech.warm_up();
        }
        match e {
            Effect::Notify(_)
            | Effect::SaveRecording { .. }
            | Effect::Transcript(_)
            | Effect::TranscriptLine(_) => {}
            Effect::Stream(a) => {
                let _ = self.sinks.legs.send(Control::Stream(a));
            }
            Effect::Leg(a) => {
                let _ = self.sinks.legs.send(Control::Action(a));
            }
            Effect::FetchPrompt {
                call_id,
                op_id,
                index,
                uri,
                resource_id,
            } => {
                let _ = self
                    .sinks
                    .fetch
                    .send((call_id, op_id, index, uri, resource_id));
            }
            Effect::Media(cmd) => self.sinks.media.send(cmd),
        }
    }
}

/// A bug in the engine must not take the service down: log it, fail that one input.
fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Option<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(input = what, panic = %msg, "engine bug: input dropped");
            None
        }
    }
}

/// A copy of an input that reports something that happened outside the engine (kept to be
/// fed again if its batch cannot be committed); requests are answered instead.
fn fact(m: &Msg) -> Option<Msg> {
    Some(match m {
        Msg::Leg { leg_id, event } => Msg::Leg {
            leg_id: leg_id.clone(),
            event: event.clone(),
        },
        Msg::Fetched {
            call_id,
            op_id,
            index,
            result,
        } => Msg::Fetched {
            call_id: call_id.clone(),
            op_id: op_id.clone(),
            index: *index,
            result: result.clone(),
        },
        Msg::Media(ev) => Msg::Media(ev.clone()),
        Msg::Outbox(c) => Msg::Outbox(c.clone()),
        _ => return None,
    })
}

fn internal() -> ApiError {
    ApiError {
        status: 500,
        code: "InternalServerError".into(),
        message: "ringside hit an internal error handling this request; it has been logged.".into(),
    }
}

fn unavailable() -> ApiError {
    ApiError {
        status: 503,
        code: "ServiceUnavailable".into(),
        message: "The request could not be committed to storage; retry.".into(),
    }
}

fn snapshot(e: &Engine) -> Value {
    let calls: Vec<Value> = e
        .all_calls()
        .map(|c| serde_json::json!({"id": c.id, "tenantId": c.tenant_id, "appId": c.app_id, "state": c.state, "direction": c.direction, "conference": c.conf_id}))
        .collect();
    let legs: Vec<Value> = e
        .all_legs()
        .map(|l| serde_json::json!({"id": l.id, "party": l.party, "state": format!("{:?}", l.state), "role": format!("{:?}", l.role), "conference": l.conf_id}))
        .collect();
    serde_json::json!({ "calls": calls, "legs": legs })
}

/// Tell the endpoints about a new leg, if there is anything to tell; whether there was.
fn tell(legs: &tokio::sync::mpsc::UnboundedSender<Control>, c: Option<Control>) -> bool {
    match c {
        Some(c) => {
            let _ = legs.send(c);
            true
        }
        None => false,
    }
}
