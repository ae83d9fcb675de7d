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

/// Simulated users' ports kept for `heard` after their legs end (the most recent ones).
const KEPT_PORTS: usize = 500;

type KeptPorts = (HashMap<String, Arc<Mutex<SimPort>>>, VecDeque<String>);

#[derive(Default)]
pub struct Registry {
    pub logs: Mutex<HashMap<String, LegLog>>,
    ports: Mutex<KeptPorts>,
}

impl Registry {
    pub fn log(&self, leg: &str, user: Option<&str>, event: impl Into<String>) {
        let mut logs = self.logs.lock().expect("registry");
        if logs.len() > 10_000 {
            // Bounded: drop finished legs first.
            logs.retain(|_, l| l.state != "ended");
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

    pub fn keep_port(&self, leg: &str, port: Arc<Mutex<SimPort>>) {
        let mut p = self.ports.lock().expect("registry");
        if p.0.insert(leg.to_string(), port).is_none() {
            p.1.push_back(leg.to_string());
        }
        while p.1.len() > KEPT_PORTS {
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
