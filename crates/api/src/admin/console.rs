//! The console (`GET /console`) and what it reads: `GET /admin/events`, a server-sent event
//! stream that starts with everything the console draws (live calls, the journal's recent
//! calls and notifications, media and driver health) and then carries each change as it is
//! committed or delivered, plus the health figures once a second; and `/admin/recordings`.

use super::ops;
use super::reply::{Answer, ok};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use engine::ApiError;
use futures_util::StreamExt;
use node::{Msg, Node, now_ms};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, oneshot};

/// How many recordings the console lists.
const RECORDINGS_LISTED: usize = 200;

/// The console page, built into the binary.
pub fn page() -> Response {
    (
        StatusCode::OK,
        [("content-type", "text/html; charset=utf-8")],
        include_str!("../../../../web/console.html"),
    )
        .into_response()
}

/// Media and driver health, as the console charts them.
fn health(node: &Node) -> Value {
    json!({"type": "health", "atMs": now_ms(), "media": ops::media_json(node), "driver": node.driver_stats.to_json()})
}

fn event(data: &str) -> Result<Event, Infallible> {
    Ok(Event::default().data(data))
}

/// The live feed. A console that falls too far behind is told to start over (`resync`) and
/// the stream ends; the page reconnects and draws afresh.
pub async fn events(node: &Arc<Node>) -> Answer {
    // Subscribe before taking the picture: a change in between arrives after it, and every
    // event carries the whole of what it changes.
    let live = node.journal.subscribe();
    let (tx, rx) = oneshot::channel();
    let _ = node.driver.send(Msg::ConsoleViews { reply: tx });
    let calls = rx.await.unwrap_or_default();
    let history = node.journal.history();
    let hello = json!({
        "type": "hello", "calls": calls, "history": history,
        "health": health(node), "keptCalls": node::journal::KEEP_CALLS,
    });
    let first = futures_util::stream::once(async move { event(&hello.to_string()) });
    let changes = futures_util::stream::unfold(Some(live), |rx| async move {
        let mut rx = rx?;
        match rx.recv().await {
            Ok(s) => Some((event(&s), Some(rx))),
            Err(broadcast::error::RecvError::Lagged(n)) => Some((
                event(&json!({"type": "resync", "missed": n}).to_string()),
                None,
            )),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    });
    let node = node.clone();
    let ticks = futures_util::stream::unfold(
        tokio::time::interval(Duration::from_secs(1)),
        move |mut every| {
            let node = node.clone();
            async move {
                every.tick().await;
                Some((event(&health(&node).to_string()), every))
            }
        },
    )
    .skip(1);
    // The stream ends with the changes (after a resync); health alone does not keep it open.
    let changes = changes
        .map(Some)
        .chain(futures_util::stream::once(async { None }));
    let merged = futures_util::stream::select(changes, ticks.map(Some))
        .take_while(|e| std::future::ready(e.is_some()))
        .filter_map(std::future::ready);
    Ok(Sse::new(first.chain(merged))
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn recording_view(r: &store::Recording) -> Value {
    json!({
        "id": r.id, "callId": r.call_id, "tenantId": r.tenant_id, "appId": r.app_id,
        "kind": r.kind, "parentId": r.parent_id, "participantId": r.participant_id,
        "createdMs": r.created_ms, "durationMs": r.duration_ms,
    })
}

/// The most recent recordings of every kind, newest first.
pub async fn recordings(node: &Node) -> Answer {
    let (tx, rx) = oneshot::channel();
    let _ = node.driver.send(Msg::RecentRecordings {
        limit: RECORDINGS_LISTED,
        reply: tx,
    });
    let v: Vec<Value> = rx
        .await
        .unwrap_or_default()
        .iter()
        .map(recording_view)
        .collect();
    ok(json!({ "value": v }))
}

/// A finished recording's WAV file.
pub async fn recording_content(node: &Node, id: &str) -> Answer {
    let (tx, rx) = oneshot::channel();
    let _ = node.driver.send(Msg::GetRecording {
        id: id.to_string(),
        reply: tx,
    });
    let rec = rx
        .await
        .unwrap_or(None)
        .ok_or_else(|| ApiError::not_found("Recording", id))?;
    if rec.duration_ms.is_none() {
        return Err(ApiError {
            status: 409,
            code: "RecordingInProgress".into(),
            message: "The recording is still in progress; it can be played once it ends.".into(),
        });
    }
    let bytes = tokio::fs::read(&rec.path)
        .await
        .map_err(|_| ApiError::not_found("Recording file", id))?;
    Ok((StatusCode::OK, [("content-type", "audio/wav")], bytes).into_response())
}
