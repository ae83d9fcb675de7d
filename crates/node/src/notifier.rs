//! Notification delivery: POSTs outbox rows to callback URIs strictly in order per call, at
//! least once, with exponential backoff; dead-letters after the configured attempts. Every
//! outcome goes back to the driver, which records it in the store.

use crate::clock::now_ms;
use crate::inputs::Msg;
use crate::journal::{Attempt, Delivery};
use crate::node::Node;
use crate::outbound::{Policy, error_chain};
use identity::CallbackClaims;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Duration;
use store::{OutboxChange, OutboxRow};
use tokio::sync::mpsc;

#[derive(Clone)]
pub struct NotifierConfig {
    pub max_attempts: i64,
    pub backoff_ms: u64,
    pub timeout: Duration,
}

enum Done {
    Delivered {
        call_id: String,
        seq: i64,
        attempt: Attempt,
    },
    Failed {
        call_id: String,
        seq: i64,
        error: String,
        attempt: Attempt,
    },
}

type SignedToken = (String, u64, String);

/// Signed tokens for callbacks, one per (app, tenant), reused until half their life is gone:
/// an RSA signature per notification would cost more than the rest of the delivery.
pub struct CallbackSigner {
    shared: Arc<Node>,
    /// (app, tenant) → (token, expiry, kid).
    cache: std::sync::Mutex<HashMap<(String, String), SignedToken>>,
}

impl CallbackSigner {
    pub fn new(shared: Arc<Node>) -> CallbackSigner {
        CallbackSigner {
            shared,
            cache: Default::default(),
        }
    }

    /// `Authorization` value for a notification to `app` about a call in `tenant` (reference §8.3).
    pub fn bearer(&self, app: &str, tenant: &str) -> String {
        let now = now_ms() / 1000;
        let life = self
            .shared
            .directory
            .read()
            .server
            .callback_token_lifetime_seconds
            .max(60);
        let key = (app.to_string(), tenant.to_string());
        let mut cache = self.cache.lock().expect("signer cache");
        // Reuse a token only while it is young and signed with the current key: after a
        // rotation, bots that refreshed their JWKS must find the key.
        let kid = self.shared.keys.current_kid();
        if let Some((t, exp, k)) = cache.get(&key)
            && *exp > now + life / 2
            && *k == kid
        {
            return format!("Bearer {t}");
        }
        let claims = CallbackClaims {
            iss: self.shared.public_url.clone(),
            aud: app.to_string(),
            tid: tenant.to_string(),
            iat: now,
            nbf: now,
            exp: now + life,
        };
        let t = self.shared.keys.sign(&claims);
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(key, (t.clone(), now + life, kid));
        format!("Bearer {t}")
    }
}

/// The notification's sequence number: the same on every attempt and redelivery, increasing
/// along a call, so a bot can drop a duplicate (an attempt it answered too late) by it.
pub const SEQUENCE_HEADER: &str = "ringside-sequence";

pub async fn run(
    cfg: NotifierConfig,
    mut rows: mpsc::UnboundedReceiver<OutboxRow>,
    driver: Sender<Msg>,
    shared: Arc<Node>,
) {
    let client = shared.outbound.client(cfg.timeout, false);
    let policy = shared.outbound.policy.clone();
    let node = shared.clone();
    let signer = Arc::new(CallbackSigner::new(shared));
    let mut queues: HashMap<String, VecDeque<OutboxRow>> = HashMap::new();
    let mut busy: HashSet<String> = HashSet::new();
    // When each row reached the notifier (just after its commit): delivery latency.
    let mut seen: HashMap<i64, std::time::Instant> = HashMap::new();
    let metrics = node.metrics.clone();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();

    let start = |row: OutboxRow, busy: &mut HashSet<String>| {
        busy.insert(row.call_id.clone());
        let client = client.clone();
        let done = done_tx.clone();
        let signer = signer.clone();
        let policy = policy.clone();
        let delay = row.next_attempt_ms.saturating_sub(now_ms() as i64).max(0) as u64;
        tokio::spawn(async move {
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            let auth = signer.bearer(&row.app_id, &row.tenant_id);
            let p = policy.read().expect("policy").clone();
            let at_ms = now_ms();
            let began = std::time::Instant::now();
            let (r, status) = deliver(&client, &row, &auth, &p).await;
            let attempt = Attempt {
                at_ms,
                duration_ms: began.elapsed().as_millis() as u64,
                status,
                error: r.as_ref().err().cloned(),
            };
            let _ = done.send(match r {
                Ok(()) => Done::Delivered {
                    call_id: row.call_id,
                    seq: row.seq,
                    attempt,
                },
                Err(error) => Done::Failed {
                    call_id: row.call_id,
                    seq: row.seq,
                    error,
                    attempt,
                },
            });
        });
    };

    loop {
        tokio::select! {
            row = rows.recv() => {
                let Some(row) = row else { return };
                if seen.contains_key(&row.seq) {
                    continue;
                }
                seen.insert(row.seq, std::time::Instant::now());
                node.journal.queued(&row, now_ms());
                let call = row.call_id.clone();
                let q = queues.entry(call.clone()).or_default();
                // Keep per-call order even when a redelivered dead letter comes back.
                let pos = q.iter().position(|r| r.seq > row.seq).unwrap_or(q.len());
                let front_changed = pos == 0 && !busy.contains(&call);
                q.insert(pos, row);
                if (front_changed || !busy.contains(&call))
                    && let Some(head) = queues.get(&call).and_then(|q| q.front()).cloned()
                {
                    start(head, &mut busy);
                }
            }
            d = done_rx.recv() => {
                let Some(d) = d else { return };
                let call_id = match d {
                    Done::Delivered { call_id, seq, attempt } => {
                        metrics.attempt.observe(Duration::from_millis(attempt.duration_ms));
                        metrics.attempts_ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::info!(target: "notification", seq, call_id = %call_id, status = attempt.status, duration_ms = attempt.duration_ms, "delivered");
                        node.journal.attempted(&call_id, seq, attempt, Delivery::Delivered);
                        let _ = driver.send(Msg::Outbox(OutboxChange::Delivered(seq)));
                        if let Some(t) = seen.remove(&seq) {
                            metrics.delivered_after.observe(t.elapsed());
                        }
                        if let Some(q) = queues.get_mut(&call_id) {
                            q.retain(|r| r.seq != seq);
                        }
                        call_id
                    }
                    Done::Failed { call_id, seq, error, attempt } => {
                        let q = queues.get_mut(&call_id).expect("queue of in-flight row");
                        let head = q.iter_mut().find(|r| r.seq == seq).expect("in-flight row");
                        head.attempts += 1;
                        metrics.attempt.observe(Duration::from_millis(attempt.duration_ms));
                        metrics.attempts_failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::warn!(seq, call_id = %call_id, attempt = head.attempts, status = attempt.status, duration_ms = attempt.duration_ms, error = %error, "notification delivery failed");
                        let dead = head.attempts >= cfg.max_attempts;
                        let state = if dead { Delivery::Dead } else { Delivery::Retrying };
                        node.journal.attempted(&call_id, seq, attempt, state);
                        let q = queues.get_mut(&call_id).expect("queue of in-flight row");
                        let head = q.iter_mut().find(|r| r.seq == seq).expect("in-flight row");
                        if dead {
                            metrics.dead_letters.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let _ = driver.send(Msg::Outbox(OutboxChange::Dead { seq, error, now_ms: now_ms() as i64 }));
                            seen.remove(&seq);
                            q.retain(|r| r.seq != seq);
                        } else {
                            let backoff = cfg.backoff_ms.saturating_mul(1u64 << (head.attempts - 1).min(16) as u32).min(60_000);
                            head.next_attempt_ms = (now_ms() + backoff) as i64;
                            head.last_error = Some(error.clone());
                            let _ = driver.send(Msg::Outbox(OutboxChange::Retry { seq, attempts: head.attempts, next_attempt_ms: head.next_attempt_ms, error }));
                        }
                        call_id
                    }
                };
                busy.remove(&call_id);
                match queues.get(&call_id).and_then(|q| q.front()).cloned() {
                    Some(next) => start(next, &mut busy),
                    None => { queues.remove(&call_id); }
                }
            }
        }
    }
}

/// One POST and the bot's last HTTP status; 302/307/308 are followed for the incoming-call
/// notification (reference §8.4).
async fn deliver(
    client: &reqwest::Client,
    row: &OutboxRow,
    auth: &str,
    policy: &Policy,
) -> (Result<(), String>, Option<u16>) {
    let mut status = None;
    let r = post(client, row, auth, policy, &mut status).await;
    (r, status)
}

async fn post(
    client: &reqwest::Client,
    row: &OutboxRow,
    auth: &str,
    policy: &Policy,
    last_status: &mut Option<u16>,
) -> Result<(), String> {
    let mut url = row.url.clone();
    for _hop in 0..5 {
        // Checked at every hop: the webhook may have been set under a looser policy, and a
        // redirect must not lead inside the network.
        policy
            .check_url(&url)
            .map_err(|e| format!("callback refused: {e}"))?;
        let resp = client
            .post(&url)
            .header("content-type", "application/json")
            .header("authorization", auth)
            .header("client-request-id", uuid::Uuid::new_v4().to_string())
            .header("scenario-id", &row.call_id)
            .header(SEQUENCE_HEADER, row.seq)
            .body(row.body.clone())
            .send()
            .await
            .map_err(|e| format!("POST {url}: {}", error_chain(&e)))?;
        let status = resp.status();
        *last_status = Some(status.as_u16());
        if status.is_success() {
            return Ok(());
        }
        if row.incoming && matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
            let Some(loc) = resp.headers().get("location").and_then(|v| v.to_str().ok()) else {
                return Err(format!("POST {url}: {status} without Location"));
            };
            url = reqwest::Url::parse(&url)
                .and_then(|base| base.join(loc))
                .map_err(|e| format!("bad Location {loc}: {e}"))?
                .to_string();
            continue;
        }
        return Err(format!("POST {url}: HTTP {status}"));
    }
    Err(format!("POST {}: too many redirects", row.url))
}
