//! The call driver: one thread owning the engine and the store. It takes a batch of inputs,
//! feeds them to the engine, commits the changed objects and the new notifications in one
//! transaction (group commit), and only then replies and carries out the effects.

use engine::{ApiError, AppCtx, Command, Effect, Engine, LegEvent, Reply, Version};
use graph::ParticipantInfo;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use store::{DeadLetter, OutboxChange, OutboxRow, Store};
use tokio::sync::oneshot;

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub type ApiResult = Result<Reply, ApiError>;

/// Upper bounds (ms) of the [`DriverStats::batch_ms`] buckets; the last bucket is the rest.
pub const BATCH_MS_BOUNDS: [u64; 8] = [1, 2, 5, 10, 20, 50, 100, 200];

/// Where the driver's time goes: every batch runs the engine, then commits. A request waits
/// for the batch it is in and, at worst, for the one before it.
#[derive(Default)]
pub struct DriverStats {
    pub batches: AtomicU64,
    pub messages: AtomicU64,
    pub engine_us: AtomicU64,
    pub max_engine_us: AtomicU64,
    pub commit_us: AtomicU64,
    pub max_commit_us: AtomicU64,
    /// Batches by how long they took (engine and commit), bucketed by [`BATCH_MS_BOUNDS`].
    pub batch_ms: [AtomicU64; BATCH_MS_BOUNDS.len() + 1],
}

impl DriverStats {
    fn record(&self, messages: usize, engine: Duration, commit: Duration) {
        let (e, c) = (engine.as_micros() as u64, commit.as_micros() as u64);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.messages.fetch_add(messages as u64, Ordering::Relaxed);
        self.engine_us.fetch_add(e, Ordering::Relaxed);
        self.max_engine_us.fetch_max(e, Ordering::Relaxed);
        self.commit_us.fetch_add(c, Ordering::Relaxed);
        self.max_commit_us.fetch_max(c, Ordering::Relaxed);
        let ms = (e + c) / 1000;
        let bucket = BATCH_MS_BOUNDS
            .iter()
            .position(|&b| ms < b)
            .unwrap_or(BATCH_MS_BOUNDS.len());
        self.batch_ms[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// Start measuring afresh.
    pub fn reset(&self) {
        let all = [
            &self.batches,
            &self.messages,
            &self.engine_us,
            &self.max_engine_us,
            &self.commit_us,
            &self.max_commit_us,
        ];
        for a in all.into_iter().chain(&self.batch_ms) {
            a.store(0, Ordering::Relaxed);
        }
    }

    /// As `GET /admin/driver` shows it.
    pub fn to_json(&self) -> Value {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let ms = |us: u64| us as f64 / 1000.0;
        let buckets: serde_json::Map<String, Value> = self
            .batch_ms
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let name = match BATCH_MS_BOUNDS.get(i) {
                    Some(b) => format!("under{b}ms"),
                    None => format!("{}msOrMore", BATCH_MS_BOUNDS[BATCH_MS_BOUNDS.len() - 1]),
                };
                (name, get(n).into())
            })
            .collect();
        serde_json::json!({
            "batches": get(&self.batches),
            "messages": get(&self.messages),
            "engineMs": ms(get(&self.engine_us)),
            "maxEngineMs": ms(get(&self.max_engine_us)),
            "commitMs": ms(get(&self.commit_us)),
            "maxCommitMs": ms(get(&self.max_commit_us)),
            "batchesByDuration": buckets,
        })
    }
}

pub enum Msg {
    Api {
        app: AppCtx,
        call_id: Option<String>,
        cmd: Command,
        ver: Version,
        reply: oneshot::Sender<ApiResult>,
    },
    Incoming {
        app: AppCtx,
        webhook: String,
        caller: ParticipantInfo,
        script: Option<Value>,
        /// Who the call is for, when not the app itself (its resource account).
        target: Option<Box<graph::IdentitySet>>,
        /// The caller is a SIP phone: the endpoints learn it before any action for the leg
        /// (the bot may answer before whoever sent this hears back).
        sip: bool,
        reply: oneshot::Sender<(String, String)>,
    },
    /// A SIP phone's new call at ringside's REFER (`token` is the Refer-To user part): the
    /// new leg, or the SIP status to refuse the call with.
    Referred {
        token: String,
        reply: oneshot::Sender<Result<String, u16>>,
    },
    Leg {
        leg_id: String,
        event: LegEvent,
    },
    Fetched {
        call_id: String,
        op_id: String,
        index: usize,
        result: Result<media::Audio, String>,
    },
    Media(media::Event),
    Outbox(OutboxChange),
    CreateMeeting {
        app: AppCtx,
        subject: Option<String>,
        organizer: graph::IdentitySet,
        start: Option<String>,
        end: Option<String>,
        reply: oneshot::Sender<Value>,
    },
    GetMeeting {
        tenant: String,
        id: String,
        reply: oneshot::Sender<Option<Value>>,
    },
    JoinMeeting {
        tenant: String,
        who: ParticipantInfo,
        meeting: engine::MeetingRef,
        reply: oneshot::Sender<ApiResult>,
    },
    DeadLetters {
        reply: oneshot::Sender<Vec<DeadLetter>>,
    },
    Redeliver {
        seq: i64,
        reply: oneshot::Sender<Option<OutboxRow>>,
    },
    LogQuality {
        tenant: String,
        app: String,
        json: Value,
        reply: oneshot::Sender<Result<i64, String>>,
    },
    ListQuality {
        tenant: String,
        reply: oneshot::Sender<Vec<(i64, String, i64, Value)>>,
    },
    GetRecording {
        id: String,
        reply: oneshot::Sender<Option<store::Recording>>,
    },
    CallRecordings {
        call_id: String,
        reply: oneshot::Sender<Vec<store::Recording>>,
    },
    Snapshot {
        reply: oneshot::Sender<Value>,
    },
}

/// Where effects go once committed.
pub struct Sinks {
    pub outbox: tokio::sync::mpsc::UnboundedSender<OutboxRow>,
    pub legs: tokio::sync::mpsc::UnboundedSender<crate::endpoints::Control>,
    pub fetch: tokio::sync::mpsc::UnboundedSender<crate::fetch::FetchJob>,
    pub media: std::sync::Arc<media::runtime::Media>,
    /// How long recordings stay downloadable.
    pub retention_ms: u64,
    pub stats: std::sync::Arc<DriverStats>,
}

const MAX_BATCH: usize = 512;
const EXPIRY_EVERY_MS: u64 = 60_000;

pub fn run(mut engine: Engine, mut store: Store, rx: mpsc::Receiver<Msg>, sinks: Sinks) {
    let mut last_expiry = 0u64;
    let mut just_started = true;
    loop {
        // Recordings past their retention are forgotten and their files removed.
        if now_ms().saturating_sub(last_expiry) >= EXPIRY_EVERY_MS {
            last_expiry = now_ms();
            match store.expire_recordings(last_expiry as i64) {
                Ok(paths) => {
                    for p in paths {
                        let _ = std::fs::remove_file(p);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "recording expiry failed"),
            }
        }
        // The first pass carries out what the restore queued (media rooms, fetches) at once.
        let wait = if std::mem::take(&mut just_started) {
            Some(0)
        } else {
            engine.poll_timeout()
        };
        let wait = wait
            .map(|t| t.min(last_expiry + EXPIRY_EVERY_MS))
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
        let began = Instant::now();
        let messages = batch.len();
        let now = now_ms();
        let mut replies: Vec<Box<dyn FnOnce(bool)>> = Vec::new();
        let mut changes = Vec::new();
        for m in batch {
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
                    replies.push(Box::new(move |ok| {
                        let _ = reply.send(if ok { r } else { Err(unavailable()) });
                    }));
                }
                Msg::Incoming {
                    app,
                    webhook,
                    caller,
                    script,
                    target,
                    sip,
                    reply,
                } => {
                    if let Some(r) = guarded("incoming", || {
                        engine.incoming_call_to(
                            now,
                            &app,
                            &webhook,
                            caller,
                            script,
                            target.map(|t| *t),
                        )
                    }) {
                        if sip {
                            // Same channel as the leg actions that follow: ordered before them.
                            let _ = sinks
                                .legs
                                .send(crate::endpoints::Control::AddSip { leg: r.1.clone() });
                        }
                        replies.push(Box::new(move |_| {
                            let _ = reply.send(r);
                        }));
                    }
                }
                Msg::Leg { leg_id, event } => {
                    guarded("leg", || engine.handle_leg(now, &leg_id, event));
                }
                Msg::Referred { token, reply } => {
                    let r =
                        guarded("referred", || engine.referred(now, &token)).unwrap_or(Err(500));
                    if let Ok(leg) = &r {
                        // Ordered before the leg actions that follow (see Incoming).
                        let _ = sinks
                            .legs
                            .send(crate::endpoints::Control::AddSip { leg: leg.clone() });
                    }
                    replies.push(Box::new(move |ok| {
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
                Msg::Outbox(c) => changes.push(c),
                Msg::CreateMeeting {
                    app,
                    subject,
                    organizer,
                    start,
                    end,
                    reply,
                } => {
                    let v = engine.create_meeting(now, &app, subject, organizer, start, end);
                    replies.push(Box::new(move |_| {
                        let _ = reply.send(v);
                    }));
                }
                Msg::JoinMeeting {
                    tenant,
                    who,
                    meeting,
                    reply,
                } => {
                    let r = guarded("join", || engine.join_meeting(now, &tenant, who, meeting))
                        .unwrap_or_else(|| Err(internal()))
                        .map(|leg| Reply::json(201, serde_json::json!({ "legId": leg })));
                    replies.push(Box::new(move |ok| {
                        let _ = reply.send(if ok { r } else { Err(unavailable()) });
                    }));
                }
                Msg::GetMeeting { tenant, id, reply } => {
                    let _ = reply.send(engine.get_meeting(&tenant, &id));
                }
                Msg::DeadLetters { reply } => {
                    let _ = reply.send(store.dead_letters().unwrap_or_default());
                }
                Msg::Redeliver { seq, reply } => {
                    let row = store.redeliver(seq).unwrap_or(None);
                    if let Some(r) = &row {
                        let _ = sinks.outbox.send(r.clone());
                    }
                    let _ = reply.send(row);
                }
                Msg::LogQuality {
                    tenant,
                    app,
                    json,
                    reply,
                } => {
                    let _ = reply.send(
                        store
                            .log_device_quality(&tenant, &app, now as i64, &json)
                            .map_err(|e| e.to_string()),
                    );
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
                Msg::Snapshot { reply } => {
                    let _ = reply.send(snapshot(&engine));
                }
            }
        }
        guarded("timeout", || engine.handle_timeout(now_ms()));
        let effects = engine.drain_effects();
        let dirty = engine.take_dirty();
        let notes: Vec<engine::Notification> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Notify(n) => Some(n.clone()),
                _ => None,
            })
            .collect();
        let committing = Instant::now();
        let committed = match store.commit(&dirty, &notes, &changes) {
            Ok(rows) => Some(rows),
            Err(e) => {
                tracing::error!(error = %e, "store commit failed; replying 503");
                None
            }
        };
        let ok = committed.is_some();
        sinks
            .stats
            .record(messages, committing - began, committing.elapsed());
        // Recordings are registered before the notifications that announce them go out.
        for e in &effects {
            if let Effect::SaveRecording {
                id,
                call_id,
                tenant_id,
                app_id,
                kind,
                duration_ms,
            } = e
            {
                let path = sinks.media.recordings_dir.join(format!("{id}.wav"));
                let (kind, token, parent, participant) = match kind {
                    engine::RecordingKind::Response { token } => {
                        ("response", token.clone(), None, None)
                    }
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
                    Some(p) => store
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
                        Some(_) => (now + sinks.retention_ms) as i64,
                        None => i64::MAX,
                    },
                    duration_ms: duration_ms.map(|d| d as i64),
                };
                if let Err(e) = store.save_recording(&rec) {
                    tracing::error!(error = %e, "cannot register recording");
                }
            }
        }
        for r in replies {
            r(ok);
        }
        if let Some(rows) = committed {
            for row in rows {
                let _ = sinks.outbox.send(row);
            }
        }
        for e in effects {
            match e {
                Effect::Notify(_) => {}
                Effect::Leg(a) => {
                    let _ = sinks.legs.send(crate::endpoints::Control::Action(a));
                }
                Effect::FetchPrompt {
                    call_id,
                    op_id,
                    index,
                    uri,
                    resource_id,
                } => {
                    let _ = sinks.fetch.send((call_id, op_id, index, uri, resource_id));
                }
                Effect::SaveRecording { .. } => {}
                Effect::Media(cmd) => sinks.media.send(cmd),
            }
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
