//! ringside's media engine. The internal format is 16 kHz mono PCM16 in 20 ms frames of 320
//! samples (Graph prompts are 16 kHz mono PCM16; other formats are converted on the way in).
//!
//! * The sans-IO core: [`room::Room`] mixes one call's members each tick and runs the bots'
//!   media (prompts, beeps, recordings, tones); [`dtmf`], [`vad`], [`mixer`] and [`wav`] are its
//!   parts. A room is driven by `tick()` and commands; it never reads a clock or a socket.
//! * The runtime ([`runtime::Media`]): one media thread per core, rooms sharded across them by
//!   conference id, each thread ticking on drift-free absolute 20 ms deadlines; commands arrive
//!   on bounded channels and events leave through a callback that never blocks. Clock
//!   threads run realtime when the process may ([`sched`]).
//! * Endpoints' audio comes in and goes out through [`port::Port`]s: simulated users, SIP and
//!   WebRTC legs. The legs' packets go through [`udp_batch`], batched UDP I/O shared by the SIP
//!   media threads and the WebRTC endpoint.
//!
//! The command and event types below are the whole contract with the call engine.

pub mod dtmf;
pub mod g711;
pub mod jitter;
pub mod mixer;
pub mod port;
pub mod rate;
pub mod room;
pub mod runtime;
pub mod sched;
pub mod transcribe;
pub mod udp_batch;
pub mod vad;
pub mod wav;

use std::sync::Arc;

/// Internal sample rate.
pub const RATE: u32 = 16_000;
/// Samples in one 20 ms tick.
pub const FRAME: usize = 320;
/// Length of one tick.
pub const TICK_MS: u64 = 20;

/// Decoded audio in the internal format, shared without copying.
pub type Audio = Arc<[i16]>;

/// Samples in `ms` milliseconds at the internal rate.
pub fn samples(ms: u64) -> usize {
    (ms * RATE as u64 / 1000) as usize
}

/// Who a room member is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A bot's service-hosted media, by the bot's call id.
    Bot(String),
    /// A participant's leg (simulated user, SIP, WebRTC), by leg id.
    Leg(String),
}

/// One member of a room as the call engine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSpec {
    /// Participant id.
    pub id: String,
    pub endpoint: Endpoint,
    /// Server mute (participant mute, muteAll) or the bot's self mute: heard by nobody.
    pub muted: bool,
    /// On hold (by itself, or given hold music): neither hears nor is heard.
    pub held: bool,
    /// On hold with hold music: hears the music.
    pub hold_music: bool,
    /// In the default audio routing group (everyone hears everyone there).
    pub in_default_group: bool,
    /// A bot that subscribed to tones: keys pressed in band by those it hears are detected.
    pub listens_for_tones: bool,
    /// A bot whose app hosts its own media over a stream: its port (by [`stream_port`]) hears
    /// what the bot hears (mixed, or each participant apart) and says what the app sends.
    pub stream: Option<Mix>,
}

/// How an app's media stream hears the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// One stream: everything the bot hears.
    Mixed,
    /// Each participant the bot hears, apart ([`port::Port::write_source`]).
    Unmixed,
}

/// The key of a bot's media-stream port in [`port::Ports`].
pub fn stream_port(call_id: &str) -> String {
    format!("stream:{call_id}")
}

/// A one-way route by participant id: the receivers hear the sources (reference §2.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub sources: Vec<String>,
    pub receivers: Vec<String>,
}

/// The whole picture of one room; an empty member list closes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoomSpec {
    pub conf_id: String,
    pub members: Vec<MemberSpec>,
    pub routes: Vec<RouteSpec>,
}

/// What to record after the prompt of a recordResponse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSpec {
    /// The recording's id: its file is `<recordings dir>/<id>.wav`.
    pub recording_id: String,
    pub beep: bool,
    pub max_ms: u64,
    pub initial_silence_ms: u64,
    pub max_silence_ms: u64,
    pub stop_tones: Vec<char>,
}

/// One prompt to play: its audio and how many times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub audio: Audio,
    pub times: u32,
}

/// Commands from the call engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cmd {
    Room(RoomSpec),
    /// Run the head of a bot's media FIFO: play the prompts (forever if `loop_forever`),
    /// then, for a recordResponse, beep and record what the bot hears.
    Run {
        conf_id: String,
        call_id: String,
        op_id: String,
        prompts: Vec<Prompt>,
        loop_forever: bool,
        record: Option<RecordSpec>,
    },
    /// cancelMediaProcessing: stop the bot's running prompt or recording now, no event.
    Cancel {
        conf_id: String,
        call_id: String,
    },
    /// sendDtmfTones: play the tones into the call, `tone_ms` each, `gap_ms` apart.
    SendTones {
        conf_id: String,
        call_id: String,
        op_id: String,
        tones: Vec<char>,
        tone_ms: u64,
        gap_ms: u64,
    },
    /// Hold music for a member (`None`: the built-in music).
    HoldMusic {
        conf_id: String,
        member_id: String,
        audio: Option<Audio>,
    },
    /// startRecording / stopRecording: record the room mix to `<dir>/<recording_id>.wav`,
    /// and with `tracks` what each participant says to `<recording_id>-<participant>.wav`.
    StartRecording {
        conf_id: String,
        call_id: String,
        recording_id: String,
        tracks: bool,
    },
    StopRecording {
        conf_id: String,
        call_id: String,
    },
    /// startTranscription: cut what each participant says into utterances (by the VAD) and
    /// hand them out as [`Event::Utterance`], timed from `offset_ms` (the transcript's clock
    /// when this room's part of it starts).
    StartTranscription {
        conf_id: String,
        call_id: String,
        transcript_id: String,
        offset_ms: u64,
    },
    /// stopTranscription: utterances in progress are handed out as they are.
    StopTranscription {
        conf_id: String,
        call_id: String,
    },
}

impl Cmd {
    /// The command's name, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Cmd::Room(_) => "room",
            Cmd::Run { .. } => "run",
            Cmd::Cancel { .. } => "cancel",
            Cmd::SendTones { .. } => "send tones",
            Cmd::HoldMusic { .. } => "hold music",
            Cmd::StartRecording { .. } => "start recording",
            Cmd::StopRecording { .. } => "stop recording",
            Cmd::StartTranscription { .. } => "start transcription",
            Cmd::StopTranscription { .. } => "stop transcription",
        }
    }

    pub fn conf_id(&self) -> &str {
        match self {
            Cmd::Room(r) => &r.conf_id,
            Cmd::Run { conf_id, .. }
            | Cmd::Cancel { conf_id, .. }
            | Cmd::SendTones { conf_id, .. }
            | Cmd::HoldMusic { conf_id, .. }
            | Cmd::StartRecording { conf_id, .. }
            | Cmd::StopRecording { conf_id, .. }
            | Cmd::StartTranscription { conf_id, .. }
            | Cmd::StopTranscription { conf_id, .. } => conf_id,
        }
    }
}

/// A finished recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub recording_id: String,
    pub duration_ms: u64,
}

/// Events to the call engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A Run or SendTones finished by itself; `reason` is its completionReason.
    Done {
        call_id: String,
        op_id: String,
        reason: &'static str,
        recording: Option<Recorded>,
    },
    /// A bot heard a DTMF key (in-band, or out of band from a leg).
    Tone { call_id: String, key: char },
    /// A call recording's files are complete (stopRecording, or the room closed).
    RecordingSaved {
        call_id: String,
        recording_id: String,
        duration_ms: u64,
        tracks: Vec<Track>,
    },
    /// One participant's utterance, for speech-to-text (the node transcribes it and answers
    /// with [`Event::Transcribed`]; the engine never sees this one).
    Utterance(Utterance),
    /// What an utterance said, or (`gap`) that it could not be transcribed.
    Transcribed {
        utterance: Utterance,
        text: String,
        gap: bool,
    },
}

/// A stretch of one participant's speech in a transcribed call. `audio` is emptied once
/// transcribed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utterance {
    pub call_id: String,
    pub transcript_id: String,
    pub participant_id: String,
    /// On the transcript's clock.
    pub start_ms: u64,
    pub end_ms: u64,
    pub audio: Vec<i16>,
}

/// One participant's track of a call recording: on the recording's timeline (silence before
/// the participant joined), ending when it left or the recording stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    pub participant_id: String,
    pub recording_id: String,
    pub duration_ms: u64,
}
