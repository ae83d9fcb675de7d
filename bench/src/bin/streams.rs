//! Media streams benchmark (issue #14): how many app-hosted media streams ringside keeps in
//! real time on this machine, one-way (ringside → bot) and both ways (the bot sends back as
//! much as it hears, which ringside plays into the call).
//!
//! ringside runs as its own process (`target/release/ringside`, or `RINGSIDE_BIN`). Each
//! stream is a call from the bot to a simulated user who talks without pause (a looped
//! recording); the call's `appHostedMediaConfig` asks for a mixed stream, and the bench — the
//! bots, one tokio task per stream on one thread — connects in to each call's
//! `websocketUrl`. Calls are set up `rate` a second; once all are up, `hold` seconds are
//! measured: frames each stream received per second (real time is 50), frames ringside
//! dropped for slow readers, late media ticks, CPU of each side, and memory per stream.
//!
//!   cargo build --release -p server --bin ringside
//!   cargo run --release -p ringside-bench --bin streams -- [streams, default 500]
//!     [one-way | both-ways, default one-way] [rate, default 50] [hold s, default 20]

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use ringside_bench::{Ringside, cpu_s, proc_status};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const TENANT: &str = "bench-tenant";
const APP: &str = "bench-app";
const ADMIN: &str = "bench-admin";
const USERS: usize = 10;

#[derive(Default)]
struct Tally {
    connected: AtomicU64,
    frames: AtomicU64,
    sent: AtomicU64,
    failures: AtomicU64,
    stop: AtomicBool,
}

fn config(listen: &str, folder: &str) -> String {
    let users: String = (0..USERS)
        .map(|u| format!("[[users]]\nid = \"talker-{u}\"\ntenant = \"{TENANT}\"\n"))
        .collect();
    format!(
        r#"
[server]
listen = "{listen}"
prompt_folder = "{folder}"
max_calls_per_app = 100000
max_calls_per_tenant = 100000
[admin]
token = "{ADMIN}"
[[tenants]]
id = "{TENANT}"
[[apps]]
id = "{APP}"
tenant = "{TENANT}"
secret = "bench-secret"
{users}"#
    )
}

/// Two seconds of a voice-like tone, as a WAV the simulated users loop.
fn talk_wav(path: &std::path::Path) {
    let mut w = hound::WavWriter::create(
        path,
        hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        },
    )
    .unwrap();
    for i in 0..32_000 {
        let t = i as f64 / 16_000.0;
        let env = 0.6 + 0.4 * (2.0 * std::f64::consts::PI * 3.0 * t).sin();
        let v = (2.0 * std::f64::consts::PI * 180.0 * t).sin() * 6000.0 * env;
        w.write_sample(v as i16).unwrap();
    }
    w.finalize().unwrap();
}

struct Stream {
    http: reqwest::Client,
    base: String,
    token: String,
    talk: String,
    user: usize,
    both: bool,
    reply: Arc<String>,
    tally: Arc<Tally>,
}

impl Stream {
    async fn run(self) {
        if let Err(e) = self.go().await {
            self.tally.failures.fetch_add(1, Ordering::Relaxed);
            eprintln!("stream failed: {e}");
        }
    }

    async fn go(&self) -> Result<(), String> {
        let body = json!({
            "@odata.type": "#microsoft.graph.call", "callbackUri": "https://127.0.0.1:9/unused",
            "targets": [{"identity": {"user": {"id": format!("talker-{}", self.user)}},
                "ringside": {"speak": [{"uri": self.talk, "loop": true}]}}],
            "requestedModalities": ["audio"],
            "mediaConfig": {"@odata.type": "#microsoft.graph.appHostedMediaConfig", "blob": "{}",
                "mediaStreaming": {"bidirectional": self.both}},
        });
        let v: Value = self
            .http
            .post(format!("{}/beta/communications/calls", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let id = v["id"].as_str().ok_or(format!("no call: {v}"))?.to_string();
        let url = loop {
            let c: Value = self
                .http
                .get(format!("{}/beta/communications/calls/{id}", self.base))
                .bearer_auth(&self.token)
                .send()
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            if let Some(u) = c["mediaStreaming"]["websocketUrl"].as_str() {
                break u.to_string();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .map_err(|e| e.to_string())?;
        self.tally.connected.fetch_add(1, Ordering::Relaxed);
        let (mut tx, mut rx) = ws.split();
        while let Some(Ok(m)) = rx.next().await {
            if self.tally.stop.load(Ordering::Relaxed) {
                break;
            }
            let Message::Text(t) = m else { continue };
            if t.as_str().contains("\"AudioData\"") {
                self.tally.frames.fetch_add(1, Ordering::Relaxed);
                if self.both {
                    tx.send(Message::text(self.reply.as_str()))
                        .await
                        .map_err(|e| e.to_string())?;
                    self.tally.sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let _ = self
            .http
            .delete(format!("{}/beta/communications/calls/{id}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await;
        Ok(())
    }
}

async fn media(http: &reqwest::Client, base: &str) -> Value {
    http.get(format!("{base}/admin/media"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(500);
    let both = args.get(1).is_some_and(|a| a == "both-ways");
    let rate: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(50);
    let hold: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(20);
    let folder = std::env::temp_dir().join(format!("ringside-bench-talk-{}", std::process::id()));
    std::fs::create_dir_all(&folder).unwrap();
    let talk = folder.join("talk.wav");
    talk_wav(&talk);
    let rs = Ringside::start("streams", |l| config(l, folder.to_str().unwrap())).await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let token = rs.app_token(&http, TENANT, APP, "bench-secret").await;
    let pcm = [0u8; 640];
    let reply = Arc::new(
        json!({"kind": "AudioData", "audioData": {"data": base64::engine::general_purpose::STANDARD.encode(pcm)}})
            .to_string(),
    );
    let tally: Arc<Tally> = Default::default();
    let rss0 = proc_status(rs.pid, "VmRSS:");
    let ramp = Instant::now();
    let mut tasks = vec![];
    for i in 0..n {
        let s = Stream {
            http: http.clone(),
            base: rs.base.clone(),
            token: token.clone(),
            talk: format!("file://{}", talk.display()),
            user: i % USERS,
            both,
            reply: reply.clone(),
            tally: tally.clone(),
        };
        tasks.push(tokio::spawn(s.run()));
        let due = ramp + Duration::from_secs_f64((i + 1) as f64 / rate as f64);
        tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
    }
    let settle = Instant::now();
    while (tally.connected.load(Ordering::Relaxed) + tally.failures.load(Ordering::Relaxed))
        < n as u64
        && settle.elapsed() < Duration::from_secs(20)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ramp_s = ramp.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m0 = media(&http, &rs.base).await;
    let (f0, s0) = (
        tally.frames.load(Ordering::Relaxed),
        tally.sent.load(Ordering::Relaxed),
    );
    let (srv0, cli0) = (cpu_s(rs.pid), cpu_s(std::process::id()));
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(hold)).await;
    let secs = t0.elapsed().as_secs_f64();
    let m1 = media(&http, &rs.base).await;
    let (srv1, cli1) = (cpu_s(rs.pid), cpu_s(std::process::id()));
    let frames = tally.frames.load(Ordering::Relaxed) - f0;
    let sent = tally.sent.load(Ordering::Relaxed) - s0;
    let rss1 = proc_status(rs.pid, "VmRSS:");
    tally.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    rs.stop().await;
    let _ = std::fs::remove_dir_all(&folder);
    let d = |k: &str| m1[k].as_u64().unwrap_or(0) - m0[k].as_u64().unwrap_or(0);
    let ds =
        |k: &str| m1["streams"][k].as_u64().unwrap_or(0) - m0["streams"][k].as_u64().unwrap_or(0);
    let up = tally.connected.load(Ordering::Relaxed);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mode = if both { "both ways" } else { "one-way" };
    println!("| media streams, {mode}, {rate} new/s, {hold} s held ({cores} cores) | |");
    println!("|---|---|");
    println!(
        "| streams up | {up} of {n} ({} failed), ramp {ramp_s:.1} s |",
        tally.failures.load(Ordering::Relaxed)
    );
    println!(
        "| frames received per stream per second (real time: 50) | {:.1} |",
        frames as f64 / secs / up.max(1) as f64
    );
    if both {
        println!(
            "| frames sent back per stream per second / taken by ringside | {:.1} / {:.1} |",
            sent as f64 / secs / up.max(1) as f64,
            ds("framesReceived") as f64 / secs / up.max(1) as f64
        );
    }
    println!(
        "| frames dropped by ringside (slow reader) | {} of {} |",
        ds("framesDropped"),
        ds("framesSent") + ds("framesDropped")
    );
    println!(
        "| media ticks late ≥ 5 ms | {:.3} % of {} |",
        100.0 * d("ticksLate5ms") as f64 / d("ticks").max(1) as f64,
        d("ticks")
    );
    println!(
        "| CPU, ringside / bots | {:.0} % / {:.0} % of one core |",
        100.0 * (srv1 - srv0) / secs,
        100.0 * (cli1 - cli0) / secs
    );
    println!(
        "| ringside resident memory: before → with streams (per stream) | {:.0} → {:.0} MB ({:.0} KB) |",
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0,
        rss1.saturating_sub(rss0) as f64 / up.max(1) as f64
    );
}
