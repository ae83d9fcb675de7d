//! The endpoint: one UDP socket for every browser leg. ICE-lite (ringside has a reachable
//! address; the browser does the checks), DTLS-SRTP, Opus or G.711 at 16 kHz.
//!
//! The legs are spread over shards, one thread per core, each owning its legs' str0m
//! sessions and codecs. One reader thread takes the datagrams off the socket and hands each to
//! the shard of its leg: by the sender's address once known, else by the ICE username of a
//! STUN binding request (the leg's local ufrag). Every 20 ms a shard sends each connected
//! leg what the room wrote to its port and runs the sessions' timers.
//!
//! Nothing wakes per datagram: the reader takes what has arrived with one `recvmmsg`, at most
//! once every 2 ms ([`PACE`]), and hands each shard its share as one batch; a shard sends
//! what its sessions wrote with `sendmmsg`, every packet to its own browser. At 500 legs that
//! is 25,000 datagrams a second each way in about five hundred wake-ups of each thread.

use crate::port::WebPort;
use crate::voice::Voice;
use media::port::PortRef;
use media::udp_batch::{self, RecvBatch};
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};
use str0m::change::SdpOffer;
use str0m::format::{Codec, CodecConfig, CodecExtra};
use str0m::media::{MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::Extension;
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

/// What the endpoint reports about its legs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegEvent {
    /// ICE and DTLS are up: audio flows.
    Connected { leg_id: String },
    /// The browser went away (ICE timed out, the tab closed) or the session failed.
    Closed { leg_id: String, reason: String },
}

/// What a shard is given to do.
enum Work {
    Accept {
        leg_id: String,
        key: u64,
        offer: String,
        reply: Sender<Result<(String, PortRef), String>>,
    },
    Hangup {
        leg_id: String,
    },
    /// What arrived for the shard's legs since the reader's last pass.
    Datagrams(Vec<Inbound>),
}

/// A datagram for a leg: who sent it, and when it arrived.
struct Inbound {
    key: u64,
    source: SocketAddr,
    at: Instant,
    data: Vec<u8>,
}

/// Which shard, and which leg in it, a datagram is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Route {
    shard: usize,
    key: u64,
}

#[derive(Default)]
struct Routes {
    by_addr: HashMap<SocketAddr, Route>,
    by_ufrag: HashMap<String, Route>,
}

/// How the shards keep time: a tick is late when it starts 5 ms or more after it was due.
#[derive(Default)]
pub struct Stats {
    pub legs: AtomicU64,
    pub ticks: AtomicU64,
    pub late_ticks: AtomicU64,
    pub max_late_us: AtomicU64,
    /// Datagrams from addresses no leg knows (dropped).
    pub strays: AtomicU64,
    /// How the shard threads are scheduled.
    pub sched: media::sched::SchedStats,
    /// Frames encoded by a leg's own encoder.
    pub own_encodes: AtomicU64,
    /// Frames of rooms' common mixes encoded by a shared encoder, and frames sent from those
    /// encodings (one encoding serves every leg of the shard that hears that mix).
    pub common_encodes: AtomicU64,
    pub common_frames: AtomicU64,
    /// Packets marked as digital silence that were not decoded (only the mix wanted them).
    pub undecoded: AtomicU64,
}

/// The handle the rest of ringside holds.
pub struct WebRtc {
    shards: Vec<Sender<Work>>,
    /// Legs per shard: a new leg goes to the least loaded, or to its room's.
    load: Arc<Vec<AtomicUsize>>,
    /// The shard each room's legs were last placed on ([`WebRtc::accept_in`]).
    placed: Mutex<HashMap<String, usize>>,
    next_key: AtomicU64,
    alive: Arc<AtomicBool>,
    /// Where browsers send their media.
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
}

struct Leg {
    id: String,
    rtc: Rtc,
    port: Arc<Mutex<WebPort>>,
    ufrag: String,
    /// The audio m-line, the payload type ringside sends with and its codec, once negotiated.
    audio: Option<(Mid, str0m::media::Pt, Voice)>,
    /// A decoder per payload type the browser sends with.
    incoming: HashMap<str0m::media::Pt, Voice>,
    rtp_time: u64,
    connected: bool,
    /// The RTP time of the last key reported (an event's end is sent three times).
    last_key: Option<u64>,
}

/// How the endpoint runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Shard threads (0: one per core).
    pub shards: usize,
    /// How the Opus encoders of what browsers hear trade quality for CPU.
    pub opus: crate::opus::Tuning,
    /// Ask for realtime scheduling for the shard threads ([`media::sched`]).
    pub realtime: bool,
}

impl WebRtc {
    /// Bind `bind` and start the endpoint; `events` hears about every leg.
    pub fn start(
        bind: SocketAddr,
        events: Sender<LegEvent>,
        opts: Options,
    ) -> Result<WebRtc, String> {
        let shards = match opts.shards {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let socket = UdpSocket::bind(bind).map_err(|e| format!("WebRTC UDP {bind}: {e}"))?;
        let addr = socket.local_addr().map_err(|e| e.to_string())?;
        // Each datagram's arrival time from the kernel: the reader comes every 2 ms.
        let _ = udp_batch::enable_timestamps(&socket);
        let socket = Arc::new(socket);
        let routes: Arc<RwLock<Routes>> = Default::default();
        let stats: Arc<Stats> = Default::default();
        let load: Arc<Vec<AtomicUsize>> =
            Arc::new((0..shards.max(1)).map(|_| AtomicUsize::new(0)).collect());
        let alive = Arc::new(AtomicBool::new(true));
        let mut senders = vec![];
        for n in 0..shards.max(1) {
            let (tx, rx) = mpsc::channel();
            let shard = Shard {
                n,
                addr,
                socket: socket.clone(),
                routes: routes.clone(),
                events: events.clone(),
                stats: stats.clone(),
                load: load.clone(),
                legs: HashMap::new(),
                outbox: Vec::new(),
                realtime: opts.realtime,
                mixes: CommonMixes {
                    tuning: opts.opus,
                    stats: stats.clone(),
                    by_mix: HashMap::new(),
                },
            };
            std::thread::Builder::new()
                .name(format!("ringside-webrtc-{n}"))
                .spawn(move || shard.run(rx))
                .map_err(|e| e.to_string())?;
            senders.push(tx);
        }
        let reader = Reader {
            socket,
            routes,
            shards: senders.clone(),
            stats: stats.clone(),
            alive: alive.clone(),
            realtime: opts.realtime,
        };
        std::thread::Builder::new()
            .name("ringside-webrtc-in".into())
            .spawn(move || reader.run())
            .map_err(|e| e.to_string())?;
        Ok(WebRtc {
            shards: senders,
            load,
            next_key: AtomicU64::new(1),
            placed: Mutex::new(HashMap::new()),
            alive,
            addr,
            stats,
        })
    }

    /// Answer a browser's offer for `leg_id`: the SDP answer, and the leg's port for its room.
    /// A malformed offer, or one with no audio ringside can speak, is refused with a reason.
    pub fn accept(&self, leg_id: &str, offer: &str) -> Result<(String, PortRef), String> {
        self.accept_in(leg_id, offer, leg_id)
    }

    /// As [`WebRtc::accept`], for a leg of room `room` (a meeting, a call): the legs of one
    /// room go to one shard while it is not much busier than the least busy, so the room's
    /// common mix is encoded once, not once per shard.
    pub fn accept_in(
        &self,
        leg_id: &str,
        offer: &str,
        room: &str,
    ) -> Result<(String, PortRef), String> {
        let shard = self.place(room);
        let (reply, rx) = mpsc::channel();
        let stopped = || "the WebRTC endpoint has stopped".to_string();
        self.shards[shard]
            .send(Work::Accept {
                leg_id: leg_id.to_string(),
                key: self.next_key.fetch_add(1, Ordering::Relaxed),
                offer: offer.to_string(),
                reply,
            })
            .map_err(|_| stopped())?;
        rx.recv().map_err(|_| stopped())?
    }

    /// Legs on each shard.
    pub fn legs_per_shard(&self) -> Vec<usize> {
        self.load
            .iter()
            .map(|l| l.load(Ordering::Relaxed))
            .collect()
    }

    /// The shard for a new leg of `room`: the room's own, unless that holds more than a
    /// quarter (and at least [`PLACEMENT_SLACK`] legs) more than the least loaded; else the
    /// least loaded, which becomes the room's.
    fn place(&self, room: &str) -> usize {
        let load = |i: usize| self.load[i].load(Ordering::Relaxed);
        let least = (0..self.shards.len()).min_by_key(|&i| load(i)).unwrap_or(0);
        let mut placed = self.placed.lock().expect("placements");
        if let Some(&s) = placed.get(room)
            && load(s) < load(least) + (load(least) / 4).max(PLACEMENT_SLACK)
        {
            return s;
        }
        if placed.len() >= MAX_PLACEMENTS {
            // Only where new legs go depends on it: forgetting is harmless.
            placed.clear();
        }
        placed.insert(room.to_string(), least);
        least
    }

    /// End a leg: its session is closed and forgotten.
    pub fn hangup(&self, leg_id: &str) {
        // Only the shard holding the leg knows it; hang-ups are rare enough to tell them all.
        for s in &self.shards {
            let _ = s.send(Work::Hangup {
                leg_id: leg_id.to_string(),
            });
        }
    }
}

impl Drop for WebRtc {
    fn drop(&mut self) {
        // The reader stops within its read timeout; the shards when their senders are gone.
        self.alive.store(false, Ordering::Relaxed);
    }
}

/// The username of a STUN binding request (RFC 8489 §14.3), if `d` is one.
pub fn stun_username(d: &[u8]) -> Option<&str> {
    const COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
    if d.len() < 20 || d[0] != 0x00 || d[1] != 0x01 || d[4..8] != COOKIE {
        return None;
    }
    let len = u16::from_be_bytes([d[2], d[3]]) as usize;
    let body = d.get(20..20 + len)?;
    let mut at = 0;
    while at + 4 <= body.len() {
        let kind = u16::from_be_bytes([body[at], body[at + 1]]);
        let n = u16::from_be_bytes([body[at + 2], body[at + 3]]) as usize;
        let value = body.get(at + 4..at + 4 + n)?;
        if kind == 0x0006 {
            return std::str::from_utf8(value).ok();
        }
        at += 4 + n.div_ceil(4) * 4;
    }
    None
}

/// Takes every datagram off the socket and hands it to its leg's shard.
struct Reader {
    socket: Arc<UdpSocket>,
    routes: Arc<RwLock<Routes>>,
    shards: Vec<Sender<Work>>,
    stats: Arc<Stats>,
    alive: Arc<AtomicBool>,
    realtime: bool,
}

/// How often the reader takes what has arrived: a shard then wakes about every 2 ms with a
/// batch, rather than once per datagram (audio waits at most this long). Each wake-up of the
/// reader and of a shard, realtime threads, preempts whatever else runs (at 500 legs on two
/// cores, the browsers' side of the benchmark): at 1 ms the three made 3,000 a second, and
/// halving them took the benchmark's late ticks and setup tail down more than the extra
/// millisecond (half of one, on average) costs a packet or a handshake's flight.
pub const PACE: Duration = Duration::from_millis(2);

impl Reader {
    fn run(self) {
        let mut clock = media::sched::Clock::start(
            self.realtime,
            "webrtc-in",
            media::sched::RECEIVE_PRIORITY,
            &self.stats.sched,
        );
        let mut batch = RecvBatch::default();
        let mut out: Vec<Vec<Inbound>> = self.shards.iter().map(|_| Vec::new()).collect();
        let _ = self
            .socket
            .set_read_timeout(Some(Duration::from_millis(500)));
        while self.alive.load(Ordering::Relaxed) {
            // Wait for a first datagram; take the rest of what is waiting with it.
            let mut n = match udp_batch::recv_waiting(&*self.socket, &mut batch) {
                Ok(n) => n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "WebRTC socket");
                    continue;
                }
            };
            let woke = Instant::now();
            let wall = unix_ns(SystemTime::now());
            loop {
                for i in 0..n {
                    let Some((data, source, stamp)) = batch.get(i) else {
                        continue;
                    };
                    let Some(route) = self.route(source, data) else {
                        self.stats.strays.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    out[route.shard].push(Inbound {
                        key: route.key,
                        source,
                        at: arrival(stamp, woke, wall),
                        data: data.to_vec(),
                    });
                }
                if n < udp_batch::BATCH {
                    break;
                }
                n = match udp_batch::recv(&*self.socket, &mut batch) {
                    Ok(n) => n,
                    Err(_) => break,
                };
            }
            for (shard, inbound) in out.iter_mut().enumerate() {
                if !inbound.is_empty() {
                    let _ = self.shards[shard].send(Work::Datagrams(std::mem::take(inbound)));
                }
            }
            clock.check(Instant::now());
            if let Some(rest) = PACE.checked_sub(woke.elapsed()) {
                std::thread::sleep(rest);
            }
        }
    }

    /// A known sender's leg; or, for a binding request naming a leg's ufrag, that leg (and
    /// the sender is remembered: media follows from where the checks came).
    fn route(&self, source: SocketAddr, data: &[u8]) -> Option<Route> {
        if let Some(r) = self.routes.read().expect("routes").by_addr.get(&source) {
            return Some(*r);
        }
        let user = stun_username(data)?;
        let local = user.split(':').next()?;
        let mut routes = self.routes.write().expect("routes");
        let r = *routes.by_ufrag.get(local)?;
        routes.by_addr.insert(source, r);
        Some(r)
    }
}

fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// When a datagram arrived: the kernel's stamp (nanoseconds since the Unix epoch), placed on
/// the monotonic clock by its distance from `read` (taken at wall time `wall`); else `read`.
fn arrival(stamp: Option<u64>, read: Instant, wall: u64) -> Instant {
    stamp
        .and_then(|at| read.checked_sub(Duration::from_nanos(wall.saturating_sub(at))))
        .unwrap_or(read)
}

/// A shard: some of the legs, their sessions and codecs, on one thread.
struct Shard {
    n: usize,
    addr: SocketAddr,
    socket: Arc<UdpSocket>,
    routes: Arc<RwLock<Routes>>,
    events: Sender<LegEvent>,
    stats: Arc<Stats>,
    load: Arc<Vec<AtomicUsize>>,
    legs: HashMap<u64, Leg>,
    /// What the sessions wrote since the last send, each to its browser.
    outbox: Vec<(SocketAddr, Vec<u8>)>,
    realtime: bool,
    /// The shared encoders, and the tuning every encoder of the shard uses.
    mixes: CommonMixes,
}

const TICK: Duration = Duration::from_millis(20);

/// A room's shard takes its new legs while it holds at most this many more than the least
/// loaded (or a quarter more, when that is more).
const PLACEMENT_SLACK: usize = 16;
/// Rooms whose shard is remembered (past that, the memory starts again).
const MAX_PLACEMENTS: usize = 4096;

impl Shard {
    fn run(mut self, rx: Receiver<Work>) {
        let stats = self.stats.clone();
        let mut clock = media::sched::Clock::start(
            self.realtime,
            "webrtc",
            media::sched::TRANSPORT_PRIORITY,
            &stats.sched,
        );
        // The shards' ticks are spread over the 20 ms (shard n of N starts n/N of a tick
        // later), so they do not all want the cores, and send, at the same moment.
        let shards = self.load.len().max(1) as u32;
        let mut next_tick = Instant::now() + TICK + TICK * self.n as u32 / shards;
        // Since the last tick: the work done between ticks, and the last tick's own.
        let (mut batches, mut working, mut last_tick) = (0u32, Duration::ZERO, Duration::ZERO);
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(w) => {
                    let t = Instant::now();
                    self.work(w);
                    self.send();
                    let took = t.elapsed();
                    (batches, working) = (batches + 1, working + took);
                    clock.check(Instant::now());
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            let now = Instant::now();
            if now >= next_tick {
                let late = now - next_tick;
                self.stats.ticks.fetch_add(1, Ordering::Relaxed);
                if late >= Duration::from_millis(5) {
                    self.stats.late_ticks.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(
                        shard = self.n,
                        late_ms = late.as_millis() as u64,
                        batches,
                        batches_ms = working.as_millis() as u64,
                        last_tick_ms = last_tick.as_millis() as u64,
                        "late WebRTC tick"
                    );
                }
                self.stats
                    .max_late_us
                    .fetch_max(late.as_micros() as u64, Ordering::Relaxed);
                self.tick(now);
                self.send();
                last_tick = now.elapsed();
                (batches, working) = (0, Duration::ZERO);
                clock.check(Instant::now());
                next_tick += TICK;
                if next_tick < now {
                    // Far behind (a stall): start again from now rather than burst.
                    next_tick = now + TICK;
                }
            }
        }
    }

    /// Everything the sessions wrote, in as few system calls as it takes.
    fn send(&mut self) {
        if !self.outbox.is_empty() {
            let _ = udp_batch::send_each(&*self.socket, &self.outbox);
            self.outbox.clear();
        }
    }

    fn receive(&mut self, d: Inbound) {
        let Some(leg) = self.legs.get_mut(&d.key) else {
            return;
        };
        let Ok(contents) = d.data.as_slice().try_into() else {
            return; // not STUN, DTLS or RTP: dropped
        };
        let input = Input::Receive(
            d.at,
            Receive {
                proto: Protocol::Udp,
                source: d.source,
                destination: self.addr,
                contents,
            },
        );
        if leg.rtc.accepts(&input) && leg.rtc.handle_input(input).is_ok() {
            self.drive(d.key);
        }
    }

    fn work(&mut self, w: Work) {
        match w {
            Work::Datagrams(batch) => {
                for d in batch {
                    self.receive(d);
                }
            }
            Work::Accept {
                leg_id,
                key,
                offer,
                reply,
            } => {
                let r =
                    accept(self.addr, &leg_id, &offer, self.mixes.tuning.dtx).map(|(leg, sdp)| {
                        let port: PortRef = leg.port.clone();
                        self.routes
                            .write()
                            .expect("routes")
                            .by_ufrag
                            .insert(leg.ufrag.clone(), Route { shard: self.n, key });
                        self.legs.insert(key, leg);
                        self.load[self.n].fetch_add(1, Ordering::Relaxed);
                        self.stats.legs.fetch_add(1, Ordering::Relaxed);
                        (sdp, port)
                    });
                let _ = reply.send(r);
            }
            Work::Hangup { leg_id } => {
                if let Some(key) = self
                    .legs
                    .iter()
                    .find(|(_, l)| l.id == leg_id)
                    .map(|(k, _)| *k)
                    && let Some(mut leg) = self.forget(key)
                {
                    leg.rtc.disconnect();
                }
            }
        }
    }

    /// Every 20 ms: each leg sends what its room wrote, and its session's timers run.
    fn tick(&mut self, now: Instant) {
        let keys: Vec<u64> = self.legs.keys().copied().collect();
        for key in keys {
            if let Some(leg) = self.legs.get_mut(&key) {
                send_audio(leg, now, &mut self.mixes);
            }
            self.drive(key);
        }
        self.mixes.forget_idle(now);
    }

    /// Run a leg's session until it waits; a leg whose session ended is forgotten and reported.
    fn drive(&mut self, key: u64) {
        let Some(leg) = self.legs.get_mut(&key) else {
            return;
        };
        if let Err(reason) = drive(
            leg,
            &mut self.outbox,
            &self.events,
            self.mixes.tuning,
            &self.stats,
        ) && let Some(leg) = self.forget(key)
        {
            let _ = self.events.send(LegEvent::Closed {
                leg_id: leg.id,
                reason,
            });
        }
    }

    fn forget(&mut self, key: u64) -> Option<Leg> {
        let leg = self.legs.remove(&key)?;
        let mut routes = self.routes.write().expect("routes");
        routes.by_ufrag.remove(&leg.ufrag);
        routes.by_addr.retain(|_, r| r.key != key);
        self.load[self.n].fetch_sub(1, Ordering::Relaxed);
        self.stats.legs.fetch_sub(1, Ordering::Relaxed);
        Some(leg)
    }
}

/// Telephone events (RFC 4733) at Opus's 48 kHz, as browsers offer them: a keypad press
/// arrives as an event, not as tones in the audio.
pub fn with_dtmf(mut cfg: str0m::RtcConfig) -> str0m::RtcConfig {
    cfg.codec_config().add_config(
        str0m::media::Pt::new_with_value(DTMF_PT),
        None,
        Codec::Tele,
        str0m::media::Frequency::FORTY_EIGHT_KHZ,
        None,
        str0m::format::FormatParams::default(),
    );
    cfg
}

/// The payload type of Opus in ringside's own codec list (an answer takes the browser's).
const OPUS_PT: u8 = 111;

/// The payload type ringside offers telephone events at (browsers use their own in offers).
pub const DTMF_PT: u8 = 126;

/// An RFC 4733 event code as a key.
fn key_of(event: u8) -> Option<char> {
    match event {
        0..=9 => Some((b'0' + event) as char),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some((b'A' + event - 12) as char),
        _ => None,
    }
}

/// A session for a browser's offer, answered.
/// With `dtx`, the answer asks the browser for Opus DTX (`usedtx=1`, RFC 7587): while its
/// microphone is silent or muted it sends a comfort-noise packet every 400 ms instead of one
/// every 20 ms. The jitter buffer plays the gaps as silence.
///
/// Of the RTP header extensions a browser offers, the answer takes the two ringside reads:
/// the audio level (RFC 6464: a muted microphone's packets are not decoded) and the MID
/// (BUNDLE). Not transport-wide congestion control: ringside sends audio at a fixed bitrate
/// and estimates no bandwidth, and with it every browser would send a feedback report every
/// 50–100 ms about the audio it hears, which ringside would decrypt and file for nothing
/// (at 500 legs the bench saw 20 a second per leg, more packets than the audio browsers send).
fn answer(addr: SocketAddr, offer: &str, dtx: bool) -> Result<(Rtc, String), String> {
    let offer =
        SdpOffer::from_sdp_string(offer).map_err(|e| format!("malformed SDP offer: {e}"))?;
    let mut cfg = Rtc::builder()
        .set_ice_lite(true)
        .clear_codecs()
        .clear_extension_map()
        .set_extension(1, Extension::AudioLevel)
        .set_extension(4, Extension::RtpMid);
    cfg.codec_config().add_config(
        str0m::media::Pt::new_with_value(OPUS_PT),
        None,
        Codec::Opus,
        str0m::media::Frequency::FORTY_EIGHT_KHZ,
        Some(2),
        str0m::format::FormatParams {
            min_p_time: Some(10),
            use_inband_fec: Some(true),
            use_dtx: dtx.then_some(true),
            ..Default::default()
        },
    );
    let mut cfg = with_dtmf(cfg.enable_pcmu(true, false).enable_pcma(true, false));
    let codecs = cfg.codec_config();
    let no_feedback = codecs.params().iter().map(|p| {
        let mut p = *p;
        p.set_fb_transport_cc(false);
        p
    });
    *codecs = CodecConfig::new_from_payload_params(no_feedback.collect());
    let mut rtc = cfg.build(Instant::now());
    let candidate = Candidate::host(addr, "udp").map_err(|e| e.to_string())?;
    rtc.add_local_candidate(candidate);
    let answer = rtc
        .sdp_api()
        .accept_offer(offer)
        .map_err(|e| format!("the offer cannot be answered: {e}"))?;
    Ok((rtc, answer.to_sdp_string()))
}

/// Whether an offer can be answered, without taking a leg for it.
pub fn check_offer(offer: &str) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], 9));
    let (_, sdp) =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| answer(addr, offer, true)))
            .map_err(|_| "the offer could not be read".to_string())??;
    has_audio(&sdp)
}

fn has_audio(answer: &str) -> Result<(), String> {
    if answer
        .lines()
        .any(|l| l.starts_with("m=audio") && !l.starts_with("m=audio 0 "))
    {
        Ok(())
    } else {
        Err("the offer has no audio ringside can receive (Opus, PCMU or PCMA)".into())
    }
}

/// Fuzzing entry: a browser's offer, answered as the endpoint answers it (no socket).
pub fn fuzz_offer(offer: &[u8]) {
    let _ = answer(
        SocketAddr::from(([127, 0, 0, 1], 9)),
        &String::from_utf8_lossy(offer),
        true,
    );
}

fn accept(addr: SocketAddr, leg_id: &str, offer: &str, dtx: bool) -> Result<(Leg, String), String> {
    // Whatever a browser sends must not take the endpoint (and every other leg) down.
    let (rtc, sdp) =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| answer(addr, offer, dtx)))
            .map_err(|_| "the offer could not be read".to_string())??;
    has_audio(&sdp)?;
    let ufrag = sdp
        .lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .ok_or("the answer has no ICE username")?
        .to_string();
    let leg = Leg {
        id: leg_id.to_string(),
        rtc,
        port: WebPort::new(),
        ufrag,
        audio: None,
        incoming: HashMap::new(),
        rtp_time: 0,
        connected: false,
        last_key: None,
    };
    Ok((leg, sdp))
}

/// What the room wrote for the browser since the last tick, encoded.
fn send_audio(leg: &mut Leg, now: Instant, mixes: &mut CommonMixes) {
    if !leg.connected {
        // What the room wrote before the browser could hear it is not sent late: the leg
        // starts with what is current (and in step with the other legs of its room).
        leg.port.lock().expect("port").clear_outgoing();
        return;
    }
    let Some((mid, pt, voice)) = &mut leg.audio else {
        return;
    };
    let frame = leg.port.lock().expect("port").next_outgoing();
    let Some((mut frame, mut common)) = frame else {
        return;
    };
    if let (Some(tag), Voice::Opus { .. }) = (common, &voice)
        && let Some(latest) = mixes.latest(tag.mix)
        && tag.tick < latest
    {
        let tag = media::port::Common {
            tick: latest,
            ..tag
        };
        if let Some(f) = leg.port.lock().expect("port").catch_up(tag) {
            (frame, common) = (f, Some(tag));
        }
    }
    let shared = match (common, &voice) {
        (Some(tag), Voice::Opus { .. }) => mixes.encode(tag, &frame, now),
        _ => None,
    };
    let packet = match shared {
        Some(p) => p,
        None => {
            mixes.stats.own_encodes.fetch_add(1, Ordering::Relaxed);
            match voice.encode(&frame) {
                Ok(p) => p,
                Err(_) => return,
            }
        }
    };
    let (clock, per_frame) = voice.clock();
    let rtp = MediaTime::new(leg.rtp_time, clock);
    leg.rtp_time += per_frame;
    if let Some(w) = leg.rtc.writer(*mid) {
        let _ = w.write(*pt, now, rtp, packet);
    }
}

/// The Opus encoders of the rooms' common mixes on one shard: the legs that hear their
/// room's common mix (everyone who is not one of the speakers, in a meeting) share one encoder
/// and one payload per tick instead of each encoding the same samples; each leg still sends
/// it in its own RTP stream. A leg moves between its own encoder and the shared one as it
/// starts and stops speaking (its decoder hears a frame from another encoder's state then:
/// Asterisk's softmix makes the same trade).
struct CommonMixes {
    tuning: crate::opus::Tuning,
    stats: Arc<Stats>,
    by_mix: HashMap<u64, SharedEncoder>,
}

struct SharedEncoder {
    enc: crate::opus::Encoder,
    /// The latest tick encoded and its payload.
    tick: u64,
    payload: Vec<u8>,
    used: Instant,
}

/// A common mix's encoder unused this long is let go.
const COMMON_IDLE: Duration = Duration::from_secs(1);

impl CommonMixes {
    /// The payload of common mix `tag` at its tick, encoded once per tick; `None` when it
    /// cannot be shared (this leg is behind the others: its own encoder takes it).
    fn encode(
        &mut self,
        tag: media::port::Common,
        frame: &[i16; media::FRAME],
        now: Instant,
    ) -> Option<Vec<u8>> {
        let shared = match self.by_mix.entry(tag.mix) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(SharedEncoder {
                enc: crate::opus::Encoder::tuned(self.tuning).ok()?,
                tick: 0,
                payload: vec![],
                used: now,
            }),
        };
        shared.used = now;
        if tag.tick > shared.tick {
            shared.payload = shared.enc.encode(frame).ok()?;
            shared.tick = tag.tick;
            self.stats.common_encodes.fetch_add(1, Ordering::Relaxed);
        } else if tag.tick < shared.tick {
            return None;
        }
        self.stats.common_frames.fetch_add(1, Ordering::Relaxed);
        Some(shared.payload.clone())
    }

    /// The latest tick of common mix `mix` encoded here.
    fn latest(&self, mix: u64) -> Option<u64> {
        self.by_mix.get(&mix).map(|s| s.tick)
    }

    fn forget_idle(&mut self, now: Instant) {
        self.by_mix
            .retain(|_, s| now.saturating_duration_since(s.used) < COMMON_IDLE);
    }
}

/// Run a leg's session until it waits: datagrams out (into `outbox`), events handled. Why it
/// ended, if it did.
fn drive(
    leg: &mut Leg,
    outbox: &mut Vec<(SocketAddr, Vec<u8>)>,
    events: &Sender<LegEvent>,
    tuning: crate::opus::Tuning,
    stats: &Stats,
) -> Result<(), String> {
    loop {
        if !leg.rtc.is_alive() {
            return Err("the session ended".into());
        }
        match leg.rtc.poll_output().map_err(|e| e.to_string())? {
            Output::Timeout(t) => {
                let now = Instant::now();
                if t <= now {
                    leg.rtc
                        .handle_input(Input::Timeout(now))
                        .map_err(|e| e.to_string())?;
                    continue;
                }
                return Ok(());
            }
            Output::Transmit(t) => outbox.push((t.destination, t.contents.into())),
            Output::Event(e) => on_event(leg, e, events, tuning, stats)?,
        }
    }
}

fn on_event(
    leg: &mut Leg,
    e: Event,
    events: &Sender<LegEvent>,
    tuning: crate::opus::Tuning,
    stats: &Stats,
) -> Result<(), String> {
    match e {
        Event::Connected => {
            leg.connected = true;
            let _ = events.send(LegEvent::Connected {
                leg_id: leg.id.clone(),
            });
        }
        Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
            return Err("the browser went away".into());
        }
        Event::MediaAdded(m) if m.kind == MediaKind::Audio => {
            let params = leg
                .rtc
                .writer(m.mid)
                .and_then(|w| Voice::choose(w.payload_params()));
            leg.audio = params.and_then(|p| Some((m.mid, p.pt(), Voice::tuned(&p, Some(tuning))?)));
        }
        Event::MediaData(d) if matches!(d.codec_extra, CodecExtra::Tele(_)) => {
            let CodecExtra::Tele(ev) = d.codec_extra else {
                return Ok(());
            };
            let at = d.time.numer();
            if ev.end && leg.last_key != Some(at) {
                leg.last_key = Some(at);
                if let Some(k) = key_of(ev.event) {
                    leg.port.lock().expect("port").key(k);
                }
            }
        }
        Event::MediaData(d) => {
            let voice = match leg.incoming.entry(d.pt) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    match Voice::for_params(&d.params) {
                        Some(voice) => v.insert(voice),
                        None => return Ok(()),
                    }
                }
            };
            let ts = d
                .time
                .rebase(str0m::media::Frequency::FORTY_EIGHT_KHZ)
                .numer() as u32;
            let mut port = leg.port.lock().expect("port");
            // A browser marks what its microphone sends while muted as digital silence (RFC
            // 6464, -127 dBov): when only the mix takes this leg's audio, it is not decoded.
            let silent = d.ext_vals.audio_level == Some(-127) && !port.wants_silence();
            let samples = match silent.then(|| voice.skip_silence(&d.data)).flatten() {
                Some(s) => {
                    stats.undecoded.fetch_add(1, Ordering::Relaxed);
                    Some(s)
                }
                None => voice.decode(&d.data).ok(),
            };
            if let Some(samples) = samples {
                port.arrived(ts, samples);
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::stun_username;

    /// A binding request as a browser sends it: USERNAME "server:browser", then more.
    fn binding(user: &str) -> Vec<u8> {
        let mut attrs = vec![0x00, 0x06];
        attrs.extend((user.len() as u16).to_be_bytes());
        attrs.extend(user.as_bytes());
        attrs.resize(attrs.len().div_ceil(4) * 4, 0);
        attrs.extend([0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4]); // PRIORITY
        let mut d = vec![0x00, 0x01];
        d.extend((attrs.len() as u16).to_be_bytes());
        d.extend([0x21, 0x12, 0xA4, 0x42]);
        d.extend([7u8; 12]);
        d.extend(attrs);
        d
    }

    #[test]
    fn the_username_of_a_binding_request_names_the_leg() {
        assert_eq!(stun_username(&binding("abcd:wxyz1")), Some("abcd:wxyz1"));
        let rtp = [0x80u8, 0x6f, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(stun_username(&rtp), None, "media is not STUN");
        let mut reply = binding("abcd:wxyz");
        reply[1] = 0x01;
        reply[0] = 0x01; // a binding success response
        assert_eq!(stun_username(&reply), None);
    }

    #[test]
    fn truncated_or_lying_datagrams_name_nothing() {
        let whole = binding("abcd:wxyz");
        for n in 0..whole.len() {
            let _ = stun_username(&whole[..n]);
        }
        let mut lying = whole.clone();
        lying[22] = 0xff; // the USERNAME claims more bytes than there are
        assert_eq!(stun_username(&lying), None);
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..20_000 {
            let mut d = whole.clone();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x as usize) % d.len();
            d[i] = (x >> 32) as u8;
            let _ = stun_username(&d[..(x >> 40) as usize % (d.len() + 1)]);
        }
    }
}
