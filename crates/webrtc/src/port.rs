//! A browser leg's port: the room reads what arrived (through a jitter buffer) and writes
//! what the browser should hear; the endpoint's thread fills one side and drains the other.

use media::jitter::JitterBuffer;
use media::port::{Common, Port};
use media::{FRAME, RATE};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Frames waiting to be sent: more than this (200 ms) and the oldest are dropped, so a leg
/// whose network stalls does not queue audio without bound.
const MAX_QUEUED: usize = 10;

pub struct WebPort {
    jitter: JitterBuffer,
    /// 48 kHz RTP timestamps extended past their 32-bit wrap, to place 16 kHz audio.
    last_ts: Option<(u32, u64)>,
    /// What the room wrote, each with its common mix's tag when it was one.
    outgoing: VecDeque<([i16; FRAME], Option<Common>)>,
    tones: VecDeque<char>,
    start: std::time::Instant,
    /// What the room said at its last read ([`Port::silence_needed`]).
    silence_needed: bool,
}

impl WebPort {
    pub fn new() -> Arc<Mutex<WebPort>> {
        Arc::new(Mutex::new(WebPort {
            jitter: JitterBuffer::new(RATE, FRAME),
            last_ts: None,
            outgoing: VecDeque::new(),
            tones: VecDeque::new(),
            start: std::time::Instant::now(),
            silence_needed: true,
        }))
    }

    /// Decoded audio of the packet with this 48 kHz RTP timestamp.
    pub fn arrived(&mut self, ts48: u32, samples: Vec<i16>) {
        let ext = match self.last_ts {
            None => ts48 as u64 + (1 << 32),
            Some((last, ext)) => {
                let delta = ts48.wrapping_sub(last) as i32 as i64;
                (ext as i64 + delta) as u64
            }
        };
        if self.last_ts.is_none_or(|(_, e)| ext > e) {
            self.last_ts = Some((ts48, ext));
        }
        let arrival = self.start.elapsed().as_millis() as u64;
        self.jitter.push((ext / 3) as u32, arrival, samples);
    }

    /// Whether the room needs the browser's silence decoded (else only its sound).
    pub fn wants_silence(&self) -> bool {
        self.silence_needed
    }

    /// A key the browser pressed (RFC 4733).
    pub fn key(&mut self, key: char) {
        self.tones.push_back(key);
    }

    /// The next frame to send to the browser, if the room wrote one, and which common mix it
    /// is when it is one.
    pub fn next_outgoing(&mut self) -> Option<([i16; FRAME], Option<Common>)> {
        self.outgoing.pop_front()
    }

    /// When a frame of common mix `tag` is waiting, drop what waits before it and take it: a
    /// leg one frame behind the others of its room (the room wrote to it after this shard had
    /// already sent) catches up, so it can share their encoding again.
    pub fn catch_up(&mut self, tag: Common) -> Option<[i16; FRAME]> {
        let at = self.outgoing.iter().position(|(_, c)| *c == Some(tag))?;
        self.outgoing.drain(..at);
        self.outgoing.pop_front().map(|(f, _)| f)
    }

    /// Forget what is waiting to be sent.
    pub fn clear_outgoing(&mut self) {
        self.outgoing.clear();
    }

    fn queue(&mut self, frame: &[i16; FRAME], common: Option<Common>) {
        if self.outgoing.len() >= MAX_QUEUED {
            self.outgoing.pop_front();
        }
        self.outgoing.push_back((*frame, common));
    }
}

impl Port for WebPort {
    fn read(&mut self, out: &mut [i16; FRAME]) -> bool {
        self.jitter.pop(out)
    }

    fn write(&mut self, frame: &[i16; FRAME]) {
        self.queue(frame, None);
    }

    fn write_common(&mut self, frame: &[i16; FRAME], tag: Common) {
        self.queue(frame, Some(tag));
    }

    fn silence_needed(&mut self, needed: bool) {
        self.silence_needed = needed;
    }

    fn take_tone(&mut self) -> Option<char> {
        self.tones.pop_front()
    }
}
