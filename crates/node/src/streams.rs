//! App-hosted media over a WebSocket (docs/media-streaming.md), in the shape of Azure
//! Communication Services' media streaming: JSON text messages, `AudioMetadata` first, then
//! `AudioData` every 20 ms (base64 PCM 16 kHz mono, little-endian), with the participant, a
//! timestamp and `silent`. What the app sends back (`AudioData`) is played into the call;
//! `StopAudio` cuts it short.
//!
//! The room reads and writes a stream's [`StreamPort`] on its tick and never waits: the
//! port's outgoing queue is bounded, and a reader too slow to keep up loses the oldest frames
//! (counted in `/admin/media`). The WebSocket itself is served by a session task that only
//! sees text messages, so the same session runs over a connection ringside opened (to the
//! app's `transportUrl`) or one the app opened (to the call's `websocketUrl`).

use base64::Engine as _;
use media::FRAME;
use media::port::Port;
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, mpsc};

/// Frames a stream keeps for a slow reader (per stream, all participants): one second of
/// mixed audio.
const OUT_FRAMES: usize = 50;
/// Audio from the app waiting to be played, at most (samples): 10 s.
const IN_SAMPLES: usize = 16_000 * 10;
/// Playback starts once this much of the app's audio is waiting: 40 ms of jitter room at
/// first; each time the audio runs dry while playing, a frame more (up to [`MAX_START`]), and
/// a frame less after every [`CALM_FRAMES`] played without running dry, as a jitter buffer
/// adapts its delay to how the audio arrives.
const START_SAMPLES: usize = 2 * FRAME;
const MAX_START: usize = 6 * FRAME;
const CALM_FRAMES: u32 = 500;
/// Below this level (dBFS) a frame is `silent`.
const SILENT_DBFS: f32 = -55.0;

/// Counters across every stream (`/admin/media` → `streams`).
#[derive(Default)]
pub struct StreamStats {
    pub open: AtomicU64,
    pub connected: AtomicU64,
    pub frames_sent: AtomicU64,
    /// Frames a slow reader lost.
    pub frames_dropped: AtomicU64,
    /// Frames of audio the apps sent (20 ms each).
    pub frames_received: AtomicU64,
    /// Times an app's audio ran out while playing: the end of what it said, or its audio
    /// arriving later than it plays.
    pub underflows: AtomicU64,
    /// Messages from apps that were not understood.
    pub bad_messages: AtomicU64,
}

struct Frame {
    participant: Option<String>,
    at_ms: u64,
    silent: bool,
    pcm: [i16; FRAME],
}

/// The room's side of one stream.
pub struct StreamPort {
    out: VecDeque<Frame>,
    inbound: VecDeque<i16>,
    playing: bool,
    /// Samples waiting before playback starts (see [`START_SAMPLES`]).
    start: usize,
    /// Frames played since the audio last ran dry.
    calm: u32,
    bidirectional: bool,
    wake: Arc<Notify>,
    stats: Arc<StreamStats>,
}

fn now_ms() -> u64 {
    crate::clock::now_ms()
}

fn silent(pcm: &[i16; FRAME]) -> bool {
    let e = media::mixer::energy(pcm);
    let full = 32768.0f32 * 32768.0 / 2.0;
    (e as f32) < full * 10f32.powf(SILENT_DBFS / 10.0)
}

impl StreamPort {
    fn push(&mut self, participant: Option<&str>, pcm: &[i16; FRAME]) {
        if self.out.len() >= OUT_FRAMES {
            self.out.pop_front();
            self.stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
        }
        self.out.push_back(Frame {
            participant: participant.map(str::to_string),
            at_ms: now_ms(),
            silent: silent(pcm),
            pcm: *pcm,
        });
        self.wake.notify_one();
    }
}

impl Port for StreamPort {
    /// What the app says this tick.
    fn read(&mut self, out: &mut [i16; FRAME]) -> bool {
        if !self.playing && self.inbound.len() >= self.start {
            self.playing = true;
        }
        if !self.playing {
            return false;
        }
        let n = self.inbound.len().min(FRAME);
        for (o, s) in out.iter_mut().zip(self.inbound.drain(..n)) {
            *o = s;
        }
        out[n..].fill(0);
        if self.inbound.is_empty() {
            self.playing = false;
            self.calm = 0;
            self.start = (self.start + FRAME).min(MAX_START);
            self.stats.underflows.fetch_add(1, Ordering::Relaxed);
        } else {
            self.calm += 1;
            if self.calm >= CALM_FRAMES {
                self.calm = 0;
                self.start = self.start.saturating_sub(FRAME).max(START_SAMPLES);
            }
        }
        n > 0
    }
    fn write(&mut self, frame: &[i16; FRAME]) {
        self.push(None, frame);
    }
    fn write_source(&mut self, participant: &str, frame: &[i16; FRAME]) {
        self.push(Some(participant), frame);
    }
}

/// One call's stream, as the node keeps it.
pub struct Entry {
    pub call_id: String,
    pub token: String,
    pub port: Arc<Mutex<StreamPort>>,
    wake: Arc<Notify>,
    /// Told when the call ends: the session closes its WebSocket.
    closed: Arc<Notify>,
    /// A session is attached (one at a time).
    busy: Mutex<bool>,
}

#[derive(Default)]
pub struct Streams {
    map: Mutex<HashMap<String, Arc<Entry>>>,
    pub stats: Arc<StreamStats>,
}

impl Streams {
    pub fn get(&self, call_id: &str) -> Option<Arc<Entry>> {
        self.map.lock().expect("streams").get(call_id).cloned()
    }

    /// The call's stream opens: its port goes where the room finds it.
    pub fn open(
        &self,
        media: &media::runtime::Media,
        call_id: &str,
        stream: &engine::Stream,
    ) -> Arc<Entry> {
        let wake = Arc::new(Notify::new());
        let port = Arc::new(Mutex::new(StreamPort {
            out: VecDeque::with_capacity(OUT_FRAMES),
            inbound: VecDeque::new(),
            playing: false,
            start: START_SAMPLES,
            calm: 0,
            bidirectional: stream.spec.bidirectional,
            wake: wake.clone(),
            stats: self.stats.clone(),
        }));
        media
            .ports
            .insert(&media::stream_port(call_id), port.clone());
        let entry = Arc::new(Entry {
            call_id: call_id.to_string(),
            token: stream.token.clone(),
            port,
            wake,
            closed: Arc::new(Notify::new()),
            busy: Mutex::new(false),
        });
        let old = self
            .map
            .lock()
            .expect("streams")
            .insert(call_id.to_string(), entry.clone());
        if let Some(old) = old {
            old.closed.notify_waiters();
        } else {
            self.stats.open.fetch_add(1, Ordering::Relaxed);
        }
        entry
    }

    /// The call is over: its WebSocket closes and the room forgets the port.
    pub fn close(&self, media: &media::runtime::Media, call_id: &str) {
        media.ports.remove(&media::stream_port(call_id));
        if let Some(e) = self.map.lock().expect("streams").remove(call_id) {
            self.stats.open.fetch_sub(1, Ordering::Relaxed);
            e.closed.notify_waiters();
            e.closed.notify_one();
        }
    }
}

/// One message from the app, carried out (or why not).
fn take_message(text: &str, port: &Mutex<StreamPort>, stats: &StreamStats) -> Result<(), String> {
    let m = graph::streaming::parse_message(text)?;
    let mut p = port.lock().expect("port");
    match m {
        graph::streaming::Incoming::Audio(pcm) => {
            if !p.bidirectional {
                return Err(
                    "this stream is one-way (mediaStreaming.bidirectional is false)".into(),
                );
            }
            stats
                .frames_received
                .fetch_add((pcm.len() / FRAME) as u64, Ordering::Relaxed);
            let room = IN_SAMPLES.saturating_sub(p.inbound.len());
            p.inbound.extend(pcm.into_iter().take(room));
        }
        graph::streaming::Incoming::Stop => {
            p.inbound.clear();
            p.playing = false;
        }
    }
    Ok(())
}

fn audio_message(f: &Frame) -> String {
    let mut bytes = Vec::with_capacity(FRAME * 2);
    for s in f.pcm {
        bytes.extend(s.to_le_bytes());
    }
    json!({
        "kind": "AudioData",
        "audioData": {
            "timestamp": engine::render::iso(f.at_ms),
            "participantRawID": f.participant,
            "data": base64::engine::general_purpose::STANDARD.encode(&bytes),
            "silent": f.silent,
        }
    })
    .to_string()
}

/// Serve one connection: `out` carries text messages to the app, `inbound` brings its
/// messages; returns when either side closes or the call ends.
pub async fn session(
    entry: Arc<Entry>,
    stats: Arc<StreamStats>,
    out: mpsc::Sender<String>,
    mut inbound: mpsc::Receiver<String>,
) {
    let taken = std::mem::replace(&mut *entry.busy.lock().expect("busy"), true);
    if taken {
        let e = json!({"kind": "Error", "error": {"code": "alreadyConnected", "message": "this call's stream already has a connection"}});
        let _ = out.send(e.to_string()).await;
        return;
    }
    stats.connected.fetch_add(1, Ordering::Relaxed);
    let meta = json!({"kind": "AudioMetadata", "audioMetadata": {
        "subscriptionId": entry.call_id, "encoding": "PCM", "sampleRate": 16000,
        "channels": 1, "length": FRAME * 2,
    }});
    // Frames queued before the app connected are stale: start from now.
    entry.port.lock().expect("port").out.clear();
    let mut ok = out.send(meta.to_string()).await.is_ok();
    while ok {
        tokio::select! {
            _ = entry.wake.notified() => {
                loop {
                    let next = entry.port.lock().expect("port").out.pop_front();
                    let Some(f) = next else { break };
                    if out.send(audio_message(&f)).await.is_err() {
                        ok = false;
                        break;
                    }
                    stats.frames_sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            m = inbound.recv() => match m {
                Some(text) => {
                    if let Err(why) = take_message(&text, &entry.port, &stats) {
                        stats.bad_messages.fetch_add(1, Ordering::Relaxed);
                        let e = json!({"kind": "Error", "error": {"code": "badMessage", "message": why}});
                        ok = out.send(e.to_string()).await.is_ok();
                    }
                }
                None => ok = false,
            },
            _ = entry.closed.notified() => ok = false,
        }
    }
    stats.connected.fetch_sub(1, Ordering::Relaxed);
    *entry.busy.lock().expect("busy") = false;
}

/// A stream's socket holds at most this much unsent audio (about 0.7 s of messages): past it,
/// a slow reader's frames are dropped in the port instead of queuing up seconds of lag.
const SEND_BUFFER: u32 = 32 * 1024;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Open a WebSocket to `url` (ws or wss) on a socket with a small send buffer.
async fn dial(url: &str) -> Result<Socket, String> {
    let u = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    let host = u
        .host_str()
        .ok_or("no host")?
        .trim_matches(['[', ']'])
        .to_string();
    let port = u.port_or_known_default().unwrap_or(80);
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("the host has no address")?;
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(|e| e.to_string())?;
    let _ = sock.set_send_buffer_size(SEND_BUFFER);
    let tcp = sock.connect(addr).await.map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let connector = (u.scheme() == "wss").then(|| {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(c);
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth());
        config.map(|c| tokio_tungstenite::Connector::Rustls(Arc::new(c)))
    });
    let connector = connector.transpose().map_err(|e| e.to_string())?;
    tokio_tungstenite::client_async_tls_with_config(url, tcp, None, connector)
        .await
        .map(|(ws, _)| ws)
        .map_err(|e| e.to_string())
}

/// ringside connects out to the app's `transportUrl` (a few tries while the call lives).
pub async fn connect_out(entry: Arc<Entry>, stats: Arc<StreamStats>, url: String) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    for attempt in 0..5u32 {
        if attempt > 0 {
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(500 << attempt)) => {}
                _ = entry.closed.notified() => return,
            }
        }
        let ws = match dial(&url).await {
            Ok(ws) => ws,
            Err(e) => {
                tracing::warn!(call = %entry.call_id, url = %url, error = %e, "media stream: cannot connect");
                continue;
            }
        };
        let (mut sink, mut source) = ws.split();
        let (out_tx, mut out_rx) = mpsc::channel::<String>(8);
        let (in_tx, in_rx) = mpsc::channel::<String>(64);
        let writer = tokio::spawn(async move {
            while let Some(t) = out_rx.recv().await {
                if sink.send(Message::text(t)).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let reader = tokio::spawn(async move {
            while let Some(Ok(m)) = source.next().await {
                let text = match m {
                    Message::Text(t) => t.to_string(),
                    Message::Close(_) => break,
                    _ => continue,
                };
                if in_tx.send(text).await.is_err() {
                    break;
                }
            }
        });
        session(entry.clone(), stats.clone(), out_tx, in_rx).await;
        reader.abort();
        let _ = writer.await;
        return;
    }
}

/// What the engine decided about a call's stream.
pub fn act(streams: &Streams, media: &media::runtime::Media, a: engine::StreamAction) {
    match a {
        engine::StreamAction::Open {
            call_id, stream, ..
        } => {
            let entry = streams.open(media, &call_id, &stream);
            if let Some(url) = stream.spec.transport_url {
                tokio::spawn(connect_out(entry, streams.stats.clone(), url));
            }
        }
        engine::StreamAction::Close { call_id } => streams.close(media, &call_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_apps_audio_plays_after_a_little_buffering_and_stops_when_it_stops() {
        let mut p = StreamPort {
            out: VecDeque::new(),
            inbound: VecDeque::new(),
            playing: false,
            start: START_SAMPLES,
            calm: 0,
            bidirectional: true,
            wake: Arc::new(Notify::new()),
            stats: Default::default(),
        };
        let mut f = [0i16; FRAME];
        p.inbound.extend(std::iter::repeat_n(7, FRAME));
        assert!(!p.read(&mut f), "one frame is not enough to start");
        p.inbound.extend(std::iter::repeat_n(7, FRAME + 10));
        assert!(p.read(&mut f) && f.iter().all(|&x| x == 7));
        assert!(p.read(&mut f));
        assert!(
            p.read(&mut f) && f[9] == 7 && f[10] == 0,
            "the tail, padded"
        );
        assert!(!p.read(&mut f), "nothing more: silence");
        assert_eq!(p.stats.underflows.load(Ordering::Relaxed), 1);
        // It ran dry: the next start waits for a frame more (60 ms).
        p.inbound.extend(std::iter::repeat_n(7, 2 * FRAME));
        assert!(!p.read(&mut f), "40 ms is no longer enough to start");
        p.inbound.extend(std::iter::repeat_n(7, FRAME));
        assert!(p.read(&mut f), "60 ms is");
        // Audio that keeps coming for ten seconds brings the delay back down.
        for _ in 0..CALM_FRAMES {
            p.inbound.extend(std::iter::repeat_n(7, FRAME));
            assert!(p.read(&mut f));
        }
        assert_eq!(p.start, START_SAMPLES);
        p.inbound.clear();
        p.playing = false;
        // A slow reader: the queue keeps the newest second.
        for _ in 0..OUT_FRAMES + 5 {
            p.write(&[100; FRAME]);
        }
        assert_eq!(p.out.len(), OUT_FRAMES);
        assert_eq!(p.stats.frames_dropped.load(Ordering::Relaxed), 5);
        assert!(!p.out[0].silent && p.out[0].participant.is_none());
    }
}
