//! What simulated users experienced, leg by leg, and the audio ports they heard with: shown
//! by the admin API (`/admin/legs`) and the CLI (`ringside legs`, `ringside heard`).

use crate::clock::now_ms;
use media::port::SimPort;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// What a simulated user experienced on one leg: shown by the admin API and the CLI.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LegLog {
    pub leg_id: String,
    pub user_id: Option<String>,
    pub state: String,
    pub events: Vec<LogEntry>,
    /// DTMF keys the user heard (detected in its audio).
    pub tones_heard: String,
    /// Milliseconds of audio it has been in the call for.
    pub media_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    pub at_ms: u64,
    pub event: String,
}

/// Simulated users' ports kept for `heard` (the most recent ones): at most this many, holding
/// at most [`KEPT_AUDIO_SAMPLES`] of heard audio between them (a user keeps up to an hour).
const KEPT_PORTS: usize = 500;
const KEPT_AUDIO_SAMPLES: usize = 32 * 1024 * 1024; // 64 MB of 16-bit samples

/// Legs whose logs are kept: the most recent ones; a leg still live is never dropped.
const KEPT_LOGS: usize = 500;

type KeptPorts = (HashMap<String, Arc<Mutex<SimPort>>>, VecDeque<String>);

/// Leg logs by id, and the ids in the order their legs began.
type Logs = (HashMap<String, LegLog>, VecDeque<String>);

#[derive(Default)]
pub struct Registry {
    logs: Mutex<Logs>,
    ports: Mutex<KeptPorts>,
}

impl Registry {
    pub fn log(&self, leg: &str, user: Option<&str>, event: impl Into<String>) {
        let mut guard = self.logs.lock().expect("registry");
        let (logs, order) = &mut *guard;
        if !logs.contains_key(leg) {
            order.push_back(leg.to_string());
            // Bounded: the oldest finished legs go first (a live one goes to the back).
            for _ in 0..order.len() {
                if order.len() <= KEPT_LOGS {
                    break;
                }
                let Some(old) = order.pop_front() else { break };
                if logs.get(&old).is_some_and(|l| l.state != "ended") {
                    order.push_back(old);
                } else {
                    logs.remove(&old);
                }
            }
        }
        let l = logs.entry(leg.to_string()).or_insert_with(|| LegLog {
            leg_id: leg.to_string(),
            user_id: user.map(str::to_string),
            state: "ringing".into(),
            ..Default::default()
        });
        let event = event.into();
        match event.as_str() {
            "answered" | "connected" => l.state = "connected".into(),
            e if e.starts_with("ended")
                || e.starts_with("cancelled")
                || e.starts_with("rejected")
                || e.starts_with("hung up")
                || e.starts_with("failed") =>
            {
                l.state = "ended".into()
            }
            _ => {}
        }
        l.events.push(LogEntry {
            at_ms: now_ms(),
            event,
        });
    }

    /// A leg is gone from ringside, however it went (the far end hung up, its media was lost,
    /// the engine ended it): its log, if it has one and does not say so yet, says it ended, so
    /// it can make way for newer ones. A leg without a log gets none.
    pub fn ended(&self, leg: &str) {
        let mut guard = self.logs.lock().expect("registry");
        if let Some(l) = guard.0.get_mut(leg)
            && l.state != "ended"
        {
            l.state = "ended".into();
            l.events.push(LogEntry {
                at_ms: now_ms(),
                event: "ended".into(),
            });
        }
    }

    pub fn keep_port(&self, leg: &str, port: Arc<Mutex<SimPort>>) {
        let mut p = self.ports.lock().expect("registry");
        if p.0.insert(leg.to_string(), port).is_none() {
            p.1.push_back(leg.to_string());
        }
        let held = |p: &KeptPorts| -> usize {
            p.0.values()
                .map(|port| port.lock().map(|x| x.heard().len()).unwrap_or(0))
                .sum()
        };
        while p.1.len() > KEPT_PORTS || (p.1.len() > 1 && held(&p) > KEPT_AUDIO_SAMPLES) {
            if let Some(old) = p.1.pop_front() {
                p.0.remove(&old);
            }
        }
    }

    /// A simulated user's audio port, while kept.
    pub fn port(&self, leg: &str) -> Option<Arc<Mutex<SimPort>>> {
        self.ports.lock().expect("registry").0.get(leg).cloned()
    }

    /// What simulated users experienced, with what their ports heard.
    pub fn legs(&self) -> Vec<LegLog> {
        let mut v: Vec<LegLog> = self
            .logs
            .lock()
            .expect("registry")
            .0
            .values()
            .cloned()
            .collect();
        for l in &mut v {
            if let Some(p) = self.port(&l.leg_id) {
                let p = p.lock().expect("port");
                l.tones_heard = p.tones_heard().to_string();
                l.media_ms = p.elapsed_ms();
            }
        }
        v.sort_by_key(|l| l.events.first().map(|e| e.at_ms).unwrap_or(0));
        v
    }
}

#[cfg(test)]
mod bounds {
    use super::*;

    #[test]
    fn finished_legs_are_forgotten_oldest_first_and_live_ones_never() {
        let r = Registry::default();
        r.log("live", Some("u"), "answered");
        for i in 0..KEPT_LOGS + 100 {
            let leg = format!("leg-{i}");
            r.log(&leg, Some("u"), "answered");
            r.log(&leg, Some("u"), "hung up");
        }
        let legs = r.legs();
        assert_eq!(legs.len(), KEPT_LOGS);
        assert!(
            legs.iter().any(|l| l.leg_id == "live"),
            "a live leg is kept"
        );
        assert!(
            !legs.iter().any(|l| l.leg_id == "leg-0"),
            "the oldest finished leg went"
        );
        assert!(
            legs.iter()
                .any(|l| l.leg_id == format!("leg-{}", KEPT_LOGS + 99))
        );
    }

    #[test]
    fn a_leg_that_went_without_a_word_is_ended_by_forgetting_and_makes_way() {
        let r = Registry::default();
        // A phone rung by the bot answers, then hangs up: its endpoint logs no "ended".
        r.log("phone", None, "dialling sip:bob@example.org");
        r.log("phone", None, "answered");
        r.ended("phone");
        r.ended("phone");
        let phone = r.legs().into_iter().find(|l| l.leg_id == "phone").unwrap();
        assert_eq!(phone.state, "ended");
        assert_eq!(
            phone.events.iter().filter(|e| e.event == "ended").count(),
            1,
            "said once"
        );
        for i in 0..KEPT_LOGS {
            r.log(&format!("leg-{i}"), None, "ringing");
        }
        assert!(
            !r.legs().iter().any(|l| l.leg_id == "phone"),
            "the ended leg made way for a live one"
        );
        // A leg that never had a log gets none for ending.
        r.ended("app-leg");
        assert!(!r.legs().iter().any(|l| l.leg_id == "app-leg"));
    }
}
