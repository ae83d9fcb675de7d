//! Applications as endpoints: a leg rung towards an app becomes that app's incoming call, so
//! bots can call, redirect to and transfer to each other. The two legs' ports are bridged,
//! so the two calls hear each other.

use super::legs::{Cx, End, Leg, Legs};
use crate::inputs::{Msg, NewLeg};
use engine::{AppCtx, LegEvent};
use graph::ParticipantInfo;
use tokio::sync::oneshot;

/// One side of an app-to-app call; `peer` is the other side.
pub struct AppLeg {
    peer: String,
}

impl Leg for AppLeg {
    fn answer(&mut self, leg: &str, cx: &Cx) {
        cx.event(leg, LegEvent::Answered);
        cx.event(&self.peer, LegEvent::Answered);
    }

    fn end(self: Box<Self>, _leg: &str, how: End, cx: &Cx) -> Option<String> {
        let event = match how {
            End::Rejected(sip_code) => LegEvent::Failed {
                sip_code,
                reason: "the application rejected the call".into(),
            },
            End::Cancelled | End::HungUp => LegEvent::HungUp,
        };
        cx.event(&self.peer, event);
        Some(self.peer)
    }
}

/// Ring an application: its webhook gets an incoming call whose caller is `from`.
pub async fn ring(legs: &mut Legs, leg: &str, id: &str, from: ParticipantInfo) {
    let cx = legs.cx.clone();
    let app = cx.node.directory.read().app(id).cloned();
    let Some(app) = app else {
        return cx.event(
            leg,
            LegEvent::Failed {
                sip_code: 404,
                reason: format!("application {id} does not exist"),
            },
        );
    };
    let Some(webhook) = app.webhook.clone() else {
        return cx.event(
            leg,
            LegEvent::Failed {
                sip_code: 480,
                reason: format!("application {id} has no calling webhook"),
            },
        );
    };
    let ctx = AppCtx {
        tenant_id: app.tenant.clone(),
        app_id: app.id.clone(),
        app_name: app.name.clone(),
    };
    let (tx, rx) = oneshot::channel();
    let _ = cx.node.driver.send(Msg::Incoming {
        app: ctx,
        webhook,
        caller: from,
        script: None,
        target: None,
        leg: NewLeg::Own,
        reply: tx,
    });
    let Ok((_call, b_leg)) = rx.await else { return };
    let (a_port, b_port) = media::port::bridge();
    cx.node.media.ports.insert(leg, a_port);
    cx.node.media.ports.insert(&b_leg, b_port);
    legs.insert(
        leg,
        Box::new(AppLeg {
            peer: b_leg.clone(),
        }),
    );
    legs.insert(
        &b_leg,
        Box::new(AppLeg {
            peer: leg.to_string(),
        }),
    );
    cx.event(leg, LegEvent::Ringing);
}
