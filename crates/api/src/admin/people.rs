//! `/admin/users/{id}/call`, `/admin/users/{id}/join`, `/admin/legs`: simulated users placing
//! calls and joining meetings, and what they experienced and heard.

use super::reply::{Answer, created, ok};
use crate::plumbing::{bad, parse};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use directory::Behaviour;
use engine::{ApiError, AppCtx};
use graph::{IdentitySet, ParticipantInfo};
use node::{Msg, NewLeg, Node};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::oneshot;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PlaceCall {
    /// App id or an address routed to an app.
    target: String,
    #[serde(default)]
    script: Behaviour,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct JoinMeeting {
    join_web_url: Option<String>,
    thread_id: Option<String>,
    join_meeting_id: Option<String>,
    passcode: Option<String>,
    #[serde(default)]
    script: Behaviour,
}

fn nf(what: &str, id: &str) -> ApiError {
    ApiError::not_found(what, id)
}

/// A directory user as a call's participant, with its tenant.
fn participant(user: &directory::User) -> ParticipantInfo {
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

/// A simulated user calls an app (by id or routed address): the app's incoming call.
pub async fn call(node: &Node, id: &str, b: &[u8]) -> Answer {
    let req: PlaceCall = parse(b)?;
    req.script.validate().map_err(bad)?;
    let (user, app) = {
        let c = node.directory.read();
        let Some(user) = c.user(id).cloned() else {
            return Err(nf("User", id));
        };
        let Some(app) = c.app_for_address(&req.target).cloned() else {
            return Err(nf("Application or address", &req.target));
        };
        (user, app)
    };
    let Some(webhook) = app.webhook.clone() else {
        return Err(bad(format!(
            "App {} has no calling webhook configured.",
            app.id
        )));
    };
    let ctx = AppCtx {
        tenant_id: app.tenant.clone(),
        app_id: app.id.clone(),
        app_name: app.name.clone(),
    };
    let (tx, rx) = oneshot::channel();
    node.driver
        .send(Msg::Incoming {
            app: ctx,
            webhook,
            caller: participant(&user),
            script: None,
            target: None,
            leg: NewLeg::Caller {
                user_id: user.id.clone(),
                behaviour: user.behaviour.merged(&req.script),
            },
            reply: tx,
        })
        .map_err(|_| bad("ringside is stopping"))?;
    let (call_id, leg_id) = rx.await.map_err(|_| crate::plumbing::not_taken())?;
    created(json!({"callId": call_id, "legId": leg_id, "appId": app.id}))
}

/// A simulated user joins a meeting by its join URL, thread id, or join id and passcode.
pub async fn join(node: &Node, id: &str, b: &[u8]) -> Answer {
    let req: JoinMeeting = parse(b)?;
    req.script.validate().map_err(bad)?;
    let Some(user) = node.directory.read().user(id).cloned() else {
        return Err(nf("User", id));
    };
    let meeting = match (&req.join_web_url, &req.thread_id, &req.join_meeting_id) {
        (Some(u), _, _) => engine::MeetingRef::Thread(
            node::endpoints::webrtc::thread_of_join_url(u)
                .ok_or_else(|| bad("joinWebUrl is not a meeting join URL"))?,
        ),
        (_, Some(t), _) => engine::MeetingRef::Thread(t.clone()),
        (_, _, Some(j)) => engine::MeetingRef::JoinMeetingId {
            id: j.clone(),
            passcode: req.passcode.clone(),
        },
        _ => {
            return Err(bad(
                "One of joinWebUrl, threadId or joinMeetingId is required.",
            ));
        }
    };
    let (tx, rx) = oneshot::channel();
    node.driver
        .send(Msg::JoinMeeting {
            tenant: user.tenant.clone(),
            who: participant(&user),
            meeting,
            leg: NewLeg::Joined {
                user_id: user.id.clone(),
                behaviour: user.behaviour.merged(&req.script),
            },
            reply: tx,
        })
        .map_err(|_| bad("ringside is stopping"))?;
    let reply = rx.await.map_err(|_| bad("ringside is stopping"))??;
    let body = reply.body.unwrap_or_default();
    let leg = body["legId"].as_str().unwrap_or_default().to_string();
    created(json!({ "legId": leg }))
}

/// What simulated users experienced, optionally for one user (`?user=`).
pub fn legs(node: &Node, query: Option<&str>) -> Answer {
    let filter = query
        .and_then(|q| q.strip_prefix("user="))
        .map(str::to_ascii_lowercase);
    let v: Vec<_> = node
        .registry
        .legs()
        .into_iter()
        .filter(|l| {
            filter.as_ref().is_none_or(|f| {
                l.user_id
                    .as_deref()
                    .is_some_and(|u| u.eq_ignore_ascii_case(f))
            })
        })
        .collect();
    ok(json!({ "value": v }))
}

pub fn leg(node: &Node, id: &str) -> Answer {
    node.registry
        .legs()
        .into_iter()
        .find(|l| l.leg_id == *id)
        .map(|l| ok(serde_json::to_value(l).unwrap_or_default()))
        .unwrap_or_else(|| Err(nf("Leg", id)))
}

/// What a simulated user heard on a leg, as a WAV.
pub fn heard(node: &Node, id: &str) -> Answer {
    let Some(port) = node.registry.port(id) else {
        return Err(nf("Leg audio", id));
    };
    let wav = media::wav::encode(port.lock().expect("port").heard());
    Ok((StatusCode::OK, [("content-type", "audio/wav")], wav).into_response())
}

/// A token for a user's web phone (the user signs in with it), valid for 12 hours.
pub fn token(node: &Node, id: &str) -> Answer {
    let Some(user) = node.directory.read().user(id).cloned() else {
        return Err(nf("User", id));
    };
    let now = node::now_ms() / 1000;
    let life = 12 * 3600;
    let claims = identity::UserClaims {
        iss: node.public_url.clone(),
        sub: user.id.clone(),
        tid: user.tenant.clone(),
        typ: identity::UserTyp::User,
        iat: now,
        nbf: now,
        exp: now + life,
    };
    super::reply::audit("user_token_minted", id);
    created(json!({"userId": user.id, "token": node.keys.sign(&claims), "expiresIn": life}))
}
