//! The web phone's signalling, over HTTP: a signed-in user's browser offers, ringside
//! answers (`POST /webrtc/calls`), and either side hangs up (`DELETE /webrtc/calls/{leg}`).

use crate::caller::authenticate_user;
use crate::plumbing::{bad, parse, read_body};
use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use engine::ApiError;
use node::Node;
use node::endpoints::webrtc::{self, Refused};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

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
    }
}

pub async fn handle(
    node: &Arc<Node>,
    method: &Method,
    rest: &[&str],
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let user = authenticate_user(node, headers)?;
    match (method.as_str(), rest) {
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
