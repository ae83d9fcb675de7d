//! WebRTC load benchmark (issue #13): how many browser legs ringside keeps in real time on
//! this machine, each Opus-decoded, mixed and Opus-encoded, and how long a leg takes to set up.
//!
//! ringside runs as its own process (`target/release/ringside`, or `RINGSIDE_BIN`), so its
//! CPU and memory are its own. The load client is this process: one str0m session per leg,
//! each a full ICE agent on its own UDP port doing DTLS-SRTP, as a browser does, driven by a
//! few client threads (one per core; `BENCH_CLIENT_THREADS`) that each poll their legs'
//! sockets together, as a browser's network thread does. The legs join meetings of `group`
//! people (each hears the others through the mix) by their `joinWebUrl` over the web phone's
//! HTTP signalling, `rate` new legs a second; the first `talkers` of each meeting (all, by
//! default) speak a pre-encoded Opus tone every 20 ms, the others are muted microphones:
//! Opus-encoded digital silence marked -127 dBov, sent with DTX when ringside's answer asks for
//! it (as browsers do: a comfort-noise packet every 400 ms) and every 20 ms otherwise. Setup is
//! the time from the offer being sent to the first audio packet heard. Once every leg is up,
//! `hold` seconds of steady state are measured: late ticks of ringside's media threads and of
//! its WebRTC shards (a tick is late when it starts 5 ms or more after it was due), packets
//! heard, CPU of each side, and the resident memory ringside gained per leg.
//!
//!   cargo build --release -p server --bin ringside
//!   cargo run --release -p ringside-bench --bin webrtc -- [legs, default 500] [rate, default 20]
//!     [hold seconds, default 20] [group, default 5] [voice | low-delay, default voice]
//!     [talkers per meeting, default: all]
//!
//! Environment: BENCH_REALTIME=false runs ringside's clock threads at ordinary priority;
//! BENCH_DTX=false has ringside not ask for DTX; BENCH_LOG=<filter> keeps ringside's log;
//! BENCH_MUTED=false makes the listeners open microphones in a quiet room (their silence
//! marked -80 dBov, not a muted microphone's -127), so ringside decodes every packet they send.

use ringside_bench::{Ringside, cpu_s, percentile, proc_status, stolen_s, udp_datagrams};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::Mid;
use str0m::media::{Frequency, MediaTime};
use str0m::net::{Protocol, Receive};
use str0m::{Event, Input, Output, Rtc};

const TENANT: &str = "bench-tenant";
const APP: &str = "bench-app";
const USER: &str = "bench-user";
const ADMIN: &str = "bench-admin";

#[derive(Default)]
struct Tally {
    setup_ms: Mutex<Vec<f64>>,
    /// Setup's steps: offer sent → answer received (signalling), → DTLS-SRTP connected.
    signalling_ms: Mutex<Vec<f64>>,
    secured_ms: Mutex<Vec<f64>>,
    /// ICE checks each leg sent before it was connected.
    checks: Mutex<Vec<f64>>,
    connected: AtomicUsize,
    hearing: AtomicUsize,
    packets_in: AtomicU64,
    packets_out: AtomicU64,
    /// 20 ms frames due on the client (sent, or left unsent by DTX), and those whose turn
    /// came 5 ms or more late (the client was too busy).
    frames_due: AtomicU64,
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

/// Two seconds of digital silence, Opus-encoded: what a listening leg's muted microphone
/// sends. With `dtx` (when ringside's answer asks for it, as a browser does) the encoder's
/// frames of two bytes or less are empty: nothing is sent for them, as browsers send nothing
/// (bar a comfort-noise packet every 400 ms) while their microphone is silent.
fn silent_packets(dtx: bool) -> Vec<Vec<u8>> {
    let mut enc = webrtc::opus::Encoder::new().expect("opus");
    enc.set_dtx(dtx).expect("dtx");
    // Past the encoder's hangover, so the replayed loop is DTX's steady state.
    for _ in 0..50 {
        enc.encode(&[0; media::FRAME]).expect("encode");
    }
    (0..100)
        .map(|_| enc.encode(&[0; media::FRAME]).expect("encode"))
        .map(|p| if dtx && p.len() <= 2 { vec![] } else { p })
        .collect()
}

/// A browser leg being set up: its offer goes to ringside over HTTP; once answered, its
/// session moves to a client thread.
struct Offer {
    http: reqwest::Client,
    base: String,
    token: String,
    target: String,
    voice: Voice,
    tally: Arc<Tally>,
    to: mpsc::Sender<ClientLeg>,
    waker: Arc<mio::Waker>,
}

/// What a leg says: the packets it replays (an empty one is a frame not sent: DTX), whether
/// they are a muted microphone's silence, and whether what it hears is decoded (the one leg
/// whose audio is checked).
#[derive(Clone)]
struct Voice {
    packets: Arc<Vec<Vec<u8>>>,
    silent: bool,
    /// The RFC 6464 level a silent leg marks its packets with: -127 dBov when muted.
    quiet: i8,
    /// A silent leg's packets when the answer asks for DTX.
    dtx: Option<Arc<Vec<Vec<u8>>>>,
    listen: bool,
}

impl Offer {
    async fn run(self) {
        if let Err(e) = self.send().await {
            self.tally.failures.lock().unwrap().push(e);
        }
    }

    async fn send(&self) -> Result<(), String> {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        sock.set_nonblocking(true).map_err(|e| e.to_string())?;
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
        let answered = began.elapsed().as_secs_f64() * 1000.0;
        self.tally.signalling_ms.lock().unwrap().push(answered);
        let sdp = v["sdp"].as_str().unwrap_or_default();
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| e.to_string())?;
        let mut voice = self.voice.clone();
        if let Some(dtx) = voice.dtx.take()
            && sdp.contains("usedtx=1")
        {
            voice.packets = dtx;
        }
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| e.to_string())?;
        let leg = ClientLeg {
            rtc,
            mid,
            sock: mio::net::UdpSocket::from_std(sock),
            local,
            decoder: self
                .voice
                .listen
                .then(|| webrtc::opus::Decoder::new().expect("opus")),
            voice,
            began,
            connected: false,
            heard: false,
            checks: 0,
            sent: 0,
            next_send: began,
            wake: began,
        };
        self.to.send(leg).map_err(|_| "the client thread ended")?;
        self.waker.wake().map_err(|e| e.to_string())
    }
}

/// A browser's session on a client thread, on its own UDP port.
struct ClientLeg {
    rtc: Rtc,
    mid: Mid,
    sock: mio::net::UdpSocket,
    local: SocketAddr,
    voice: Voice,
    decoder: Option<webrtc::opus::Decoder>,
    began: Instant,
    connected: bool,
    heard: bool,
    /// ICE checks (binding requests) sent before it was connected.
    checks: u32,
    sent: u64,
    /// When the next 20 ms packet is due (once connected).
    next_send: Instant,
    /// When the session next wants its timers run.
    wake: Instant,
}

const WAKER: mio::Token = mio::Token(usize::MAX);

/// A client thread: the sessions of some legs, driven by one poll loop over their sockets,
/// as a browser's network thread drives its peer connections (one wake-up serves every leg
/// with something to do, rather than one task wake-up per leg per packet).
fn client_thread(poll: mio::Poll, legs_in: mpsc::Receiver<ClientLeg>, tally: Arc<Tally>) {
    let mut poll = poll;
    let mut events = mio::Events::with_capacity(1024);
    let mut legs: Vec<Option<ClientLeg>> = vec![];
    let mut buf = vec![0u8; 2000];
    let mut wait = Duration::from_millis(1);
    while !tally.stop.load(Ordering::Relaxed) {
        if poll.poll(&mut events, Some(wait)).is_err() {
            continue;
        }
        for leg in legs_in.try_iter() {
            let mut leg = leg;
            let token = mio::Token(legs.len());
            if let Err(e) = poll
                .registry()
                .register(&mut leg.sock, token, mio::Interest::READABLE)
            {
                tally.failures.lock().unwrap().push(e.to_string());
                continue;
            }
            legs.push(Some(leg));
        }
        for ev in events.iter() {
            if ev.token() == WAKER {
                continue;
            }
            let Some(slot) = legs.get_mut(ev.token().0) else {
                continue;
            };
            if let Some(leg) = slot
                && let Err(e) = leg.receive(&mut buf, &tally)
            {
                tally.failures.lock().unwrap().push(e);
                *slot = None;
            }
        }
        let now = Instant::now();
        let mut next = now + Duration::from_millis(20);
        for slot in legs.iter_mut() {
            let Some(leg) = slot else { continue };
            if let Err(e) = leg.due(now, &tally) {
                tally.failures.lock().unwrap().push(e);
                *slot = None;
                continue;
            }
            next = next.min(leg.wake);
            if leg.connected {
                next = next.min(leg.next_send);
            }
        }
        wait = next.saturating_duration_since(Instant::now());
    }
}

impl ClientLeg {
    /// Everything waiting on the leg's socket, into its session.
    fn receive(&mut self, buf: &mut [u8], tally: &Tally) -> Result<(), String> {
        loop {
            let (n, source) = match self.sock.recv_from(buf) {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.to_string()),
            };
            let Ok(contents) = buf[..n].try_into() else {
                continue;
            };
            let input = Input::Receive(
                Instant::now(),
                Receive {
                    proto: Protocol::Udp,
                    source,
                    destination: self.local,
                    contents,
                },
            );
            self.rtc.handle_input(input).map_err(|e| e.to_string())?;
        }
        self.drive(tally)
    }

    /// The leg's next packet when it is due, and its timers when they are.
    fn due(&mut self, now: Instant, tally: &Tally) -> Result<(), String> {
        let send = self.connected && now >= self.next_send;
        if !send && now < self.wake {
            return Ok(());
        }
        if send {
            tally.frames_due.fetch_add(1, Ordering::Relaxed);
            if now - self.next_send >= Duration::from_millis(5) {
                tally.client_late.fetch_add(1, Ordering::Relaxed);
            }
            let mut w = self.rtc.writer(self.mid).ok_or("no audio writer")?;
            let pt = w
                .payload_params()
                .find(|p| p.spec().codec == Codec::Opus)
                .map(|p| p.pt())
                .ok_or("Opus was not negotiated")?;
            // As a browser marks them: a tone at -30 dBov, a muted microphone's digital
            // silence at -127, an open one's in a quiet room lower than speech.
            w = if self.voice.silent {
                w.audio_level(self.voice.quiet, false)
            } else {
                w.audio_level(-30, true)
            };
            let packets = &self.voice.packets;
            let packet = packets[self.sent as usize % packets.len()].clone();
            let t = MediaTime::new(self.sent * 960, Frequency::FORTY_EIGHT_KHZ);
            if !packet.is_empty() {
                w.write(pt, now, t, packet).map_err(|e| e.to_string())?;
                tally.packets_out.fetch_add(1, Ordering::Relaxed);
            }
            self.sent += 1;
            self.next_send += Duration::from_millis(20);
            if self.next_send < now {
                self.next_send = now + Duration::from_millis(20);
            }
        }
        // The session's timers only when they are due (a packet written goes out on the
        // next poll without them).
        if now >= self.wake {
            self.rtc
                .handle_input(Input::Timeout(now))
                .map_err(|e| e.to_string())?;
        }
        self.drive(tally)
    }

    /// Run the session until it waits: datagrams out, events counted.
    fn drive(&mut self, tally: &Tally) -> Result<(), String> {
        loop {
            match self.rtc.poll_output().map_err(|e| e.to_string())? {
                Output::Timeout(t) => {
                    self.wake = t;
                    return Ok(());
                }
                Output::Transmit(t) => {
                    // A STUN binding request (type 0x0001) before the leg is connected: an
                    // ICE check, counted to see how many a leg needs.
                    if !self.connected && t.contents.starts_with(&[0x00, 0x01]) {
                        self.checks += 1;
                    }
                    let _ = self.sock.send_to(&t.contents, t.destination);
                }
                Output::Event(Event::Connected) => {
                    self.connected = true;
                    self.next_send = Instant::now();
                    tally.connected.fetch_add(1, Ordering::Relaxed);
                    let ms = self.began.elapsed().as_secs_f64() * 1000.0;
                    tally.secured_ms.lock().unwrap().push(ms);
                    tally.checks.lock().unwrap().push(self.checks as f64);
                }
                Output::Event(Event::MediaData(d)) => {
                    tally.packets_in.fetch_add(1, Ordering::Relaxed);
                    if !self.heard {
                        self.heard = true;
                        let ms = self.began.elapsed().as_secs_f64() * 1000.0;
                        tally.setup_ms.lock().unwrap().push(ms);
                        tally.hearing.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Some(dec) = self.decoder.as_mut()
                        && let Ok(pcm) = dec.decode(&d.data)
                    {
                        let e = pcm.iter().map(|&s| (s as f64).powi(2)).sum::<f64>();
                        let rms = (e / pcm.len().max(1) as f64).sqrt();
                        tally.heard_rms.lock().unwrap().push(rms);
                    }
                }
                Output::Event(_) => {}
            }
        }
    }
}

fn config(listen: &str, group: usize, mode: &str) -> String {
    // BENCH_REALTIME=false: ringside's clock threads at ordinary priority.
    let realtime = std::env::var("BENCH_REALTIME").unwrap_or_else(|_| "true".into()) != "false";
    // BENCH_DTX=false: ringside does not ask browsers for Opus DTX.
    let dtx = std::env::var("BENCH_DTX").unwrap_or_else(|_| "true".into()) != "false";
    // BENCH_SHARDS=<n>: ringside's WebRTC shard threads (default: one per core).
    let shards: usize = std::env::var("BENCH_SHARDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
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
opus_dtx = {dtx}
threads = {shards}
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
/// ringside's counters from `/admin/media`.
struct Media {
    ticks: u64,
    late: u64,
    shard_ticks: u64,
    shard_late: u64,
    shard_max_late_ms: f64,
    own_encodes: u64,
    common_encodes: u64,
    common_frames: u64,
    undecoded: u64,
}

async fn media(http: &reqwest::Client, base: &str) -> Media {
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
    let w = &v["webrtc"];
    Media {
        ticks: n(&v["ticks"]),
        late: n(&v["ticksLate5ms"]),
        shard_ticks: n(&w["ticks"]),
        shard_late: n(&w["ticksLate5ms"]),
        shard_max_late_ms: w["maxLateMs"].as_f64().unwrap_or(0.0),
        own_encodes: n(&w["framesEncoded"]),
        common_encodes: n(&w["commonMixEncodes"]),
        common_frames: n(&w["commonMixFrames"]),
        undecoded: n(&w["silentPacketsUndecoded"]),
    }
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

    // BENCH_MUTED=false: the listeners' microphones are open in a quiet room.
    let muted = std::env::var("BENCH_MUTED").unwrap_or_else(|_| "true".into()) != "false";
    let quiet = if muted { -127 } else { -80 };
    let (tone, silence, dtx) = (
        Arc::new(tone_packets()),
        Arc::new(silent_packets(false)),
        Arc::new(silent_packets(true)),
    );
    // The leg whose audio is checked: one that listens, when some do.
    let listener = if talkers < group { talkers } else { 0 };
    let tally: Arc<Tally> = Default::default();
    // The client's threads (BENCH_CLIENT_THREADS, default one per core): each drives its
    // share of the legs' sessions.
    let client_threads = std::env::var("BENCH_CLIENT_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let mut clients = vec![];
    let mut threads = vec![];
    for _ in 0..client_threads {
        let poll = mio::Poll::new().expect("poll");
        let waker = Arc::new(mio::Waker::new(poll.registry(), WAKER).expect("waker"));
        let (to, from) = mpsc::channel();
        let t = tally.clone();
        threads.push(std::thread::spawn(move || client_thread(poll, from, t)));
        clients.push((to, waker));
    }
    let rss_before = proc_status(pid, "VmRSS:");
    let ramp = Instant::now();
    let mut tasks = vec![];
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    for i in 0..legs {
        let (to, waker) = clients[i % clients.len()].clone();
        let offer = Offer {
            http: http.clone(),
            base: base.clone(),
            token: user_tokens[i % group].clone(),
            target: links[i / group].clone(),
            voice: Voice {
                packets: if i % group < talkers {
                    tone.clone()
                } else {
                    silence.clone()
                },
                silent: i % group >= talkers,
                quiet,
                dtx: (i % group >= talkers).then(|| dtx.clone()),
                listen: i == listener,
            },
            tally: tally.clone(),
            to,
            waker,
        };
        tasks.push(tokio::spawn(offer.run()));
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
    let udp0 = udp_datagrams();
    let (in0, out0, late0, due0) = (
        tally.packets_in.load(Ordering::Relaxed),
        tally.packets_out.load(Ordering::Relaxed),
        tally.client_late.load(Ordering::Relaxed),
        tally.frames_due.load(Ordering::Relaxed),
    );
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(hold)).await;
    let secs = t0.elapsed().as_secs_f64();
    let m1 = media(&http, &base).await;
    let (srv1, cli1, stolen1) = (cpu_s(pid), cpu_s(std::process::id()), stolen_s());
    let udp1 = udp_datagrams();
    let rss_full = proc_status(pid, "VmRSS:");
    let heard_in = tally.packets_in.load(Ordering::Relaxed) - in0;
    let sent_out = tally.packets_out.load(Ordering::Relaxed) - out0;
    let client_late = tally.client_late.load(Ordering::Relaxed) - late0;
    let frames_due = tally.frames_due.load(Ordering::Relaxed) - due0;
    tally.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    for t in threads {
        let _ = t.join();
    }
    rs.stop().await;

    let up_legs = tally.hearing.load(Ordering::Relaxed);
    let setup = tally.setup_ms.lock().unwrap().clone();
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
    // Setup, and the steps it took until the browser was connected.
    let signalling = tally.signalling_ms.lock().unwrap().clone();
    let secured = tally.secured_ms.lock().unwrap().clone();
    for (step, mut ms) in [
        ("setup, offer → first audio", setup),
        ("of which offer → answer (signalling)", signalling),
        ("of which offer → DTLS-SRTP connected", secured),
    ] {
        println!(
            "| {step}: p50 / p95 / p99 / max | {:.0} / {:.0} / {:.0} / {:.0} ms |",
            percentile(&mut ms, 0.50),
            percentile(&mut ms, 0.95),
            percentile(&mut ms, 0.99),
            percentile(&mut ms, 1.0)
        );
    }
    let mut checks = tally.checks.lock().unwrap().clone();
    println!(
        "| ICE checks a leg sent before connected: p50 / p99 / max | {:.0} / {:.0} / {:.0} |",
        percentile(&mut checks, 0.50),
        percentile(&mut checks, 0.99),
        percentile(&mut checks, 1.0)
    );
    println!(
        "| media ticks late ≥ 5 ms (held) | {:.3} % of {} |",
        pct(m1.late - m0.late, m1.ticks - m0.ticks),
        m1.ticks - m0.ticks
    );
    println!(
        "| WebRTC shard ticks late ≥ 5 ms (held) | {:.3} % of {} (max {:.1} ms since start) |",
        pct(
            m1.shard_late - m0.shard_late,
            m1.shard_ticks - m0.shard_ticks
        ),
        m1.shard_ticks - m0.shard_ticks,
        m1.shard_max_late_ms
    );
    println!(
        "| packets heard / sent by the browsers per leg per second | {:.1} / {:.1} |",
        heard_in as f64 / secs / up_legs.max(1) as f64,
        sent_out as f64 / secs / up_legs.max(1) as f64
    );
    // Every datagram either side received (media, RTCP, STUN), machine-wide.
    println!(
        "| UDP datagrams received, both sides, per leg per second (dropped: receive buffer full) | {:.1} ({}) |",
        (udp1.0 - udp0.0) as f64 / secs / up_legs.max(1) as f64,
        udp1.1 - udp0.1
    );
    println!(
        "| a listening leg heard the talkers (frames louder than RMS 500) | {loud} of {} |",
        rms.len()
    );
    let (own, common, shared) = (
        m1.own_encodes - m0.own_encodes,
        m1.common_encodes - m0.common_encodes,
        m1.common_frames - m0.common_frames,
    );
    println!(
        "| Opus encodes per leg per second: own / common mix (frames sent from them) | {:.1} / {:.1} ({:.1}) |",
        own as f64 / secs / up_legs.max(1) as f64,
        common as f64 / secs / up_legs.max(1) as f64,
        shared as f64 / secs / up_legs.max(1) as f64
    );
    println!(
        "| packets ringside left undecoded (muted silence) per leg per second | {:.1} |",
        (m1.undecoded - m0.undecoded) as f64 / secs / up_legs.max(1) as f64
    );
    println!(
        "| CPU, ringside / load client ({cores} cores) | {:.0} % / {:.0} % of one core |",
        100.0 * (srv1 - srv0) / secs,
        100.0 * (cli1 - cli0) / secs
    );
    println!(
        "| client frames late ≥ 5 ms | {:.3} % of {frames_due} |",
        pct(client_late, frames_due)
    );
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
