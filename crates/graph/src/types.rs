//! Complex types of the calls API (reference §3). Open types keep unknown properties in
//! `extra` so they round-trip; `@odata.type` is only consulted where it discriminates.

use crate::enums::*;
use crate::lenient;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

pub type Extra = Map<String, Value>;

/// Strip `#`, an optional `microsoft.graph.` prefix, and compare case-insensitively.
pub fn odata_type_is(value: &Value, name: &str) -> bool {
    odata_type_name(value).is_some_and(|t| t.eq_ignore_ascii_case(name))
}

pub fn odata_type_name(value: &Value) -> Option<&str> {
    let t = value.get("@odata.type")?.as_str()?;
    let t = t.trim_start_matches('#');
    Some(
        if t.len() > 16 && t[..16].eq_ignore_ascii_case("microsoft.graph.") {
            &t[16..]
        } else {
            t
        },
    )
}

fn drop_odata_type(extra: &mut Extra) {
    extra.remove("@odata.type");
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Identity {
    pub fn new(id: &str, display_name: Option<&str>) -> Identity {
        Identity {
            id: Some(id.to_string()),
            display_name: display_name.map(str::to_string),
            extra: Extra::new(),
        }
    }
}

/// `identitySet` / `communicationsIdentitySet` (open).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentitySet {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<Identity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_instance: Option<Identity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Identity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<Identity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<Identity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<Identity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<Identity>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Which kind of party an identity set names, in routing priority order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Party {
    User(String),
    Application(String),
    ApplicationInstance(String),
    Phone(String),
    Guest(String),
}

impl IdentitySet {
    pub fn user(id: &str, name: Option<&str>) -> IdentitySet {
        IdentitySet {
            user: Some(Identity::new(id, name)),
            ..Default::default()
        }
    }
    pub fn application(id: &str, name: Option<&str>) -> IdentitySet {
        IdentitySet {
            application: Some(Identity::new(id, name)),
            ..Default::default()
        }
    }
    /// The addressable party: user, then applicationInstance, application, phone, guest.
    pub fn party(&self) -> Option<Party> {
        let id = |i: &Option<Identity>| {
            i.as_ref()
                .and_then(|i| i.id.clone())
                .filter(|s| !s.is_empty())
        };
        if let Some(v) = id(&self.user) {
            return Some(Party::User(v.to_ascii_lowercase()));
        }
        if let Some(v) = id(&self.application_instance) {
            return Some(Party::ApplicationInstance(v.to_ascii_lowercase()));
        }
        if let Some(v) = id(&self.application) {
            return Some(Party::Application(v.to_ascii_lowercase()));
        }
        if let Some(v) = id(&self.phone) {
            return Some(Party::Phone(v));
        }
        if let Some(v) = id(&self.guest) {
            return Some(Party::Guest(v));
        }
        None
    }
    pub fn display_name(&self) -> Option<&str> {
        [
            &self.user,
            &self.application_instance,
            &self.application,
            &self.phone,
            &self.guest,
        ]
        .into_iter()
        .flatten()
        .find_map(|i| i.display_name.as_deref())
    }
    pub fn sanitize(&mut self) {
        drop_odata_type(&mut self.extra);
        for i in [
            &mut self.application,
            &mut self.application_instance,
            &mut self.user,
            &mut self.phone,
            &mut self.guest,
            &mut self.device,
            &mut self.encrypted,
        ]
        .into_iter()
        .flatten()
        {
            drop_odata_type(&mut i.extra);
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantInfo {
    #[serde(default)]
    pub identity: IdentitySet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_type: Option<EndpointType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvitationParticipantInfo {
    pub identity: IdentitySet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_type: Option<EndpointType>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_bool"
    )]
    pub hidden: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant_id: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_bool"
    )]
    pub remove_from_default_audio_routing_group: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces_call_id: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl InvitationParticipantInfo {
    pub fn sanitize(&mut self) {
        drop_odata_type(&mut self.extra);
        self.identity.sanitize();
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaInfo {
    pub uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
}

/// `mediaConfig` is abstract: `@odata.type` decides (reference §3.4, §14.1).
#[derive(Debug, Clone, PartialEq)]
pub enum MediaConfig {
    ServiceHosted {
        pre_fetch_media: Vec<MediaInfo>,
        extra: Extra,
    },
    AppHosted {
        blob: Option<String>,
        extra: Extra,
    },
}

/// App-hosted media over a WebSocket (ringside's extension, the shape of Azure Communication
/// Services' media streaming): `mediaStreaming` in the app-hosted config's `blob` (a JSON
/// object) or beside it (docs/media-streaming.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaStreaming {
    /// `ws://` or `wss://`: ringside connects out. None: the bot connects in.
    pub transport_url: Option<String>,
    /// One stream of everything the bot hears (true), or each participant's own (false).
    pub mixed: bool,
    /// Audio the bot sends back is played into the call.
    pub bidirectional: bool,
}

impl MediaConfig {
    /// The media stream asked for, if any; Err says what is wrong with it.
    pub fn media_streaming(&self) -> Result<Option<MediaStreaming>, String> {
        let MediaConfig::AppHosted { blob, extra } = self else {
            return Ok(None);
        };
        let find = |m: &Map<String, Value>| {
            m.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("mediaStreaming"))
                .map(|(_, v)| v.clone())
        };
        let from_blob = blob
            .as_deref()
            .and_then(|b| serde_json::from_str::<Value>(b).ok())
            .and_then(|v| v.as_object().and_then(find));
        let Some(v) = find(extra).or(from_blob) else {
            return Ok(None);
        };
        let Value::Object(o) = v else {
            return Err("mediaStreaming must be an object".into());
        };
        let get = |k: &str| {
            o.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v)
        };
        let transport_url = match get("transportUrl") {
            None | Some(Value::Null) => None,
            Some(Value::String(u)) => {
                let lower = u.to_ascii_lowercase();
                if !(lower.starts_with("ws://") || lower.starts_with("wss://")) {
                    return Err(format!(
                        "mediaStreaming.transportUrl '{u}' must be a ws:// or wss:// URL"
                    ));
                }
                Some(u.clone())
            }
            Some(_) => return Err("mediaStreaming.transportUrl must be a string".into()),
        };
        let mixed = match get("audioChannelType") {
            None | Some(Value::Null) => true,
            Some(Value::String(t)) if t.eq_ignore_ascii_case("mixed") => true,
            Some(Value::String(t)) if t.eq_ignore_ascii_case("unmixed") => false,
            Some(other) => {
                return Err(format!(
                    "mediaStreaming.audioChannelType {other} is not \"mixed\" or \"unmixed\""
                ));
            }
        };
        let bidirectional = match get("bidirectional").or(get("enableBidirectional")) {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err("mediaStreaming.bidirectional must be true or false".into()),
        };
        if let Some(f) = get("audioFormat")
            && !f
                .as_str()
                .is_some_and(|f| f.eq_ignore_ascii_case("pcm16KMono"))
        {
            return Err(format!(
                "mediaStreaming.audioFormat {f} is not supported; ringside streams \"pcm16KMono\""
            ));
        }
        Ok(Some(MediaStreaming {
            transport_url,
            mixed,
            bidirectional,
        }))
    }

    pub fn is_service_hosted(&self) -> bool {
        matches!(self, MediaConfig::ServiceHosted { .. })
    }
    /// β `removeFromDefaultAudioGroup`: the bot is heard (and hears) only through its
    /// audio routing groups.
    pub fn removes_from_default_group(&self) -> bool {
        let (MediaConfig::ServiceHosted { extra, .. } | MediaConfig::AppHosted { extra, .. }) =
            self;
        extra
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("removeFromDefaultAudioGroup"))
            .is_some_and(|(_, v)| v.as_bool() == Some(true) || v.as_str() == Some("true"))
    }
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        match self {
            MediaConfig::ServiceHosted {
                pre_fetch_media,
                extra,
            } => {
                m.insert(
                    "@odata.type".into(),
                    "#microsoft.graph.serviceHostedMediaConfig".into(),
                );
                m.insert(
                    "preFetchMedia".into(),
                    serde_json::to_value(pre_fetch_media).unwrap_or_default(),
                );
                m.extend(extra.clone());
            }
            MediaConfig::AppHosted { blob, extra } => {
                m.insert(
                    "@odata.type".into(),
                    "#microsoft.graph.appHostedMediaConfig".into(),
                );
                m.insert(
                    "blob".into(),
                    blob.clone().map(Value::String).unwrap_or(Value::Null),
                );
                m.extend(extra.clone());
            }
        }
        Value::Object(m)
    }
}

impl Serialize for MediaConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(s)
    }
}

impl<'de> Deserialize<'de> for MediaConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let Value::Object(mut obj) = v.clone() else {
            return Err(de::Error::custom("mediaConfig must be an object"));
        };
        let kind = odata_type_name(&v).map(str::to_ascii_lowercase);
        drop_odata_type(&mut obj);
        match kind.as_deref() {
            Some("servicehostedmediaconfig") => {
                let pre = match obj.remove("preFetchMedia") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(p) => serde_json::from_value(p)
                        .map_err(|e| de::Error::custom(format!("preFetchMedia: {e}")))?,
                };
                Ok(MediaConfig::ServiceHosted {
                    pre_fetch_media: pre,
                    extra: obj,
                })
            }
            Some("apphostedmediaconfig") => {
                let blob = match obj.remove("blob") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s),
                    Some(_) => return Err(de::Error::custom("blob must be a string")),
                };
                Ok(MediaConfig::AppHosted { blob, extra: obj })
            }
            Some(other) => Err(de::Error::custom(format!(
                "unsupported mediaConfig @odata.type '{other}'; expected #microsoft.graph.serviceHostedMediaConfig or #microsoft.graph.appHostedMediaConfig"
            ))),
            None => Err(de::Error::custom(
                "mediaConfig needs an @odata.type: #microsoft.graph.serviceHostedMediaConfig or #microsoft.graph.appHostedMediaConfig",
            )),
        }
    }
}

/// `mediaPrompt`, the one concrete `prompt` (reference §3.4).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaPrompt {
    pub media_info: MediaInfo,
    #[serde(rename = "loop", skip_serializing_if = "Option::is_none")]
    pub loop_count: Option<i32>,
}

impl<'de> Deserialize<'de> for MediaPrompt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        match odata_type_name(&v) {
            Some(t) if !t.eq_ignore_ascii_case("mediaPrompt") => {
                return Err(de::Error::custom(format!(
                    "unsupported prompt @odata.type '{t}'; expected #microsoft.graph.mediaPrompt"
                )));
            }
            _ => {}
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Raw {
            media_info: Option<MediaInfo>,
            #[serde(rename = "loop", default, deserialize_with = "lenient::opt_i64")]
            loop_count: Option<i64>,
        }
        let raw: Raw = serde_json::from_value(v).map_err(de::Error::custom)?;
        let media_info = raw
            .media_info
            .ok_or_else(|| de::Error::custom("mediaPrompt needs mediaInfo"))?;
        Ok(MediaPrompt {
            media_info,
            loop_count: raw
                .loop_count
                .map(|l| l.clamp(i32::MIN as i64, i32::MAX as i64) as i32),
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_chain_message_id: Option<String>,
}

/// `meetingInfo` is abstract (reference §3.5).
#[derive(Debug, Clone, PartialEq)]
pub enum MeetingInfo {
    Organizer {
        organizer: Box<IdentitySet>,
        extra: Extra,
    },
    Token {
        token: String,
        extra: Extra,
    },
    JoinMeetingId {
        join_meeting_id: String,
        passcode: Option<String>,
        extra: Extra,
    },
}

impl MeetingInfo {
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        match self {
            MeetingInfo::Organizer { organizer, extra } => {
                m.insert(
                    "@odata.type".into(),
                    "#microsoft.graph.organizerMeetingInfo".into(),
                );
                m.insert(
                    "organizer".into(),
                    serde_json::to_value(organizer).unwrap_or_default(),
                );
                m.extend(extra.clone());
            }
            MeetingInfo::Token { token, extra } => {
                m.insert(
                    "@odata.type".into(),
                    "#microsoft.graph.tokenMeetingInfo".into(),
                );
                m.insert("token".into(), token.clone().into());
                m.extend(extra.clone());
            }
            MeetingInfo::JoinMeetingId {
                join_meeting_id,
                passcode,
                extra,
            } => {
                m.insert(
                    "@odata.type".into(),
                    "#microsoft.graph.joinMeetingIdMeetingInfo".into(),
                );
                m.insert("joinMeetingId".into(), join_meeting_id.clone().into());
                m.insert(
                    "passcode".into(),
                    passcode.clone().map(Value::String).unwrap_or(Value::Null),
                );
                m.extend(extra.clone());
            }
        }
        Value::Object(m)
    }
}

impl Serialize for MeetingInfo {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(s)
    }
}

impl<'de> Deserialize<'de> for MeetingInfo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let Value::Object(mut obj) = v.clone() else {
            return Err(de::Error::custom("meetingInfo must be an object"));
        };
        let kind = odata_type_name(&v).map(str::to_ascii_lowercase);
        drop_odata_type(&mut obj);
        let take_str = |obj: &mut Extra, key: &str| -> Result<Option<String>, D::Error> {
            match obj.remove(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(Value::Number(n)) => Ok(Some(n.to_string())),
                Some(_) => Err(de::Error::custom(format!(
                    "meetingInfo.{key} must be a string"
                ))),
            }
        };
        match kind.as_deref() {
            Some("organizermeetinginfo") => {
                let organizer = obj
                    .remove("organizer")
                    .ok_or_else(|| de::Error::custom("organizerMeetingInfo needs organizer"))?;
                let mut organizer: IdentitySet = serde_json::from_value(organizer)
                    .map_err(|e| de::Error::custom(format!("organizer: {e}")))?;
                organizer.sanitize();
                Ok(MeetingInfo::Organizer {
                    organizer: Box::new(organizer),
                    extra: obj,
                })
            }
            Some("tokenmeetinginfo") => {
                let token = take_str(&mut obj, "token")?
                    .ok_or_else(|| de::Error::custom("tokenMeetingInfo needs token"))?;
                Ok(MeetingInfo::Token { token, extra: obj })
            }
            Some("joinmeetingidmeetinginfo") => {
                let id = take_str(&mut obj, "joinMeetingId")?.ok_or_else(|| {
                    de::Error::custom("joinMeetingIdMeetingInfo needs joinMeetingId")
                })?;
                let passcode = take_str(&mut obj, "passcode")?;
                Ok(MeetingInfo::JoinMeetingId {
                    join_meeting_id: id,
                    passcode,
                    extra: obj,
                })
            }
            Some(other) => Err(de::Error::custom(format!(
                "unsupported meetingInfo @odata.type '{other}'; expected organizerMeetingInfo, tokenMeetingInfo or joinMeetingIdMeetingInfo"
            ))),
            None => Err(de::Error::custom(
                "meetingInfo needs an @odata.type: #microsoft.graph.organizerMeetingInfo, tokenMeetingInfo or joinMeetingIdMeetingInfo",
            )),
        }
    }
}

/// `callOptions` (outgoing on create, incoming on answer); all flags (reference §3.9).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallOptions {
    #[serde(
        default,
        deserialize_with = "lenient::opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub hide_bot_after_escalation: Option<bool>,
    #[serde(
        default,
        deserialize_with = "lenient::opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub is_content_sharing_notification_enabled: Option<bool>,
    #[serde(
        default,
        deserialize_with = "lenient::opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub is_delta_roster_enabled: Option<bool>,
    #[serde(
        default,
        deserialize_with = "lenient::opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub is_interactive_roster_enabled: Option<bool>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultInfo {
    pub code: i32,
    pub subcode: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ResultInfo {
    pub fn new(code: i32, subcode: i32, message: &str) -> ResultInfo {
        ResultInfo {
            code,
            subcode,
            message: Some(message.to_string()),
        }
    }
    pub fn to_value(&self) -> Value {
        serde_json::json!({"@odata.type":"#microsoft.graph.resultInfo","code":self.code,"subcode":self.subcode,"message":self.message})
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AudioRoutingGroup {
    #[serde(default)]
    pub id: Option<String>,
    pub routing_mode: RoutingMode,
    #[serde(default)]
    pub sources: Vec<String>,
    #[serde(default)]
    pub receivers: Vec<String>,
}
