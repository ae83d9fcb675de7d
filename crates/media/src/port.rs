//! Ports: where a leg's audio enters and leaves its room. A port is read and written once per
//! tick by the room's media thread, so it must never block. Simulated users and app-to-app
//! bridges live here; SIP and WebRTC legs add theirs (jitter buffer in, packetizer out).

use crate::dtmf::{self, DtmfDetector};
use crate::{Audio, FRAME};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

pub trait Port: Send {
    /// The next 20 ms the endpoint sends; false when it sent nothing this tick.
    fn read(&mut self, out: &mut [i16; FRAME]) -> bool;
    /// This tick's 20 ms when nobody will listen to it (no one in the room hears this member,
    /// nor records it or waits for its keys): the port keeps its clock (and its keys) but may
    /// spare itself the work of producing the audio. True when the endpoint sent something.
    fn skip(&mut self) -> bool {
        let mut scratch = [0i16; FRAME];
        self.read(&mut scratch)
    }
    /// Told before each [`Port::read`]: whether the room needs this leg's silence as well as
    /// its sound. False when the audio only goes into the mix (no bot records it, listens for
    /// keys in it or streams it, and nothing transcribes or records the call), where silence
    /// adds nothing: an endpoint may then leave packets it knows to be silent undecoded.
    fn silence_needed(&mut self, _needed: bool) {}
    /// What the endpoint hears this tick.
    fn write(&mut self, frame: &[i16; FRAME]);
    /// What the endpoint hears this tick when it is its room's common mix: every port written
    /// with the same `tag` this tick got the same samples, so an endpoint may encode them once
    /// for all its legs that hear it.
    fn write_common(&mut self, frame: &[i16; FRAME], _tag: Common) {
        self.write(frame)
    }
    /// An app's unmixed media stream: what `participant` said this tick (only those who said
    /// something; [`Port::write`] is not called for such a port).
    fn write_source(&mut self, _participant: &str, _frame: &[i16; FRAME]) {}
    /// A key the endpoint signalled out of band (RFC 4733, SIP INFO) since the last tick.
    fn take_tone(&mut self) -> Option<char> {
        None
    }
    /// A key the bot sends: endpoints that negotiated telephone-events send it as an event
    /// (and return true); others hear it in-band only.
    fn tone_event(&mut self, _key: char) -> bool {
        false
    }
}

/// Which common mix a frame is ([`Port::write_common`]): the room's and the tick's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Common {
    pub mix: u64,
    pub tick: u64,
}

pub type PortRef = Arc<Mutex<dyn Port>>;

/// The ports of live legs, by leg id: endpoints insert, rooms look up.
#[derive(Default)]
pub struct Ports {
    map: Mutex<HashMap<String, PortRef>>,
}

impl Ports {
    pub fn insert(&self, leg_id: &str, port: PortRef) {
        self.map
            .lock()
            .expect("ports")
            .insert(leg_id.to_string(), port);
    }
    pub fn get(&self, leg_id: &str) -> Option<PortRef> {
        self.map.lock().expect("ports").get(leg_id).cloned()
    }
    pub fn remove(&self, leg_id: &str) {
        self.map.lock().expect("ports").remove(leg_id);
    }
    pub fn len(&self) -> usize {
        self.map.lock().expect("ports").len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct Clip {
    start: u64,
    audio: Audio,
    looped: bool,
}

/// A simulated user's audio: it speaks clips on a timeline (from when it joined the room),
/// presses keys as real in-band DTMF, and records what it hears (up to a cap) while a
/// detector notes the tones it hears.
pub struct SimPort {
    pos: u64,
    clips: Vec<Clip>,
    heard: Vec<i16>,
    heard_cap: usize,
    detector: DtmfDetector,
    tones_heard: String,
}

/// Level of a simulated key press, per tone.
pub const PRESS_DBFS: f32 = -10.0;

impl SimPort {
    /// `heard_cap`: how many samples of what it hears to keep (0: none).
    pub fn new(heard_cap: usize) -> SimPort {
        SimPort {
            pos: 0,
            clips: vec![],
            heard: vec![],
            heard_cap,
            detector: DtmfDetector::default(),
            tones_heard: String::new(),
        }
    }

    /// Speak `audio` `at_ms` after joining (now, if that has passed).
    pub fn say(&mut self, at_ms: u64, audio: Audio, looped: bool) {
        let start = (crate::samples(at_ms) as u64).max(self.pos);
        self.clips.push(Clip {
            start,
            audio,
            looped,
        });
    }

    /// Press `key` for `ms` milliseconds, `at_ms` after joining.
    pub fn press(&mut self, at_ms: u64, key: char, ms: u32) -> bool {
        match dtmf::tone(key, ms, PRESS_DBFS) {
            Some(t) => {
                self.say(at_ms, t.into(), false);
                true
            }
            None => false,
        }
    }

    /// Stop speaking (everything scheduled).
    pub fn hush(&mut self) {
        self.clips.clear();
    }

    /// What it heard so far (16 kHz mono PCM16).
    pub fn heard(&self) -> &[i16] {
        &self.heard
    }

    /// The DTMF keys it heard, in order.
    pub fn tones_heard(&self) -> &str {
        &self.tones_heard
    }

    /// Milliseconds since it joined a room.
    pub fn elapsed_ms(&self) -> u64 {
        crate::wav::duration_ms(self.pos as usize)
    }
}

impl Port for SimPort {
    fn read(&mut self, out: &mut [i16; FRAME]) -> bool {
        let (from, to) = (self.pos, self.pos + FRAME as u64);
        let mut acc = [0i32; FRAME];
        for c in &self.clips {
            let len = c.audio.len() as u64;
            if c.start >= to || len == 0 {
                continue;
            }
            // Fill the part of this tick the clip covers, a contiguous run at a time.
            let mut i = c.start.saturating_sub(from) as usize;
            while i < FRAME {
                let k = from + i as u64 - c.start;
                let k = if c.looped { k % len } else { k };
                if k >= len {
                    break;
                }
                let n = ((len - k) as usize).min(FRAME - i);
                for (a, &x) in acc[i..i + n]
                    .iter_mut()
                    .zip(&c.audio[k as usize..k as usize + n])
                {
                    *a += x as i32;
                }
                i += n;
            }
        }
        for (o, a) in out.iter_mut().zip(acc) {
            *o = a.clamp(i16::MIN as i32, i16::MAX as i32) as i16;
        }
        self.pos = to;
        self.clips
            .retain(|c| c.looped || c.start + c.audio.len() as u64 > to);
        // A phone sends audio (or comfort noise) all the time it is connected.
        true
    }

    fn write(&mut self, frame: &[i16; FRAME]) {
        let room = self.heard_cap.saturating_sub(self.heard.len());
        self.heard.extend_from_slice(&frame[..room.min(FRAME)]);
        for k in self.detector.push(frame) {
            self.tones_heard.push(k);
        }
    }
}

/// Two ports joined back to back: what one hears, the other sends (one tick later). Connects
/// the rooms of two calls when an application calls another application.
pub fn bridge() -> (PortRef, PortRef) {
    let ab: Arc<Mutex<VecDeque<[i16; FRAME]>>> = Default::default();
    let ba: Arc<Mutex<VecDeque<[i16; FRAME]>>> = Default::default();
    let a = BridgePort {
        inbox: ba.clone(),
        outbox: ab.clone(),
        primed: false,
    };
    let b = BridgePort {
        inbox: ab,
        outbox: ba,
        primed: false,
    };
    (Arc::new(Mutex::new(a)), Arc::new(Mutex::new(b)))
}

struct BridgePort {
    inbox: Arc<Mutex<VecDeque<[i16; FRAME]>>>,
    outbox: Arc<Mutex<VecDeque<[i16; FRAME]>>>,
    /// Reading has started (two frames were waiting): one tick of slack between the rooms.
    primed: bool,
}

/// Frames a bridge holds at most; older ones are dropped (the two rooms' clocks drift).
const BRIDGE_DEPTH: usize = 4;
/// Frames to wait for before reading: the two rooms tick on different threads, in any phase,
/// so a frame may arrive just after the reader's tick; without the slack a tone would break
/// up into two presses.
const BRIDGE_PRIME: usize = 2;

impl Port for BridgePort {
    fn read(&mut self, out: &mut [i16; FRAME]) -> bool {
        let mut q = self.inbox.lock().expect("bridge");
        if !self.primed && q.len() < BRIDGE_PRIME {
            return false;
        }
        self.primed = true;
        match q.pop_front() {
            Some(f) => {
                *out = f;
                true
            }
            None => {
                // Ran dry: wait for the slack again.
                self.primed = false;
                false
            }
        }
    }
    fn write(&mut self, frame: &[i16; FRAME]) {
        let mut q = self.outbox.lock().expect("bridge");
        if q.len() >= BRIDGE_DEPTH {
            q.pop_front();
        }
        q.push_back(*frame);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simulated_user_speaks_on_its_timeline_and_hears_keys() {
        let mut p = SimPort::new(FRAME * 10);
        p.say(40, vec![100i16; 400].into(), false);
        let mut f = [0i16; FRAME];
        p.read(&mut f);
        assert!(f.iter().all(|&s| s == 0), "nothing before 40 ms");
        p.read(&mut f);
        assert!(f.iter().all(|&s| s == 0));
        p.read(&mut f);
        assert!(f.iter().all(|&s| s == 100), "the clip starts at 40 ms");
        p.read(&mut f);
        assert_eq!(f[79], 100);
        assert_eq!(f[80], 0, "and lasts 400 samples");
        let press = dtmf::tone('7', 100, -10.0).unwrap();
        for chunk in press.chunks(FRAME) {
            let mut fr = [0i16; FRAME];
            fr[..chunk.len()].copy_from_slice(chunk);
            p.write(&fr);
        }
        p.write(&[0; FRAME]);
        assert_eq!(p.tones_heard(), "7");
        assert_eq!(p.heard().len(), FRAME * 6);
    }

    #[test]
    fn a_bridge_carries_each_way() {
        let (a, b) = bridge();
        let mut f = [0; FRAME];
        a.lock().unwrap().write(&[5; FRAME]);
        assert!(
            !b.lock().unwrap().read(&mut f),
            "waits for a frame of slack"
        );
        a.lock().unwrap().write(&[6; FRAME]);
        assert!(b.lock().unwrap().read(&mut f));
        assert_eq!(f[0], 5);
        a.lock().unwrap().write(&[7; FRAME]);
        assert!(b.lock().unwrap().read(&mut f));
        assert_eq!(f[0], 6, "in order, one per tick");
        assert!(
            !a.lock().unwrap().read(&mut f),
            "nothing came the other way"
        );
    }
}
