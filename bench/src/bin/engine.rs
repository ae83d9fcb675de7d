//! Benchmark: what one call lifecycle costs the engine (sans-IO, no HTTP, no store) while
//! N other calls are live — create a call to a user, the user answers, delete it, with the
//! effects drained and the changed objects taken after every input as the driver does.
//! The cost of an input must not grow with the calls that are not part of it.
//!
//!   cargo run --release -p ringside-bench --bin engine -- [lifecycles per step, default 2000]

use engine::{AppCtx, Command, Config, Effect, Engine, LegAction, LegEvent, SeqIds, Version};
use serde_json::json;
use std::time::Instant;

fn bot() -> AppCtx {
    AppCtx {
        tenant_id: "t1".into(),
        app_id: "app1".into(),
        app_name: None,
    }
}

/// Drain what an input produced, as the driver does; the leg the engine asked to ring.
fn settle(e: &mut Engine) -> Option<String> {
    let _ = e.take_dirty();
    e.drain_effects().into_iter().find_map(|eff| match eff {
        Effect::Leg(LegAction::Ring { leg_id, .. }) => Some(leg_id),
        _ => None,
    })
}

/// Create a call to a user and have the user answer: the call id.
fn established(e: &mut Engine, now: u64) -> String {
    let req = serde_json::from_value(json!({
        "callbackUri": "https://bot.example/cb",
        "requestedModalities": ["audio"],
        "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
        "targets": [{"identity": {"user": {"id": "u1"}}}],
    }))
    .expect("request");
    let r = e
        .handle_api(
            now,
            &bot(),
            None,
            Command::CreateCall(Box::new(req)),
            Version::V1,
        )
        .expect("created");
    let leg = settle(e).expect("a leg rings");
    e.handle_leg(now, &leg, LegEvent::Answered);
    settle(e);
    r.body.expect("body")["id"]
        .as_str()
        .expect("id")
        .to_string()
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let cfg = Config {
        max_calls_per_app: usize::MAX,
        max_calls_per_tenant: usize::MAX,
        ..Config::default()
    };
    let mut e = Engine::new(cfg, Box::new(SeqIds(0)));
    let now = 1_700_000_000_000u64;
    println!("| live calls | µs per lifecycle (create, answer, delete) |");
    println!("|---|---|");
    let mut live = 0;
    for target in [0usize, 1_000, 5_000, 20_000] {
        while live < target {
            established(&mut e, now);
            live += 1;
        }
        let t = Instant::now();
        for _ in 0..n {
            let id = established(&mut e, now);
            e.handle_api(now, &bot(), Some(&id), Command::DeleteCall, Version::V1)
                .expect("deleted");
            settle(&mut e);
        }
        let us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        println!("| {live} | {us:.1} |");
    }
}
