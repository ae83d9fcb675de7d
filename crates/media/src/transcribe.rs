//! Live transcription's half in the room: each participant's audio through its own VAD, cut
//! into utterances as speech ends (or every [`MAX_UTTERANCE_MS`] of unbroken speech), each
//! handed out with its speaker and its place on the transcript's clock. Turning audio into
//! words happens elsewhere (the node's speech-to-text workers), never on a media thread.

use crate::vad::{Vad, VadEvent};
use crate::{Event, FRAME, TICK_MS, Utterance};
use std::collections::VecDeque;

/// Speech kept from before the VAD decided someone spoke (its onset needs a few frames).
const PREROLL_FRAMES: usize = 10;
/// An utterance longer than this is handed out in pieces (Whisper takes at most 30 s).
pub const MAX_UTTERANCE_MS: u64 = 15_000;

struct Speaker {
    id: String,
    vad: Vad,
    preroll: VecDeque<[i16; FRAME]>,
    /// The utterance so far, and the frame it started on.
    speech: Option<(u64, Vec<i16>)>,
    seen: bool,
}

pub struct Transcriber {
    pub call_id: String,
    transcript_id: String,
    offset_ms: u64,
    /// Frames heard since the transcriber started.
    frames: u64,
    speakers: Vec<Speaker>,
}

impl Transcriber {
    pub fn new(call_id: &str, transcript_id: &str, offset_ms: u64) -> Transcriber {
        Transcriber {
            call_id: call_id.to_string(),
            transcript_id: transcript_id.to_string(),
            offset_ms,
            frames: 0,
            speakers: vec![],
        }
    }

    /// What participant `id` said this tick (`None`: nothing anyone could hear).
    pub fn hear(&mut self, id: &str, frame: Option<&[i16; FRAME]>, outs: &mut Vec<Event>) {
        let at = match self.speakers.iter().position(|s| s.id == id) {
            Some(i) => i,
            None => {
                self.speakers.push(Speaker {
                    id: id.to_string(),
                    vad: Vad::default(),
                    preroll: VecDeque::with_capacity(PREROLL_FRAMES),
                    speech: None,
                    seen: false,
                });
                self.speakers.len() - 1
            }
        };
        const SILENCE: [i16; FRAME] = [0; FRAME];
        let frame = frame.unwrap_or(&SILENCE);
        let now = self.frames;
        let s = &mut self.speakers[at];
        s.seen = true;
        let event = s.vad.frame(frame);
        match &mut s.speech {
            Some((_, audio)) => audio.extend_from_slice(frame),
            // Speech that goes on after a long utterance was cut starts the next one.
            None if event == Some(VadEvent::SpeechStarted) || s.vad.speaking() => {
                let start = now - s.preroll.len() as u64;
                let mut audio = Vec::with_capacity(FRAME * 150);
                for f in s.preroll.drain(..) {
                    audio.extend_from_slice(&f);
                }
                audio.extend_from_slice(frame);
                s.speech = Some((start, audio));
            }
            None => {
                if s.preroll.len() == PREROLL_FRAMES {
                    s.preroll.pop_front();
                }
                s.preroll.push_back(*frame);
            }
        }
        let long = s
            .speech
            .as_ref()
            .is_some_and(|(_, a)| a.len() >= crate::samples(MAX_UTTERANCE_MS));
        if event == Some(VadEvent::SpeechEnded) || long {
            self.cut(at, outs);
        }
    }

    /// The tick is over: participants not heard from have left, and what they said is out.
    pub fn end_tick(&mut self, outs: &mut Vec<Event>) {
        self.frames += 1;
        let mut i = 0;
        while i < self.speakers.len() {
            if self.speakers[i].seen {
                self.speakers[i].seen = false;
                i += 1;
            } else {
                self.cut(i, outs);
                self.speakers.remove(i);
            }
        }
    }

    /// Transcription stops (or the room closes): every utterance in progress goes out.
    pub fn finish(mut self, outs: &mut Vec<Event>) {
        for i in 0..self.speakers.len() {
            self.cut(i, outs);
        }
    }

    fn cut(&mut self, i: usize, outs: &mut Vec<Event>) {
        let s = &mut self.speakers[i];
        let Some((start, audio)) = s.speech.take() else {
            return;
        };
        let start_ms = self.offset_ms + start * TICK_MS;
        outs.push(Event::Utterance(Utterance {
            call_id: self.call_id.clone(),
            transcript_id: self.transcript_id.clone(),
            participant_id: s.id.clone(),
            start_ms,
            end_ms: start_ms + crate::wav::duration_ms(audio.len()),
            audio,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voiced(n: usize) -> [i16; FRAME] {
        let mut f = [0i16; FRAME];
        for (i, x) in f.iter_mut().enumerate() {
            let t = (n * FRAME + i) as f32 / crate::RATE as f32;
            *x = (8000.0 * (2.0 * std::f32::consts::PI * 180.0 * t).sin()) as i16;
        }
        f
    }

    fn run(t: &mut Transcriber, script: &[(&str, bool)], ticks: usize) -> Vec<Utterance> {
        let mut outs = vec![];
        for n in 0..ticks {
            for (id, talking) in script {
                let f = voiced(n);
                t.hear(id, talking.then_some(&f), &mut outs);
            }
            t.end_tick(&mut outs);
        }
        outs.into_iter()
            .map(|e| match e {
                Event::Utterance(u) => u,
                e => panic!("{e:?}"),
            })
            .collect()
    }

    #[test]
    fn each_speaker_gets_their_own_utterances_timed_on_the_transcript_clock() {
        let mut t = Transcriber::new("c1", "t1", 5_000);
        // One second of quiet, then alice speaks for a second while bob stays quiet.
        assert!(run(&mut t, &[("alice", false), ("bob", false)], 50).is_empty());
        let mut got = run(&mut t, &[("alice", true), ("bob", false)], 50);
        got.extend(run(&mut t, &[("alice", false), ("bob", false)], 50));
        assert_eq!(got.len(), 1, "{got:?}");
        let u = &got[0];
        assert_eq!((u.call_id.as_str(), u.transcript_id.as_str()), ("c1", "t1"));
        assert_eq!(u.participant_id, "alice");
        // Speech started at 6.0 s; the VAD's onset is covered by the pre-roll.
        assert!(u.start_ms <= 6_000 && u.start_ms >= 5_800, "{}", u.start_ms);
        assert!(u.end_ms >= 7_000 && u.end_ms <= 7_400, "{}", u.end_ms);
        assert_eq!(u.audio.len() as u64, (u.end_ms - u.start_ms) * 16);
    }

    #[test]
    fn long_speech_comes_out_in_pieces_and_a_leaver_or_a_stop_flushes_what_was_said() {
        let mut t = Transcriber::new("c1", "t1", 0);
        let got = run(&mut t, &[("alice", true)], 1000); // 20 s without a pause
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].end_ms - got[0].start_ms, MAX_UTTERANCE_MS);
        // Bob speaks and leaves mid-sentence: what he said goes out when he is gone.
        let got = run(&mut t, &[("alice", true), ("bob", true)], 20);
        assert!(got.is_empty());
        let got = run(&mut t, &[("alice", true)], 1);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].participant_id, "bob");
        let mut outs = vec![];
        t.finish(&mut outs);
        assert!(
            matches!(&outs[..], [Event::Utterance(u)] if u.participant_id == "alice" && u.start_ms == MAX_UTTERANCE_MS),
            "{outs:?}"
        );
    }
}
