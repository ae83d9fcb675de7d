//! WebRTC load benchmark (issue #13): how many browser legs ringside keeps in real time on
//! this machine, each Opus-decoded, mixed and Opus-encoded, and how long a leg takes to set up.
//!
//! ringside runs as its own process (`target/release/ringside`, or `RINGSIDE_BIN`), so its
//! CPU and memory are its own. The load client is this process: one thread with one str0m
//! session per leg, each a full ICE agent on its own UDP port doing DTLS-SRTP, as a browser
//! does. The legs join meetings of `group` people (each hears the others through the mix)
//! by their `joinWebUrl` over the web phone's HTTP signalling, `rate` new legs a second; the
//! first `talkers` of each meeting (all, by default) speak a pre-encoded Opus tone every 20 ms,
//! the others send Opus-encoded silence, as a muted browser does. Setup is the time from the offer being sent to
//! the first audio packet heard. Once every leg is up, `hold` seconds of steady state are
//! measured: late ticks of ringside's media threads and of its WebRTC shards (a tick is late
//! when it starts 5 ms or more after it was due), packets heard, CPU of each side, and the
//! resident memory ringside gained per leg.
//!
//!   cargo build --release -p server --bin ringside
//!   cargo run --release -p ringside-bench --bin webrtc -- [legs, default 500] [rate, default 20]
//!     [hold seconds, default 20] [group, default 5] [voice | low-delay, default voice]
//!     [talkers per meeting, default: all]; BENCH_REALTIME=false runs ringside's clock threads at
//!     ordinary priority

use ringside_bench::{Ringside, cpu_s, percentile, proc_status, stolen_s};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Frequency, MediaTime};
use str0m::net::{Protocol, Receive};
use str0m::{Event, Input, Output};

const TENANT: &str = "bench-tenant";
const APP: &str = "bench-app";
const USER: &str = "bench-user";
const ADMIN: &str = "bench-admin";

#[derive(Default)]
struct Tally {
    setup_ms: Mutex<Vec<f64>>,
    connected: AtomicUsize,
    hearing: AtomicUsize,
    packets_in: AtomicU64,
    packets_out: AtomicU64,
    /// Sends that started 5 ms or more late on the client (the client was too busy).
    client_late: AtomicU64,
    failures: Mutex<Vec<String>>,
    /// Loudness (RMS) of what the first leg heard, decoded.
    heard_rms: Mutex<Vec<f64>>,
    stop: AtomicBool,
}

/// A second of a 440 Hz tone, Opus-encoded once: every talking leg replays it.
fn tone_packets() -> Vec<Vec<u8>> {
    let mut enc = webrtc::opus::Encoder::new().expect("opus");
    (0..50)
        .map(|n| enc.encode(&webrtc::client::tone(440.0, n)).expect("encode"))
        .collect()
}

/// A second of digital silence, Opus-encoded: what a listening leg's muted microphone sends.
fn silent_packets() -> Vec<Vec<u8>> {
    let mut enc = webrtc::opus::Encoder::new().expect("opus");
    (0..50)
        .map(|_| enc.encode(&[0; media::FRAME]).expect("encode"))
        .collect()
}

struct Leg {
    http: reqwest::Client,
    base: String,
    token: String,
    target: String,
    packets: Arc<Vec<Vec<u8>>>,
    /// The packets are Opus-encoded digital silence.
    silent: bool,
    tally: Arc<Tally>,
    listen: bool,
}

impl Leg {
    async fn run(self) {
        if let Err(e) = self.session().await {
            self.tally.failures.lock().unwrap().push(e);
        }
    }

    async fn session(&self) -> Result<(), String> {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let local = sock.local_addr().map_err(|e| e.to_string())?;
        let (mut rtc, mid, pending, offer) =
            webrtc::client::offering_session(local, &[Codec::Opus])?;
        let began = Instant::now();
        let resp = self
            .http
            .post(format!("{}/webrtc/calls", self.base))
            .bearer_auth(&self.token)
            .json(&json!({"target": self.target, "sdp": offer}))
            .send()
            .await
            .map_err(|e| format!("offer: {e}"))?;
        let status = resp.status();
        let v: Value = resp.json().await.map_err(|e| e.to_string())?;
        if status != 201 {
            return Err(format!("offer answered {status}: {v}"));
        }
        let leg = v["legId"].as_str().unwrap_or_default().to_string();
        let answer = SdpAnswer::from_sdp_string(v["sdp"].as_str().unwrap_or_default())
            .map_err(|e| e.to_string())?;
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| e.to_string())?;
        let mut decoder = self
            .listen
            .then(|| webrtc::opus::Decoder::new().expect("opus"));
        let mut buf = vec![0u8; 2000];
        let mut connected = false;
        let mut heard = false;
        let mut sent = 0u64;
        let mut next_send = Instant::now();
        while !self.tally.stop.load(Ordering::Relaxed) {
            let timeout = loop {
                match rtc.poll_output().map_err(|e| e.to_string())? {
                    Output::Timeout(t) => break t,
                    Output::Transmit(t) => {
                        let _ = sock.send_to(&t.contents, t.destination).await;
                    }
                    Output::Event(Event::Connected) => {
                        connected = true;
                        next_send = Instant::now();
                        self.tally.connected.fetch_add(1, Ordering::Relaxed);
                    }
                    Output::Event(Event::MediaData(d)) => {
                        self.tally.packets_in.fetch_add(1, Ordering::Relaxed);
                        if !heard {
                            heard = true;
                            let ms = began.elapsed().as_secs_f64() * 1000.0;
                            self.tally.setup_ms.lock().unwrap().push(ms);
                            self.tally.hearing.fetch_add(1, Ordering::Relaxed);
                        }
                        if let Some(dec) = decoder.as_mut()
                            && let Ok(pcm) = dec.decode(&d.data)
                        {
                            let e = pcm.iter().map(|&s| (s as f64).powi(2)).sum::<f64>();
                            let rms = (e / pcm.len().max(1) as f64).sqrt();
                            self.tally.heard_rms.lock().unwrap().push(rms);
                        }
                    }
                    Output::Event(_) => {}
                }
            };
            let wake = if connected {
                timeout.min(next_send)
            } else {
                timeout
            };
            tokio::select! {
                r = sock.recv_from(&mut buf) => {
                    let (n, source) = r.map_err(|e| e.to_string())?;
                    let Ok(contents) = buf[..n].try_into() else { continue };
                    let input = Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination: local, contents });
                    rtc.handle_input(input).map_err(|e| e.to_string())?;
                }
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                    let now = Instant::now();
                    if connected && now >= next_send {
                        if now - next_send >= Duration::from_millis(5) {
                            self.tally.client_late.fetch_add(1, Ordering::Relaxed);
                        }
                        let mut w = rtc.writer(mid).ok_or("no audio writer")?;
                        let pt = w
                            .payload_params()
                            .find(|p| p.spec().codec == Codec::Opus)
                            .map(|p| p.pt())
                            .ok_or("Opus was not negotiated")?;
                        // As a browser marks them: a tone at -30 dBov, a muted microphone's
                        // digital silence at -127.
                        w = if self.silent {
                            w.audio_level(-127, false)
                        } else {
                            w.audio_level(-30, true)
                        };
                        let packet = self.packets[sent as usize % self.packets.len()].clone();
                        let t = MediaTime::new(sent * 960, Frequency::FORTY_EIGHT_KHZ);
                        w.write(pt, now, t, packet).map_err(|e| e.to_string())?;
                        sent += 1;
                        self.tally.packets_out.fetch_add(1, Ordering::Relaxed);
                        next_send += Duration::from_millis(20);
                        if next_send < now {
                            next_send = now + Duration::from_millis(20);
                        }
                    }
                    rtc.handle_input(Input::Timeout(now)).map_err(|e| e.to_string())?;
                }
            }
        }
        let _ = self
            .http
            .delete(format!("{}/webrtc/calls/{leg}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await;
        Ok(())
    }
}

fn config(listen: &str, group: usize, mode: &str) -> String {
    // BENCH_REALTIME=false: ringside's clock threads at ordinary priority.
    let realtime = std::env::var("BENCH_REALTIME").unwrap_or_else(|_| "true".into()) != "false";
    let users: String = (0..group)
        .map(|u| format!("[[users]]\nid = \"{USER}-{u}\"\ntenant = \"{TENANT}\"\n"))
        .collect();
    format!(
        r#"
[server]
listen = "{listen}"
media_realtime = {realtime}
max_calls_per_app = 100000
max_calls_per_tenant = 100000
[admin]
token = "{ADMIN}"
[webrtc]
udp = "127.0.0.1:0"
opus_mode = "{mode}"
[[tenants]]
id = "{TENANT}"
[[apps]]
id = "{APP}"
tenant = "{TENANT}"
secret = "bench-secret"
{users}"#
    )
}

/// `/admin/media`: (media ticks, late, WebRTC ticks, late, WebRTC max late ms, frames
/// encoded by legs' own encoders, common mix encodes, frames sent from common mixes).
async fn media(http: &reqwest::Client, base: &str) -> (u64, u64, u64, u64, f64, u64, u64, u64) {
    let v: Value = http
        .get(format!("{base}/admin/media"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    (
        n(&v["ticks"]),
        n(&v["ticksLate5ms"]),
        n(&v["webrtc"]["ticks"]),
        n(&v["webrtc"]["ticksLate5ms"]),
        v["webrtc"]["maxLateMs"].as_f64().unwrap_or(0.0),
        n(&v["webrtc"]["framesEncoded"]),
        n(&v["webrtc"]["commonMixEncodes"]),
        n(&v["webrtc"]["commonMixFrames"]),
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let (legs, rate, hold, group) = (
        arg(0, 500) as usize,
        arg(1, 20),
        arg(2, 20),
        arg(3, 5) as usize,
    );
    let mode = args.get(4).cloned().unwrap_or_else(|| "voice".into());
    let talkers = (arg(5, group as u64) as usize).clamp(1, group);
    let rs = Ringside::start("webrtc", |listen| config(listen, group, &mode)).await;
    let (pid, base) = (rs.pid, rs.base.clone());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let app_token = rs.app_token(&http, TENANT, APP, "bench-secret").await;
    let mut links = vec![];
    for m in 0..legs.div_ceil(group) {
        let v: Value = http
            .post(format!("{base}/beta/communications/onlineMeetings"))
            .bearer_auth(&app_token)
            .json(&json!({"subject": format!("load {m}")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        links.push(
            v["joinWebUrl"]
                .as_str()
                .expect("a meeting link")
                .to_string(),
        );
    }
    // One person per seat of a meeting: leg i is user i % group.
    let mut user_tokens = vec![];
    for u in 0..group {
        let v: Value = http
            .post(format!("{base}/admin/users/{USER}-{u}/token"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        user_tokens.push(v["token"].as_str().expect("a user token").to_string());
    }

    let (tone, silence) = (Arc::new(tone_packets()), Arc::new(silent_packets()));
    // The leg whose audio is checked: one that listens, when some do.
    let listener = if talkers < group { talkers } else { 0 };
    let tally: Arc<Tally> = Default::default();
    let rss_before = proc_status(pid, "VmRSS:");
    let ramp = Instant::now();
    let mut tasks = vec![];
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    for i in 0..legs {
        let leg = Leg {
            http: http.clone(),
            base: base.clone(),
            token: user_tokens[i % group].clone(),
            target: links[i / group].clone(),
            packets: if i % group < talkers {
                tone.clone()
            } else {
                silence.clone()
            },
            silent: i % group >= talkers,
            tally: tally.clone(),
            listen: i == listener,
        };
        tasks.push(tokio::spawn(leg.run()));
        tokio::time::sleep_until(tokio::time::Instant::from_std(ramp + gap * (i as u32 + 1))).await;
    }
    let ramp_s = ramp.elapsed().as_secs_f64();
    let settle = Instant::now();
    while tally.hearing.load(Ordering::Relaxed) + tally.failures.lock().unwrap().len() < legs
        && settle.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Steady state.
    let m0 = media(&http, &base).await;
    let (srv0, cli0, stolen0) = (cpu_s(pid), cpu_s(std::process::id()), stolen_s());
    let (in0, out0, late0) = (
        tally.packets_in.load(Ordering::Relaxed),
        tally.packets_out.load(Ordering::Relaxed),
        tally.client_late.load(Ordering::Relaxed),
    );
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(hold)).await;
    let secs = t0.elapsed().as_secs_f64();
    let m1 = media(&http, &base).await;
    let (srv1, cli1, stolen1) = (cpu_s(pid), cpu_s(std::process::id()), stolen_s());
    let rss_full = proc_status(pid, "VmRSS:");
    let heard_in = tally.packets_in.load(Ordering::Relaxed) - in0;
    let sent_out = tally.packets_out.load(Ordering::Relaxed) - out0;
    let client_late = tally.client_late.load(Ordering::Relaxed) - late0;
    tally.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    rs.stop().await;

    let up_legs = tally.hearing.load(Ordering::Relaxed);
    let mut setup = tally.setup_ms.lock().unwrap().clone();
    let failures = tally.failures.lock().unwrap().clone();
    let rms = tally.heard_rms.lock().unwrap().clone();
    let loud = rms.iter().filter(|&&r| r > 500.0).count();
    let pct = |late: u64, ticks: u64| 100.0 * late as f64 / ticks.max(1) as f64;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let talking = if talkers == group {
        "everyone talking".to_string()
    } else {
        format!("{talkers} talking")
    };
    println!(
        "| WebRTC legs (Opus, DTLS-SRTP), meetings of {group} ({talking}), {rate} new legs/s, {hold} s held | |"
    );
    println!("|---|---|");
    println!(
        "| legs set up and hearing audio | {up_legs} of {legs} ({} failed) |",
        failures.len()
    );
    println!("| ramp | {ramp_s:.1} s |");
    println!(
        "| setup, offer → first audio: p50 / p95 / p99 / max | {:.0} / {:.0} / {:.0} / {:.0} ms |",
        percentile(&mut setup, 0.50),
        percentile(&mut setup, 0.95),
        percentile(&mut setup, 0.99),
        percentile(&mut setup, 1.0)
    );
    println!(
        "| media ticks late ≥ 5 ms (held) | {:.3} % of {} |",
        pct(m1.1 - m0.1, m1.0 - m0.0),
        m1.0 - m0.0
    );
    println!(
        "| WebRTC shard ticks late ≥ 5 ms (held) | {:.3} % of {} (max {:.1} ms since start) |",
        pct(m1.3 - m0.3, m1.2 - m0.2),
        m1.2 - m0.2,
        m1.4
    );
    println!(
        "| packets heard / sent by the browsers per leg per second | {:.1} / {:.1} |",
        heard_in as f64 / secs / up_legs.max(1) as f64,
        sent_out as f64 / secs / up_legs.max(1) as f64
    );
    println!(
        "| a listening leg heard the talkers (frames louder than RMS 500) | {loud} of {} |",
        rms.len()
    );
    let (own, common, shared) = (m1.5 - m0.5, m1.6 - m0.6, m1.7 - m0.7);
    println!(
        "| Opus encodes per leg per second: own / common mix (frames sent from them) | {:.1} / {:.1} ({:.1}) |",
        own as f64 / secs / up_legs.max(1) as f64,
        common as f64 / secs / up_legs.max(1) as f64,
        shared as f64 / secs / up_legs.max(1) as f64
    );
    println!(
        "| CPU, ringside / load client ({cores} cores) | {:.0} % / {:.0} % of one core |",
        100.0 * (srv1 - srv0) / secs,
        100.0 * (cli1 - cli0) / secs
    );
    println!("| client sends late ≥ 5 ms | {client_late} of {sent_out} |");
    println!(
        "| CPU the hypervisor took (steal, all cores) | {:.1} % of one core |",
        100.0 * (stolen1 - stolen0) / secs
    );
    println!(
        "| ringside resident memory: before → with legs (per leg) | {:.0} → {:.0} MB ({:.0} KB) |",
        rss_before as f64 / 1024.0,
        rss_full as f64 / 1024.0,
        (rss_full.saturating_sub(rss_before)) as f64 / up_legs.max(1) as f64
    );
    for f in failures.iter().take(5) {
        println!("\nfailure: {f}");
    }
}
