//! What goes in and out of the engine: commands, leg actions and events, effects,
//! notifications, replies and errors, and its configuration.

use graph::*;
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct AppCtx {
    pub tenant_id: String,
    pub app_id: String,
    pub app_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(msg: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            code: "BadRequest".into(),
            message: msg.into(),
        }
    }
    pub fn call_not_found() -> ApiError {
        ApiError {
            status: 404,
            code: "8522".into(),
            message: "Call not found.".into(),
        }
    }
    pub fn not_found(what: &str, id: &str) -> ApiError {
        ApiError {
            status: 404,
            code: "ItemNotFound".into(),
            message: format!("{what} '{id}' not found."),
        }
    }
    pub fn wrong_state(action: &str, state: CallState) -> ApiError {
        ApiError {
            status: 400,
            code: "InvalidCallState".into(),
            message: format!("{action} is not allowed while the call is {state}."),
        }
    }
    pub fn conflict(msg: impl Into<String>) -> ApiError {
        ApiError {
            status: 409,
            code: "Conflict".into(),
            message: msg.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Option<Value>,
    /// Path below the version root, e.g. `/communications/calls/{id}/operations/{op}`.
    pub location: Option<String>,
}

impl Reply {
    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            body: None,
            location: None,
        }
    }
    pub fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body: Some(body),
            location: None,
        }
    }
}

/// A notification to POST (reference §6): committed to the outbox before anything else happens.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub call_id: String,
    pub tenant_id: String,
    pub app_id: String,
    pub url: String,
    pub body: Value,
    /// The incoming-call notification: 302/307 from the bot are followed.
    pub incoming: bool,
}

/// What the engine asks an endpoint (simulated, SIP, WebRTC) to do with a leg.
#[derive(Debug, Clone, PartialEq)]
pub enum LegAction {
    Ring {
        leg_id: String,
        to: Party,
        from: Box<ParticipantInfo>,
        script: Option<Value>,
    },
    Answer {
        leg_id: String,
    },
    Reject {
        leg_id: String,
        sip_code: u16,
    },
    Cancel {
        leg_id: String,
    },
    Hangup {
        leg_id: String,
        reason: String,
    },
    /// Ask the endpoint to make a new call to ringside with `token` (SIP REFER); the call
    /// arrives through [`Engine::referred`].
    Refer {
        leg_id: String,
        token: String,
    },
}

impl LegAction {
    pub fn leg_id(&self) -> &str {
        match self {
            LegAction::Ring { leg_id, .. }
            | LegAction::Answer { leg_id }
            | LegAction::Reject { leg_id, .. }
            | LegAction::Cancel { leg_id }
            | LegAction::Hangup { leg_id, .. }
            | LegAction::Refer { leg_id, .. } => leg_id,
        }
    }
}

/// What an endpoint reports about a leg.
#[derive(Debug, Clone, PartialEq)]
pub enum LegEvent {
    Ringing,
    Answered,
    /// The far end refused or could not be reached: SIP-like status (404, 480, 486, 603, 408).
    Failed {
        sip_code: u16,
        reason: String,
    },
    HungUp,
    /// The leg's media stopped arriving (no RTP for the media timeout): it is gone.
    MediaLost {
        reason: String,
    },
    Held,
    Resumed,
    /// The endpoint can be transferred by [`LegAction::Refer`].
    ReferSupported,
    /// A [`LegAction::Refer`] did not bring the new call: refused (`accepted` false; the
    /// transfer goes on by re-bridging) or accepted and then failed with `sip_code`.
    ReferFailed {
        accepted: bool,
        sip_code: u16,
    },
    /// The party started / stopped sharing its screen.
    SharingStarted,
    SharingStopped,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Notify(Notification),
    Leg(LegAction),
    /// Something for the media rooms: room membership and routing, prompts, recordings, tones.
    Media(::media::Cmd),
    /// Fetch and decode a prompt; report it with [`Engine::prompt_fetched`].
    FetchPrompt {
        call_id: String,
        op_id: String,
        index: usize,
        uri: String,
        resource_id: Option<String>,
    },
    /// Register a recording (its file is `<recordings dir>/<id>.wav`): a finished
    /// recordResponse, or a call recording as it starts (`duration_ms` None) and ends.
    SaveRecording {
        id: String,
        call_id: String,
        tenant_id: String,
        app_id: String,
        kind: RecordingKind,
        duration_ms: Option<u64>,
    },
    /// A transcript begun (startTranscription) or ended (`ended_ms`): stored with the
    /// commit of the same batch.
    Transcript(Transcript),
    /// One line of a transcript: what a participant said, or a gap.
    TranscriptLine(TranscriptLine),
    /// An app's media stream opens (its WebSocket: out to the app, or awaited from it) or
    /// closes.
    Stream(StreamAction),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamAction {
    Open {
        call_id: String,
        tenant_id: String,
        app_id: String,
        stream: crate::model::Stream,
    },
    Close {
        call_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcript {
    pub id: String,
    pub call_id: String,
    /// The online meeting the call is in, if any.
    pub meeting_id: Option<String>,
    pub tenant_id: String,
    pub app_id: String,
    pub created_ms: crate::model::Ms,
    pub ended_ms: Option<crate::model::Ms>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptLine {
    pub transcript_id: String,
    pub call_id: String,
    pub participant_id: String,
    /// The speaker's display name (or their id, when they have none).
    pub speaker: String,
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
    /// Speech was heard here but not transcribed (the speech-to-text queue was full).
    pub gap: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordingKind {
    /// A recordResponse result, downloaded with its recordingAccessToken.
    Response { token: String },
    /// A startRecording call recording, listed and downloaded with the app's token.
    Call,
    /// One participant's track of the call recording `parent`.
    Track {
        parent: String,
        participant_id: String,
    },
}

/// How an endpoint names the meeting it joins.
#[derive(Debug, Clone, PartialEq)]
pub enum MeetingRef {
    Thread(String),
    JoinMeetingId {
        id: String,
        passcode: Option<String>,
    },
}

pub trait IdSource: Send {
    fn next_id(&mut self) -> String;
}

/// Deterministic ids for tests and simulations: GUID-shaped, from a counter.
pub struct SeqIds(pub u64);

impl IdSource for SeqIds {
    fn next_id(&mut self) -> String {
        self.0 += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.0)
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub keepalive_ms: u64,
    pub answer_deadline_ms: u64,
    pub default_ring_ms: u64,
    pub public_url: String,
    pub max_calls_per_app: usize,
    pub max_calls_per_tenant: usize,
    /// Length of each DTMF tone a bot sends.
    pub tone_ms: u64,
    /// Call recordings also keep one track per participant.
    pub record_tracks: bool,
    /// Why startTranscription cannot produce words here (no model), if it cannot.
    pub transcription_unavailable: Option<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            keepalive_ms: 45 * 60 * 1000,
            answer_deadline_ms: 15_000,
            default_ring_ms: 60_000,
            public_url: "http://127.0.0.1:8480".into(),
            max_calls_per_app: 100,
            max_calls_per_tenant: 1000,
            tone_ms: 100,
            record_tracks: false,
            transcription_unavailable: None,
        }
    }
}

/// Commands from the API: one variant per Graph action (reference §0).
// Each command is built once per request and moved straight into the engine: boxing the
// larger request bodies would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Command {
    CreateCall(Box<requests::CreateCall>),
    ListCalls,
    GetCall,
    DeleteCall,
    KeepAlive,
    Answer(requests::Answer),
    Reject(requests::Reject),
    Redirect(requests::Redirect),
    Transfer(Box<requests::Transfer>),
    ListParticipants,
    GetParticipant(String),
    DeleteParticipant(String),
    Invite(requests::Invite),
    MuteAll(requests::MuteAll),
    MuteParticipant(String, requests::ClientContext),
    StartHoldMusic(String, requests::StartHoldMusic),
    StopHoldMusic(String, requests::ClientContext),
    CreateRoutingGroup(AudioRoutingGroup),
    ListRoutingGroups,
    GetRoutingGroup(String),
    UpdateRoutingGroup(String, Value),
    DeleteRoutingGroup(String),
    AddLargeGalleryView(requests::ClientContext),
    PlayPrompt(requests::PlayPrompt),
    RecordResponse(requests::RecordResponse),
    CancelMediaProcessing(requests::ClientContext),
    SubscribeToTone(requests::ClientContext),
    SendDtmfTones(requests::SendDtmfTones),
    Mute(requests::ClientContext),
    Unmute(requests::ClientContext),
    ChangeScreenSharingRole(requests::ChangeScreenSharingRole),
    UpdateRecordingStatus(requests::UpdateRecordingStatus),
    StartRecording(requests::ClientContext),
    StopRecording(requests::ClientContext),
    StartTranscription(requests::Transcription),
    StopTranscription(requests::Transcription),
    ListOperations,
    GetOperation(String),
    ListContentSharingSessions,
    GetContentSharingSession(String),
}

impl Command {
    /// Reads change nothing: the driver answers them from committed state.
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            Command::ListCalls
                | Command::GetCall
                | Command::ListParticipants
                | Command::GetParticipant(_)
                | Command::ListRoutingGroups
                | Command::GetRoutingGroup(_)
                | Command::ListOperations
                | Command::GetOperation(_)
                | Command::ListContentSharingSessions
                | Command::GetContentSharingSession(_)
        )
    }
}
