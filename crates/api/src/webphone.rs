//! The web phone's signalling, over HTTP and server-sent events: a signed-in user's browser
//! offers, ringside answers (`POST /webrtc/calls`), and either side hangs up (`DELETE
//! /webrtc/calls/{leg}`); calls to the user ring on `GET /webrtc/events`, and a tab answers
//! (`POST /webrtc/legs/{leg}/answer` with its offer) or declines.

use crate::caller::authenticate_user;
use crate::plumbing::{bad, parse, read_body};
use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use engine::ApiError;
use futures_util::StreamExt;
use node::Node;
use node::endpoints::webrtc::{self, NotRinging, Refused};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// The web phone page (`GET /phone`): sign in with a user token, call, answer, keypad, mute,
/// and a level meter for what is heard. Built into the binary.
pub fn page() -> Response {
    (
        StatusCode::OK,
        [("content-type", "text/html; charset=utf-8")],
        include_str!("../../../web/phone.html"),
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Call {
    /// An app id, or an address routed to an app.
    target: String,
    /// The browser's SDP offer.
    sdp: String,
}

fn refused(r: Refused) -> ApiError {
    match r {
        Refused::NoSuchTarget(t) => ApiError::not_found("Application or address", &t),
        Refused::BadOffer(why) => bad(format!("sdp: {why}")),
        Refused::Unavailable(why) => ApiError {
            status: 503,
            code: "ServiceUnavailable".into(),
            message: why,
        },
        Refused::Refused(e) => e,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Offer {
    sdp: String,
}

fn not_ringing(r: NotRinging, leg: &str) -> ApiError {
    match r {
        NotRinging::Gone => ApiError {
            status: 409,
            code: "Conflict".into(),
            message: format!(
                "Leg {leg} is not ringing here (answered elsewhere, ended, or not yours)."
            ),
        },
        NotRinging::BadOffer(why) => bad(format!("sdp: {why}")),
    }
}

/// The tab's event stream: rings, cancellations, answers elsewhere, hang-ups.
fn events(node: &Arc<Node>, user: &directory::User) -> Response {
    let (_, rx) = node.tabs.open(&user.id);
    let hello = json!({"type": "ready", "userId": user.id});
    let first = futures_util::stream::once(async move {
        Ok::<_, std::convert::Infallible>(Event::default().data(hello.to_string()))
    });
    let rest = futures_util::stream::unfold(rx, |mut rx| async move {
        let v = rx.recv().await?;
        Some((Ok(Event::default().data(v.to_string())), rx))
    });
    Sse::new(first.chain(rest))
        .keep_alive(KeepAlive::default())
        .into_response()
}

pub async fn handle(
    node: &Arc<Node>,
    method: &Method,
    rest: &[&str],
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // EventSource cannot send headers: the events stream takes its token as ?token=.
    let from_query = query
        .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("token=")))
        .map(|t| format!("Bearer {t}"));
    let mut h = headers.clone();
    if let Some(v) = from_query.and_then(|t| t.parse().ok()) {
        h.insert("authorization", v);
    }
    let user = authenticate_user(node, &h)?;
    match (method.as_str(), rest) {
        ("GET", ["events"]) => Ok(events(node, &user)),
        ("POST", ["legs", leg, "answer"]) => {
            let req: Offer = parse(&read_body(node, body).await?)?;
            let sdp =
                webrtc::answer(node, &user.id, leg, &req.sdp).map_err(|r| not_ringing(r, leg))?;
            Ok((
                StatusCode::OK,
                [("content-type", "application/json")],
                json!({"legId": leg, "sdp": sdp}).to_string(),
            )
                .into_response())
        }
        ("POST", ["calls", leg, action @ ("hold" | "resume")]) => {
            if !webrtc::hold(node, &user.id, leg, *action == "hold") {
                return Err(ApiError::not_found("Browser leg", leg));
            }
            Ok(StatusCode::ACCEPTED.into_response())
        }
        ("POST", ["legs", leg, "decline"]) => {
            webrtc::decline(node, &user.id, leg).map_err(|r| not_ringing(r, leg))?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        ("POST", ["calls"]) => {
            let req: Call = parse(&read_body(node, body).await?)?;
            let placed = webrtc::call_app(node, &user, &req.target, &req.sdp)
                .await
                .map_err(refused)?;
            let v = json!({"callId": placed.call_id, "legId": placed.leg_id, "sdp": placed.answer});
            Ok((
                StatusCode::CREATED,
                [("content-type", "application/json")],
                v.to_string(),
            )
                .into_response())
        }
        ("DELETE", ["calls", leg]) => {
            let mine = node.registry.legs().into_iter().any(|l| {
                l.leg_id == *leg
                    && l.user_id
                        .as_deref()
                        .is_some_and(|u| u.eq_ignore_ascii_case(&user.id))
            });
            if !mine {
                return Err(ApiError::not_found("Browser leg", leg));
            }
            webrtc::hang_up(node, leg);
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => Err(ApiError {
            status: 404,
            code: "UnknownResource".into(),
            message: format!(
                "No web phone resource matches {method} /webrtc/{}.",
                rest.join("/")
            ),
        }),
    }
}
