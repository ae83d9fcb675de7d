//! The endpoint: one UDP socket for every browser leg, one thread that owns the socket and
//! every leg's str0m session. ICE-lite (ringside has a reachable address; the browser does
//! the checks), DTLS-SRTP, Opus at 16 kHz. A datagram goes to the session that accepts it
//! (its ICE credentials or its peer's address); every 20 ms each connected leg sends what the
//! room wrote to its port.

use crate::port::WebPort;
use crate::voice::Voice;
use media::port::PortRef;
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use str0m::change::SdpOffer;
use str0m::format::{Codec, CodecExtra};
use str0m::media::{MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

/// What the endpoint reports about its legs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegEvent {
    /// ICE and DTLS are up: audio flows.
    Connected { leg_id: String },
    /// The browser went away (ICE timed out, the tab closed) or the session failed.
    Closed { leg_id: String, reason: String },
}

enum Cmd {
    Accept {
        leg_id: String,
        offer: String,
        reply: Sender<Result<(String, PortRef), String>>,
    },
    Hangup {
        leg_id: String,
    },
}

/// The handle the rest of ringside holds.
pub struct WebRtc {
    cmds: Sender<Cmd>,
    /// Where browsers send their media.
    pub addr: SocketAddr,
}

struct Leg {
    rtc: Rtc,
    port: Arc<Mutex<WebPort>>,
    /// The audio m-line, the payload type ringside sends with and its codec, once negotiated.
    audio: Option<(Mid, str0m::media::Pt, Voice)>,
    /// A decoder per payload type the browser sends with.
    incoming: HashMap<str0m::media::Pt, Voice>,
    rtp_time: u64,
    connected: bool,
    next_send: Instant,
    /// The RTP time of the last key reported (an event's end is sent three times).
    last_key: Option<u64>,
}

impl WebRtc {
    /// Bind `bind` and start the endpoint's thread; `events` hears about every leg.
    pub fn start(bind: SocketAddr, events: Sender<LegEvent>) -> Result<WebRtc, String> {
        let socket = UdpSocket::bind(bind).map_err(|e| format!("WebRTC UDP {bind}: {e}"))?;
        let addr = socket.local_addr().map_err(|e| e.to_string())?;
        let (cmds, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("ringside-webrtc".into())
            .spawn(move || run(socket, addr, rx, events))
            .map_err(|e| e.to_string())?;
        Ok(WebRtc { cmds, addr })
    }

    /// Answer a browser's offer for `leg_id`: the SDP answer, and the leg's port for its room.
    /// A malformed offer, or one with no audio ringside can speak, is refused with a reason.
    pub fn accept(&self, leg_id: &str, offer: &str) -> Result<(String, PortRef), String> {
        let (reply, rx) = mpsc::channel();
        self.cmds
            .send(Cmd::Accept {
                leg_id: leg_id.to_string(),
                offer: offer.to_string(),
                reply,
            })
            .map_err(|_| "the WebRTC endpoint has stopped".to_string())?;
        rx.recv()
            .map_err(|_| "the WebRTC endpoint has stopped".to_string())?
    }

    /// End a leg: its session is closed and forgotten.
    pub fn hangup(&self, leg_id: &str) {
        let _ = self.cmds.send(Cmd::Hangup {
            leg_id: leg_id.to_string(),
        });
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
fn answer(addr: SocketAddr, offer: &str) -> Result<(Rtc, String), String> {
    let offer =
        SdpOffer::from_sdp_string(offer).map_err(|e| format!("malformed SDP offer: {e}"))?;
    let mut rtc = with_dtmf(
        Rtc::builder()
            .set_ice_lite(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_pcmu(true, false)
            .enable_pcma(true, false),
    )
    .build(Instant::now());
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
    let (_, sdp) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| answer(addr, offer)))
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
    );
}

fn accept(addr: SocketAddr, offer: &str) -> Result<(Leg, String), String> {
    // Whatever a browser sends must not take the endpoint (and every other leg) down.
    let (rtc, sdp) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| answer(addr, offer)))
        .map_err(|_| "the offer could not be read".to_string())??;
    if !sdp
        .lines()
        .any(|l| l.starts_with("m=audio") && !l.starts_with("m=audio 0 "))
    {
        return Err("the offer has no audio ringside can receive (Opus)".into());
    }
    let leg = Leg {
        rtc,
        port: WebPort::new(),
        audio: None,
        incoming: HashMap::new(),
        rtp_time: 0,
        connected: false,
        next_send: Instant::now(),
        last_key: None,
    };
    Ok((leg, sdp))
}

fn run(socket: UdpSocket, addr: SocketAddr, cmds: Receiver<Cmd>, events: Sender<LegEvent>) {
    let mut legs: HashMap<String, Leg> = HashMap::new();
    let mut buf = vec![0u8; 2000];
    loop {
        loop {
            match cmds.try_recv() {
                Ok(Cmd::Accept {
                    leg_id,
                    offer,
                    reply,
                }) => {
                    let r = accept(addr, &offer).map(|(leg, sdp)| {
                        let port: PortRef = leg.port.clone();
                        legs.insert(leg_id.clone(), leg);
                        (sdp, port)
                    });
                    let _ = reply.send(r);
                }
                Ok(Cmd::Hangup { leg_id }) => {
                    if let Some(mut l) = legs.remove(&leg_id) {
                        l.rtc.disconnect();
                    }
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
        }
        let now = Instant::now();
        let mut wake = now + Duration::from_millis(20);
        let mut closed = vec![];
        for (id, leg) in legs.iter_mut() {
            send_audio(leg, now);
            match drive(id, leg, &socket, &events) {
                Ok(next) => wake = wake.min(next).min(leg.next_send),
                Err(reason) => closed.push((id.clone(), reason)),
            }
        }
        for (leg_id, reason) in closed {
            legs.remove(&leg_id);
            let _ = events.send(LegEvent::Closed { leg_id, reason });
        }
        let wait = wake
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        let _ = socket.set_read_timeout(Some(wait));
        match socket.recv_from(&mut buf) {
            Ok((n, source)) => {
                let Ok(contents) = buf[..n].try_into() else {
                    continue; // not STUN, DTLS or RTP: dropped
                };
                let input = Input::Receive(
                    Instant::now(),
                    Receive {
                        proto: Protocol::Udp,
                        source,
                        destination: addr,
                        contents,
                    },
                );
                if let Some(leg) = legs.values_mut().find(|l| l.rtc.accepts(&input)) {
                    let _ = leg.rtc.handle_input(input);
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => tracing::warn!(error = %e, "WebRTC socket"),
        }
    }
}

/// Every 20 ms, what the room wrote for the browser, Opus-encoded.
fn send_audio(leg: &mut Leg, now: Instant) {
    if now < leg.next_send {
        return;
    }
    leg.next_send += Duration::from_millis(20);
    if leg.next_send < now {
        leg.next_send = now + Duration::from_millis(20);
    }
    if !leg.connected {
        return;
    }
    let Some((mid, pt, voice)) = &mut leg.audio else {
        return;
    };
    let frame = leg.port.lock().expect("port").next_outgoing();
    let Some(frame) = frame else { return };
    let Ok(packet) = voice.encode(&frame) else {
        return;
    };
    let (clock, per_frame) = voice.clock();
    let rtp = MediaTime::new(leg.rtp_time, clock);
    leg.rtp_time += per_frame;
    if let Some(w) = leg.rtc.writer(*mid) {
        let _ = w.write(*pt, now, rtp, packet);
    }
}

/// Run a leg's session until it waits: datagrams out, events handled. The next time it
/// needs attention, or why it ended.
fn drive(
    leg_id: &str,
    leg: &mut Leg,
    socket: &UdpSocket,
    events: &Sender<LegEvent>,
) -> Result<Instant, String> {
    loop {
        if !leg.rtc.is_alive() {
            return Err("the session ended".into());
        }
        match leg.rtc.poll_output().map_err(|e| e.to_string())? {
            Output::Timeout(t) => {
                if t <= Instant::now() {
                    leg.rtc
                        .handle_input(Input::Timeout(Instant::now()))
                        .map_err(|e| e.to_string())?;
                    continue;
                }
                return Ok(t);
            }
            Output::Transmit(t) => {
                let _ = socket.send_to(&t.contents, t.destination);
            }
            Output::Event(e) => on_event(leg_id, leg, e, events)?,
        }
    }
}

fn on_event(
    leg_id: &str,
    leg: &mut Leg,
    e: Event,
    events: &Sender<LegEvent>,
) -> Result<(), String> {
    match e {
        Event::Connected => {
            leg.connected = true;
            let _ = events.send(LegEvent::Connected {
                leg_id: leg_id.to_string(),
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
            leg.audio = params.and_then(|p| Some((m.mid, p.pt(), Voice::for_params(&p)?)));
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
            if let Ok(samples) = voice.decode(&d.data) {
                let ts = d
                    .time
                    .rebase(str0m::media::Frequency::FORTY_EIGHT_KHZ)
                    .numer() as u32;
                leg.port.lock().expect("port").arrived(ts, samples);
            }
        }
        _ => {}
    }
    Ok(())
}
