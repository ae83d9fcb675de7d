//! The engine's data: everything a call is, serializable so the store can persist it.

use graph::requests::RecordResponse;
use graph::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};

/// Milliseconds since the Unix epoch; the engine never reads a clock.
pub type Ms = u64;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum CallKind {
    /// Bot and one other party; no roster notifications (reference §9.3).
    PeerToPeer,
    /// Ad-hoc group call created with several targets, or escalated by invite.
    Group,
    /// A call that joined an online meeting.
    Meeting,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Call {
    pub id: String,
    pub tenant_id: String,
    pub app_id: String,
    pub app_name: Option<String>,
    pub direction: CallDirection,
    pub state: CallState,
    pub kind: CallKind,
    pub callback_uri: String,
    pub source: ParticipantInfo,
    pub targets: Vec<InvitationParticipantInfo>,
    pub requested_modalities: Vec<Modality>,
    pub media_config: Option<MediaConfig>,
    pub chat_info: Option<ChatInfo>,
    pub meeting_info: Option<MeetingInfo>,
    pub subject: Option<String>,
    pub call_options: CallOptions,
    pub ringing_timeout_s: Option<i64>,
    pub my_participant_id: String,
    pub call_chain_id: String,
    pub conf_id: String,
    pub media_active: bool,
    pub result_info: Option<ResultInfo>,
    pub termination_reason: Option<String>,
    pub answered_by: Option<ParticipantInfo>,
    pub tone_subscribed: bool,
    pub tone_seq: i64,
    pub tone_info: Option<(i64, Tone)>,
    pub transcription: Option<(TranscriptionState, Ms)>,
    /// The transcript being written while transcription is active: (id, started at).
    #[serde(default)]
    pub transcript: Option<(String, Ms)>,
    /// The app's media stream while the call is up (app-hosted media over a WebSocket).
    #[serde(default)]
    pub stream: Option<Stream>,
    pub recording: bool,
    pub operations: BTreeMap<String, Operation>,
    pub media_queue: VecDeque<String>,
    pub routing_groups: Vec<AudioRoutingGroup>,
    pub keepalive_at: Ms,
    pub answer_deadline: Option<Ms>,
    /// Highest conference roster sequence already notified to this call (delta roster).
    pub roster_sent_seq: i64,
    /// Transfer in progress: the leg ringing the target.
    pub transfer: Option<TransferState>,
    /// Redirect in progress: the legs ringing the new targets.
    pub redirect: Option<RedirectState>,
    pub created_at: Ms,
    pub extra: Extra,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransferState {
    pub target_leg: Option<String>,
    pub transferee_leg: String,
    pub deadline: Ms,
    /// A transfer by REFER: the token of the URI the transferee was asked to call, until its
    /// new call arrives.
    #[serde(default)]
    pub refer_token: Option<String>,
    /// The transferee's original leg, once its new call (by REFER) arrived; it ends when the
    /// transfer completes.
    #[serde(default)]
    pub replaced_leg: Option<String>,
    /// Whom to ring, while the transferee is still to call in by REFER.
    #[serde(default)]
    pub target: Option<InvitationParticipantInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RedirectState {
    pub legs: Vec<String>,
    pub deadline: Ms,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum OpKind {
    PlayPrompt,
    Record,
    SubscribeToTone,
    CancelMediaProcessing,
    SendDtmfTones,
    MuteParticipant,
    UnmuteParticipant,
    MuteParticipants,
    InviteParticipants,
    UpdateRecordingStatus,
    AddLargeGalleryView,
    StartHoldMusic,
    StopHoldMusic,
    StartRecording,
    StopRecording,
    StartTranscription,
    StopTranscription,
}

impl OpKind {
    pub fn odata_type(&self) -> &'static str {
        match self {
            OpKind::PlayPrompt => "#microsoft.graph.playPromptOperation",
            OpKind::Record => "#microsoft.graph.recordOperation",
            OpKind::SubscribeToTone => "#microsoft.graph.subscribeToToneOperation",
            OpKind::CancelMediaProcessing => "#microsoft.graph.cancelMediaProcessingOperation",
            OpKind::SendDtmfTones => "#microsoft.graph.sendDtmfTonesOperation",
            OpKind::MuteParticipant => "#microsoft.graph.muteParticipantOperation",
            OpKind::UnmuteParticipant => "#microsoft.graph.unmuteParticipantOperation",
            OpKind::MuteParticipants => "#microsoft.graph.muteParticipantsOperation",
            OpKind::InviteParticipants => "#microsoft.graph.inviteParticipantsOperation",
            OpKind::UpdateRecordingStatus => "#microsoft.graph.updateRecordingStatusOperation",
            OpKind::AddLargeGalleryView => "#microsoft.graph.addLargeGalleryViewOperation",
            OpKind::StartHoldMusic => "#microsoft.graph.startHoldMusicOperation",
            OpKind::StopHoldMusic => "#microsoft.graph.stopHoldMusicOperation",
            OpKind::StartRecording => "#microsoft.graph.startRecordingOperation",
            OpKind::StopRecording => "#microsoft.graph.stopRecordingOperation",
            OpKind::StartTranscription => "#microsoft.graph.startTranscriptionOperation",
            OpKind::StopTranscription => "#microsoft.graph.stopTranscriptionOperation",
        }
    }
}

/// Progress of a media operation (playPrompt / recordResponse) in the call's FIFO.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum MediaPhase {
    Queued,
    /// Prompts being fetched and decoded.
    Fetching,
    /// Handed to the media room, which reports when it is done.
    Running,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MediaWork {
    pub prompts: Vec<MediaPrompt>,
    /// Each prompt's audio once fetched; not persisted (prompts are fetched again).
    #[serde(skip)]
    pub audio: Vec<Option<::media::Audio>>,
    pub loop_forever: bool,
    pub phase: MediaPhase,
    pub record: Option<RecordResponse>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Operation {
    pub id: String,
    pub kind: OpKind,
    pub status: OperationStatus,
    pub client_context: Option<String>,
    pub result_info: Option<ResultInfo>,
    pub completion_reason: Option<String>,
    pub recording_location: Option<String>,
    pub recording_access_token: Option<String>,
    pub participants: Option<Value>,
    pub media: Option<MediaWork>,
    /// Generic completion deadline (sendDtmfTones, addLargeGalleryView, …).
    pub due: Option<Ms>,
    /// Invite: participant ids still ringing, and failures seen so far.
    pub pending: Vec<String>,
    pub failures: Vec<String>,
}

impl Operation {
    pub fn is_final(&self) -> bool {
        matches!(
            self.status,
            OperationStatus::Completed | OperationStatus::Failed
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum MemberEndpoint {
    Bot { call_id: String },
    Leg { leg_id: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Member {
    pub id: String,
    pub info: ParticipantInfo,
    pub endpoint: MemberEndpoint,
    pub joined: bool,
    pub muted: bool,
    pub hidden: bool,
    pub held: bool,
    pub hold_music: bool,
    pub screen_sharing: bool,
    pub large_gallery: bool,
    /// In the default audio routing group (false: removeFromDefaultAudioRoutingGroup, or the
    /// bot's removeFromDefaultAudioGroup).
    #[serde(default = "yes")]
    pub in_default_group: bool,
    pub recording: Option<(RecordingStatus, IdentitySet)>,
    pub seq: i64,
    /// The invite operation (call id, op id) that brought this member, while pending.
    pub invited_by: Option<(String, String)>,
    pub source_id: u32,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tombstone {
    pub member: Member,
    pub reason: String,
}

/// A conference: the media/roster space shared by everyone in one call or meeting.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Conference {
    pub id: String,
    pub tenant_id: String,
    pub meeting_id: Option<String>,
    pub members: Vec<Member>,
    pub removed: Vec<Tombstone>,
    pub seq: i64,
    pub next_source_id: u32,
    /// The content being shared in the conference, if any (reference §2.5, §7.31).
    #[serde(default)]
    pub sharing: Option<ContentSharing>,
}

impl Conference {
    pub fn new(id: String, tenant_id: String, meeting_id: Option<String>) -> Conference {
        Conference {
            id,
            tenant_id,
            meeting_id,
            members: vec![],
            removed: vec![],
            seq: 0,
            next_source_id: 1,
            sharing: None,
        }
    }

    /// Add a member with the next roster sequence number and its own media source ids.
    pub fn push_member(
        &mut self,
        id: String,
        info: ParticipantInfo,
        endpoint: MemberEndpoint,
        joined: bool,
    ) -> &mut Member {
        self.seq += 1;
        let source_id = self.next_source_id;
        self.next_source_id += 10;
        self.members.push(Member {
            id,
            info,
            endpoint,
            joined,
            muted: false,
            hidden: false,
            held: false,
            hold_music: false,
            screen_sharing: false,
            large_gallery: false,
            in_default_group: true,
            recording: None,
            seq: self.seq,
            invited_by: None,
            source_id,
        });
        self.members.last_mut().expect("just pushed")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContentSharing {
    pub id: String,
    pub presenter: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum LegState {
    Ringing,
    Connected,
    Ended,
}

/// Why a leg exists: what its answer or failure means to the engine.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum LegRole {
    /// Rung as a target of an outgoing call or an invite; joins the conference on answer.
    Member { call_id: String },
    /// A caller that rang an app: the other side of an incoming call.
    Caller { call_id: String },
    /// Rung by a redirect of `call_id`; bridged to the caller on answer.
    RedirectTarget { call_id: String },
    /// Rung by a transfer of `call_id`; bridged to the transferee on answer.
    TransferTarget { call_id: String },
    /// The transferee's new call, made at ringside's REFER; bridged to the target on answer.
    Transferee { call_id: String },
    /// Part of a conference with no bot (after a redirect or transfer completed).
    Bridged,
}

impl LegRole {
    /// The call this role is on behalf of (none for a bot-less bridge).
    pub fn call_id(&self) -> Option<&str> {
        match self {
            LegRole::Member { call_id }
            | LegRole::Caller { call_id }
            | LegRole::RedirectTarget { call_id }
            | LegRole::TransferTarget { call_id }
            | LegRole::Transferee { call_id } => Some(call_id),
            LegRole::Bridged => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Leg {
    pub id: String,
    pub party: Party,
    pub info: ParticipantInfo,
    pub state: LegState,
    pub role: LegRole,
    pub conf_id: Option<String>,
    pub participant_id: Option<String>,
    pub ring_deadline: Option<Ms>,
    /// Per-call scripted behaviour for simulated endpoints (the target's `ringside` property).
    pub script: Option<Value>,
    /// The endpoint can be transferred by REFER (a SIP far end that allows it).
    #[serde(default)]
    pub refer: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meeting {
    pub id: String,
    pub tenant_id: String,
    pub thread_id: String,
    pub join_meeting_id: String,
    pub passcode: String,
    pub organizer: IdentitySet,
    pub subject: Option<String>,
    pub join_web_url: String,
    pub created_at: Ms,
    pub start: Option<String>,
    pub end: Option<String>,
    pub conf_id: Option<String>,
}

/// An app's media stream: where it goes, and (when the bot connects in) the URL and the
/// secret that admit it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stream {
    pub spec: graph::MediaStreaming,
    pub token: String,
    /// `ws(s)://…/media/streams/{callId}?token=…` when the bot connects in.
    pub url: Option<String>,
}

/// Persistable object kinds, keyed for the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ObjKind {
    Call,
    Conference,
    Leg,
    Meeting,
}

impl ObjKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjKind::Call => "call",
            ObjKind::Conference => "conference",
            ObjKind::Leg => "leg",
            ObjKind::Meeting => "meeting",
        }
    }
    pub fn parse(s: &str) -> Option<ObjKind> {
        Some(match s {
            "call" => ObjKind::Call,
            "conference" => ObjKind::Conference,
            "leg" => ObjKind::Leg,
            "meeting" => ObjKind::Meeting,
            _ => return None,
        })
    }
}
