//! Online meetings: create and get (`/communications/onlineMeetings`), and the page a
//! meeting's `joinWebUrl` opens.

use crate::plumbing::{Ctx, json_response, not_taken, stopped};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use engine::{ApiError, AppCtx};
use node::{Msg, Node};
use serde_json::Value;
use tokio::sync::oneshot;

/// `POST …/onlineMeetings`: a meeting organised by the body's organizer (else the app).
pub async fn create(
    shared: &Node,
    ctx: &Ctx,
    app: AppCtx,
    prefix: &str,
    v: Value,
) -> Result<Response, ApiError> {
    let subject = v.get("subject").and_then(Value::as_str).map(str::to_string);
    let organizer = v
        .pointer("/participants/organizer/identity")
        .and_then(|i| serde_json::from_value::<graph::IdentitySet>(i.clone()).ok())
        .filter(|i| i.party().is_some())
        .unwrap_or_else(|| graph::IdentitySet::application(&app.app_id, app.app_name.as_deref()));
    let start = v
        .get("startDateTime")
        .and_then(Value::as_str)
        .map(str::to_string);
    let end = v
        .get("endDateTime")
        .and_then(Value::as_str)
        .map(str::to_string);
    let (tx, rx) = oneshot::channel();
    shared
        .driver
        .send(Msg::CreateMeeting {
            app,
            subject,
            organizer,
            start,
            end,
            reply: tx,
        })
        .map_err(|_| stopped())?;
    let mut m = rx.await.map_err(|_| not_taken())??;
    let id = m["id"].as_str().unwrap_or_default().to_string();
    m["@odata.context"] =
        format!("{prefix}/$metadata#communications/onlineMeetings/$entity").into();
    Ok(json_response(
        ctx,
        201,
        &m,
        Some(format!("{prefix}/communications/onlineMeetings/{id}")),
    ))
}

/// `GET …/onlineMeetings/{id}`, within the caller's tenant.
pub async fn get(shared: &Node, ctx: &Ctx, app: AppCtx, id: String) -> Result<Response, ApiError> {
    let (tx, rx) = oneshot::channel();
    shared
        .driver
        .send(Msg::GetMeeting {
            tenant: app.tenant_id,
            id: id.clone(),
            reply: tx,
        })
        .map_err(|_| stopped())?;
    match rx.await.map_err(|_| stopped())? {
        Some(m) => Ok(json_response(ctx, 200, &m, None)),
        None => Err(ApiError::not_found("Online meeting", &id)),
    }
}

/// What a meeting's `joinWebUrl` shows in a browser.
pub fn meetup_page(path: &str) -> Response {
    let target: String =
        percent_encoding::utf8_percent_encode(path, percent_encoding::NON_ALPHANUMERIC).collect();
    let html = format!(
        "<!doctype html><title>ringside meeting</title><p>This is a ringside meeting link.</p><p><a id=\"join\" href=\"/phone?target={target}\">Join from this browser</a> (the web phone: sign in with your user token, then Call).</p><p>Bots join it with chatInfo and meetingInfo, or with the join meeting id and passcode.</p><code>{}</code>",
        path.replace('<', "&lt;")
    );
    (
        StatusCode::OK,
        [("content-type", "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}
