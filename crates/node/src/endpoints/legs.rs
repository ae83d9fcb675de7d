//! The leg interface: what every kind of endpoint does with the legs the engine gives it,
//! and the table of legs being driven.

use crate::inputs::Msg;
use crate::node::Node;
use engine::LegEvent;
use std::collections::HashMap;
use std::sync::Arc;

/// How the engine ended a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Refused before it was answered, with this SIP status.
    Rejected(u16),
    /// Stopped ringing.
    Cancelled,
    /// Hung up after it was connected.
    HungUp,
}

/// A leg as one kind of endpoint drives it (a simulated user, a SIP phone, another app).
/// Dropping it stops whatever the endpoint was doing for it.
pub trait Leg: Send {
    /// The engine answered the leg (the bot answered the call it came with).
    fn answer(&mut self, leg: &str, cx: &Cx);
    /// Transfer the far end by REFER; endpoints that cannot, say so.
    fn refer(&mut self, leg: &str, token: String, cx: &Cx) {
        let _ = token;
        cx.event(
            leg,
            LegEvent::ReferFailed {
                accepted: false,
                sip_code: 501,
            },
        );
    }
    /// The engine ended the leg. Returns another leg that ends with it (the other side of
    /// an app-to-app call), to be forgotten too.
    fn end(self: Box<Self>, leg: &str, how: End, cx: &Cx) -> Option<String>;
}

/// What every endpoint needs: the node, and ways to report.
#[derive(Clone)]
pub struct Cx {
    pub node: Arc<Node>,
}

impl Cx {
    /// Tell the engine what happened on a leg.
    pub fn event(&self, leg: &str, event: LegEvent) {
        let _ = self.node.driver.send(Msg::Leg {
            leg_id: leg.to_string(),
            event,
        });
    }

    /// A leg that could not be reached: logged for `/admin/legs`, and told to the engine.
    pub fn fail(&self, leg: &str, user: Option<&str>, sip_code: u16, reason: String) {
        self.log(leg, user, format!("failed {sip_code} {reason}"));
        self.event(leg, LegEvent::Failed { sip_code, reason });
    }

    /// Note what happened on a leg (`/admin/legs`).
    pub fn log(&self, leg: &str, user: Option<&str>, event: impl Into<String>) {
        self.node.registry.log(leg, user, event);
    }
}

/// The legs being driven, by leg id.
pub struct Legs {
    pub cx: Cx,
    table: HashMap<String, Box<dyn Leg>>,
}

impl Legs {
    pub fn new(node: Arc<Node>) -> Legs {
        Legs {
            cx: Cx { node },
            table: HashMap::new(),
        }
    }

    pub fn insert(&mut self, leg: &str, l: Box<dyn Leg>) {
        self.table.insert(leg.to_string(), l);
    }

    pub fn get_mut(&mut self, leg: &str) -> Option<(&mut Box<dyn Leg>, &Cx)> {
        self.table.get_mut(leg).map(|l| (l, &self.cx))
    }

    /// Stop driving a leg: its endpoint lets go of it and its audio leaves the media runtime.
    /// Every way a leg goes ends here, so what else knew it lets go too: a fork's record of
    /// which side took it, and its log (which then says it ended and can make way).
    pub fn forget(&mut self, leg: &str) {
        self.cx.node.media.ports.remove(leg);
        self.table.remove(leg);
        self.cx.node.tabs.unfork(leg);
        self.cx.node.registry.ended(leg);
    }

    /// The engine ended a leg: its endpoint ends it, and so does whatever ends with it.
    pub fn end(&mut self, leg: &str, how: End) {
        if let Some(l) = self.table.remove(leg)
            && let Some(other) = l.end(leg, how, &self.cx)
        {
            self.forget(&other);
        }
        self.forget(leg);
    }
}
