//! The engine's state (every call, conference, leg and meeting, and what changed during the
//! current input) and the small helpers every action uses: ids, effects, dirty marks,
//! notifications and call state.

use crate::model::*;
use crate::types::*;
use graph::*;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};

pub struct Engine {
    pub cfg: Config,
    pub(crate) ids: Box<dyn IdSource>,
    pub(crate) calls: HashMap<String, Call>,
    pub(crate) confs: HashMap<String, Conference>,
    pub(crate) legs: HashMap<String, Leg>,
    pub(crate) meetings: HashMap<String, Meeting>,
    /// (due, call id) for every live call with a deadline; mirrors `due_of`.
    pub(crate) timers: BTreeSet<(Ms, String)>,
    pub(crate) due_of: HashMap<String, Ms>,
    pub(crate) effects: Vec<Effect>,
    pub(crate) dirty: BTreeSet<(ObjKind, String)>,
    pub(crate) roster_dirty: BTreeSet<String>,
    /// Conferences whose room may have changed, and what the media rooms were last told.
    pub(crate) media_dirty: BTreeSet<String>,
    pub(crate) rooms: HashMap<String, ::media::RoomSpec>,
    pub(crate) now: Ms,
    /// Call id → the legs whose role names that call (a superset: a leg that left the
    /// call or ended may linger until the call ends), so a call's own legs are found
    /// without scanning every leg.
    pub(crate) legs_by_call: HashMap<String, Vec<String>>,
    /// Live calls per app id and per tenant id (the concurrent-call limits).
    pub(crate) calls_per_app: HashMap<String, usize>,
    pub(crate) calls_per_tenant: HashMap<String, usize>,
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
            legs_by_call: HashMap::new(),
            calls_per_app: HashMap::new(),
            calls_per_tenant: HashMap::new(),
        }
    }

    pub(crate) fn id(&mut self) -> String {
        self.ids.next_id()
    }

    // ---------------------------------------------------------------- helpers

    /// Add a call, counted for its app and tenant.
    pub(crate) fn insert_call(&mut self, call: Call) {
        *self.calls_per_app.entry(call.app_id.clone()).or_default() += 1;
        *self
            .calls_per_tenant
            .entry(call.tenant_id.clone())
            .or_default() += 1;
        if let Some(old) = self.calls.insert(call.id.clone(), call) {
            self.uncount(&old);
        }
    }

    /// Forget a call and its index of legs.
    pub(crate) fn remove_call(&mut self, id: &str) {
        if let Some(old) = self.calls.remove(id) {
            self.uncount(&old);
        }
        self.legs_by_call.remove(id);
    }

    fn uncount(&mut self, c: &Call) {
        for (map, key) in [
            (&mut self.calls_per_app, &c.app_id),
            (&mut self.calls_per_tenant, &c.tenant_id),
        ] {
            if let Some(n) = map.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(key);
                }
            }
        }
    }

    /// Add a leg, indexed under the call its role names.
    pub(crate) fn insert_leg(&mut self, leg: Leg) {
        self.index_leg(&leg.id, &leg.role);
        self.legs.insert(leg.id.clone(), leg);
    }

    /// Record that a leg's role now names its call (after the role changed).
    pub(crate) fn index_leg(&mut self, leg_id: &str, role: &LegRole) {
        if let Some(call) = role.call_id() {
            let v = self.legs_by_call.entry(call.to_string()).or_default();
            if !v.iter().any(|l| l == leg_id) {
                v.push(leg_id.to_string());
            }
        }
    }

    /// The live legs whose role names `call_id`.
    pub(crate) fn legs_of<'a>(&'a self, call_id: &'a str) -> impl Iterator<Item = &'a Leg> + 'a {
        self.legs_by_call
            .get(call_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.legs.get(id))
            .filter(move |l| l.role.call_id() == Some(call_id))
    }

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
            // An incoming call, not something created under a call (a transcript line).
            incoming: change == ChangeType::Created && resource_suffix.is_empty(),
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
}
