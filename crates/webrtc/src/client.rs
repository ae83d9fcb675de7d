//! A browser, as far as ringside can tell: a full-ICE str0m session on its own UDP socket
//! that offers audio, speaks Opus every 20 ms and decodes what it hears. The tests and the
//! load benchmark call ringside with it.

use crate::voice::Voice;
use media::FRAME;
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpPendingOffer};
pub use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

pub struct Browser {
    rtc: Rtc,
    sock: UdpSocket,
    local: SocketAddr,
    mid: Mid,
    pending: Option<SdpPendingOffer>,
    /// What the browser sends with, once negotiated; a decoder per payload type heard.
    voice: Option<(str0m::media::Pt, Voice)>,
    incoming: HashMap<str0m::media::Pt, Voice>,
    /// ICE and DTLS are up.
    pub connected: bool,
    /// When the session came up, from its creation.
    pub connected_after: Option<Duration>,
    /// Everything heard, decoded at 16 kHz.
    pub heard: Vec<i16>,
    /// Frames sent.
    pub sent: usize,
    /// Keys to press (RFC 4733), one per 160 ms, sent with the next frames.
    pub keys: std::collections::VecDeque<char>,
    created: Instant,
    next_tick: Instant,
}

impl Browser {
    /// A new browser offering Opus, and its SDP offer.
    pub fn offer() -> Result<(Browser, String), String> {
        Browser::offering(&[Codec::Opus])
    }

    /// A new browser offering these codecs (Opus, PCMU, PCMA), and its SDP offer.
    pub fn offering(codecs: &[Codec]) -> Result<(Browser, String), String> {
        let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let local = sock.local_addr().map_err(|e| e.to_string())?;
        let (rtc, mid, pending, offer) = offering_session(local, codecs)?;
        let b = Browser {
            rtc,
            sock,
            local,
            mid,
            pending: Some(pending),
            voice: None,
            incoming: HashMap::new(),
            connected: false,
            connected_after: None,
            heard: vec![],
            sent: 0,
            keys: Default::default(),
            created: Instant::now(),
            next_tick: Instant::now(),
        };
        Ok((b, offer))
    }

    /// Take ringside's answer.
    pub fn accept_answer(&mut self, sdp: &str) -> Result<(), String> {
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| e.to_string())?;
        let pending = self.pending.take().ok_or("no offer is pending")?;
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| e.to_string())
    }

    /// Run the session for up to `limit`, or until `done` says so. Every 20 ms once
    /// connected, `speak(frame number)` gives what to send (None: silence, nothing sent).
    pub fn run(
        &mut self,
        limit: Duration,
        speak: &mut dyn FnMut(usize) -> Option<[i16; FRAME]>,
        done: &mut dyn FnMut(&Browser) -> bool,
    ) -> Result<(), String> {
        let end = Instant::now() + limit;
        let mut buf = vec![0u8; 2000];
        while Instant::now() < end && !done(self) {
            let timeout = self.poll()?;
            if Instant::now() >= self.next_tick {
                self.next_tick += Duration::from_millis(20);
                if self.connected {
                    if let Some(frame) = speak(self.sent) {
                        self.send(&frame)?;
                    }
                    self.sent += 1;
                }
            }
            let wait = timeout
                .min(self.next_tick)
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            self.sock
                .set_read_timeout(Some(wait))
                .map_err(|e| e.to_string())?;
            let input = match self.sock.recv_from(&mut buf) {
                Ok((n, source)) => Input::Receive(
                    Instant::now(),
                    Receive {
                        proto: Protocol::Udp,
                        source,
                        destination: self.local,
                        contents: buf[..n].try_into().map_err(|e| format!("{e:?}"))?,
                    },
                ),
                Err(_) => Input::Timeout(Instant::now()),
            };
            self.rtc.handle_input(input).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn poll(&mut self) -> Result<Instant, String> {
        loop {
            match self.rtc.poll_output().map_err(|e| e.to_string())? {
                Output::Timeout(t) => return Ok(t),
                Output::Transmit(t) => {
                    let _ = self.sock.send_to(&t.contents, t.destination);
                }
                Output::Event(Event::Connected) => {
                    self.connected = true;
                    self.connected_after = Some(self.created.elapsed());
                }
                Output::Event(Event::MediaData(d)) => {
                    if let std::collections::hash_map::Entry::Vacant(e) = self.incoming.entry(d.pt)
                        && let Some(v) = Voice::for_params(&d.params)
                    {
                        e.insert(v);
                    }
                    if let Some(v) = self.incoming.get_mut(&d.pt)
                        && let Ok(s) = v.decode(&d.data)
                    {
                        self.heard.extend(s);
                    }
                }
                Output::Event(_) => {}
            }
        }
    }

    fn send(&mut self, frame: &[i16; FRAME]) -> Result<(), String> {
        if self.voice.is_none() {
            let w = self.rtc.writer(self.mid).ok_or("no audio writer")?;
            let best = Voice::choose(w.payload_params()).ok_or("no voice codec was negotiated")?;
            let v = Voice::for_params(&best).ok_or("no voice codec was negotiated")?;
            self.voice = Some((best.pt(), v));
        }
        let (pt, voice) = self.voice.as_mut().expect("chosen above");
        let pt = *pt;
        let packet = voice.encode(frame)?;
        let (clock, per_frame) = voice.clock();
        let t = MediaTime::new(self.sent as u64 * per_frame, clock);
        let mut w = self.rtc.writer(self.mid).ok_or("no audio writer")?;
        // A key every eighth frame (160 ms): a whole 60 ms event, its end sent three times.
        if self.sent.is_multiple_of(8)
            && let Some(event) = self.keys.pop_front().and_then(event_of)
        {
            w = w.telephone_event(str0m::media::TelephoneEvent {
                event,
                end: true,
                volume: 10,
                duration: Duration::from_millis(60),
            });
        }
        // The level of what the microphone sent (RFC 6464), as browsers mark every packet:
        // -127 dBov for digital silence (a muted microphone).
        let (level, voice) = audio_level(frame);
        w = w.audio_level(level, voice);
        w.write(pt, Instant::now(), t, packet)
            .map_err(|e| e.to_string())
    }
}

/// A frame's RFC 6464 level in dBov (-127 for digital silence) and whether it holds sound.
pub fn audio_level(frame: &[i16; FRAME]) -> (i8, bool) {
    let e: f64 = frame.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / FRAME as f64;
    if e == 0.0 {
        return (-127, false);
    }
    let dbov = 10.0 * (e / (32768.0f64 * 32768.0)).log10();
    (dbov.round().clamp(-126.0, 0.0) as i8, dbov > -50.0)
}

/// A browser-side session (full ICE) on `local`, offering one audio m-line with these codecs
/// (Opus, PCMU, PCMA) and telephone events: the session, its audio mid, the pending offer to
/// complete with the answer, and the offer's SDP.
pub fn offering_session(
    local: SocketAddr,
    codecs: &[Codec],
) -> Result<(Rtc, Mid, SdpPendingOffer, String), String> {
    let mut cfg = Rtc::builder().clear_codecs();
    for c in codecs {
        cfg = match c {
            Codec::Opus => cfg.enable_opus(true, false),
            Codec::PCMU => cfg.enable_pcmu(true, false),
            Codec::PCMA => cfg.enable_pcma(true, false),
            other => return Err(format!("{other} is not a voice codec ringside speaks")),
        };
    }
    let mut rtc = crate::endpoint::with_dtmf(cfg).build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").map_err(|e| e.to_string())?);
    let mut change = rtc.sdp_api();
    let mid = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let (offer, pending) = change.apply().ok_or("no offer")?;
    Ok((rtc, mid, pending, offer.to_sdp_string()))
}

/// A key as an RFC 4733 event code.
fn event_of(key: char) -> Option<u8> {
    match key {
        '0'..='9' => Some(key as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(key as u8 - b'A' + 12),
        _ => None,
    }
}

/// A 20 ms frame of a sine at `hz`, the `n`th of a continuous tone.
pub fn tone(hz: f64, n: usize) -> [i16; FRAME] {
    let mut f = [0i16; FRAME];
    for (i, s) in f.iter_mut().enumerate() {
        let t = (n * FRAME + i) as f64 / 16_000.0;
        *s = ((t * hz * std::f64::consts::TAU).sin() * 8000.0) as i16;
    }
    f
}

/// The dominant frequency of 16 kHz audio, from its zero crossings.
pub fn frequency(samples: &[i16]) -> f64 {
    let crossings = samples
        .windows(2)
        .filter(|w| (w[0] < 0) != (w[1] < 0))
        .count();
    crossings as f64 / 2.0 / (samples.len() as f64 / 16_000.0)
}
