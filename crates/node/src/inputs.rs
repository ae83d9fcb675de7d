//! The messages between the node's parts: what the driver is told ([`Msg`]), what the
//! endpoints are told ([`Control`]), what the prompt fetcher is asked ([`FetchJob`]).

use directory::Behaviour;
use engine::{ApiError, AppCtx, Command, LegAction, LegEvent, Reply, Version};
use graph::ParticipantInfo;
use serde_json::Value;
use store::{DeadLetter, OutboxChange, OutboxRow};
use tokio::sync::oneshot;

pub type ApiResult = Result<Reply, ApiError>;

/// A prompt to fetch: (call id, operation id, prompt index, uri, resourceId). An empty
/// operation id is a preFetchMedia: the audio is only cached.
pub type FetchJob = (String, String, usize, String, Option<String>);

pub enum Msg {
    /// Take over a node whose lease ran out (a cluster): its calls, then end those whose
    /// media was on it.
    Adopt {
        node: String,
    },
    Api {
        app: AppCtx,
        call_id: Option<String>,
        cmd: Command,
        ver: Version,
        reply: oneshot::Sender<ApiResult>,
    },
    Incoming {
        app: AppCtx,
        webhook: String,
        caller: ParticipantInfo,
        script: Option<Value>,
        /// Who the call is for, when not the app itself (its resource account).
        target: Option<Box<graph::IdentitySet>>,
        /// Who drives the caller's leg.
        leg: NewLeg,
        reply: oneshot::Sender<(String, String)>,
    },
    /// A SIP phone's new call at ringside's REFER (`token` is the Refer-To user part): the
    /// new leg, or the SIP status to refuse the call with.
    Referred {
        token: String,
        reply: oneshot::Sender<Result<String, u16>>,
    },
    Leg {
        leg_id: String,
        event: LegEvent,
    },
    Fetched {
        call_id: String,
        op_id: String,
        index: usize,
        result: Result<media::Audio, String>,
    },
    Media(media::Event),
    Outbox(OutboxChange),
    CreateMeeting {
        app: AppCtx,
        subject: Option<String>,
        organizer: graph::IdentitySet,
        start: Option<String>,
        end: Option<String>,
        reply: oneshot::Sender<Result<Value, ApiError>>,
    },
    GetMeeting {
        tenant: String,
        id: String,
        reply: oneshot::Sender<Option<Value>>,
    },
    JoinMeeting {
        tenant: String,
        who: ParticipantInfo,
        meeting: engine::MeetingRef,
        /// Who drives the new leg.
        leg: NewLeg,
        reply: oneshot::Sender<ApiResult>,
    },
    DeadLetters {
        reply: oneshot::Sender<Vec<DeadLetter>>,
    },
    /// Is the store answering (`/readyz`)?
    Ping {
        reply: oneshot::Sender<Result<(), String>>,
    },
    Redeliver {
        seq: i64,
        reply: oneshot::Sender<Option<OutboxRow>>,
    },
    LogQuality {
        tenant: String,
        app: String,
        json: Value,
        reply: oneshot::Sender<Result<i64, String>>,
    },
    ListQuality {
        tenant: String,
        reply: oneshot::Sender<Vec<(i64, String, i64, Value)>>,
    },
    GetRecording {
        id: String,
        reply: oneshot::Sender<Option<store::Recording>>,
    },
    CallRecordings {
        call_id: String,
        reply: oneshot::Sender<Vec<store::Recording>>,
    },
    /// A call's transcripts (`by_meeting` false) or a meeting's, with their lines.
    Transcripts {
        owner: String,
        by_meeting: bool,
        reply: oneshot::Sender<Vec<(store::StoredTranscript, Vec<store::StoredLine>)>>,
    },
    Snapshot {
        reply: oneshot::Sender<Value>,
    },
    /// Every live call as the console draws it.
    ConsoleViews {
        reply: oneshot::Sender<Vec<Value>>,
    },
    /// The most recent recordings, newest first.
    RecentRecordings {
        limit: usize,
        reply: oneshot::Sender<Vec<store::Recording>>,
    },
}

/// Who drives a leg that starts with an incoming call or a meeting join. The driver tells the
/// endpoints as soon as the engine has made the leg, on the channel the engine's actions for
/// it take, so they know the leg before any action (the bot may answer, or the engine end the
/// leg, before whoever asked hears back).
pub enum NewLeg {
    /// Whoever asked drives it (an app-to-app bridge).
    Own,
    /// A SIP phone (crates/sip).
    Sip,
    /// A browser (crates/webrtc).
    Web,
    /// A simulated user calling an app, with its script.
    Caller {
        user_id: String,
        behaviour: Behaviour,
    },
    /// A simulated user joining a meeting, with its script.
    Joined {
        user_id: String,
        behaviour: Behaviour,
    },
}

impl NewLeg {
    /// What the endpoints are told about leg `leg`, if anything.
    pub fn control(self, leg: &str) -> Option<Control> {
        let leg = leg.to_string();
        Some(match self {
            NewLeg::Own => return None,
            NewLeg::Sip => Control::AddSip { leg },
            NewLeg::Web => Control::AddWeb { leg },
            NewLeg::Caller { user_id, behaviour } => Control::AddCaller {
                leg,
                user_id,
                behaviour,
            },
            NewLeg::Joined { user_id, behaviour } => Control::Joined {
                leg,
                user_id,
                behaviour,
            },
        })
    }
}

/// What the endpoints are told: leg actions from the engine, and legs that started elsewhere.
pub enum Control {
    Action(LegAction),
    /// An app's media stream opens or closes.
    Stream(engine::StreamAction),
    /// A SIP phone called an app: its leg is driven through crates/sip.
    AddSip {
        leg: String,
    },
    /// A browser called an app: its leg is driven through crates/webrtc.
    AddWeb {
        leg: String,
    },
    /// The far end ended the leg on its own (a phone's BYE): nothing left to drive.
    Forget {
        leg: String,
    },
    AddCaller {
        leg: String,
        user_id: String,
        behaviour: Behaviour,
    },
    /// A simulated user joined a meeting on its own: its script starts now.
    Joined {
        leg: String,
        user_id: String,
        behaviour: Behaviour,
    },
}
