//! Browsers as endpoints: a signed-in user's browser calls an app (its offer answered by
//! crates/webrtc, the leg becoming the app's incoming call); a leg the engine ends is closed
//! at the browser, and a browser that goes away ends its leg.

use super::legs::{Cx, End, Leg, Legs};
use crate::inputs::{Control, Msg, NewLeg};
use crate::node::Node;
use directory::User;
use engine::{AppCtx, LegEvent};
use graph::{IdentitySet, ParticipantInfo};
use serde_json::json;
use std::sync::Arc;
use tokio::sync::oneshot;

/// A browser's leg; `user` is whose tabs it rang, for a call to a user.
pub struct WebLeg {
    pub user: Option<String>,
}

impl Leg for WebLeg {
    // A browser that called is connected already: the bot's answer is the answer.
    fn answer(&mut self, leg: &str, cx: &Cx) {
        cx.log(leg, None, "connected");
        cx.event(leg, LegEvent::Answered);
    }

    fn end(self: Box<Self>, leg: &str, how: End, cx: &Cx) -> Option<String> {
        if let Some(w) = cx.node.webrtc.get() {
            w.hangup(leg);
        }
        if let Some(user) = &self.user {
            let was_ringing = cx.node.tabs.stop_ringing(leg, None).is_some();
            let kind = if was_ringing { "cancel" } else { "ended" };
            let reason = match how {
                End::Rejected(code) => format!("rejected {code}"),
                End::Cancelled => "cancelled".into(),
                End::HungUp => "hung up".into(),
            };
            cx.node
                .tabs
                .tell(user, &json!({"type": kind, "legId": leg, "reason": reason}));
        }
        None
    }
}

/// Ring every open tab of `user`: the first to answer takes the call.
pub fn ring(legs: &mut Legs, leg: &str, user: &User, from: &ParticipantInfo) {
    let cx = legs.cx.clone();
    if ring_tabs(&cx, leg, user, from) == 0 {
        return cx.fail(
            leg,
            Some(&user.id),
            480,
            format!("user {} has no browser open", user.id),
        );
    }
    legs.insert(
        leg,
        Box::new(WebLeg {
            user: Some(user.id.clone()),
        }),
    );
    cx.event(leg, LegEvent::Ringing);
}

/// Offer the leg to every open tab of `user`; how many tabs were told.
pub fn ring_tabs(cx: &Cx, leg: &str, user: &User, from: &ParticipantInfo) -> usize {
    let msg = json!({
        "type": "ring",
        "legId": leg,
        "from": {
            "displayName": from.identity.display_name(),
            "identity": serde_json::to_value(&from.identity).unwrap_or_default(),
        },
    });
    cx.node.tabs.ring(leg, &user.id);
    let told = cx.node.tabs.tell(&user.id, &msg);
    if told == 0 {
        cx.node.tabs.stop_ringing(leg, None);
    } else {
        cx.log(leg, Some(&user.id), "ringing in the browser");
    }
    told
}

/// Stop a forked leg's SIP phones ringing, without failing the leg.
fn stop_phones(node: &Node, leg: &str) {
    if node.tabs.fork_of(leg).is_some()
        && let Some(sip) = node.sip.get()
    {
        // A hang-up of a call still dialling cancels its INVITEs and reports nothing.
        sip.command(sip::server::LegCommand::Hangup {
            leg_id: leg.to_string(),
        });
    }
}

/// Why a browser could not answer or decline a leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotRinging {
    /// The leg is not ringing this user (answered elsewhere, ended, or never theirs).
    Gone,
    /// The offer cannot be answered.
    BadOffer(String),
}

/// A tab answers a leg ringing its user, with its offer: ringside's answer.
pub fn answer(node: &Node, user: &str, leg: &str, offer: &str) -> Result<String, NotRinging> {
    let w = node.webrtc.get().ok_or(NotRinging::Gone)?;
    webrtc::endpoint::check_offer(offer).map_err(NotRinging::BadOffer)?;
    if !node.tabs.is_ringing(leg) || !node.tabs.claim(leg, crate::tabs::Side::Browser) {
        return Err(NotRinging::Gone); // over, or a phone took it
    }
    node.tabs
        .stop_ringing(leg, Some(user))
        .ok_or(NotRinging::Gone)?;
    stop_phones(node, leg);
    let (sdp, port) = match w.accept(leg, offer) {
        Ok(x) => x,
        Err(e) => {
            node.tabs.ring(leg, user);
            return Err(NotRinging::BadOffer(e));
        }
    };
    node.media.ports.insert(leg, port);
    node.registry
        .log(leg, Some(user), "answered in the browser");
    node.tabs
        .tell(user, &json!({"type": "answered", "legId": leg}));
    let _ = node.driver.send(Msg::Leg {
        leg_id: leg.to_string(),
        event: LegEvent::Answered,
    });
    Ok(sdp)
}

/// A tab declines a leg ringing its user.
pub fn decline(node: &Node, user: &str, leg: &str) -> Result<(), NotRinging> {
    node.tabs
        .stop_ringing(leg, Some(user))
        .ok_or(NotRinging::Gone)?;
    stop_phones(node, leg);
    node.registry
        .log(leg, Some(user), "declined in the browser");
    node.tabs.tell(
        user,
        &json!({"type": "cancel", "legId": leg, "reason": "declined"}),
    );
    let _ = node.driver.send(Msg::Leg {
        leg_id: leg.to_string(),
        event: LegEvent::Failed {
            sip_code: 603,
            reason: "declined".into(),
        },
    });
    Ok(())
}

/// `…/l/meetup-join/19%3Ameeting_…%40thread.v2/0?context=…` → `19:meeting_…@thread.v2`.
pub fn thread_of_join_url(url: &str) -> Option<String> {
    let rest = url.split("/l/meetup-join/").nth(1)?;
    let enc = rest.split('/').next()?;
    let t = percent_encoding::percent_decode_str(enc)
        .decode_utf8()
        .ok()?
        .into_owned();
    t.starts_with("19:").then_some(t)
}

/// A browser call placed: the call (none when joining a meeting) and leg ids, and the SDP
/// answer for the browser.
#[derive(Debug, Clone)]
pub struct Placed {
    pub call_id: Option<String>,
    pub leg_id: String,
    pub answer: String,
}

/// Why a browser call was not placed, as the signalling API reports it.
#[derive(Debug, Clone)]
pub enum Refused {
    /// No app has that id or address.
    NoSuchTarget(String),
    /// The offer cannot be answered (malformed, or no audio ringside speaks).
    BadOffer(String),
    /// The target cannot take calls, or ringside cannot place them now.
    Unavailable(String),
    /// The engine refused the request as it stands (already in the meeting, over a limit).
    Refused(engine::ApiError),
}

/// `user` calls `target` from a browser: an app id or an address routed to an app (the app
/// gets an incoming call), or a meeting's join link (the user joins the meeting).
pub async fn call_app(
    node: &Arc<Node>,
    user: &directory::User,
    target: &str,
    offer: &str,
) -> Result<Placed, Refused> {
    let Some(w) = node.webrtc.get() else {
        return Err(Refused::Unavailable(
            "WebRTC is not enabled ([webrtc] in ringside.toml)".into(),
        ));
    };
    webrtc::endpoint::check_offer(offer).map_err(Refused::BadOffer)?;
    let (call_id, leg_id, room) = match thread_of_join_url(target) {
        Some(thread) => {
            let leg = join_meeting(node, user, thread.clone()).await?;
            (None, leg, thread)
        }
        None => {
            let (c, l) = incoming_to_app(node, user, target).await?;
            (Some(c.clone()), l, c)
        }
    };
    let (answer, port) = match w.accept_in(&leg_id, offer, &room) {
        Ok(x) => x,
        Err(e) => {
            // Checked above; should the endpoint still refuse, the caller hangs up.
            let _ = node.driver.send(Msg::Leg {
                leg_id,
                event: LegEvent::HungUp,
            });
            return Err(Refused::BadOffer(e));
        }
    };
    node.media.ports.insert(&leg_id, port);
    node.registry
        .log(&leg_id, Some(&user.id), "calling from a browser");
    Ok(Placed {
        call_id,
        leg_id,
        answer,
    })
}

/// The user as a call's participant, with their tenant.
fn participant(user: &User) -> ParticipantInfo {
    let mut who = ParticipantInfo {
        identity: IdentitySet::user(&user.id, user.display_name.as_deref()),
        ..Default::default()
    };
    if let Some(u) = &mut who.identity.user {
        u.extra
            .insert("tenantId".into(), user.tenant.clone().into());
    }
    who
}

/// The user joins the meeting of `thread`: their leg.
async fn join_meeting(node: &Arc<Node>, user: &User, thread: String) -> Result<String, Refused> {
    let (tx, rx) = oneshot::channel();
    let _ = node.driver.send(Msg::JoinMeeting {
        tenant: user.tenant.clone(),
        who: participant(user),
        meeting: engine::MeetingRef::Thread(thread.clone()),
        leg: NewLeg::Web,
        reply: tx,
    });
    let reply = rx
        .await
        .map_err(|_| Refused::Unavailable("ringside is stopping".into()))?
        .map_err(|e| match e.status {
            404 => Refused::NoSuchTarget(thread),
            400..=499 => Refused::Refused(e),
            _ => Refused::Unavailable(e.message),
        })?;
    let body = reply.body.unwrap_or_default();
    body["legId"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| Refused::Unavailable("the meeting gave no leg".into()))
}

/// The user's call to an app becomes the app's incoming call: (call id, the caller's leg).
async fn incoming_to_app(
    node: &Arc<Node>,
    user: &User,
    target: &str,
) -> Result<(String, String), Refused> {
    let app = node
        .directory
        .read()
        .app_for_address(target)
        .cloned()
        .ok_or_else(|| Refused::NoSuchTarget(target.to_string()))?;
    let Some(webhook) = app.webhook.clone() else {
        return Err(Refused::Unavailable(format!(
            "app {} has no calling webhook",
            app.id
        )));
    };
    let caller = participant(user);
    let (tx, rx) = oneshot::channel();
    let _ = node.driver.send(Msg::Incoming {
        app: AppCtx {
            tenant_id: app.tenant.clone(),
            app_id: app.id.clone(),
            app_name: app.name.clone(),
        },
        webhook,
        caller,
        script: None,
        target: None,
        leg: NewLeg::Web,
        reply: tx,
    });
    rx.await.map_err(|_| {
        Refused::Unavailable("ringside is stopping, or could not commit the call to storage".into())
    })
}

/// The browser puts its call on hold, or takes it off: the bot sees the participant held
/// (a P2P call shows `hold`), as when a phone holds. False when the leg is not the user's.
pub fn hold(node: &Node, user: &str, leg_id: &str, held: bool) -> bool {
    let mine = node.registry.legs().into_iter().any(|l| {
        l.leg_id == leg_id
            && l.user_id
                .as_deref()
                .is_some_and(|u| u.eq_ignore_ascii_case(user))
    });
    if mine {
        let event = if held {
            LegEvent::Held
        } else {
            LegEvent::Resumed
        };
        node.registry
            .log(leg_id, None, if held { "held" } else { "resumed" });
        let _ = node.driver.send(Msg::Leg {
            leg_id: leg_id.to_string(),
            event,
        });
    }
    mine
}

/// The browser hung up (its page said so): the leg ends.
pub fn hang_up(node: &Node, leg_id: &str) {
    node.registry.log(leg_id, None, "hung up");
    gone(node, leg_id);
    let _ = node.driver.send(Msg::Leg {
        leg_id: leg_id.to_string(),
        event: LegEvent::HungUp,
    });
}

fn gone(node: &Node, leg_id: &str) {
    node.media.ports.remove(leg_id);
    if let Some(w) = node.webrtc.get() {
        w.hangup(leg_id);
    }
    let _ = node.endpoints.send(Control::Forget {
        leg: leg_id.to_string(),
    });
}

/// What the WebRTC endpoint reports: a browser that went away ends its leg.
pub fn watch(node: Arc<Node>, rx: std::sync::mpsc::Receiver<webrtc::LegEvent>) {
    std::thread::Builder::new()
        .name("ringside-webrtc-events".into())
        .spawn(move || {
            for ev in rx {
                match ev {
                    webrtc::LegEvent::Connected { leg_id } => {
                        node.registry.log(&leg_id, None, "media connected");
                    }
                    webrtc::LegEvent::Closed { leg_id, reason } => {
                        node.registry
                            .log(&leg_id, None, format!("media lost: {reason}"));
                        gone(&node, &leg_id);
                        let _ = node.driver.send(Msg::Leg {
                            leg_id,
                            event: LegEvent::MediaLost { reason },
                        });
                    }
                }
            }
        })
        .expect("a thread for WebRTC events");
}
