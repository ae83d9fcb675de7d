//! Signed-in browser tabs, by user: where a call to the user rings. Each tab holds an event
//! stream (`GET /webrtc/events`); a leg rung towards a user is offered to every tab until one
//! answers or declines, or the caller gives up.

use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// Where a forked call was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Browser,
    Phone,
}

/// One open tab: its id and where its events go.
type Tab = (u64, UnboundedSender<Value>);

#[derive(Default)]
pub struct Tabs {
    by_user: Mutex<HashMap<String, Vec<Tab>>>,
    /// Legs ringing in browsers: leg id → user id.
    ringing: Mutex<HashMap<String, String>>,
    /// Legs rung on a user's tabs and SIP phones at once, and which side took the call.
    forks: Mutex<HashMap<String, Option<Side>>>,
    next: AtomicU64,
}

impl Tabs {
    /// A tab opened its event stream.
    pub fn open(&self, user: &str) -> (u64, UnboundedReceiver<Value>) {
        let (tx, rx) = unbounded_channel();
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut all = self.by_user.lock().expect("tabs");
        // Tabs closed since are let go of here too, not only when the user is next called.
        all.retain(|_, tabs| {
            tabs.retain(|(_, tx)| !tx.is_closed());
            !tabs.is_empty()
        });
        all.entry(user.to_ascii_lowercase())
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

/// Forks: a call to a user who is signed in and has SIP phones rings both; the first side to
/// answer takes it, and the other stops ringing without failing the call.
impl Tabs {
    /// The leg rings the user's tabs and phones together.
    pub fn fork(&self, leg: &str) {
        self.forks
            .lock()
            .expect("tabs")
            .insert(leg.to_string(), None);
    }

    /// `side` answered: whether it takes the call (always, for a leg that is not forked).
    pub fn claim(&self, leg: &str, side: Side) -> bool {
        match self.forks.lock().expect("tabs").get_mut(leg) {
            None => true,
            Some(w @ None) => {
                *w = Some(side);
                true
            }
            Some(Some(s)) => *s == side,
        }
    }

    /// For a forked leg, who took it so far (`Some(None)`: nobody yet); `None` if not forked.
    pub fn fork_of(&self, leg: &str) -> Option<Option<Side>> {
        self.forks.lock().expect("tabs").get(leg).copied()
    }

    /// Whether the leg still rings in a browser.
    pub fn is_ringing(&self, leg: &str) -> bool {
        self.ringing.lock().expect("tabs").contains_key(leg)
    }

    /// The leg ended: its fork is forgotten; who had taken it.
    pub fn unfork(&self, leg: &str) -> Option<Side> {
        self.forks.lock().expect("tabs").remove(leg).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_side_to_answer_a_fork_takes_it() {
        let t = Tabs::default();
        assert!(t.claim("plain", Side::Phone), "a leg that is not forked");
        t.fork("l1");
        assert_eq!(t.fork_of("l1"), Some(None));
        assert!(t.claim("l1", Side::Browser));
        assert!(!t.claim("l1", Side::Phone), "the phone answered too late");
        assert!(t.claim("l1", Side::Browser));
        assert_eq!(t.unfork("l1"), Some(Side::Browser));
        assert_eq!(t.fork_of("l1"), None);
    }

    #[test]
    fn closed_tabs_are_let_go_of_when_another_opens() {
        let t = Tabs::default();
        let (_, ann) = t.open("Ann");
        assert!(t.signed_in("ann"));
        drop(ann); // the tab closed; nobody has called Ann since
        let (_, _bob) = t.open("bob");
        assert!(!t.by_user.lock().unwrap().contains_key("ann"));
        assert!(!t.signed_in("ann"));
        assert!(t.signed_in("bob"));
    }
}
