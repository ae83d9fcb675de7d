//! A room: one conference's media, ticked every 20 ms. Sans-IO: the runtime feeds it commands
//! and ticks; it reads and writes its members' ports and returns events and audio to write.
//!
//! Each tick:
//! 1. every member's input is gathered: a leg's port (plus out-of-band keys), a bot's media
//!    (prompt, beep, DTMF it sends);
//! 2. keys are detected on each leg's input and delivered to every bot that hears that leg
//!    (toneInfo, recordResponse stop tones);
//! 3. the mixer gives each member what it may hear, never itself; a member on hold with hold
//!    music hears the music instead;
//! 4. bots hear their mix: a running recordResponse records it and checks its ends
//!    (max duration, initial silence, silence after speech, stop tone, no media at all);
//! 5. call recordings take the mix of everyone who can be heard.

use crate::dtmf::{self, DtmfDetector};
use crate::mixer::{self, MemberState, Route};
use crate::port::{PortRef, Ports};
use crate::transcribe::Transcriber;
use crate::vad::{Vad, VadEvent};
use crate::{
    Audio, Cmd, Endpoint, Event, FRAME, MemberSpec, Prompt, RecordSpec, Recorded, RoomSpec,
};
use std::collections::{HashMap, VecDeque};

use std::sync::OnceLock;

/// What a tick produces besides port writes.
#[derive(Debug)]
pub enum Out {
    Event(Event),
    /// Audio for the file `<recording_id>.wav`; with `close`, finish the file, then send
    /// `then` (if any).
    Chunk {
        recording_id: String,
        audio: Vec<i16>,
        close: bool,
        then: Option<Event>,
    },
}

/// Beep before a recording: 1 kHz, 300 ms, −12 dBFS.
pub const BEEP_MS: u64 = 300;
/// Level of the DTMF a bot sends, per tone.
pub const SEND_DBFS: f32 = -10.0;
/// Call-recording audio is handed to the writer once a second.
const CHUNK_FRAMES: usize = 50;

fn beep() -> &'static [i16] {
    static BEEP: OnceLock<Vec<i16>> = OnceLock::new();
    BEEP.get_or_init(|| {
        let n = crate::samples(BEEP_MS);
        let amp = 32767.0 * 10f32.powf(-12.0 / 20.0);
        (0..n)
            .map(|i| {
                let t = i as f32 / crate::RATE as f32;
                // 5 ms fade in and out: no clicks.
                let edge = (i.min(n - i) as f32 / 80.0).min(1.0);
                (amp * edge * (2.0 * std::f32::consts::PI * 1000.0 * t).sin()) as i16
            })
            .collect()
    })
}

/// The built-in hold music: a gentle four-second arpeggio, looped.
pub fn default_hold_music() -> Audio {
    static MUSIC: OnceLock<Audio> = OnceLock::new();
    MUSIC
        .get_or_init(|| {
            let notes = [
                261.63f32, 329.63, 392.0, 523.25, 392.0, 329.63, 293.66, 349.23,
            ];
            let per = crate::samples(500);
            let amp = 32767.0 * 10f32.powf(-18.0 / 20.0);
            let mut out = Vec::with_capacity(per * notes.len());
            for f in notes {
                for i in 0..per {
                    let t = i as f32 / crate::RATE as f32;
                    let env = (i.min(per - i) as f32 / 800.0).min(1.0);
                    let v = (2.0 * std::f32::consts::PI * f * t).sin()
                        + 0.3 * (2.0 * std::f32::consts::PI * 2.0 * f * t).sin();
                    out.push((amp * env * v / 1.3) as i16);
                }
            }
            out.into()
        })
        .clone()
}

struct Member {
    spec: MemberSpec,
    port: Option<PortRef>,
    /// A bot member's slot in [`Bots`].
    bot: Option<usize>,
    detector: DtmfDetector,
    /// The detector ran last tick (a bot wanted this member's keys).
    detecting: bool,
}

/// A looping player (hold music).
struct Player {
    audio: Audio,
    pos: usize,
}

impl Player {
    fn next(&mut self, out: &mut [i16; FRAME]) {
        for o in out.iter_mut() {
            *o = self.audio.get(self.pos).copied().unwrap_or(0);
            self.pos = (self.pos + 1) % self.audio.len().max(1);
        }
    }
}

enum Phase {
    Prompt { idx: usize, times: u32, pos: usize },
    Beep { pos: usize },
    Record(Box<Recording>),
}

struct Job {
    op_id: String,
    prompts: Vec<Prompt>,
    loop_forever: bool,
    record: Option<RecordSpec>,
    phase: Phase,
}

struct Recording {
    spec: RecordSpec,
    audio: Vec<i16>,
    vad: Vad,
    frames: u64,
    spoke: bool,
    /// Frames since speech ended (counts from the VAD's decision).
    quiet_frames: u64,
    /// Whether anyone the bot can hear sent audio.
    received: bool,
    stop: Option<&'static str>,
}

struct ToneJob {
    op_id: String,
    audio: Vec<i16>,
    /// (sample offset, key): where each key starts.
    keys: Vec<(usize, char)>,
    pos: usize,
}

/// The room's bots in the order they came, by call id. A bot is never removed while the room
/// lives (one whose call left still plays out its media), so a member keeps its bot's slot
/// and the tick never looks a bot up by id.
#[derive(Default)]
struct Bots(Vec<(String, Bot)>);

impl Bots {
    /// The slot of `call`'s bot, made when it has none.
    fn slot(&mut self, call: &str) -> usize {
        match self.0.iter().position(|(c, _)| c == call) {
            Some(i) => i,
            None => {
                self.0.push((call.to_string(), Bot::default()));
                self.0.len() - 1
            }
        }
    }

    fn entry(&mut self, call: &str) -> &mut Bot {
        let i = self.slot(call);
        &mut self.0[i].1
    }

    fn get_mut(&mut self, call: &str) -> Option<&mut Bot> {
        self.0.iter_mut().find(|(c, _)| c == call).map(|(_, b)| b)
    }
}

#[derive(Default)]
struct Bot {
    job: Option<Job>,
    tones: VecDeque<ToneJob>,
    /// Completions reported on the next tick, once their last frame has played out.
    played_out: Vec<Event>,
}

impl Bot {
    /// Still playing, recording, sending tones or reporting: its media outlives its call.
    fn busy(&self) -> bool {
        self.job.is_some() || !self.tones.is_empty() || !self.played_out.is_empty()
    }
}

impl Job {
    /// The phase after the prompts (or at the start, when there are none).
    fn after_prompts(&self) -> Option<Phase> {
        let r = self.record.as_ref()?;
        Some(if r.beep {
            Phase::Beep { pos: 0 }
        } else {
            Phase::Record(Box::new(Recording::new(r.clone())))
        })
    }
}

impl Recording {
    fn new(spec: RecordSpec) -> Recording {
        Recording {
            audio: Vec::with_capacity(crate::samples(spec.max_ms.min(10_000))),
            spec,
            vad: Vad::default(),
            frames: 0,
            spoke: false,
            quiet_frames: 0,
            received: false,
            stop: None,
        }
    }

    /// Record one heard frame; the completionReason once it should end.
    fn hear(&mut self, frame: &[i16; FRAME], received: bool) -> Option<&'static str> {
        self.audio.extend_from_slice(frame);
        self.frames += 1;
        self.received |= received;
        match self.vad.frame(frame) {
            Some(VadEvent::SpeechStarted) => self.spoke = true,
            Some(VadEvent::SpeechEnded) => self.quiet_frames = 0,
            None => {}
        }
        if self.spoke && !self.vad.speaking() {
            self.quiet_frames += 1;
        }
        let ms = self.frames * crate::TICK_MS;
        if let Some(r) = self.stop {
            return Some(r);
        }
        if ms >= self.spec.max_ms {
            return Some("maxRecordDurationReached");
        }
        if !self.spoke && ms >= self.spec.initial_silence_ms {
            return Some(if self.received {
                "initialSilenceTimeout"
            } else {
                "mediaReceiveTimeout"
            });
        }
        // The VAD's hangover already counts as silence after speech.
        let hangover = crate::vad::VadConfig::default().hangover_frames as u64;
        if self.spoke
            && !self.vad.speaking()
            && (self.quiet_frames + hangover) * crate::TICK_MS >= self.spec.max_silence_ms
        {
            return Some("maxSilenceTimeout");
        }
        None
    }
}

fn finish_transcript(t: Transcriber, outs: &mut Vec<Out>) {
    let mut evs = vec![];
    t.finish(&mut evs);
    outs.extend(evs.into_iter().map(Out::Event));
}

/// What member `i` hears this tick, after the mix (see [`mixer::mix`]).
fn heard_by<'a>(outputs: &'a [[i16; FRAME]], heard: &[bool], i: usize) -> &'a [i16; FRAME] {
    const SILENCE: [i16; FRAME] = [0; FRAME];
    if heard[i] { &outputs[i] } else { &SILENCE }
}

impl Bot {
    /// The bot's outgoing audio this tick, written over `out` when it sends (true; when it
    /// returns false, `out` holds nothing meaningful); keys it starts sending go to `keys`.
    fn render(
        &mut self,
        call_id: &str,
        out: &mut [i16; FRAME],
        outs: &mut Vec<Out>,
        keys: &mut Vec<char>,
    ) -> bool {
        outs.extend(self.played_out.drain(..).map(Out::Event));
        let mut sent = false;
        if self.job.is_none() && self.tones.is_empty() {
            return sent; // `out` is left as it was: nothing was sent
        }
        // A prompt may fill part of the frame, and tones add to what is there.
        out.fill(0);
        if let Some(job) = &mut self.job {
            let mut i = 0;
            while i < FRAME {
                match &mut job.phase {
                    Phase::Prompt { idx, times, pos } => {
                        let Some(p) = job.prompts.get(*idx) else {
                            break;
                        };
                        let n = (p.audio.len() - (*pos).min(p.audio.len())).min(FRAME - i);
                        out[i..i + n].copy_from_slice(&p.audio[*pos..*pos + n]);
                        sent = true;
                        i += n;
                        *pos += n;
                        if *pos >= p.audio.len() {
                            *pos = 0;
                            *times += 1;
                            if *times >= p.times.max(1) {
                                *times = 0;
                                *idx += 1;
                            }
                            if *idx >= job.prompts.len() {
                                if job.loop_forever {
                                    *idx = 0;
                                } else {
                                    match job.after_prompts() {
                                        Some(next) => job.phase = next,
                                        None => break,
                                    }
                                }
                            }
                        }
                    }
                    Phase::Beep { pos } => {
                        let b = beep();
                        let n = (b.len() - *pos).min(FRAME - i);
                        out[i..i + n].copy_from_slice(&b[*pos..*pos + n]);
                        sent = true;
                        *pos += n;
                        if *pos >= b.len() {
                            let spec = job.record.clone().expect("a beep belongs to a recording");
                            job.phase = Phase::Record(Box::new(Recording::new(spec)));
                        }
                        break;
                    }
                    Phase::Record(_) => break,
                }
            }
            let finished =
                matches!(job.phase, Phase::Prompt { idx, .. } if idx >= job.prompts.len());
            if finished {
                let op_id = job.op_id.clone();
                self.job = None;
                self.played_out.push(Event::Done {
                    call_id: call_id.to_string(),
                    op_id,
                    reason: "completedSuccessfully",
                    recording: None,
                });
            }
        }
        if let Some(t) = self.tones.front_mut() {
            let from = t.pos;
            let n = (t.audio.len() - t.pos).min(FRAME);
            for (o, &s) in out.iter_mut().zip(&t.audio[t.pos..t.pos + n]) {
                *o = o.saturating_add(s);
            }
            t.pos += n;
            sent = true;
            keys.extend(
                t.keys
                    .iter()
                    .filter(|(at, _)| *at >= from && *at < t.pos)
                    .map(|(_, k)| *k),
            );
            if t.pos >= t.audio.len() {
                let t = self.tones.pop_front().expect("front");
                self.played_out.push(Event::Done {
                    call_id: call_id.to_string(),
                    op_id: t.op_id,
                    reason: "completedSuccessfully",
                    recording: None,
                });
            }
        }
        sent
    }

    /// What the bot heard this tick.
    fn hear(&mut self, call_id: &str, frame: &[i16; FRAME], received: bool, outs: &mut Vec<Out>) {
        let Some(job) = &mut self.job else {
            return;
        };
        let Phase::Record(rec) = &mut job.phase else {
            return;
        };
        let Some(reason) = rec.hear(frame, received) else {
            return;
        };
        let audio = std::mem::take(&mut rec.audio);
        let recording_id = rec.spec.recording_id.clone();
        let op_id = job.op_id.clone();
        self.job = None;
        let duration_ms = crate::wav::duration_ms(audio.len());
        outs.push(Out::Chunk {
            recording_id: recording_id.clone(),
            audio,
            close: true,
            then: Some(Event::Done {
                call_id: call_id.to_string(),
                op_id,
                reason,
                recording: Some(Recorded {
                    recording_id,
                    duration_ms,
                }),
            }),
        });
    }

    fn on_tone(&mut self, key: char) {
        if let Some(Job {
            phase: Phase::Record(r),
            ..
        }) = &mut self.job
            && r.spec.stop_tones.contains(&key)
        {
            r.stop = Some("stopToneDetected");
        }
    }
}

struct CallRecorder {
    call_id: String,
    recording_id: String,
    pending: Vec<i16>,
    samples: u64,
    /// Per-participant tracks, when asked for.
    tracks: Option<Vec<TrackRecorder>>,
}

struct TrackRecorder {
    participant_id: String,
    pending: Vec<i16>,
    samples: u64,
}

impl CallRecorder {
    fn track_id(&self, participant: &str) -> String {
        format!("{}-{participant}", self.recording_id)
    }

    /// Hand full seconds (or, with `all`, everything) to the writer.
    fn flush(&mut self, all: bool, outs: &mut Vec<Out>) {
        let full = FRAME * CHUNK_FRAMES;
        if let Some(tracks) = &mut self.tracks {
            for t in tracks.iter_mut() {
                if t.pending.len() >= full || (all && !t.pending.is_empty()) {
                    t.samples += t.pending.len() as u64;
                    outs.push(Out::Chunk {
                        recording_id: format!("{}-{}", self.recording_id, t.participant_id),
                        audio: std::mem::take(&mut t.pending),
                        close: false,
                        then: None,
                    });
                }
            }
        }
        if self.pending.len() >= full || (all && !self.pending.is_empty()) {
            self.samples += self.pending.len() as u64;
            outs.push(Out::Chunk {
                recording_id: self.recording_id.clone(),
                audio: std::mem::replace(&mut self.pending, Vec::with_capacity(full)),
                close: false,
                then: None,
            });
        }
    }

    fn finish(mut self, outs: &mut Vec<Out>) {
        self.flush(true, outs);
        let mut saved = vec![];
        for t in self.tracks.take().unwrap_or_default() {
            let id = self.track_id(&t.participant_id);
            outs.push(Out::Chunk {
                recording_id: id.clone(),
                audio: vec![],
                close: true,
                then: None,
            });
            saved.push(crate::Track {
                participant_id: t.participant_id,
                recording_id: id,
                duration_ms: crate::wav::duration_ms(t.samples as usize),
            });
        }
        outs.push(Out::Chunk {
            recording_id: self.recording_id.clone(),
            audio: vec![],
            close: true,
            then: Some(Event::RecordingSaved {
                call_id: self.call_id,
                recording_id: self.recording_id,
                duration_ms: crate::wav::duration_ms(self.samples as usize),
                tracks: saved,
            }),
        });
    }
}

/// Rooms numbered as they are made, so that no two share a common mix's tag.
static NEXT_ROOM: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

pub struct Room {
    pub id: String,
    members: Vec<Member>,
    states: Vec<MemberState>,
    routes: Vec<Route>,
    bots: Bots,
    /// How many members are bots (a bot whose call left the room still runs its media).
    bot_members: usize,
    /// Scratch for each tick: (member index, wants keys, is recording) of every bot member.
    listeners: Vec<(usize, bool, bool)>,
    hold_music: HashMap<String, Player>,
    recorders: Vec<CallRecorder>,
    transcribers: Vec<Transcriber>,
    inputs: Vec<[i16; FRAME]>,
    has: Vec<bool>,
    outputs: Vec<[i16; FRAME]>,
    /// Whether `outputs[i]` holds what member `i` hears this tick (false: silence).
    heard: Vec<bool>,
    /// Whether member `i` hears the room's common mix this tick ([`mixer::mix`]).
    common: Vec<bool>,
    /// This room among all rooms, for the common mix's tag.
    serial: u64,
    ticks: u64,
}

impl Room {
    pub fn new(id: &str) -> Room {
        Room {
            id: id.to_string(),
            members: vec![],
            states: vec![],
            routes: vec![],
            bots: Bots::default(),
            bot_members: 0,
            listeners: vec![],
            hold_music: HashMap::new(),
            recorders: vec![],
            transcribers: vec![],
            inputs: vec![],
            has: vec![],
            outputs: vec![],
            heard: vec![],
            common: vec![],
            serial: NEXT_ROOM.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            ticks: 0,
        }
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Members that are legs (a phone, a browser, a simulated user), not bots.
    pub fn leg_count(&self) -> usize {
        self.members.len() - self.bot_members
    }

    /// Take the engine's picture of the room: members, mute, hold, routing.
    pub fn apply(&mut self, spec: RoomSpec, ports: &Ports) {
        let mut old: HashMap<(String, Endpoint), Member> = self
            .members
            .drain(..)
            .map(|m| ((m.spec.id.clone(), m.spec.endpoint.clone()), m))
            .collect();
        for s in spec.members {
            let m = match old.remove(&(s.id.clone(), s.endpoint.clone())) {
                Some(mut m) => {
                    m.spec = s;
                    m
                }
                None => Member {
                    port: match &s.endpoint {
                        Endpoint::Leg(l) => ports.get(l),
                        Endpoint::Bot(_) => None,
                    },
                    bot: None,
                    spec: s,
                    detector: DtmfDetector::default(),
                    detecting: false,
                },
            };
            let mut m = m;
            m.bot = match &m.spec.endpoint {
                Endpoint::Bot(call) => Some(self.bots.slot(call)),
                Endpoint::Leg(_) => None,
            };
            self.members.push(m);
        }
        self.bot_members = self
            .members
            .iter()
            .filter(|m| matches!(m.spec.endpoint, Endpoint::Bot(_)))
            .count();
        if self.bots.0.len() > self.bot_members {
            self.forget_idle_bots();
        }
        self.hold_music.retain(|id, _| {
            self.members
                .iter()
                .any(|m| &m.spec.id == id && m.spec.hold_music)
        });
        self.states = self
            .members
            .iter()
            .map(|m| MemberState {
                muted: m.spec.muted,
                held: m.spec.held || m.spec.hold_music,
                in_default_group: m.spec.in_default_group,
            })
            .collect();
        let index = |id: &String| self.members.iter().position(|m| &m.spec.id == id);
        self.routes = spec
            .routes
            .iter()
            .map(|r| Route {
                sources: r.sources.iter().filter_map(index).collect(),
                receivers: r.receivers.iter().filter_map(index).collect(),
            })
            .collect();
        let n = self.members.len();
        self.inputs.resize(n, [0; FRAME]);
        self.outputs.resize(n, [0; FRAME]);
        self.heard.resize(n, false);
        self.common.resize(n, false);
        self.has.resize(n, false);
    }

    /// A command for this room (other than `Room`).
    pub fn command(&mut self, cmd: Cmd, outs: &mut Vec<Out>) {
        match cmd {
            Cmd::Room(_) => {}
            Cmd::Run {
                call_id,
                op_id,
                prompts,
                loop_forever,
                record,
                ..
            } => {
                let mut job = Job {
                    op_id,
                    prompts,
                    loop_forever,
                    record,
                    phase: Phase::Prompt {
                        idx: 0,
                        times: 0,
                        pos: 0,
                    },
                };
                if job.prompts.is_empty() {
                    match job.after_prompts() {
                        Some(p) => job.phase = p,
                        None => {
                            outs.push(Out::Event(Event::Done {
                                call_id,
                                op_id: job.op_id,
                                reason: "completedSuccessfully",
                                recording: None,
                            }));
                            return;
                        }
                    }
                }
                self.bots.entry(&call_id).job = Some(job);
            }
            Cmd::Cancel { call_id, .. } => {
                if let Some(b) = self.bots.get_mut(&call_id) {
                    b.job = None;
                }
            }
            Cmd::SendTones {
                call_id,
                op_id,
                tones,
                tone_ms,
                gap_ms,
                ..
            } => {
                let mut audio = vec![];
                let mut keys = vec![];
                for (i, k) in tones.iter().enumerate() {
                    if i > 0 {
                        audio.resize(audio.len() + crate::samples(gap_ms), 0);
                    }
                    keys.push((audio.len(), *k));
                    match dtmf::tone(*k, tone_ms as u32, SEND_DBFS) {
                        Some(t) => audio.extend(t),
                        None => audio.resize(audio.len() + crate::samples(tone_ms), 0),
                    }
                }
                // A short pause after the last tone ends it cleanly for detectors.
                audio.resize(audio.len() + crate::samples(40), 0);
                self.bots.entry(&call_id).tones.push_back(ToneJob {
                    op_id,
                    audio,
                    keys,
                    pos: 0,
                });
            }
            Cmd::HoldMusic {
                member_id, audio, ..
            } => {
                let audio = audio
                    .filter(|a| !a.is_empty())
                    .unwrap_or_else(default_hold_music);
                self.hold_music.insert(member_id, Player { audio, pos: 0 });
            }
            Cmd::StartRecording {
                call_id,
                recording_id,
                tracks,
                ..
            } => {
                if !self.recorders.iter().any(|r| r.call_id == call_id) {
                    self.recorders.push(CallRecorder {
                        call_id,
                        recording_id,
                        pending: Vec::with_capacity(FRAME * CHUNK_FRAMES),
                        samples: 0,
                        tracks: tracks.then(Vec::new),
                    });
                }
            }
            Cmd::StopRecording { call_id, .. } => {
                if let Some(i) = self.recorders.iter().position(|r| r.call_id == call_id) {
                    self.recorders.remove(i).finish(outs);
                }
            }
            Cmd::StartTranscription {
                call_id,
                transcript_id,
                offset_ms,
                ..
            } => {
                if !self.transcribers.iter().any(|t| t.call_id == call_id) {
                    self.transcribers
                        .push(Transcriber::new(&call_id, &transcript_id, offset_ms));
                }
            }
            Cmd::StopTranscription { call_id, .. } => {
                if let Some(i) = self.transcribers.iter().position(|t| t.call_id == call_id) {
                    finish_transcript(self.transcribers.remove(i), outs);
                }
            }
        }
    }

    /// The room is going away: finish its call recordings.
    pub fn close(&mut self, outs: &mut Vec<Out>) {
        for r in self.recorders.drain(..) {
            r.finish(outs);
        }
        for t in self.transcribers.drain(..) {
            finish_transcript(t, outs);
        }
    }

    /// One 20 ms tick.
    pub fn tick(&mut self, ports: &Ports, outs: &mut Vec<Out>) {
        let n = self.members.len();
        let mut heard_keys: Vec<(usize, char)> = vec![];
        let mut sent_keys: Vec<(usize, char)> = vec![];
        // Who listens to what: a bot waiting for keys (subscribed, or recording with stop
        // tones), a bot recording, another leg, a call recording. A leg nobody listens to is
        // not decoded into the room, and keys are looked for only where a bot wants them.
        let mut bots = std::mem::take(&mut self.listeners);
        bots.clear();
        bots.extend((0..n).filter_map(|j| match self.members[j].bot {
            Some(slot) => {
                let rec = self.bots.0[slot]
                    .1
                    .job
                    .as_ref()
                    .and_then(|job| job.record.as_ref());
                let tones = self.members[j].spec.listens_for_tones
                    || rec.is_some_and(|r| !r.stop_tones.is_empty());
                // A bot that records, or whose app streams what it hears, needs the audio.
                Some((
                    j,
                    tones,
                    rec.is_some() || self.members[j].spec.stream.is_some(),
                ))
            }
            None => None,
        }));
        for i in 0..n {
            // A leg's port writes the whole frame when it has one, and `has` says whether it
            // did: only a bot's frame, which a prompt may fill in part, starts from silence.
            self.has[i] = false;
            let m = &mut self.members[i];
            match &m.spec.endpoint {
                Endpoint::Leg(leg) => {
                    if m.port.is_none() {
                        m.port = ports.get(leg);
                    }
                    if m.port.is_none() {
                        continue;
                    }
                    let (states, routes) = (&self.states, &self.routes);
                    let hears = |j: usize| mixer::hears(states, routes, j, i);
                    let tones = bots.iter().any(|&(j, t, _)| t && hears(j));
                    // Who needs all of this leg's audio, silence included.
                    let whole = tones
                        || !self.recorders.is_empty()
                        || !self.transcribers.is_empty()
                        || bots.iter().any(|&(j, _, r)| r && hears(j));
                    let listened = whole
                        || self.members.iter().enumerate().any(|(j, o)| {
                            j != i && matches!(o.spec.endpoint, Endpoint::Leg(_)) && hears(j)
                        });
                    let m = &mut self.members[i];
                    let Some(port) = &m.port else {
                        continue;
                    };
                    let mut p = port.lock().expect("port");
                    // A skipped frame is not in `inputs`: for the mix, this member sent
                    // nothing (nobody would hear it anyway).
                    self.has[i] = if listened {
                        p.silence_needed(whole);
                        p.read(&mut self.inputs[i])
                    } else {
                        p.skip();
                        false
                    };
                    while let Some(k) = p.take_tone() {
                        heard_keys.push((i, k));
                    }
                    drop(p);
                    if tones {
                        if !m.detecting {
                            // Keys from before the bot listened are not its business.
                            m.detector = DtmfDetector::default();
                        }
                        let frame = if self.has[i] {
                            &self.inputs[i]
                        } else {
                            &[0; FRAME]
                        };
                        heard_keys.extend(m.detector.push(frame).into_iter().map(|k| (i, k)));
                    }
                    m.detecting = tones;
                }
                Endpoint::Bot(call) => {
                    if let Some(slot) = m.bot {
                        let mut keys = vec![];
                        let b = &mut self.bots.0[slot].1;
                        self.has[i] = b.render(call, &mut self.inputs[i], outs, &mut keys);
                        sent_keys.extend(keys.into_iter().map(|k| (i, k)));
                    }
                    if m.spec.stream.is_some() {
                        self.stream_in(i, ports);
                    }
                }
            }
        }
        self.listeners = bots;
        self.run_orphan_bots(outs);
        self.deliver_keys(heard_keys, sent_keys, outs);
        mixer::mix(
            &self.states,
            &self.routes,
            &self.inputs,
            &self.has,
            &mut self.outputs,
            &mut self.heard,
            &mut self.common,
        );
        self.hear(outs);
        if !self.recorders.is_empty() {
            self.record(outs);
        }
        if !self.transcribers.is_empty() {
            self.transcribe(outs);
        }
    }

    /// After the mix: every member hears its part (legs through their ports, bots' media).
    fn hear(&mut self, outs: &mut Vec<Out>) {
        let n = self.members.len();
        self.ticks += 1;
        let tag = crate::port::Common {
            mix: self.serial,
            tick: self.ticks,
        };
        for i in 0..n {
            let m = &self.members[i];
            match &m.spec.endpoint {
                Endpoint::Leg(_) => {
                    let Some(port) = &m.port else {
                        continue;
                    };
                    if m.spec.hold_music
                        && let Some(p) = self.hold_music.get_mut(&m.spec.id)
                    {
                        let mut f = [0i16; FRAME];
                        p.next(&mut f);
                        port.lock().expect("port").write(&f);
                    } else if self.common[i] {
                        port.lock()
                            .expect("port")
                            .write_common(heard_by(&self.outputs, &self.heard, i), tag);
                    } else {
                        port.lock()
                            .expect("port")
                            .write(heard_by(&self.outputs, &self.heard, i));
                    }
                }
                Endpoint::Bot(call) => {
                    if let (Some(mix), Some(port)) = (m.spec.stream, &m.port) {
                        self.stream_out(i, mix, port);
                    }
                    let received = (0..n)
                        .any(|j| self.has[j] && mixer::hears(&self.states, &self.routes, i, j));
                    if let Some(slot) = m.bot {
                        self.bots.0[slot].1.hear(
                            call,
                            heard_by(&self.outputs, &self.heard, i),
                            received,
                            outs,
                        );
                    }
                }
            }
        }
    }

    /// Transcription: everyone who can be heard, each on their own.
    fn transcribe(&mut self, outs: &mut Vec<Out>) {
        let mut evs = vec![];
        for t in &mut self.transcribers {
            for (i, m) in self.members.iter().enumerate() {
                let heard = self.has[i] && !self.states[i].muted && !self.states[i].held;
                t.hear(&m.spec.id, heard.then_some(&self.inputs[i]), &mut evs);
            }
            t.end_tick(&mut evs);
        }
        outs.extend(evs.into_iter().map(Out::Event));
    }

    /// What bot member `i`'s app says through its stream this tick, over what the bot plays.
    fn stream_in(&mut self, i: usize, ports: &Ports) {
        let m = &mut self.members[i];
        if m.port.is_none()
            && let Endpoint::Bot(call) = &m.spec.endpoint
        {
            m.port = ports.get(&crate::stream_port(call));
        }
        let Some(p) = &m.port else {
            return;
        };
        let mut f = [0i16; FRAME];
        if !p.lock().expect("port").read(&mut f) {
            return;
        }
        let mine = &mut self.inputs[i];
        if self.has[i] {
            for (o, x) in mine.iter_mut().zip(f) {
                *o = o.saturating_add(x);
            }
        } else {
            *mine = f;
        }
        self.has[i] = true;
    }

    /// What bot member `i`'s app stream hears: the bot's mix, or each participant it hears.
    fn stream_out(&self, i: usize, mix: crate::Mix, port: &PortRef) {
        let mut p = port.lock().expect("port");
        match mix {
            crate::Mix::Mixed => p.write(heard_by(&self.outputs, &self.heard, i)),
            crate::Mix::Unmixed => {
                for (j, m) in self.members.iter().enumerate() {
                    let audible = self.has[j] && !self.states[j].muted && !self.states[j].held;
                    if j != i && audible && mixer::hears(&self.states, &self.routes, i, j) {
                        p.write_source(&m.spec.id, &self.inputs[j]);
                    }
                }
            }
        }
    }

    /// Bots whose call is not (or no longer) in the room still run their media; once it has
    /// finished, the room lets go of them.
    fn run_orphan_bots(&mut self, outs: &mut Vec<Out>) {
        if self.bots.0.len() == self.bot_members {
            return;
        }
        let mut scratch = [0i16; FRAME];
        for (call, b) in self.bots.0.iter_mut() {
            if !self
                .members
                .iter()
                .any(|m| matches!(&m.spec.endpoint, Endpoint::Bot(c) if c == call))
            {
                b.render(call, &mut scratch, outs, &mut vec![]);
                b.hear(call, &[0; FRAME], false, outs);
            }
        }
        self.forget_idle_bots();
    }

    /// Drop the bots whose call left the room and whose media has finished (members keep
    /// their bots' slots, so those are numbered again).
    fn forget_idle_bots(&mut self) {
        let members = &self.members;
        let before = self.bots.0.len();
        self.bots.0.retain(|(call, b)| {
            b.busy()
                || members
                    .iter()
                    .any(|m| matches!(&m.spec.endpoint, Endpoint::Bot(c) if c == call))
        });
        if self.bots.0.len() != before {
            for m in &mut self.members {
                if let Endpoint::Bot(call) = &m.spec.endpoint {
                    m.bot = Some(self.bots.slot(call));
                }
            }
        }
    }

    /// Keys heard in a leg's audio go to the bots that hear that leg; keys a bot sends go
    /// to the legs that hear the bot.
    fn deliver_keys(
        &mut self,
        heard_keys: Vec<(usize, char)>,
        sent_keys: Vec<(usize, char)>,
        outs: &mut Vec<Out>,
    ) {
        let n = self.members.len();
        for (speaker, key) in heard_keys {
            for j in 0..n {
                if let Endpoint::Bot(call) = &self.members[j].spec.endpoint
                    && mixer::hears(&self.states, &self.routes, j, speaker)
                {
                    outs.push(Out::Event(Event::Tone {
                        call_id: call.clone(),
                        key,
                    }));
                    if let Some(slot) = self.members[j].bot {
                        self.bots.0[slot].1.on_tone(key);
                    }
                }
            }
        }
        for (speaker, key) in sent_keys {
            for j in 0..n {
                if mixer::hears(&self.states, &self.routes, j, speaker)
                    && let Some(p) = &self.members[j].port
                {
                    p.lock().expect("port").tone_event(key);
                }
            }
        }
    }

    /// Call recordings: the mix of everyone who can be heard, and each participant's track.
    fn record(&mut self, outs: &mut Vec<Out>) {
        let n = self.members.len();
        let heard = |i: usize| self.has[i] && !self.states[i].muted && !self.states[i].held;
        let mut acc = [0i32; FRAME];
        for i in (0..n).filter(|&i| heard(i)) {
            for (a, &x) in acc.iter_mut().zip(&self.inputs[i]) {
                *a += x as i32;
            }
        }
        let mixed: Vec<i16> = acc
            .iter()
            .map(|&a| a.clamp(i16::MIN as i32, i16::MAX as i32) as i16)
            .collect();
        for r in &mut self.recorders {
            let so_far = r.samples + r.pending.len() as u64;
            r.pending.extend_from_slice(&mixed);
            if let Some(tracks) = &mut r.tracks {
                for (i, m) in self.members.iter().enumerate() {
                    let id = &m.spec.id;
                    let t = match tracks.iter().position(|t| &t.participant_id == id) {
                        Some(k) => &mut tracks[k],
                        None => {
                            // A newcomer's track starts with silence up to now.
                            tracks.push(TrackRecorder {
                                participant_id: id.clone(),
                                pending: vec![0; so_far as usize],
                                samples: 0,
                            });
                            tracks.last_mut().expect("just pushed")
                        }
                    };
                    if heard(i) {
                        t.pending.extend_from_slice(&self.inputs[i]);
                    } else {
                        t.pending.extend_from_slice(&[0; FRAME]);
                    }
                }
            }
            r.flush(false, outs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::SimPort;
    use std::sync::{Arc, Mutex};

    struct World {
        room: Room,
        ports: Ports,
        users: HashMap<String, Arc<Mutex<SimPort>>>,
        events: Vec<Event>,
        chunks: Vec<(String, usize, bool)>,
    }

    fn member(id: &str, endpoint: Endpoint) -> MemberSpec {
        MemberSpec {
            id: id.into(),
            endpoint,
            muted: false,
            held: false,
            hold_music: false,
            in_default_group: true,
            listens_for_tones: false,
            stream: None,
        }
    }

    /// A room with the bot of call "c1" (participant "bot") and users u1..un.
    fn world(users: usize) -> World {
        let ports = Ports::default();
        let mut w = World {
            room: Room::new("conf"),
            ports,
            users: HashMap::new(),
            events: vec![],
            chunks: vec![],
        };
        let mut bot = member("bot", Endpoint::Bot("c1".into()));
        bot.listens_for_tones = true;
        let mut members = vec![bot];
        for i in 1..=users {
            let id = format!("u{i}");
            let p = Arc::new(Mutex::new(SimPort::new(crate::samples(60_000))));
            w.ports.insert(&id, p.clone());
            w.users.insert(id.clone(), p);
            members.push(member(&id, Endpoint::Leg(id.clone())));
        }
        w.spec(members, vec![]);
        w
    }

    impl World {
        fn spec(&mut self, members: Vec<MemberSpec>, routes: Vec<crate::RouteSpec>) {
            self.room.apply(
                RoomSpec {
                    conf_id: "conf".into(),
                    members,
                    routes,
                },
                &self.ports,
            );
        }
        fn cmd(&mut self, c: Cmd) {
            let mut outs = vec![];
            self.room.command(c, &mut outs);
            self.collect(outs);
        }
        fn collect(&mut self, outs: Vec<Out>) {
            for o in outs {
                match o {
                    Out::Event(e) => self.events.push(e),
                    Out::Chunk {
                        recording_id,
                        audio,
                        close,
                        then,
                    } => {
                        self.chunks.push((recording_id, audio.len(), close));
                        if let Some(e) = then {
                            self.events.push(e);
                        }
                    }
                }
            }
        }
        fn ticks(&mut self, n: usize) {
            for _ in 0..n {
                let mut outs = vec![];
                self.room.tick(&self.ports, &mut outs);
                self.collect(outs);
            }
        }
        fn user(&self, id: &str) -> std::sync::MutexGuard<'_, SimPort> {
            self.users[id].lock().unwrap()
        }
        fn done(&self) -> Vec<(&str, &'static str)> {
            self.events
                .iter()
                .filter_map(|e| match e {
                    Event::Done { op_id, reason, .. } => Some((op_id.as_str(), *reason)),
                    _ => None,
                })
                .collect()
        }
    }

    fn tone_audio(ms: u64, freq: f32, dbfs: f32) -> Audio {
        let amp = 32767.0 * 10f32.powf(dbfs / 20.0);
        (0..crate::samples(ms))
            .map(|i| (amp * (2.0 * std::f32::consts::PI * freq * i as f32 / 16000.0).sin()) as i16)
            .collect::<Vec<_>>()
            .into()
    }

    fn run(prompt: Option<Audio>, record: Option<RecordSpec>) -> Cmd {
        Cmd::Run {
            conf_id: "conf".into(),
            call_id: "c1".into(),
            op_id: "op".into(),
            prompts: prompt
                .map(|audio| Prompt { audio, times: 1 })
                .into_iter()
                .collect(),
            loop_forever: false,
            record,
        }
    }

    fn record(beep: bool, stop: &str) -> RecordSpec {
        RecordSpec {
            recording_id: "rec".into(),
            beep,
            max_ms: 10_000,
            initial_silence_ms: 2_000,
            max_silence_ms: 1_000,
            stop_tones: stop.chars().collect(),
        }
    }

    fn loud(s: &[i16]) -> usize {
        s.iter().filter(|x| x.unsigned_abs() > 1000).count()
    }

    #[test]
    fn a_bot_whose_call_left_plays_its_prompt_out_and_is_then_forgotten() {
        let mut w = world(1);
        let user = member("u1", Endpoint::Leg("u1".into()));
        // Bots come and go without media: the room keeps nothing of them.
        for n in 0..20 {
            let bot = member(&format!("b{n}"), Endpoint::Bot(format!("c{n}")));
            w.spec(vec![bot, user.clone()], vec![]);
            w.ticks(1);
        }
        w.spec(vec![user.clone()], vec![]);
        assert_eq!(w.room.bots.0.len(), 0);
        // The bot of c1 starts a prompt and its call leaves the room: the prompt plays out
        // and completes, then the bot is gone.
        w.spec(
            vec![member("bot", Endpoint::Bot("c1".into())), user.clone()],
            vec![],
        );
        w.cmd(run(Some(tone_audio(200, 440.0, -6.0)), None));
        w.ticks(2);
        w.spec(vec![user], vec![]);
        assert_eq!(w.room.bots.0.len(), 1, "still playing");
        w.ticks(20);
        assert_eq!(w.done(), [("op", "completedSuccessfully")]);
        assert_eq!(w.room.bots.0.len(), 0);
    }

    #[test]
    fn everyone_hears_the_bots_prompt_and_it_completes_when_played_out() {
        let mut w = world(2);
        w.cmd(run(Some(tone_audio(1000, 440.0, -6.0)), None));
        w.ticks(50);
        assert!(w.done().is_empty(), "the last frame is still playing");
        w.ticks(1);
        assert_eq!(w.done(), [("op", "completedSuccessfully")]);
        for u in ["u1", "u2"] {
            let heard = w.user(u).heard().to_vec();
            assert!(loud(&heard[..16_000]) > 14_000, "{u} heard the prompt");
            assert_eq!(loud(&heard[16_000..]), 0, "and then silence");
        }
    }

    #[test]
    fn cancel_stops_a_prompt_on_the_next_tick_without_an_event() {
        let mut w = world(1);
        w.cmd(run(Some(tone_audio(10_000, 440.0, -6.0)), None));
        w.ticks(10);
        w.cmd(Cmd::Cancel {
            conf_id: "conf".into(),
            call_id: "c1".into(),
        });
        w.ticks(5);
        let heard = w.user("u1").heard().to_vec();
        assert!(loud(&heard[..FRAME * 10]) > FRAME * 9);
        assert_eq!(loud(&heard[FRAME * 10..]), 0, "silent from the next tick");
        assert!(w.done().is_empty());
    }

    #[test]
    fn a_recording_takes_what_the_caller_says_and_ends_after_silence() {
        let mut w = world(1);
        w.user("u1").say(500, tone_audio(1500, 300.0, -20.0), false);
        w.cmd(run(None, Some(record(true, ""))));
        w.ticks(200);
        let done: Vec<_> = w
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Done {
                    reason, recording, ..
                } => Some((*reason, recording.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(done.len(), 1);
        let (reason, rec) = &done[0];
        assert_eq!(*reason, "maxSilenceTimeout");
        let rec = rec.clone().unwrap();
        // Beep 300 ms, speech 0.5–2.0 s after joining, then 1 s of silence.
        assert!(
            (2400..=3100).contains(&rec.duration_ms),
            "{} ms recorded",
            rec.duration_ms
        );
        assert!(
            w.chunks
                .iter()
                .any(|(id, n, last)| id == "rec" && *n > 0 && *last)
        );
        let heard = w.user("u1").heard().to_vec();
        assert!(
            loud(&heard[..crate::samples(BEEP_MS)]) > 3000,
            "the caller heard the beep"
        );
    }

    #[test]
    fn every_way_a_recording_ends() {
        // Nobody speaks: initial silence.
        let mut w = world(1);
        w.cmd(run(None, Some(record(false, ""))));
        w.ticks(150);
        assert_eq!(w.done(), [("op", "initialSilenceTimeout")]);
        // Nobody there to hear: no media at all.
        let mut w = world(0);
        w.cmd(run(None, Some(record(false, ""))));
        w.ticks(150);
        assert_eq!(w.done(), [("op", "mediaReceiveTimeout")]);
        // Speech all along: the maximum duration.
        let mut w = world(1);
        w.user("u1").say(0, tone_audio(20_000, 300.0, -20.0), false);
        w.cmd(run(None, Some(record(false, ""))));
        w.ticks(600);
        assert_eq!(w.done(), [("op", "maxRecordDurationReached")]);
        // A stop tone while speaking: the caller presses #.
        let mut w = world(1);
        w.user("u1").say(0, tone_audio(1000, 300.0, -20.0), false);
        w.user("u1").press(1200, '#', 100);
        w.cmd(run(None, Some(record(false, "#"))));
        w.ticks(100);
        assert_eq!(w.done(), [("op", "stopToneDetected")]);
        assert!(w.events.contains(&Event::Tone {
            call_id: "c1".into(),
            key: '#'
        }));
    }

    #[test]
    fn keys_pressed_in_band_reach_the_bot_in_order() {
        let mut w = world(1);
        for (i, k) in "12#9".chars().enumerate() {
            w.user("u1").press(100 + i as u64 * 250, k, 100);
        }
        w.ticks(100);
        let keys: String = w
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Tone { key, .. } => Some(*key),
                _ => None,
            })
            .collect();
        assert_eq!(keys, "12#9");
    }

    #[test]
    fn in_band_keys_are_looked_for_only_while_the_bot_listens_for_tones() {
        let mut w = world(1);
        let quiet_bot = member("bot", Endpoint::Bot("c1".into()));
        w.spec(
            vec![quiet_bot, member("u1", Endpoint::Leg("u1".into()))],
            vec![],
        );
        w.user("u1").press(100, '5', 100);
        w.ticks(20);
        assert!(w.events.is_empty(), "not subscribed: {:?}", w.events);
        // A recording with stop tones listens for them.
        w.cmd(run(None, Some(record(false, "#"))));
        let at = w.user("u1").elapsed_ms() + 100;
        w.user("u1").press(at, '#', 100);
        w.ticks(20);
        assert!(w.events.contains(&Event::Tone {
            call_id: "c1".into(),
            key: '#'
        }));
    }

    /// A port that counts how the room takes its audio.
    #[derive(Default)]
    struct Counting {
        reads: usize,
        skips: usize,
    }
    impl crate::port::Port for Counting {
        fn read(&mut self, out: &mut [i16; FRAME]) -> bool {
            self.reads += 1;
            out.fill(100);
            true
        }
        fn skip(&mut self) -> bool {
            self.skips += 1;
            true
        }
        fn write(&mut self, _frame: &[i16; FRAME]) {}
    }

    /// A leg that says a constant level (0: nothing) and notes what it hears, and whether it
    /// came as the room's common mix.
    #[derive(Default)]
    struct Tagged {
        level: i16,
        got: Vec<(i16, Option<crate::port::Common>)>,
    }
    impl crate::port::Port for Tagged {
        fn read(&mut self, out: &mut [i16; FRAME]) -> bool {
            out.fill(self.level);
            self.level != 0
        }
        fn write(&mut self, frame: &[i16; FRAME]) {
            self.got.push((frame[0], None));
        }
        fn write_common(&mut self, frame: &[i16; FRAME], tag: crate::port::Common) {
            self.got.push((frame[0], Some(tag)));
        }
    }

    #[test]
    fn listeners_get_the_common_mix_tagged_alike_and_speakers_their_own() {
        let mut w = world(0);
        let legs: Vec<Arc<Mutex<Tagged>>> = [1000, 100, 0, 0]
            .into_iter()
            .map(|level| {
                Arc::new(Mutex::new(Tagged {
                    level,
                    ..Default::default()
                }))
            })
            .collect();
        let mut members = vec![member("bot", Endpoint::Bot("c1".into()))];
        for (i, p) in legs.iter().enumerate() {
            let id = format!("l{i}");
            w.ports.insert(&id, p.clone());
            members.push(member(&id, Endpoint::Leg(id.clone())));
        }
        w.spec(members.clone(), vec![]);
        w.ticks(2);
        let got = |i: usize| legs[i].lock().unwrap().got.clone();
        // The two speakers hear each other on their own; the two listeners hear both, tagged
        // as the same common mix, a new tick each time.
        assert_eq!(got(0), [(100, None), (100, None)]);
        assert_eq!(got(1), [(1000, None), (1000, None)]);
        let (l2, l3) = (got(2), got(3));
        assert_eq!(l2, l3);
        assert!(
            l2.iter()
                .all(|(level, tag)| *level == 1100 && tag.is_some())
        );
        let (t1, t2) = (l2[0].1.unwrap(), l2[1].1.unwrap());
        assert_eq!((t1.mix, t2.tick), (t2.mix, t1.tick + 1));
        // Muted, the first speaker hears the others as the listeners do: the common mix.
        members[1].muted = true;
        w.spec(members, vec![]);
        w.ticks(1);
        let (l0, l2) = (got(0), got(2));
        assert_eq!(l0.last(), l2.last());
        assert_eq!(l2.last().unwrap().0, 100);
        // Another room's common mix is another mix.
        let mut other = Room::new("other");
        let p = Arc::new(Mutex::new(Tagged::default()));
        w.ports.insert("x", p.clone());
        other.apply(
            RoomSpec {
                conf_id: "other".into(),
                members: vec![member("x", Endpoint::Leg("x".into()))],
                routes: vec![],
            },
            &w.ports,
        );
        other.tick(&w.ports, &mut vec![]);
        let theirs = p.lock().unwrap().got[0].1.unwrap();
        assert_ne!(theirs.mix, t1.mix);
    }

    #[test]
    fn a_leg_nobody_listens_to_is_not_decoded_and_one_another_leg_hears_is() {
        let mut w = world(0);
        let a = Arc::new(Mutex::new(Counting::default()));
        let b = Arc::new(Mutex::new(Counting::default()));
        w.ports.insert("a", a.clone());
        w.ports.insert("b", b.clone());
        // The bot plays prompts and listens for nothing: the caller's audio has no taker.
        w.spec(
            vec![
                member("bot", Endpoint::Bot("c1".into())),
                member("a", Endpoint::Leg("a".into())),
            ],
            vec![],
        );
        w.ticks(5);
        let counts = |p: &Arc<Mutex<Counting>>| {
            let c = p.lock().unwrap();
            (c.reads, c.skips)
        };
        assert_eq!(counts(&a), (0, 5));
        // A second caller hears the first.
        w.spec(
            vec![
                member("bot", Endpoint::Bot("c1".into())),
                member("a", Endpoint::Leg("a".into())),
                member("b", Endpoint::Leg("b".into())),
            ],
            vec![],
        );
        w.ticks(5);
        assert_eq!(counts(&a), (5, 5));
        assert_eq!(counts(&b).0, 5);
        // A recording bot takes the caller's audio too.
        w.spec(
            vec![
                member("bot", Endpoint::Bot("c1".into())),
                member("a", Endpoint::Leg("a".into())),
            ],
            vec![],
        );
        w.cmd(run(None, Some(record(false, ""))));
        w.ticks(5);
        assert_eq!(counts(&a).0, 10);
    }

    #[test]
    fn a_muted_callers_keys_and_voice_do_not_reach_the_bot() {
        let mut w = world(2);
        let mut members = vec![member("bot", Endpoint::Bot("c1".into()))];
        let mut u1 = member("u1", Endpoint::Leg("u1".into()));
        u1.muted = true;
        members.push(u1);
        members.push(member("u2", Endpoint::Leg("u2".into())));
        w.spec(members, vec![]);
        w.user("u1").say(0, tone_audio(1000, 300.0, -10.0), false);
        w.user("u1").press(100, '5', 100);
        w.ticks(30);
        assert!(w.events.is_empty());
        assert_eq!(loud(w.user("u2").heard()), 0, "nobody hears a muted member");
    }

    #[test]
    fn the_bot_sends_dtmf_that_callers_hear() {
        let mut w = world(1);
        w.cmd(Cmd::SendTones {
            conf_id: "conf".into(),
            call_id: "c1".into(),
            op_id: "t".into(),
            tones: "4*0".chars().collect(),
            tone_ms: 100,
            gap_ms: 100,
        });
        w.ticks(40);
        assert_eq!(w.done(), [("t", "completedSuccessfully")]);
        assert_eq!(w.user("u1").tones_heard(), "4*0");
    }

    #[test]
    fn hold_music_reaches_only_the_held_member_who_hears_nothing_else() {
        let mut w = world(2);
        w.cmd(Cmd::HoldMusic {
            conf_id: "conf".into(),
            member_id: "u1".into(),
            audio: None,
        });
        let mut u1 = member("u1", Endpoint::Leg("u1".into()));
        u1.hold_music = true;
        w.spec(
            vec![
                member("bot", Endpoint::Bot("c1".into())),
                u1,
                member("u2", Endpoint::Leg("u2".into())),
            ],
            vec![],
        );
        w.user("u2").say(0, tone_audio(1000, 300.0, -10.0), false);
        w.ticks(50);
        let music = default_hold_music();
        assert_eq!(
            w.user("u1").heard(),
            &music[..16_000],
            "u1 hears the music only"
        );
        assert_eq!(loud(w.user("u2").heard()), 0, "u2 does not hear the music");
    }

    #[test]
    fn the_built_in_hold_music_and_the_beep_are_never_taken_for_keys() {
        let mut d = DtmfDetector::default();
        for _ in 0..5 {
            assert_eq!(d.push(&default_hold_music()), Vec::<char>::new());
        }
        assert_eq!(d.push(beep()), Vec::<char>::new());
    }

    #[test]
    fn call_recording_takes_the_room_mix_in_chunks() {
        let mut w = world(2);
        w.user("u1").say(0, tone_audio(3000, 300.0, -10.0), false);
        w.cmd(Cmd::StartRecording {
            conf_id: "conf".into(),
            call_id: "c1".into(),
            recording_id: "call-rec".into(),
            tracks: false,
        });
        w.ticks(120);
        w.cmd(Cmd::StopRecording {
            conf_id: "conf".into(),
            call_id: "c1".into(),
        });
        let total: usize = w.chunks.iter().map(|c| c.1).sum();
        assert_eq!(total, FRAME * 120);
        let sizes: Vec<(usize, bool)> = w.chunks.iter().map(|c| (c.1, c.2)).collect();
        assert_eq!(
            sizes,
            [(16_000, false), (16_000, false), (6_400, false), (0, true)],
            "whole seconds, then the rest, then the file is closed"
        );
        assert!(w.events.contains(&Event::RecordingSaved {
            call_id: "c1".into(),
            recording_id: "call-rec".into(),
            duration_ms: 2400,
            tracks: vec![],
        }));
    }

    #[test]
    fn per_participant_tracks_share_the_recordings_timeline() {
        let mut w = world(1);
        w.user("u1").say(0, tone_audio(3000, 300.0, -10.0), false);
        w.cmd(Cmd::StartRecording {
            conf_id: "conf".into(),
            call_id: "c1".into(),
            recording_id: "r".into(),
            tracks: true,
        });
        w.ticks(25);
        // u2 joins half a second in.
        let u2 = Arc::new(Mutex::new(SimPort::new(0)));
        w.ports.insert("u2", u2);
        w.spec(
            vec![
                member("bot", Endpoint::Bot("c1".into())),
                member("u1", Endpoint::Leg("u1".into())),
                member("u2", Endpoint::Leg("u2".into())),
            ],
            vec![],
        );
        w.ticks(25);
        w.cmd(Cmd::StopRecording {
            conf_id: "conf".into(),
            call_id: "c1".into(),
        });
        let Some(Event::RecordingSaved { tracks, .. }) = w.events.last() else {
            panic!("{:?}", w.events);
        };
        let got: Vec<(&str, &str, u64)> = tracks
            .iter()
            .map(|t| {
                (
                    t.participant_id.as_str(),
                    t.recording_id.as_str(),
                    t.duration_ms,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("bot", "r-bot", 1000),
                ("u1", "r-u1", 1000),
                ("u2", "r-u2", 1000)
            ],
            "u2's track starts with the half second before it joined"
        );
        let written =
            |id: &str| -> usize { w.chunks.iter().filter(|c| c.0 == id).map(|c| c.1).sum() };
        assert_eq!(written("r-u2"), 16_000);
        let (last_id, _, closed) = w.chunks.last().unwrap();
        assert_eq!(
            (last_id.as_str(), *closed),
            ("r", true),
            "the mix closes last"
        );
    }
}
