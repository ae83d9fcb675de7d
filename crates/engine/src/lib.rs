//! The sans-IO call engine. Feed it API commands, leg events, fetch results and time; drain
//! effects (notifications, leg actions, fetches) and the set of objects to persist.
//! It never opens a socket, reads a clock or draws a random number.

mod actions;
mod core;
mod legs;
mod lifecycle;
mod media;
pub mod model;
mod ops;
mod queries;
pub mod render;
mod roster;
mod streams;
pub mod transcripts;
pub mod types;

pub use crate::core::Engine;
use graph::*;
pub use model::*;
pub use render::Version;
use serde_json::{Value, json};
pub use types::*;

impl Engine {
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
                self.insert_call(c);
                self.refresh_timer(&id);
            }
            ObjKind::Conference => {
                let c: Conference = serde_json::from_value(value).map_err(|e| e.to_string())?;
                self.confs.insert(c.id.clone(), c);
            }
            ObjKind::Leg => {
                let l: Leg = serde_json::from_value(value).map_err(|e| e.to_string())?;
                self.insert_leg(l);
            }
            ObjKind::Meeting => {
                let m: Meeting = serde_json::from_value(value).map_err(|e| e.to_string())?;
                self.meetings.insert(m.id.clone(), m);
            }
        }
        Ok(())
    }

    /// A batch's changes could not be committed: put back the committed versions of the
    /// objects it changed (`None`: the object did not exist before it), so memory matches the
    /// store again. The batch's effects are dropped by the caller; the media rooms of the
    /// conferences involved are re-described on the next flush, and timers follow the
    /// restored deadlines.
    pub fn roll_back(
        &mut self,
        committed: Vec<(ObjKind, String, Option<Value>)>,
    ) -> Result<(), String> {
        self.effects.clear();
        self.dirty.clear();
        self.roster_dirty.clear();
        let mut confs: Vec<String> = Vec::new();
        for (kind, id, v) in committed {
            match kind {
                ObjKind::Call => {
                    if let Some(c) = self.calls.get(&id) {
                        confs.push(c.conf_id.clone());
                    }
                    if v.is_none() {
                        self.remove_call(&id);
                        self.refresh_timer(&id);
                    }
                }
                ObjKind::Conference => {
                    confs.push(id.clone());
                    if v.is_none() {
                        self.confs.remove(&id);
                    }
                }
                ObjKind::Leg => {
                    if v.is_none() {
                        self.legs.remove(&id);
                    }
                }
                ObjKind::Meeting => {
                    if v.is_none() {
                        self.meetings.remove(&id);
                    }
                }
            }
            if let Some(v) = v {
                if let Some(conf) = v.get("conf_id").and_then(Value::as_str) {
                    confs.push(conf.to_string());
                }
                self.restore(kind, v)?;
            }
        }
        self.media_dirty.extend(confs);
        self.flush();
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
        self.calls_per_app.get(app_id).copied().unwrap_or(0)
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

    /// A call as the admin console draws it (call, roster, operations), if it is live.
    pub fn console_view(&self, call_id: &str) -> Option<Value> {
        queries::console_view(self, call_id)
    }

    /// The calls sharing a conference (a meeting's calls, or a call's own conference).
    pub fn calls_in_conference<'a>(&'a self, conf_id: &'a str) -> impl Iterator<Item = &'a str> {
        self.calls
            .values()
            .filter(move |c| c.conf_id == conf_id)
            .map(|c| c.id.as_str())
    }

    /// Emit roster notifications for conferences changed during this input, and persist.
    fn flush(&mut self) {
        let confs = std::mem::take(&mut self.roster_dirty);
        for conf_id in confs {
            roster::send_rosters(self, &conf_id);
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
