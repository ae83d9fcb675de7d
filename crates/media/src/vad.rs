//! Voice activity detection for recordResponse's silence timeouts: energy-based, per 20 ms
//! frame, against an adaptive noise floor.
//!
//! A frame is *loud* when its energy is above both an absolute floor (−50 dBFS) and the noise
//! floor by `margin_db`. Speech starts after `onset_frames` loud frames in a row and ends after
//! `hangover_frames` quiet ones, so short gaps between words do not end it. The noise floor
//! follows quiet frames quickly and loud ones slowly, so steady or slowly changing background
//! noise is learned and not taken for speech. A sudden step in the noise level (digital
//! silence, then a noisy line) reads as speech until the hangover ends it — the price of a
//! detector that looks at energy only.

use crate::mixer::energy;

#[derive(Debug, Clone)]
pub struct VadConfig {
    pub margin_db: f32,
    pub abs_floor_dbfs: f32,
    pub onset_frames: u32,
    pub hangover_frames: u32,
}

impl Default for VadConfig {
    fn default() -> Self {
        VadConfig {
            margin_db: 9.0,
            abs_floor_dbfs: -50.0,
            onset_frames: 3,
            hangover_frames: 15,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadEvent {
    SpeechStarted,
    SpeechEnded,
}

pub struct Vad {
    cfg: VadConfig,
    /// Noise floor, as a mean square.
    floor: f64,
    loud_run: u32,
    quiet_run: u32,
    speaking: bool,
}

impl Default for Vad {
    fn default() -> Self {
        Vad::new(VadConfig::default())
    }
}

impl Vad {
    pub fn new(cfg: VadConfig) -> Vad {
        let floor = full_scale_ms() * 10f64.powf(cfg.abs_floor_dbfs as f64 / 10.0);
        Vad {
            cfg,
            floor,
            loud_run: 0,
            quiet_run: 0,
            speaking: false,
        }
    }

    pub fn speaking(&self) -> bool {
        self.speaking
    }

    /// Feed one 20 ms frame.
    pub fn frame(&mut self, samples: &[i16]) -> Option<VadEvent> {
        let e = energy(samples) as f64;
        let abs_floor = full_scale_ms() * 10f64.powf(self.cfg.abs_floor_dbfs as f64 / 10.0);
        let loud = e > abs_floor && e > self.floor * 10f64.powf(self.cfg.margin_db as f64 / 10.0);
        // Track the floor: fast down, slow up (and not at all while someone speaks).
        if e < self.floor {
            self.floor = 0.7 * self.floor + 0.3 * e.max(abs_floor / 10.0);
        } else if !loud {
            self.floor = 0.95 * self.floor + 0.05 * e;
        }
        if loud {
            self.loud_run += 1;
            self.quiet_run = 0;
        } else {
            self.quiet_run += 1;
            self.loud_run = 0;
        }
        if !self.speaking && self.loud_run >= self.cfg.onset_frames {
            self.speaking = true;
            return Some(VadEvent::SpeechStarted);
        }
        if self.speaking && self.quiet_run >= self.cfg.hangover_frames {
            self.speaking = false;
            return Some(VadEvent::SpeechEnded);
        }
        None
    }
}

fn full_scale_ms() -> f64 {
    32768.0 * 32768.0 / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FRAME, RATE};

    fn noise_frame(amp: f32, seed: &mut u64) -> Vec<i16> {
        (0..FRAME)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                (((*seed % 20001) as f32 / 10000.0 - 1.0) * amp) as i16
            })
            .collect()
    }

    /// A voiced syllable frame: harmonics of a 140 Hz fundamental.
    fn voice_frame(n: usize, amp: f32) -> Vec<i16> {
        (0..FRAME)
            .map(|i| {
                let t = (n * FRAME + i) as f32 / RATE as f32;
                let v: f32 = (1..8)
                    .map(|h| (2.0 * std::f32::consts::PI * 140.0 * h as f32 * t).sin() / h as f32)
                    .sum();
                (v * amp) as i16
            })
            .collect()
    }

    #[test]
    fn speech_over_steady_noise_starts_and_ends_once() {
        let mut vad = Vad::default();
        let mut seed = 42;
        let mut events = vec![];
        let push = |vad: &mut Vad, f: Vec<i16>, at: usize, events: &mut Vec<(usize, VadEvent)>| {
            if let Some(e) = vad.frame(&f) {
                events.push((at, e));
            }
        };
        let mut t = 0;
        // One second of background noise (about −45 dBFS) is learned, not taken for speech.
        for _ in 0..50 {
            push(&mut vad, noise_frame(300.0, &mut seed), t, &mut events);
            t += 1;
        }
        // Two words with a 100 ms pause between them: one utterance.
        for word in 0..2 {
            for n in 0..25 {
                let mut f = voice_frame(n, 5000.0);
                for (s, x) in f.iter_mut().zip(noise_frame(300.0, &mut seed)) {
                    *s = s.saturating_add(x);
                }
                push(&mut vad, f, t, &mut events);
                t += 1;
            }
            if word == 0 {
                for _ in 0..5 {
                    push(&mut vad, noise_frame(300.0, &mut seed), t, &mut events);
                    t += 1;
                }
            }
        }
        for _ in 0..40 {
            push(&mut vad, noise_frame(300.0, &mut seed), t, &mut events);
            t += 1;
        }
        let kinds: Vec<VadEvent> = events.iter().map(|e| e.1).collect();
        assert_eq!(
            kinds,
            [VadEvent::SpeechStarted, VadEvent::SpeechEnded],
            "{events:?}"
        );
        assert!(
            (50..=53).contains(&events[0].0),
            "speech detected within 60 ms of onset: {events:?}"
        );
        assert!(
            (105..=125).contains(&events[1].0),
            "ends after the hangover: {events:?}"
        );
    }

    #[test]
    fn steady_or_slowly_changing_noise_is_never_speech() {
        let mut vad = Vad::default();
        let mut seed = 7;
        for i in 0..1000 {
            // From −55 to about −35 dBFS over 20 s, like a line getting noisier.
            let amp = 100.0 + i as f32;
            assert_eq!(vad.frame(&noise_frame(amp, &mut seed)), None, "frame {i}");
        }
        assert!(!vad.speaking());
    }
}
