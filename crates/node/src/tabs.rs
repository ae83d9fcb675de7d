//! Signed-in browser tabs, by user: where a call to the user rings. Each tab holds an event
//! stream (`GET /webrtc/events`); a leg rung towards a user is offered to every tab until one
//! answers or declines, or the caller gives up.

use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// One open tab: its id and where its events go.
type Tab = (u64, UnboundedSender<Value>);

#[derive(Default)]
pub struct Tabs {
    by_user: Mutex<HashMap<String, Vec<Tab>>>,
    /// Legs ringing in browsers: leg id → user id.
    ringing: Mutex<HashMap<String, String>>,
    next: AtomicU64,
}

impl Tabs {
    /// A tab opened its event stream.
    pub fn open(&self, user: &str) -> (u64, UnboundedReceiver<Value>) {
        let (tx, rx) = unbounded_channel();
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.by_user
            .lock()
            .expect("tabs")
            .entry(user.to_ascii_lowercase())
            .or_default()
            .push((id, tx));
        (id, rx)
    }

    /// Tell every open tab of `user`; how many were told.
    pub fn tell(&self, user: &str, msg: &Value) -> usize {
        let mut all = self.by_user.lock().expect("tabs");
        let Some(tabs) = all.get_mut(&user.to_ascii_lowercase()) else {
            return 0;
        };
        tabs.retain(|(_, tx)| tx.send(msg.clone()).is_ok());
        tabs.len()
    }

    /// Whether `user` has a tab open.
    pub fn signed_in(&self, user: &str) -> bool {
        self.by_user
            .lock()
            .expect("tabs")
            .get(&user.to_ascii_lowercase())
            .is_some_and(|t| t.iter().any(|(_, tx)| !tx.is_closed()))
    }

    /// A leg now rings `user`'s tabs.
    pub fn ring(&self, leg: &str, user: &str) {
        self.ringing
            .lock()
            .expect("tabs")
            .insert(leg.to_string(), user.to_ascii_lowercase());
    }

    /// The leg stops ringing (answered, declined, cancelled): whose it was, if it rang and
    /// belonged to `user` (any user when `None`).
    pub fn stop_ringing(&self, leg: &str, user: Option<&str>) -> Option<String> {
        let mut r = self.ringing.lock().expect("tabs");
        match (r.get(leg), user) {
            (Some(owner), Some(u)) if !owner.eq_ignore_ascii_case(u) => None,
            (Some(_), _) => r.remove(leg),
            (None, _) => None,
        }
    }
}
