//! A call to a user who is signed in from a browser and has SIP phones rings both: every
//! open tab and every registered phone. The first to answer takes the call; the others stop
//! ringing (tabs are told `cancel` with the reason, phones get CANCEL) and the call goes on.
//! One side failing (a busy phone, no phone registered) leaves the other ringing; the call
//! fails only when nothing rings any more, or when someone declines in the browser.
//! (The SIP side of this is in [`super::sip::forked`], which sees the phones' events first.)

use super::legs::{Cx, End, Leg, Legs};
use super::{sip, webrtc};
use crate::tabs::Side;
use ::sip::server::LegCommand;
use directory::User;
use engine::LegEvent;
use graph::ParticipantInfo;
use serde_json::json;

/// A leg rung on a user's tabs and phones at once.
pub struct ForkLeg {
    user: String,
}

impl Leg for ForkLeg {
    fn answer(&mut self, leg: &str, cx: &Cx) {
        // Only legs that called in are answered; a fork is always a call out.
        cx.event(leg, LegEvent::Answered);
    }

    fn refer(&mut self, leg: &str, token: String, cx: &Cx) {
        match cx.node.tabs.fork_of(leg) {
            Some(Some(Side::Phone)) => command(
                cx,
                LegCommand::Refer {
                    leg_id: leg.to_string(),
                    token,
                },
            ),
            _ => cx.event(
                leg,
                LegEvent::ReferFailed {
                    accepted: false,
                    sip_code: 501,
                },
            ),
        }
    }

    fn end(self: Box<Self>, leg: &str, how: End, cx: &Cx) -> Option<String> {
        let taken = cx.node.tabs.unfork(leg);
        // Whichever side has it, or both while they ring: each ignores a leg it does not hold.
        command(
            cx,
            LegCommand::Hangup {
                leg_id: leg.to_string(),
            },
        );
        if let Some(w) = cx.node.webrtc.get() {
            w.hangup(leg);
        }
        let rang = cx.node.tabs.stop_ringing(leg, None).is_some();
        if rang || taken == Some(Side::Browser) {
            let reason = match how {
                End::Rejected(code) => format!("rejected {code}"),
                End::Cancelled => "cancelled".into(),
                End::HungUp => "hung up".into(),
            };
            let kind = if rang { "cancel" } else { "ended" };
            cx.node.tabs.tell(
                &self.user,
                &json!({"type": kind, "legId": leg, "reason": reason}),
            );
        }
        None
    }
}

fn command(cx: &Cx, c: LegCommand) {
    if let Some(s) = cx.node.sip.get() {
        s.command(c);
    }
}

/// Ring `user`'s tabs and phones for `leg`. With no phone to dial, only the tabs ring (and
/// with no tab open either, the leg fails as a browser leg would).
pub fn ring(legs: &mut Legs, leg: &str, user: &User, from: &ParticipantInfo) {
    let cx = legs.cx.clone();
    cx.node.tabs.fork(leg);
    let tabs = webrtc::ring_tabs(&cx, leg, user, from);
    match sip::dial_user(&cx, leg, user, from) {
        Ok(()) => {}
        Err((code, why)) => {
            cx.node.tabs.unfork(leg);
            cx.log(
                leg,
                Some(&user.id),
                format!("not dialling phones: {code} {why}"),
            );
            if tabs == 0 {
                return cx.fail(leg, Some(&user.id), code, why);
            }
            legs.insert(
                leg,
                Box::new(webrtc::WebLeg {
                    user: Some(user.id.clone()),
                }),
            );
            return cx.event(leg, LegEvent::Ringing);
        }
    }
    legs.insert(
        leg,
        Box::new(ForkLeg {
            user: user.id.clone(),
        }),
    );
    cx.event(leg, LegEvent::Ringing);
}
