//! The admin API (`/admin/...`), guarded by the admin token from the config, separate from
//! app tokens: one route table, one small handler per resource. Directory changes go
//! through the directory service, which writes them back to the config file; every change
//! is logged as a structured audit event.

pub mod console;
pub mod directory;
pub mod ops;
pub mod people;
pub mod reply;

use crate::plumbing::{bearer, read_body};
use axum::body::Body;
use axum::http::{HeaderMap, Method};
use engine::ApiError;
use node::Node;
use reply::Answer;
use std::sync::Arc;

/// The admin token, compared in constant time.
pub(crate) fn authorise(node: &Node, headers: &HeaderMap) -> Result<(), ApiError> {
    let want = node
        .directory
        .read()
        .admin
        .as_ref()
        .map(|a| a.token.clone());
    let given = bearer(headers);
    match want {
        Some(w)
            if !given.is_empty() && identity::constant_time_eq(w.as_bytes(), given.as_bytes()) =>
        {
            Ok(())
        }
        _ => {
            tracing::info!(target: "audit", event = "admin_auth_failure");
            Err(ApiError {
                status: 401,
                code: "InvalidAuthenticationToken".into(),
                message: "The admin token is missing or wrong.".into(),
            })
        }
    }
}

fn unknown(method: &Method, rest: &[&str]) -> Answer {
    Err(ApiError {
        status: 404,
        code: "UnknownResource".into(),
        message: format!(
            "No admin resource matches {method} /admin/{}.",
            rest.join("/")
        ),
    })
}

pub async fn handle(
    node: &Arc<Node>,
    method: &Method,
    rest: &[&str],
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Answer {
    authorise(node, headers)?;
    let b = read_body(node, body).await?;
    let r = route(node, method, rest, query, &b).await;
    // Open consoles redraw the directory when it changes.
    if r.is_ok()
        && *method != Method::GET
        && matches!(rest.first(), Some(&("tenants" | "apps" | "users")))
    {
        node.journal
            .publish(&serde_json::json!({"type": "directory"}));
    }
    r
}

async fn route(
    node: &Arc<Node>,
    method: &Method,
    rest: &[&str],
    query: Option<&str>,
    b: &[u8],
) -> Answer {
    match (method.as_str(), rest) {
        ("GET", ["events"]) => console::events(node).await,
        ("GET", ["recordings"]) => console::recordings(node).await,
        ("GET", ["recordings", id, "content"]) => console::recording_content(node, id).await,
        ("GET", ["directory"]) => directory::show(node),
        ("POST", ["tenants"]) => directory::add_tenant(node, b),
        ("DELETE", ["tenants", id]) => directory::delete_tenant(node, id),
        ("POST", ["apps"]) => directory::add_app(node, b),
        ("PATCH", ["apps", id]) => directory::update_app(node, id, b),
        ("DELETE", ["apps", id]) => directory::delete_app(node, id),
        ("POST", ["apps", id, "secret"]) => directory::reset_secret(node, id),
        ("POST", ["users"]) => directory::add_user(node, b),
        ("PATCH", ["users", id]) => directory::update_user(node, id, b),
        ("DELETE", ["users", id]) => directory::delete_user(node, id),
        ("POST", ["users", id, "call"]) => people::call(node, id, b).await,
        ("POST", ["users", id, "join"]) => people::join(node, id, b).await,
        ("POST", ["users", id, "token"]) => people::token(node, id),
        ("GET", ["legs"]) => people::legs(node, query),
        ("GET", ["legs", id]) => people::leg(node, id),
        ("GET", ["legs", id, "heard"]) => people::heard(node, id),
        ("POST", ["signing-keys", "rotate"]) => ops::rotate_keys(node),
        ("GET", ["media"]) => ops::media(node),
        ("GET", ["driver"]) => ops::driver(node),
        ("GET", ["sip", "registrations", user]) => ops::sip_registrations(node, user),
        ("GET", ["calls"]) => ops::calls(node).await,
        ("GET", ["dead-letters"]) => ops::dead_letters(node).await,
        ("POST", ["dead-letters", seq, "redeliver"]) => ops::redeliver(node, seq).await,
        ("GET", ["device-quality"]) => ops::device_quality(node, query).await,
        _ => unknown(method, rest),
    }
}
