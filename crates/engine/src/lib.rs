//! The sans-IO call engine. Feed it API commands, leg events, fetch results and time; drain
//! effects (notifications, leg actions, fetches) and the set of objects to persist.
//! It never opens a socket, reads a clock or draws a random number.

mod actions;
mod legs;
mod media;
pub mod model;
pub mod render;

use graph::*;
pub use model::*;
pub use render::Version;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};

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

pub struct Engine {
    pub cfg: Config,
    ids: Box<dyn IdSource>,
    pub(crate) calls: HashMap<String, Call>,
    pub(crate) confs: HashMap<String, Conference>,
    pub(crate) legs: HashMap<String, Leg>,
    pub(crate) meetings: HashMap<String, Meeting>,
    /// (due, call id) for every live call with a deadline; mirrors `due_of`.
    timers: BTreeSet<(Ms, String)>,
    due_of: HashMap<String, Ms>,
    effects: Vec<Effect>,
    dirty: BTreeSet<(ObjKind, String)>,
    roster_dirty: BTreeSet<String>,
    /// Conferences whose room may have changed, and what the media rooms were last told.
    media_dirty: BTreeSet<String>,
    rooms: HashMap<String, ::media::RoomSpec>,
    pub(crate) now: Ms,
}

impl Engine {
    pub fn new(cfg: Config, ids: Box<dyn IdSource>) -> Engine {
        Engine {
            cfg,
            ids,
            calls: HashMap::new(),
            confs: HashMap::new(),
            legs: HashMap::new(),
            meetings: HashMap::new(),
            timers: BTreeSet::new(),
            due_of: HashMap::new(),
            effects: Vec::new(),
            dirty: BTreeSet::new(),
            roster_dirty: BTreeSet::new(),
            media_dirty: BTreeSet::new(),
            rooms: HashMap::new(),
            now: 0,
        }
    }

    pub(crate) fn id(&mut self) -> String {
        self.ids.next_id()
    }

    // ---------------------------------------------------------------- inputs

    /// Handle one API command. `call_id` is the `{id}` path segment where the route has one.
    pub fn handle_api(
        &mut self,
        now: Ms,
        app: &AppCtx,
        call_id: Option<&str>,
        cmd: Command,
        ver: Version,
    ) -> Result<Reply, ApiError> {
        self.now = self.now.max(now);
        let r = actions::dispatch(self, app, call_id, cmd, ver);
        self.flush();
        r
    }

    pub fn handle_leg(&mut self, now: Ms, leg_id: &str, ev: LegEvent) {
        self.now = self.now.max(now);
        legs::on_event(self, leg_id, ev);
        self.flush();
    }

    /// A caller (simulated user, SIP UA, …) rings an application: creates the incoming call.
    pub fn incoming_call(
        &mut self,
        now: Ms,
        app: &AppCtx,
        webhook: &str,
        caller: ParticipantInfo,
        script: Option<Value>,
    ) -> (String, String) {
        self.now = self.now.max(now);
        self.incoming_call_to(now, app, webhook, caller, script, None)
    }

    /// An incoming call addressed to `target` (e.g. the app's resource account, for a call to
    /// its phone number); by default the target is the application itself.
    pub fn incoming_call_to(
        &mut self,
        now: Ms,
        app: &AppCtx,
        webhook: &str,
        caller: ParticipantInfo,
        script: Option<Value>,
        target: Option<IdentitySet>,
    ) -> (String, String) {
        self.now = self.now.max(now);
        let r = legs::incoming(self, app, webhook, caller, script, target);
        self.flush();
        r
    }

    /// The transferee's new call, made because of a [`LegAction::Refer`] carrying `token`:
    /// the new leg's id, or the SIP status to refuse the call with (no such transfer).
    pub fn referred(&mut self, now: Ms, token: &str) -> Result<String, u16> {
        self.now = self.now.max(now);
        let r = legs::referred(self, token);
        self.flush();
        r
    }

    /// The result of an [`Effect::FetchPrompt`]: the decoded prompt, or why it can't play.
    pub fn prompt_fetched(
        &mut self,
        now: Ms,
        call_id: &str,
        op_id: &str,
        index: usize,
        result: Result<::media::Audio, String>,
    ) {
        self.now = self.now.max(now);
        media::prompt_fetched(self, call_id, op_id, index, result);
        self.flush();
    }

    /// What the media rooms report: finished prompts and recordings, tones heard.
    pub fn media_event(&mut self, now: Ms, ev: ::media::Event) {
        self.now = self.now.max(now);
        media::on_media_event(self, ev);
        self.flush();
    }

    /// Fire every deadline due at `now`.
    pub fn handle_timeout(&mut self, now: Ms) {
        self.now = self.now.max(now);
        while let Some((due, call_id)) = self.timers.first().cloned() {
            if due > self.now {
                break;
            }
            self.timers.remove(&(due, call_id.clone()));
            self.due_of.remove(&call_id);
            actions::fire_timers(self, &call_id);
            self.refresh_timer(&call_id);
        }
        self.flush();
    }

    /// The earliest deadline, if any: call [`Engine::handle_timeout`] then.
    pub fn poll_timeout(&self) -> Option<Ms> {
        self.timers.first().map(|(t, _)| *t)
    }

    pub fn create_meeting(
        &mut self,
        now: Ms,
        app: &AppCtx,
        subject: Option<String>,
        organizer: IdentitySet,
        start: Option<String>,
        end: Option<String>,
    ) -> Value {
        self.now = self.now.max(now);
        let id = self.id();
        let n = self.meetings.len() as u64 + 1;
        let digits: String = id.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        let numeric: u64 =
            u64::from_str_radix(&digits[digits.len().saturating_sub(10)..], 16).unwrap_or(n);
        let join_meeting_id = format!("{:012}", numeric % 1_000_000_000_000);
        let passcode = format!("{:06}", (numeric / 7) % 1_000_000);
        let thread_id = format!(
            "19:meeting_{}@thread.v2",
            digits.get(..24).unwrap_or(&digits)
        );
        let oid = organizer.party().map(|p| match p {
            Party::User(s)
            | Party::Application(s)
            | Party::ApplicationInstance(s)
            | Party::Phone(s)
            | Party::Guest(s) => s,
        });
        let context =
            json!({"Tid": app.tenant_id, "Oid": oid.unwrap_or_else(|| app.app_id.clone())})
                .to_string();
        let enc = |s: &str| {
            let mut out = String::new();
            for b in s.bytes() {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    out.push(b as char);
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            out
        };
        let join_web_url = format!(
            "{}/l/meetup-join/{}/0?context={}",
            self.cfg.public_url.trim_end_matches('/'),
            enc(&thread_id),
            enc(&context)
        );
        let m = Meeting {
            id: id.clone(),
            tenant_id: app.tenant_id.clone(),
            thread_id,
            join_meeting_id,
            passcode,
            organizer,
            subject,
            join_web_url,
            created_at: self.now,
            start,
            end,
            conf_id: None,
        };
        let v = render::meeting(&m);
        self.meetings.insert(id.clone(), m);
        self.dirty.insert((ObjKind::Meeting, id));
        self.flush();
        v
    }

    /// A user's endpoint joins a meeting on its own (a simulated user, later a phone dialling
    /// in): everyone in the meeting sees it in the roster. Returns the new leg's id.
    pub fn join_meeting(
        &mut self,
        now: Ms,
        tenant_id: &str,
        who: ParticipantInfo,
        meeting: MeetingRef,
    ) -> Result<String, ApiError> {
        self.now = self.now.max(now);
        let r = legs::join_meeting(self, tenant_id, who, meeting);
        self.flush();
        r
    }

    pub fn get_meeting(&self, tenant_id: &str, id: &str) -> Option<Value> {
        self.meetings
            .get(id)
            .filter(|m| m.tenant_id == tenant_id)
            .map(render::meeting)
    }

    // ---------------------------------------------------------------- outputs

    pub fn drain_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// Objects changed since the last call: `(kind, id, Some(json))` to upsert, `None` to delete.
    pub fn take_dirty(&mut self) -> Vec<(ObjKind, String, Option<Value>)> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .map(|(k, id)| {
                let v = match k {
                    ObjKind::Call => self
                        .calls
                        .get(&id)
                        .map(|c| serde_json::to_value(c).unwrap_or_default()),
                    ObjKind::Conference => self
                        .confs
                        .get(&id)
                        .map(|c| serde_json::to_value(c).unwrap_or_default()),
                    ObjKind::Leg => self
                        .legs
                        .get(&id)
                        .map(|c| serde_json::to_value(c).unwrap_or_default()),
                    ObjKind::Meeting => self
                        .meetings
                        .get(&id)
                        .map(|c| serde_json::to_value(c).unwrap_or_default()),
                };
                (k, id, v)
            })
            .collect()
    }

    /// Restore one persisted object (at start-up, before any input).
    pub fn restore(&mut self, kind: ObjKind, value: Value) -> Result<(), String> {
        match kind {
            ObjKind::Call => {
                let c: Call = serde_json::from_value(value).map_err(|e| e.to_string())?;
                let id = c.id.clone();
                self.calls.insert(id.clone(), c);
                self.refresh_timer(&id);
            }
            ObjKind::Conference => {
                let c: Conference = serde_json::from_value(value).map_err(|e| e.to_string())?;
                self.confs.insert(c.id.clone(), c);
            }
            ObjKind::Leg => {
                let l: Leg = serde_json::from_value(value).map_err(|e| e.to_string())?;
                self.legs.insert(l.id.clone(), l);
            }
            ObjKind::Meeting => {
                let m: Meeting = serde_json::from_value(value).map_err(|e| e.to_string())?;
                self.meetings.insert(m.id.clone(), m);
            }
        }
        Ok(())
    }

    /// After a restore: tell the media rooms everything again and restart the media work
    /// that was in progress (the rooms' state died with the process). Queued and running
    /// prompts and recordings start over (their prompts are fetched again); DTMF still being
    /// sent fails; hold music resumes (the built-in music); call recordings continue in a new
    /// file.
    pub fn resume_media(&mut self, now: Ms) {
        self.now = self.now.max(now);
        media::resume(self);
        self.flush();
    }

    /// Legs that are live after a restore: endpoints re-attach to them.
    pub fn live_legs(&self) -> Vec<(String, Party, LegState, Option<Value>)> {
        self.legs
            .values()
            .filter(|l| l.state != LegState::Ended)
            .map(|l| {
                (
                    l.id.clone(),
                    l.party.clone(),
                    l.state.clone(),
                    l.script.clone(),
                )
            })
            .collect()
    }

    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    pub fn calls_of_app(&self, app_id: &str) -> usize {
        self.calls.values().filter(|c| c.app_id == app_id).count()
    }

    /// Read access for invariant checks and admin views.
    pub fn call(&self, id: &str) -> Option<&Call> {
        self.calls.get(id)
    }
    pub fn conference(&self, id: &str) -> Option<&Conference> {
        self.confs.get(id)
    }
    pub fn leg(&self, id: &str) -> Option<&Leg> {
        self.legs.get(id)
    }
    pub fn all_calls(&self) -> impl Iterator<Item = &Call> {
        self.calls.values()
    }
    pub fn all_legs(&self) -> impl Iterator<Item = &Leg> {
        self.legs.values()
    }
    pub fn all_conferences(&self) -> impl Iterator<Item = &Conference> {
        self.confs.values()
    }

    // ---------------------------------------------------------------- helpers

    pub(crate) fn effect(&mut self, e: Effect) {
        self.effects.push(e);
    }

    pub(crate) fn leg_action(&mut self, a: LegAction) {
        self.effects.push(Effect::Leg(a));
    }

    pub(crate) fn touch_call(&mut self, id: &str) {
        self.dirty.insert((ObjKind::Call, id.to_string()));
        if let Some(c) = self.calls.get(id) {
            self.media_dirty.insert(c.conf_id.clone());
        }
    }
    pub(crate) fn touch_conf(&mut self, id: &str) {
        self.dirty.insert((ObjKind::Conference, id.to_string()));
        self.media_dirty.insert(id.to_string());
    }
    pub(crate) fn touch_leg(&mut self, id: &str) {
        self.dirty.insert((ObjKind::Leg, id.to_string()));
        if let Some(conf) = self.legs.get(id).and_then(|l| l.conf_id.clone()) {
            self.media_dirty.insert(conf);
        }
    }
    pub(crate) fn touch_meeting(&mut self, id: &str) {
        self.dirty.insert((ObjKind::Meeting, id.to_string()));
    }
    pub(crate) fn roster_changed(&mut self, conf_id: &str) {
        self.roster_dirty.insert(conf_id.to_string());
        self.touch_conf(conf_id);
    }

    /// Notify a call's bot (reference §6). `data` is the partial resource.
    pub(crate) fn notify(
        &mut self,
        call_id: &str,
        change: ChangeType,
        resource_suffix: &str,
        data: Value,
    ) {
        let Some(c) = self.calls.get(call_id) else {
            return;
        };
        let url = format!("/communications/calls/{}{}", c.id, resource_suffix);
        let body = json!({
            "@odata.type": "#microsoft.graph.commsNotifications",
            "value": [{
                "@odata.type": "#microsoft.graph.commsNotification",
                "changeType": change,
                "resourceUrl": url,
                "resource": format!("/app/calls/{}{}", c.id, resource_suffix),
                "callbackUri": c.callback_uri,
                "resourceData": data,
            }]
        });
        let n = Notification {
            call_id: c.id.clone(),
            tenant_id: c.tenant_id.clone(),
            app_id: c.app_id.clone(),
            url: c.callback_uri.clone(),
            body,
            incoming: change == ChangeType::Created,
        };
        self.effects.push(Effect::Notify(n));
    }

    /// A call `updated` notification with `state` plus the given fields.
    pub(crate) fn notify_call(&mut self, call_id: &str, fields: Value) {
        let Some(c) = self.calls.get(call_id) else {
            return;
        };
        let mut data = json!({"@odata.type":"#microsoft.graph.call","@odata.id":format!("/communications/calls/{}", c.id),"id":c.id,"state":c.state});
        if let (Value::Object(d), Value::Object(f)) = (&mut data, fields) {
            d.extend(f);
        }
        self.notify(call_id, ChangeType::Updated, "", data);
    }

    pub(crate) fn set_state(&mut self, call_id: &str, state: CallState) {
        if let Some(c) = self.calls.get_mut(call_id)
            && c.state != state
        {
            c.state = state;
            self.touch_call(call_id);
            self.notify_call(call_id, json!({}));
        }
    }

    /// Emit roster notifications for conferences changed during this input, and persist.
    fn flush(&mut self) {
        let confs = std::mem::take(&mut self.roster_dirty);
        for conf_id in confs {
            actions::send_rosters(self, &conf_id);
        }
        let touched: Vec<String> = self
            .dirty
            .iter()
            .filter(|(k, _)| *k == ObjKind::Call)
            .map(|(_, id)| id.clone())
            .collect();
        for id in touched {
            self.refresh_timer(&id);
        }
        for conf_id in std::mem::take(&mut self.media_dirty) {
            let spec = media::room_spec(self, &conf_id);
            let known = self.rooms.get(&conf_id);
            if known == Some(&spec) || (known.is_none() && spec.members.is_empty()) {
                continue;
            }
            if spec.members.is_empty() {
                self.rooms.remove(&conf_id);
            } else {
                self.rooms.insert(conf_id, spec.clone());
            }
            self.effects.push(Effect::Media(::media::Cmd::Room(spec)));
        }
    }

    pub(crate) fn refresh_timer(&mut self, call_id: &str) {
        if let Some(old) = self.due_of.remove(call_id) {
            self.timers.remove(&(old, call_id.to_string()));
        }
        if let Some(due) = actions::next_deadline(self, call_id) {
            self.due_of.insert(call_id.to_string(), due);
            self.timers.insert((due, call_id.to_string()));
        }
    }
}
