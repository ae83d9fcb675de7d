//! What the console shows: each recent call's notifications with every delivery attempt
//! (the bot's status code, the error, how long it took), the calls' latest state, and a
//! live feed of changes for open consoles (`GET /admin/events`).
//!
//! The journal is memory only and bounded: the last [`KEEP_CALLS`] calls, at most
//! [`KEEP_NOTES`] notifications each. Durable state is the store's; the journal is the
//! operator's window on it. Events are published only while a console listens, except the
//! notification history, which is always kept so a console opened later shows it.

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use store::OutboxRow;
use tokio::sync::broadcast;

/// Calls whose history is kept.
pub const KEEP_CALLS: usize = 500;
/// Notifications kept per call (the first ones and the latest are what matter; the oldest
/// beyond this are dropped).
pub const KEEP_NOTES: usize = 200;
/// Events an open console may fall behind before it is told to start over.
const LIVE_BACKLOG: usize = 4096;

/// One attempt to deliver a notification.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub at_ms: u64,
    pub duration_ms: u64,
    /// The bot's HTTP status, when it answered.
    pub status: Option<u16>,
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Delivery {
    Pending,
    Delivered,
    Retrying,
    Dead,
}

/// A notification as the console shows it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Note {
    pub seq: i64,
    pub call_id: String,
    pub app_id: String,
    pub url: String,
    pub queued_ms: u64,
    pub state: Delivery,
    pub attempts: Vec<Attempt>,
    /// The JSON body exactly as POSTed: shared, not copied, and written out as JSON (not as
    /// a string) only when a console reads it.
    #[serde(serialize_with = "raw_json")]
    pub body: Arc<str>,
}

fn raw_json<S: serde::Serializer>(body: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    match serde_json::from_str::<&RawValue>(body) {
        Ok(raw) => raw.serialize(s),
        Err(_) => s.serialize_unit(),
    }
}

/// A call's latest state, as far as the journal has seen it.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub id: String,
    pub app_id: String,
    pub tenant_id: String,
    pub state: String,
    pub direction: String,
    pub first_ms: u64,
    pub last_ms: u64,
    /// Gone from the engine (ended and deleted).
    pub gone: bool,
}

#[derive(Default)]
struct CallLog {
    summary: Summary,
    notes: VecDeque<Note>,
}

#[derive(Default)]
struct Inner {
    calls: HashMap<String, CallLog>,
    /// Call ids, oldest first seen at the front.
    order: VecDeque<String>,
    /// Notifications that died but whose dead letter is not committed yet: seq → call.
    dying: HashMap<i64, String>,
}

impl Inner {
    fn log(&mut self, call_id: &str, now: u64) -> &mut CallLog {
        if !self.calls.contains_key(call_id) {
            if self.order.len() >= KEEP_CALLS
                && let Some(old) = self.order.pop_front()
            {
                self.calls.remove(&old);
            }
            self.order.push_back(call_id.to_string());
            let mut log = CallLog::default();
            log.summary.id = call_id.to_string();
            log.summary.first_ms = now;
            self.calls.insert(call_id.to_string(), log);
        }
        self.calls.get_mut(call_id).expect("just inserted")
    }
}

pub struct Journal {
    inner: Mutex<Inner>,
    live: broadcast::Sender<Arc<str>>,
}

impl Default for Journal {
    fn default() -> Self {
        Journal {
            inner: Mutex::default(),
            live: broadcast::channel(LIVE_BACKLOG).0,
        }
    }
}

/// What a console needs to draw itself before the live events.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct History {
    pub calls: Vec<Summary>,
    pub notifications: Vec<Note>,
}

impl Journal {
    /// Is a console listening? Work done only for consoles is skipped otherwise.
    pub fn watched(&self) -> bool {
        self.live.receiver_count() > 0
    }

    /// Listen to the live events (JSON objects with a `type`).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.live.subscribe()
    }

    /// Tell every open console something (dropped when none listens).
    pub fn publish(&self, event: &Value) {
        if self.watched() {
            let _ = self.live.send(Arc::from(event.to_string()));
        }
    }

    fn publish_note(&self, n: &Note) {
        if self.watched() {
            let mut v = serde_json::to_value(n).unwrap_or_default();
            v["type"] = "notification".into();
            let _ = self.live.send(Arc::from(v.to_string()));
        }
    }

    /// The notifier took a row to deliver (new, after a restart, or a redelivered dead letter).
    pub fn queued(&self, row: &OutboxRow, now: u64) {
        let watched = self.watched();
        let mut inner = self.inner.lock().expect("journal");
        let log = inner.log(&row.call_id, now);
        if log.summary.app_id.is_empty() {
            log.summary.app_id = row.app_id.clone();
            log.summary.tenant_id = row.tenant_id.clone();
        }
        let note = match log.notes.iter_mut().find(|n| n.seq == row.seq) {
            Some(n) => {
                n.state = Delivery::Pending;
                watched.then(|| n.clone())
            }
            None => {
                let n = Note {
                    seq: row.seq,
                    call_id: row.call_id.clone(),
                    app_id: row.app_id.clone(),
                    url: row.url.clone(),
                    queued_ms: now,
                    state: Delivery::Pending,
                    attempts: vec![],
                    body: Arc::from(row.body.as_str()),
                };
                let told = watched.then(|| n.clone());
                let pos = log.notes.partition_point(|m| m.seq < n.seq);
                log.notes.insert(pos, n);
                if log.notes.len() > KEEP_NOTES {
                    log.notes.pop_front();
                }
                told
            }
        };
        drop(inner);
        if let Some(n) = note {
            self.publish_note(&n);
        }
    }

    /// One delivery attempt ended; `state` is what became of the notification. A death is
    /// told only once its dead letter is committed ([`Journal::dead_letter_committed`]), so a
    /// console never offers to redeliver a letter the store does not hold yet.
    pub fn attempted(&self, call_id: &str, seq: i64, attempt: Attempt, state: Delivery) {
        let mut inner = self.inner.lock().expect("journal");
        let Some(n) = inner
            .calls
            .get_mut(call_id)
            .and_then(|l| l.notes.iter_mut().find(|n| n.seq == seq))
        else {
            return;
        };
        n.attempts.push(attempt);
        n.state = state;
        if state == Delivery::Dead {
            inner.dying.insert(seq, call_id.to_string());
            return;
        }
        if self.watched() {
            let note = n.clone();
            drop(inner);
            self.publish_note(&note);
        }
    }

    /// The dead letter `seq` is in the store: consoles may now see it dead.
    pub fn dead_letter_committed(&self, seq: i64) {
        let mut inner = self.inner.lock().expect("journal");
        let Some(call) = inner.dying.remove(&seq) else {
            return;
        };
        let note = inner
            .calls
            .get(&call)
            .and_then(|l| l.notes.iter().find(|n| n.seq == seq))
            .cloned();
        drop(inner);
        if let Some(n) = note {
            self.publish_note(&n);
        }
    }

    /// A call changed: `stored` is the call as committed (None once it is gone). `view` is
    /// what a console shows of it, rendered only while one listens.
    pub fn call_changed(&self, id: &str, stored: Option<&Value>, view: Option<Value>, now: u64) {
        let mut inner = self.inner.lock().expect("journal");
        let s = &mut inner.log(id, now).summary;
        s.last_ms = now;
        match stored {
            Some(v) => {
                let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                s.app_id = text("app_id");
                s.tenant_id = text("tenant_id");
                s.state = text("state");
                s.direction = text("direction");
            }
            None => {
                // Removed from the engine: it ended (possibly within this very batch).
                s.gone = true;
                s.state = "terminated".into();
            }
        }
        let summary = s.clone();
        drop(inner);
        if self.watched() {
            self.publish(&serde_json::json!({"type": "call", "summary": summary, "view": view}));
        }
    }

    /// A call's look changed without the call itself (its conference's roster did).
    pub fn call_view(&self, id: &str, view: Value) {
        let summary = {
            let inner = self.inner.lock().expect("journal");
            inner.calls.get(id).map(|l| l.summary.clone())
        };
        self.publish(&serde_json::json!({"type": "call", "summary": summary, "view": view}));
    }

    /// Everything kept, oldest call first.
    pub fn history(&self) -> History {
        let inner = self.inner.lock().expect("journal");
        let mut h = History {
            calls: vec![],
            notifications: vec![],
        };
        for id in &inner.order {
            let log = &inner.calls[id];
            h.calls.push(log.summary.clone());
            h.notifications.extend(log.notes.iter().cloned());
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(call: &str, seq: i64) -> OutboxRow {
        OutboxRow {
            seq,
            call_id: call.into(),
            tenant_id: "t".into(),
            app_id: "a".into(),
            url: "http://bot/cb".into(),
            body: format!("{{\"n\":{seq}}}"),
            incoming: false,
            attempts: 0,
            next_attempt_ms: 0,
            last_error: None,
        }
    }

    #[test]
    fn a_notification_keeps_its_attempts_and_ends_delivered() {
        let j = Journal::default();
        j.queued(&row("c1", 7), 100);
        let fail = Attempt {
            at_ms: 110,
            duration_ms: 5,
            status: Some(500),
            error: Some("HTTP 500".into()),
        };
        j.attempted("c1", 7, fail, Delivery::Retrying);
        let ok = Attempt {
            at_ms: 300,
            duration_ms: 3,
            status: Some(202),
            error: None,
        };
        j.attempted("c1", 7, ok, Delivery::Delivered);
        let h = j.history();
        assert_eq!(h.calls.len(), 1);
        let n = &h.notifications[0];
        assert_eq!(n.state, Delivery::Delivered);
        assert_eq!(n.attempts.len(), 2);
        assert_eq!(n.attempts[0].status, Some(500));
        assert_eq!(&*n.body, "{\"n\":7}");
    }

    #[test]
    fn a_redelivered_dead_letter_returns_to_pending_in_its_place() {
        let j = Journal::default();
        j.queued(&row("c1", 2), 0);
        j.queued(&row("c1", 5), 0);
        j.queued(&row("c1", 3), 0);
        let seqs: Vec<i64> = j.history().notifications.iter().map(|n| n.seq).collect();
        assert_eq!(seqs, [2, 3, 5]);
        let a = Attempt {
            at_ms: 1,
            duration_ms: 1,
            status: None,
            error: Some("refused".into()),
        };
        let mut rx = j.subscribe();
        j.attempted("c1", 3, a, Delivery::Dead);
        assert!(
            rx.try_recv().is_err(),
            "not told before the dead letter is stored"
        );
        j.dead_letter_committed(3);
        let ev: Value = serde_json::from_str(&rx.try_recv().unwrap()).unwrap();
        assert_eq!(ev["state"], "dead");
        j.queued(&row("c1", 3), 9);
        let h = j.history();
        let n = h.notifications.iter().find(|n| n.seq == 3).unwrap();
        assert_eq!(n.state, Delivery::Pending);
        assert_eq!(n.attempts.len(), 1, "the earlier attempt is kept");
    }

    #[test]
    fn only_the_latest_calls_are_kept() {
        let j = Journal::default();
        for i in 0..KEEP_CALLS + 10 {
            j.queued(&row(&format!("c{i}"), i as i64), 0);
        }
        let h = j.history();
        assert_eq!(h.calls.len(), KEEP_CALLS);
        assert_eq!(h.calls[0].id, "c10");
    }

    #[test]
    fn consoles_hear_changes_only_while_they_listen() {
        let j = Journal::default();
        j.publish(&serde_json::json!({"type": "x"}));
        let mut rx = j.subscribe();
        j.queued(&row("c1", 1), 0);
        let ev: Value = serde_json::from_str(&rx.try_recv().unwrap()).unwrap();
        assert_eq!(ev["type"], "notification");
        assert_eq!(ev["seq"], 1);
        assert_eq!(ev["body"]["n"], 1);
        assert!(
            rx.try_recv().is_err(),
            "the event before subscribing is not replayed"
        );
    }
}
