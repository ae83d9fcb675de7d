//! SIP phones and trunks as endpoints: crates/sip drives the dialogs and their RTP; this
//! module turns leg actions into SIP commands and SIP events into leg events and incoming
//! calls.

use super::legs::{Cx, End, Leg, Legs};
use crate::inputs::{Control, Msg, NewLeg};
use crate::node::Node;
use crate::tabs::Side;
use directory::User;
use engine::{AppCtx, LegEvent};
use graph::{IdentitySet, ParticipantInfo, Party};
use serde_json::json;
use sip::server::{LegCommand, SipEvent};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// A SIP phone or trunk leg.
pub struct SipLeg;

fn command(cx: &Cx, c: LegCommand) {
    if let Some(s) = cx.node.sip.get() {
        s.command(c);
    }
}

impl Leg for SipLeg {
    // The phone is connected when the 200 OK goes out (SipEvent::Answered).
    fn answer(&mut self, leg: &str, cx: &Cx) {
        command(
            cx,
            LegCommand::Answer {
                leg_id: leg.to_string(),
            },
        );
    }

    fn refer(&mut self, leg: &str, token: String, cx: &Cx) {
        command(
            cx,
            LegCommand::Refer {
                leg_id: leg.to_string(),
                token,
            },
        );
    }

    fn end(self: Box<Self>, leg: &str, how: End, cx: &Cx) -> Option<String> {
        let leg_id = leg.to_string();
        command(
            cx,
            match how {
                End::Rejected(status) => LegCommand::Reject { leg_id, status },
                End::Cancelled | End::HungUp => LegCommand::Hangup { leg_id },
            },
        );
        None
    }
}

/// Ring every registered contact of a SIP user (crates/sip forks the call).
pub fn ring_user(legs: &mut Legs, leg: &str, user: &User, from: &ParticipantInfo) {
    let cx = legs.cx.clone();
    match dial_user(&cx, leg, user, from) {
        Ok(()) => legs.insert(leg, Box::new(SipLeg)),
        Err((sip_code, reason)) => {
            cx.log(leg, Some(&user.id), format!("failed {sip_code} {reason}"));
            cx.event(leg, LegEvent::Failed { sip_code, reason });
        }
    }
}

/// Dial every registered contact of a SIP user for `leg`; why not, if it cannot.
pub fn dial_user(
    cx: &Cx,
    leg: &str,
    user: &User,
    from: &ParticipantInfo,
) -> Result<(), (u16, String)> {
    let Some(sip) = cx.node.sip.get() else {
        return Err((
            480,
            format!("user {} is a SIP user but SIP is not enabled", user.id),
        ));
    };
    let mut contacts: Vec<String> = sip
        .contacts(user.sip_username())
        .into_iter()
        .map(|b| b.uri)
        .collect();
    // In a cluster: the phones the user registered through the other nodes ring too.
    if let Some(c) = cx.node.cluster.get() {
        for uri in c.contacts(user.sip_username()) {
            if !contacts.contains(&uri) {
                contacts.push(uri);
            }
        }
    }
    if contacts.is_empty() {
        return Err((480, format!("user {} has no registered SIP phone", user.id)));
    }
    let caller = sip::server::Caller {
        user: match from.identity.party() {
            Some(
                Party::User(id)
                | Party::Application(id)
                | Party::ApplicationInstance(id)
                | Party::Phone(id)
                | Party::Guest(id),
            ) => id,
            None => "ringside".into(),
        },
        display: from.identity.display_name().map(str::to_string),
    };
    cx.log(
        leg,
        Some(&user.id),
        format!("dialling {} SIP contact(s)", contacts.len()),
    );
    sip.command(LegCommand::Dial {
        leg_id: leg.to_string(),
        targets: contacts
            .into_iter()
            .map(sip::server::Target::contact)
            .collect(),
        caller,
    });
    Ok(())
}

/// Call a phone number through the trunk whose routes match it best.
pub fn ring_number(legs: &mut Legs, leg: &str, number: &str, from: &ParticipantInfo) {
    let cx = legs.cx.clone();
    let (trunk, caller_number) = {
        let c = cx.node.directory.read();
        let Some(trunk) = c.trunk_for(number).cloned() else {
            drop(c);
            let reason = format!("no SIP trunk is configured to reach {number}");
            return cx.fail(leg, None, 480, reason);
        };
        // The From number: the calling resource account's, else any of the app's, else
        // the trunk's default.
        let instance = from
            .identity
            .application_instance
            .as_ref()
            .and_then(|i| i.id.as_deref())
            .and_then(|id| c.instance(id))
            .or_else(|| {
                let app = from.identity.application.as_ref()?.id.as_deref()?;
                c.application_instances
                    .iter()
                    .find(|i| i.app.eq_ignore_ascii_case(app))
            });
        let caller_number = instance
            .map(|i| i.phone.clone())
            .or(trunk.caller_id.clone());
        (trunk, caller_number)
    };
    let Some(sip) = cx.node.sip.get() else {
        return cx.fail(
            leg,
            None,
            480,
            format!("SIP is not enabled to reach {number}"),
        );
    };
    let caller = sip::server::Caller {
        user: caller_number.unwrap_or_else(|| "anonymous".into()),
        display: from.identity.display_name().map(str::to_string),
    };
    let target = sip::server::Target {
        uri: trunk.request_uri(number),
        proxy: Some(trunk.proxy.clone()),
        auth: trunk.username.clone().zip(trunk.password.clone()),
    };
    cx.log(
        leg,
        None,
        format!("dialling {number} through trunk {}", trunk.name),
    );
    legs.insert(leg, Box::new(SipLeg));
    sip.command(LegCommand::Dial {
        leg_id: leg.to_string(),
        targets: vec![target],
        caller,
    });
}

/// Who a SIP call is for: the app whose addresses name the request URI or its user part,
/// else the app of the resource account that owns the dialled number (reference §7.5),
/// addressed to that resource account.
type Routed = (
    AppCtx,
    Option<String>,
    Option<User>,
    Option<Box<IdentitySet>>,
);

fn route_incoming(
    node: &Node,
    to_uri: &str,
    to_user: Option<&str>,
    from_user: Option<&str>,
) -> Option<Routed> {
    let c = node.directory.read();
    let app = c.apps.iter().find(|a| {
        a.addresses.iter().any(|addr| {
            let addr = addr.trim().to_ascii_lowercase();
            addr == to_uri.to_ascii_lowercase()
                || to_user.is_some_and(|u| {
                    let u = u.to_ascii_lowercase();
                    addr == u
                        || addr.strip_prefix("sip:").and_then(|a| a.split('@').next())
                            == Some(u.as_str())
                })
        })
    });
    let (app, target) = match app {
        Some(a) => (Some(a), None),
        None => match to_user.and_then(|u| c.instance_for_number(u)) {
            Some(i) => {
                let mut id = graph::Identity::new(&i.id, i.display_name.as_deref());
                if let Some(a) = c.app(&i.app) {
                    id.extra.insert("tenantId".into(), a.tenant.clone().into());
                }
                let target = IdentitySet {
                    application_instance: Some(id),
                    ..Default::default()
                };
                (c.app(&i.app), Some(Box::new(target)))
            }
            None => (None, None),
        },
    };
    let a = app?;
    let caller_user = from_user.and_then(|f| c.sip_user(f)).cloned();
    let ctx = AppCtx {
        tenant_id: a.tenant.clone(),
        app_id: a.id.clone(),
        app_name: a.name.clone(),
    };
    Some((ctx, a.webhook.clone(), caller_user, target))
}

/// Who the caller is: a directory user, a phone number from a trunk, or the From user.
fn caller_identity(
    caller_user: Option<&User>,
    from_user: Option<&str>,
    from_display: Option<&str>,
) -> IdentitySet {
    let from_number = from_user
        .filter(|u| u.len() >= 3)
        .and_then(directory::normalize_number);
    match (caller_user, from_number) {
        (Some(u), _) => IdentitySet::user(&u.id, u.display_name.as_deref().or(from_display)),
        // A caller from the phone network (a trunk) is a phone identity.
        (None, Some(n)) => IdentitySet {
            phone: Some(graph::Identity::new(&n, from_display)),
            ..Default::default()
        },
        (None, None) => IdentitySet::user(from_user.unwrap_or("anonymous"), from_display),
    }
}

/// A phone's new call: to an app (its incoming call), or the new call of a phone ringside
/// asked to transfer (REFER). The reply is the new leg, or the SIP status to refuse with.
async fn incoming(node: &Node, ev: SipEvent) {
    let SipEvent::Incoming {
        to_uri,
        to_user,
        from_user,
        from_display,
        port,
        reply,
    } = ev
    else {
        return;
    };
    if let Some(token) = to_user.as_deref().filter(|u| u.starts_with("xfer-")) {
        let (tx, rx) = oneshot::channel();
        let _ = node.driver.send(Msg::Referred {
            token: token.to_string(),
            reply: tx,
        });
        let r = rx.await.unwrap_or(Err(503));
        if let Ok(leg) = &r {
            node.media.ports.insert(leg, port);
        }
        let _ = reply.send(r);
        return;
    }
    let found = route_incoming(node, &to_uri, to_user.as_deref(), from_user.as_deref());
    let Some((app, Some(webhook), caller_user, target)) = found else {
        let _ = reply.send(Err(404));
        return;
    };
    let caller = ParticipantInfo {
        identity: caller_identity(
            caller_user.as_ref(),
            from_user.as_deref(),
            from_display.as_deref(),
        ),
        ..Default::default()
    };
    let (tx, rx) = oneshot::channel();
    let _ = node.driver.send(Msg::Incoming {
        app,
        webhook,
        caller,
        script: None,
        target,
        leg: NewLeg::Sip,
        reply: tx,
    });
    match rx.await {
        Ok((_call, leg)) => {
            node.media.ports.insert(&leg, port);
            let _ = reply.send(Ok(leg));
        }
        Err(_) => {
            let _ = reply.send(Err(503));
        }
    }
}

/// The far end ended the leg on its own: nothing is left to drive.
fn gone(node: &Node, leg_id: &str) {
    node.media.ports.remove(leg_id);
    let _ = node.endpoints.send(Control::Forget {
        leg: leg_id.to_string(),
    });
}

/// What SIP reports: a new call to an app becomes its incoming call; answers and hang-ups
/// become leg events.
pub async fn events(node: Arc<Node>, mut rx: mpsc::UnboundedReceiver<SipEvent>) {
    let tell = |leg_id: String, event: LegEvent| {
        let _ = node.driver.send(Msg::Leg { leg_id, event });
    };
    while let Some(ev) = rx.recv().await {
        if forked(&node, &ev) {
            continue;
        }
        match ev {
            ev @ SipEvent::Incoming { .. } => incoming(&node, ev).await,
            SipEvent::Ringing { leg_id } => tell(leg_id, LegEvent::Ringing),
            SipEvent::Answered {
                leg_id,
                port,
                refer,
            } => {
                if let Some(p) = port {
                    node.media.ports.insert(&leg_id, p);
                }
                tell(leg_id.clone(), LegEvent::Answered);
                if refer {
                    tell(leg_id, LegEvent::ReferSupported);
                }
            }
            SipEvent::ReferFailed {
                leg_id,
                accepted,
                status,
            } => {
                node.registry.log(
                    &leg_id,
                    None,
                    format!("REFER failed {status} (accepted: {accepted})"),
                );
                tell(
                    leg_id,
                    LegEvent::ReferFailed {
                        accepted,
                        sip_code: status,
                    },
                );
            }
            SipEvent::MediaLost { leg_id, reason } => {
                gone(&node, &leg_id);
                tell(leg_id, LegEvent::MediaLost { reason });
            }
            SipEvent::Held { leg_id } => tell(leg_id, LegEvent::Held),
            SipEvent::Resumed { leg_id } => tell(leg_id, LegEvent::Resumed),
            SipEvent::Failed {
                leg_id,
                status,
                reason,
            } => {
                node.registry.log(&leg_id, None, format!("failed {reason}"));
                let _ = node.endpoints.send(Control::Forget {
                    leg: leg_id.clone(),
                });
                tell(
                    leg_id,
                    LegEvent::Failed {
                        sip_code: status,
                        reason,
                    },
                );
            }
            SipEvent::HungUp { leg_id } => {
                gone(&node, &leg_id);
                tell(leg_id, LegEvent::HungUp);
            }
        }
    }
}

/// A SIP event of a leg also ringing in the user's browser ([`super::fork`]), seen first:
/// whether it is dealt with here (and must not reach the engine).
pub fn forked(node: &Node, ev: &SipEvent) -> bool {
    let leg = match ev {
        SipEvent::Incoming { .. } => return false,
        SipEvent::Ringing { leg_id }
        | SipEvent::Answered { leg_id, .. }
        | SipEvent::Failed { leg_id, .. }
        | SipEvent::HungUp { leg_id }
        | SipEvent::MediaLost { leg_id, .. }
        | SipEvent::Held { leg_id }
        | SipEvent::Resumed { leg_id }
        | SipEvent::ReferFailed { leg_id, .. } => leg_id,
    };
    let Some(taken) = node.tabs.fork_of(leg) else {
        return false;
    };
    match (ev, taken) {
        // The browser has the call: the phones' side of it is over.
        (_, Some(Side::Browser)) => {
            if let SipEvent::Answered { .. } = ev {
                // Answered as the browser did: this phone only gets a BYE.
                if let Some(s) = node.sip.get() {
                    s.command(LegCommand::Hangup {
                        leg_id: leg.clone(),
                    });
                }
            }
            true
        }
        // The fork already said it rings.
        (SipEvent::Ringing { .. }, None) => true,
        (SipEvent::Answered { .. }, None) => {
            if !node.tabs.claim(leg, Side::Phone) {
                return forked(node, ev);
            }
            if let Some(user) = node.tabs.stop_ringing(leg, None) {
                node.tabs.tell(
                    &user,
                    &json!({"type": "cancel", "legId": leg, "reason": "answered on a phone"}),
                );
            }
            node.registry.log(leg, None, "answered on a SIP phone");
            false
        }
        // The phones failed, but the browser still rings: the call goes on there.
        (SipEvent::Failed { status, .. }, None) if node.tabs.is_ringing(leg) => {
            node.registry.log(
                leg,
                None,
                format!("SIP phones failed ({status}); still ringing in the browser"),
            );
            true
        }
        _ => false,
    }
}
