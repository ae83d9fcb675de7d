//! Request bodies of every action (reference §7, §14 signatures) with their static
//! validation (limits of §11). State-dependent checks live in the engine.

use crate::enums::*;
use crate::lenient;
use crate::types::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const MAX_CLIENT_CONTEXT: usize = 256;
pub const MAX_INVITE: usize = 5;
pub const MAX_PROMPTS: usize = 20;
pub const MAX_REDIRECT_TARGETS: usize = 25;
pub const MAX_GROUP_TARGETS: usize = 5;
pub const MAX_RINGING_TIMEOUT: i64 = 115;
pub const MAX_STRING: usize = 2048;

/// Parse a JSON body; the error names the path of the offending field.
/// An empty body counts as `{}` (actions whose parameters are all optional).
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let body = if body.iter().all(|b| b.is_ascii_whitespace()) {
        b"{}".as_slice()
    } else {
        body
    };
    let de = &mut serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => Ok(v),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                Err(format!("The request body is not valid JSON: {inner}"))
            } else if path == "." || path.is_empty() {
                Err(format!("Invalid request body: {inner}"))
            } else {
                Err(format!(
                    "Invalid value for '{path}': {}",
                    strip_position(&inner.to_string())
                ))
            }
        }
    }
}

fn strip_position(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

pub fn check_client_context(cc: &Option<String>) -> Result<(), String> {
    match cc {
        Some(c) if c.chars().count() > MAX_CLIENT_CONTEXT => Err(format!(
            "clientContext is {} characters; the limit is {MAX_CLIENT_CONTEXT}",
            c.chars().count()
        )),
        _ => Ok(()),
    }
}

fn check_targets(field: &str, targets: &[InvitationParticipantInfo]) -> Result<(), String> {
    for (i, t) in targets.iter().enumerate() {
        if t.identity.party().is_none() {
            return Err(format!(
                "{field}[{i}].identity names no user, application, applicationInstance, phone or guest with an id"
            ));
        }
    }
    Ok(())
}

pub fn check_callback_uri(uri: &str) -> Result<(), String> {
    let lower = uri.to_ascii_lowercase();
    if uri.len() > MAX_STRING {
        return Err("callbackUri is too long".into());
    }
    if !(lower.starts_with("https://") || lower.starts_with("http://"))
        || uri.len() < 10
        || uri.contains(char::is_whitespace)
    {
        return Err(format!(
            "callbackUri '{uri}' is not an absolute http(s) URL"
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateCall {
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub callback_uri: Option<String>,
    #[serde(default)]
    pub source: Option<ParticipantInfo>,
    #[serde(default)]
    pub targets: Vec<InvitationParticipantInfo>,
    #[serde(default)]
    pub requested_modalities: Vec<Modality>,
    #[serde(default)]
    pub media_config: Option<MediaConfig>,
    #[serde(default)]
    pub chat_info: Option<ChatInfo>,
    #[serde(default)]
    pub meeting_info: Option<MeetingInfo>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub tenant_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub subject: Option<String>,
    #[serde(default)]
    pub call_options: Option<CallOptions>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub ringing_timeout_in_seconds: Option<i64>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Keys of `call` that are server-populated or handled above; everything else in `extra` is echoed.
const CALL_READ_ONLY: &[&str] = &[
    "@odata.type",
    "@odata.context",
    "id",
    "state",
    "direction",
    "myParticipantId",
    "callChainId",
    "resultInfo",
    "mediaState",
    "toneInfo",
    "transcription",
    "answeredBy",
    "activeModalities",
    "terminationReason",
    "callRoutes",
    "incomingContext",
    "meetingCapability",
    "routingPolicies",
];

impl CreateCall {
    pub fn validate(&mut self) -> Result<(), String> {
        let Some(cb) = &self.callback_uri else {
            return Err("callbackUri is required".into());
        };
        check_callback_uri(cb)?;
        let Some(media) = &self.media_config else {
            return Err("mediaConfig is required (#microsoft.graph.serviceHostedMediaConfig or #microsoft.graph.appHostedMediaConfig)".into());
        };
        media.media_streaming()?;
        if self.requested_modalities.is_empty() {
            return Err("requestedModalities is required and must not be empty".into());
        }
        let joins = self.meeting_info.is_some() || self.chat_info.is_some();
        if !joins && self.targets.is_empty() {
            return Err("Either targets (peer-to-peer or group call) or meetingInfo (join a meeting) is required".into());
        }
        if joins && !self.targets.is_empty() {
            return Err("targets cannot be combined with chatInfo/meetingInfo; join the meeting, then invite".into());
        }
        if let Some(MeetingInfo::Organizer { .. }) = &self.meeting_info
            && self
                .chat_info
                .as_ref()
                .and_then(|c| c.thread_id.as_ref())
                .is_none()
        {
            return Err("organizerMeetingInfo must be combined with chatInfo.threadId".into());
        }
        if self.chat_info.is_some() && self.meeting_info.is_none() {
            return Err("chatInfo needs meetingInfo (organizerMeetingInfo)".into());
        }
        if self.targets.len() > MAX_GROUP_TARGETS {
            return Err(format!(
                "A call can be created with at most {MAX_GROUP_TARGETS} targets; got {}",
                self.targets.len()
            ));
        }
        check_targets("targets", &self.targets)?;
        // Calling a phone number needs a resource account as the caller (reference §7.1).
        let calls_phone = self
            .targets
            .iter()
            .any(|t| matches!(t.identity.party(), Some(Party::Phone(_))));
        let has_instance = self
            .source
            .as_ref()
            .is_some_and(|s| s.identity.application_instance.is_some());
        if calls_phone && !has_instance {
            return Err("Calling a phone number needs source.identity.applicationInstance (the app's resource account)".into());
        }
        if let Some(t) = self.ringing_timeout_in_seconds
            && !(1..=MAX_RINGING_TIMEOUT).contains(&t)
        {
            return Err(format!(
                "ringingTimeoutInSeconds must be between 1 and {MAX_RINGING_TIMEOUT}; got {t}"
            ));
        }
        if self.subject.as_ref().is_some_and(|s| s.len() > MAX_STRING) {
            return Err("subject is too long".into());
        }
        for k in CALL_READ_ONLY {
            self.extra.remove(*k);
        }
        for t in &mut self.targets {
            t.sanitize();
        }
        if let Some(s) = &mut self.source {
            s.identity.sanitize();
            s.extra.remove("@odata.type");
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub callback_uri: Option<String>,
    #[serde(default)]
    pub media_config: Option<MediaConfig>,
    #[serde(default)]
    pub accepted_modalities: Vec<Modality>,
    #[serde(default)]
    pub call_options: Option<CallOptions>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub participant_capacity: Option<i64>,
}

impl Answer {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(cb) = &self.callback_uri {
            check_callback_uri(cb)?;
        }
        let Some(media) = &self.media_config else {
            return Err("mediaConfig is required".into());
        };
        media.media_streaming()?;
        if self.accepted_modalities.iter().any(|m| {
            !matches!(
                m,
                Modality::Audio | Modality::Video | Modality::VideoBasedScreenSharing
            )
        }) {
            return Err(
                "acceptedModalities may contain audio, video and videoBasedScreenSharing only"
                    .into(),
            );
        }
        if self
            .participant_capacity
            .is_some_and(|c| !(0..=10_000).contains(&c))
        {
            return Err("participantCapacity must be between 0 and 10000".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reject {
    #[serde(default)]
    pub reason: Option<RejectReason>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub callback_uri: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Redirect {
    #[serde(default)]
    pub targets: Vec<InvitationParticipantInfo>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub timeout: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub callback_uri: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub mask_callee: Option<bool>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub mask_caller: Option<bool>,
}

impl Redirect {
    pub fn validate(&mut self) -> Result<(), String> {
        if self.targets.is_empty() {
            return Err("targets is required".into());
        }
        if self.targets.len() > MAX_REDIRECT_TARGETS {
            return Err(format!(
                "redirect allows at most {MAX_REDIRECT_TARGETS} targets; got {}",
                self.targets.len()
            ));
        }
        check_targets("targets", &self.targets)?;
        if let Some(t) = self.timeout
            && !(15..=90).contains(&t)
        {
            return Err(format!(
                "timeout must be between 15 and 90 seconds; got {t}"
            ));
        }
        if let Some(cb) = &self.callback_uri {
            check_callback_uri(cb)?;
        }
        self.targets
            .iter_mut()
            .for_each(InvitationParticipantInfo::sanitize);
        Ok(())
    }
    /// Default timeout: 55 s for one target, 60 s for simultaneous ring (reference §7.7).
    pub fn timeout_seconds(&self) -> i64 {
        self.timeout
            .unwrap_or(if self.targets.len() > 1 { 60 } else { 55 })
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Transfer {
    #[serde(default)]
    pub transfer_target: Option<InvitationParticipantInfo>,
    #[serde(default)]
    pub transferee: Option<ParticipantInfo>,
}

impl Transfer {
    pub fn validate(&mut self) -> Result<(), String> {
        let Some(t) = &mut self.transfer_target else {
            return Err("transferTarget is required".into());
        };
        check_targets("transferTarget", std::slice::from_ref(t))?;
        t.sanitize();
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Invite {
    #[serde(default)]
    pub participants: Vec<InvitationParticipantInfo>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub client_context: Option<String>,
}

impl Invite {
    pub fn validate(&mut self) -> Result<(), String> {
        if self.participants.is_empty() {
            return Err("participants is required".into());
        }
        if self.participants.len() > MAX_INVITE {
            return Err(format!(
                "invite allows at most {MAX_INVITE} participants per request; got {}",
                self.participants.len()
            ));
        }
        check_targets("participants", &self.participants)?;
        check_client_context(&self.client_context)?;
        // With replacesCallId only the first participant is processed (reference §7.12).
        if self
            .participants
            .iter()
            .any(|p| p.replaces_call_id.is_some())
        {
            self.participants.truncate(1);
        }
        self.participants
            .iter_mut()
            .for_each(InvitationParticipantInfo::sanitize);
        Ok(())
    }
}

/// Body of actions whose only parameter is `clientContext`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientContext {
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub client_context: Option<String>,
}

impl ClientContext {
    pub fn validate(&self) -> Result<(), String> {
        check_client_context(&self.client_context)
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MuteAll {
    #[serde(default)]
    pub participants: Vec<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub client_context: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StartHoldMusic {
    #[serde(default)]
    pub custom_prompt: Option<MediaPrompt>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub client_context: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlayPrompt {
    #[serde(default)]
    pub prompts: Vec<MediaPrompt>,
    #[serde(default, rename = "loop", deserialize_with = "lenient::opt_bool")]
    pub loop_forever: Option<bool>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub client_context: Option<String>,
}

fn check_prompt_uri(p: &MediaPrompt) -> Result<(), String> {
    let uri = &p.media_info.uri;
    let lower = uri.to_ascii_lowercase();
    if uri.len() > MAX_STRING {
        return Err("mediaInfo.uri is too long".into());
    }
    if !(lower.starts_with("https://")
        || lower.starts_with("http://")
        || lower.starts_with("file://"))
    {
        return Err(format!("mediaInfo.uri '{uri}' must be an http(s) URL"));
    }
    Ok(())
}

impl PlayPrompt {
    pub fn validate(&self) -> Result<(), String> {
        if self.prompts.is_empty() {
            return Err("prompts is required and must not be empty".into());
        }
        if self.prompts.len() > MAX_PROMPTS {
            return Err(format!(
                "playPrompt allows at most {MAX_PROMPTS} prompts; got {}",
                self.prompts.len()
            ));
        }
        self.prompts.iter().try_for_each(check_prompt_uri)?;
        check_client_context(&self.client_context)
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordResponse {
    #[serde(default)]
    pub prompts: Vec<MediaPrompt>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub barge_in_allowed: Option<bool>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub initial_silence_timeout_in_seconds: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub max_silence_timeout_in_seconds: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub max_record_duration_in_seconds: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub play_beep: Option<bool>,
    #[serde(default)]
    pub stop_tones: Vec<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub client_context: Option<String>,
}

impl RecordResponse {
    pub fn validate(&self) -> Result<(), String> {
        if self.prompts.len() > 1 {
            return Err(format!(
                "recordResponse allows at most 1 prompt; got {}",
                self.prompts.len()
            ));
        }
        self.prompts.iter().try_for_each(check_prompt_uri)?;
        for (name, v) in [
            (
                "initialSilenceTimeoutInSeconds",
                self.initial_silence_timeout_in_seconds,
            ),
            (
                "maxSilenceTimeoutInSeconds",
                self.max_silence_timeout_in_seconds,
            ),
            (
                "maxRecordDurationInSeconds",
                self.max_record_duration_in_seconds,
            ),
        ] {
            if let Some(v) = v
                && !(1..=120).contains(&v)
            {
                return Err(format!("{name} must be between 1 and 120; got {v}"));
            }
        }
        for t in &self.stop_tones {
            if Tone::parse_loose(t).is_none() {
                return Err(format!(
                    "stopTones contains '{t}', which is not a DTMF tone (0-9, *, #, A-D)"
                ));
            }
        }
        check_client_context(&self.client_context)
    }
    pub fn stop_tones(&self) -> Vec<Tone> {
        self.stop_tones
            .iter()
            .filter_map(|t| Tone::parse_loose(t))
            .collect()
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SendDtmfTones {
    #[serde(default)]
    pub tones: Vec<Tone>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub delay_between_tones_ms: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub client_context: Option<String>,
}

impl SendDtmfTones {
    pub fn validate(&self) -> Result<(), String> {
        if self.tones.is_empty() {
            return Err("tones is required and must not be empty".into());
        }
        if self.tones.len() > 64 {
            return Err("sendDtmfTones allows at most 64 tones per request".into());
        }
        if let Some(d) = self.delay_between_tones_ms
            && !(0..=10_000).contains(&d)
        {
            return Err(format!(
                "delayBetweenTonesMs must be between 0 and 10000; got {d}"
            ));
        }
        check_client_context(&self.client_context)
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeScreenSharingRole {
    #[serde(default)]
    pub role: Option<ScreenSharingRole>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateRecordingStatus {
    #[serde(default)]
    pub status: Option<RecordingStatus>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub client_context: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Transcription {
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub language: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub client_context: Option<String>,
}

impl Transcription {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(l) = &self.language
            && !l.eq_ignore_ascii_case("en-us")
        {
            return Err(format!("language '{l}' is not supported; only en-us is"));
        }
        check_client_context(&self.client_context)
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogTeleconferenceDeviceQuality {
    #[serde(default)]
    pub quality: Option<Value>,
}

impl LogTeleconferenceDeviceQuality {
    pub fn validate(&self) -> Result<(), String> {
        let Some(q) = &self.quality else {
            return Err("quality is required".into());
        };
        let Some(obj) = q.as_object() else {
            return Err("quality must be an object".into());
        };
        for k in [
            "callChainId",
            "participantId",
            "mediaLegId",
            "deviceName",
            "deviceDescription",
        ] {
            if !obj.get(k).is_some_and(Value::is_string) {
                return Err(format!("quality.{k} is required and must be a string"));
            }
        }
        if !obj.get("mediaQualityList").is_some_and(Value::is_array) {
            return Err("quality.mediaQualityList is required and must be an array".into());
        }
        Ok(())
    }
}
