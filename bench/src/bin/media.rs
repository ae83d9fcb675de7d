//! Media benchmark (issue #3): how many concurrent two-party rooms (a bot playing a prompt to
//! a simulated user, who answers with speech of its own) and how large a single conference
//! the media runtime keeps in real time, and the memory each leg costs.
//!
//! Real time means fewer than 0.1 % of 20 ms ticks starting more than 5 ms late. The runtime
//! is the one `ringside serve` runs (one media thread per core, absolute deadlines); rooms,
//! ports and commands are the ones the engine drives. No network is in the way.
//!
//!   cargo run --release -p ringside-bench --bin media -- [seconds per step]

use media::port::SimPort;
use media::runtime::{Config, Media};
use media::{Cmd, Endpoint, MemberSpec, Prompt, RoomSpec};
use ringside_bench::rss_kb;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Speech-like test audio: a 300 Hz tone with a slow syllable envelope, `ms` long.
fn speech(ms: u64) -> media::Audio {
    let n = media::samples(ms);
    (0..n)
        .map(|i| {
            let t = i as f32 / media::RATE as f32;
            let env = (2.0 * std::f32::consts::PI * 3.0 * t).sin().abs();
            (6000.0 * env * (2.0 * std::f32::consts::PI * 300.0 * t).sin()) as i16
        })
        .collect::<Vec<_>>()
        .into()
}

fn member(id: &str, endpoint: Endpoint) -> MemberSpec {
    MemberSpec {
        id: id.into(),
        endpoint,
        muted: false,
        held: false,
        hold_music: false,
        in_default_group: true,
        listens_for_tones: false,
        stream: None,
    }
}

struct Step {
    label: String,
    legs: usize,
    ticks: u64,
    late: u64,
    max_late_ms: f64,
    cpu: f64,
    /// Resident memory added per leg (None where freed memory is being reused).
    kb_per_leg: Option<f64>,
}

fn measure(media: &Media, secs: u64, legs: usize, base_kb: u64, label: String) -> Step {
    std::thread::sleep(Duration::from_secs(2)); // settle: commands applied, caches warm
    media.stats.reset_timing();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let s = media.stats.snapshot();
    let wall_us = start.elapsed().as_micros() as f64 * media.threads() as f64;
    Step {
        label,
        legs,
        ticks: s.ticks,
        late: s.late_5ms,
        max_late_ms: s.max_late_us as f64 / 1000.0,
        cpu: s.busy_us as f64 / wall_us * 100.0,
        kb_per_leg: (base_kb > 0)
            .then(|| rss_kb().saturating_sub(base_kb) as f64 / legs.max(1) as f64),
    }
}

fn print(steps: &[Step]) {
    println!(
        "| {:<34} | {:>6} | {:>7} | {:>10} | {:>12} | {:>9} | {:>9} |",
        "load", "legs", "ticks", "late >5ms", "max late ms", "media CPU", "KB/leg"
    );
    println!(
        "|{:-<36}|{:-<8}|{:-<9}|{:-<12}|{:-<14}|{:-<11}|{:-<11}|",
        "", "", "", "", "", "", ""
    );
    for s in steps {
        println!(
            "| {:<34} | {:>6} | {:>7} | {:>9.3}% | {:>12.1} | {:>8.0}% | {:>9} |",
            s.label,
            s.legs,
            s.ticks,
            s.late as f64 * 100.0 / s.ticks.max(1) as f64,
            s.max_late_ms,
            s.cpu,
            s.kb_per_leg
                .map(|k| format!("{k:.1}"))
                .unwrap_or_else(|| "—".into())
        );
    }
}

fn main() {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let events = Arc::new(AtomicU64::new(0));
    let counted = events.clone();
    let dir = std::env::temp_dir().join(format!("ringside-media-bench-{}", std::process::id()));
    let media = Media::start(
        Config {
            recordings_dir: dir.clone(),
            ..Default::default()
        },
        Arc::new(move |_| {
            counted.fetch_add(1, Ordering::Relaxed);
        }),
    );
    println!(
        "media threads: {} (one per core); {} s per step\n",
        media.threads(),
        secs
    );
    let prompt = speech(5_000);
    let voice = speech(3_700);
    let base_kb = rss_kb();

    // 1. Two-party rooms: the bot loops a prompt; the user talks back, looped, and listens.
    let mut steps = vec![];
    let mut rooms = 0usize;
    for target in [1000usize, 2000, 3000, 4000, 5000, 6000, 7000, 8000] {
        while rooms < target {
            let conf = format!("room-{rooms}");
            let leg = format!("leg-{rooms}");
            let mut user = SimPort::new(0);
            user.say(rooms as u64 % 1000, voice.clone(), true);
            media.ports.insert(&leg, Arc::new(Mutex::new(user)));
            media.send(Cmd::Room(RoomSpec {
                conf_id: conf.clone(),
                members: vec![
                    member("bot", Endpoint::Bot(format!("call-{rooms}"))),
                    member("user", Endpoint::Leg(leg)),
                ],
                routes: vec![],
            }));
            media.send(Cmd::Run {
                conf_id: conf,
                call_id: format!("call-{rooms}"),
                op_id: "op".into(),
                prompts: vec![Prompt {
                    audio: prompt.clone(),
                    times: 1,
                }],
                loop_forever: true,
                record: None,
            });
            rooms += 1;
        }
        let s = measure(
            &media,
            secs,
            rooms * 2,
            base_kb,
            format!("{rooms} two-party rooms"),
        );
        let ok = s.late * 1000 < s.ticks;
        steps.push(s);
        if !ok {
            break;
        }
    }
    print(&steps);
    for i in 0..rooms {
        media.send(Cmd::Room(RoomSpec {
            conf_id: format!("room-{i}"),
            ..Default::default()
        }));
        media.ports.remove(&format!("leg-{i}"));
    }
    std::thread::sleep(Duration::from_secs(2));

    // 2. One conference: a bot playing a prompt, four members talking, everyone listening.
    // (Memory per leg is measured above: this phase reuses what the rooms freed.)
    let base_kb = 0;
    let mut steps = vec![];
    let mut members = vec![member("bot", Endpoint::Bot("conf-call".into()))];
    media.send(Cmd::Run {
        conf_id: "conf".into(),
        call_id: "conf-call".into(),
        op_id: "op".into(),
        prompts: vec![Prompt {
            audio: prompt.clone(),
            times: 1,
        }],
        loop_forever: true,
        record: None,
    });
    for target in [250usize, 500, 1000, 2000, 3000, 5000] {
        while members.len() < target {
            let n = members.len();
            let leg = format!("conf-leg-{n}");
            let mut user = SimPort::new(0);
            if n <= 4 {
                user.say(n as u64 * 300, voice.clone(), true);
            }
            media.ports.insert(&leg, Arc::new(Mutex::new(user)));
            members.push(member(&format!("p{n}"), Endpoint::Leg(leg)));
        }
        media.send(Cmd::Room(RoomSpec {
            conf_id: "conf".into(),
            members: members.clone(),
            routes: vec![],
        }));
        let s = measure(
            &media,
            secs,
            members.len(),
            base_kb,
            format!("one conference of {}", members.len()),
        );
        let ok = s.late * 1000 < s.ticks;
        steps.push(s);
        if !ok {
            break;
        }
    }
    println!();
    print(&steps);
    println!("\nevents from rooms: {}", events.load(Ordering::Relaxed));
    let _ = std::fs::remove_dir_all(dir);
}
