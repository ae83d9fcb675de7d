//! Endpoints: where the engine's legs meet the world. Every kind of endpoint implements the
//! leg interface ([`legs::Leg`]) in its own module:
//! * [`sim`] — simulated users, scripted phones with real audio;
//! * [`sip`] — SIP phones (registered users) and trunks (phone numbers);
//! * [`app`] — applications: a leg rung towards an app becomes its incoming call;
//! * [`webrtc`] — browsers (the web phone), through crates/webrtc;
//! * [`fork`] — a signed-in SIP user: their tabs and phones rung together.
//!
//! A new kind is one module and one line in [`ring`] (and, for users, one `endpoint` name).

pub mod app;
pub mod fork;
pub mod legs;
pub mod sim;
pub mod sip;
pub mod webrtc;

use crate::inputs::Control;
use crate::node::Node;
use engine::{LegAction, LegEvent};
use graph::{ParticipantInfo, Party};
use legs::{End, Legs};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Reach `to` for a leg, through the endpoint that serves it.
async fn ring(
    legs: &mut Legs,
    leg: &str,
    to: Party,
    from: ParticipantInfo,
    script: Option<serde_json::Value>,
) {
    let cx = legs.cx.clone();
    match to {
        Party::User(uid) => {
            let Some(user) = cx.node.directory.read().user(&uid).cloned() else {
                cx.log(leg, None, format!("failed 404 no user {uid}"));
                return cx.event(
                    leg,
                    LegEvent::Failed {
                        sip_code: 404,
                        reason: format!("user {uid} does not exist"),
                    },
                );
            };
            // A user signed in from a browser is rung there, and on their SIP phones too.
            if cx.node.tabs.signed_in(&user.id) {
                return match user.endpoint.as_str() {
                    "sip" => fork::ring(legs, leg, &user, &from),
                    _ => webrtc::ring(legs, leg, &user, &from),
                };
            }
            match user.endpoint.as_str() {
                "simulated" => sim::ring(legs, leg, &user, &from, script),
                "sip" => sip::ring_user(legs, leg, &user, &from),
                other => cx.event(
                    leg,
                    LegEvent::Failed {
                        sip_code: 480,
                        reason: format!("user {uid} has no reachable endpoint ({other})"),
                    },
                ),
            }
        }
        Party::Application(id) | Party::ApplicationInstance(id) => {
            app::ring(legs, leg, &id, from).await
        }
        Party::Phone(n) => sip::ring_number(legs, leg, &n, &from),
        Party::Guest(g) => cx.event(
            leg,
            LegEvent::Failed {
                sip_code: 404,
                reason: format!("guest {g} cannot be called"),
            },
        ),
    }
}

/// What the engine asks of a leg, carried out by the leg's endpoint.
async fn act(legs: &mut Legs, action: LegAction) {
    let cx = legs.cx.clone();
    match action {
        LegAction::Ring {
            leg_id,
            to,
            from,
            script,
        } => ring(legs, &leg_id, to, *from, script).await,
        LegAction::Answer { leg_id } => match legs.get_mut(&leg_id) {
            Some((l, cx)) => l.answer(&leg_id, cx),
            None => cx.event(&leg_id, LegEvent::Answered),
        },
        LegAction::Reject { leg_id, sip_code } => {
            cx.log(&leg_id, None, format!("rejected {sip_code}"));
            legs.end(&leg_id, End::Rejected(sip_code));
        }
        LegAction::Cancel { leg_id } => {
            cx.log(&leg_id, None, "cancelled");
            legs.end(&leg_id, End::Cancelled);
        }
        LegAction::Refer { leg_id, token } => {
            cx.log(&leg_id, None, "transfer by REFER");
            match legs.get_mut(&leg_id) {
                Some((l, cx)) => l.refer(&leg_id, token, cx),
                None => cx.event(
                    &leg_id,
                    LegEvent::ReferFailed {
                        accepted: false,
                        sip_code: 501,
                    },
                ),
            }
        }
        LegAction::Hangup { leg_id, reason } => {
            cx.log(&leg_id, None, format!("ended: {reason}"));
            legs.end(&leg_id, End::HungUp);
        }
    }
}

/// The endpoints' task: leg actions from the driver, legs that began elsewhere.
pub async fn run(node: Arc<Node>, mut rx: mpsc::UnboundedReceiver<Control>) {
    let mut legs = Legs::new(node);
    while let Some(c) = rx.recv().await {
        let cx = legs.cx.clone();
        match c {
            Control::Action(a) => act(&mut legs, a).await,
            Control::Stream(a) => {
                let node = &cx.node;
                crate::streams::act(&node.streams, &node.media, a);
            }
            Control::AddSip { leg } => legs.insert(&leg, Box::new(sip::SipLeg)),
            Control::AddWeb { leg } => legs.insert(&leg, Box::new(webrtc::WebLeg { user: None })),
            Control::Forget { leg } => legs.forget(&leg),
            Control::AddCaller {
                leg,
                user_id,
                behaviour,
            } => {
                let l = sim::caller(&cx, &leg, &user_id, behaviour);
                legs.insert(&leg, Box::new(l));
            }
            Control::Joined {
                leg,
                user_id,
                behaviour,
            } => {
                let l = sim::joined(&cx, &leg, &user_id, behaviour);
                legs.insert(&leg, Box::new(l));
            }
        }
    }
}
