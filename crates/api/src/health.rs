//! `/healthz` (the process answers) and `/readyz` (it can take work: the store answers, the
//! cluster's bus and database connection are up, and it is not draining).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use node::Node;
use node::inputs::Msg;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub fn healthz() -> Response {
    (StatusCode::OK, "ok").into_response()
}

pub async fn readyz(node: &Node) -> Response {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let _ = node.driver.send(Msg::Ping { reply: tx });
    let store = match tokio::time::timeout(Duration::from_secs(2), rx).await {
        Ok(Ok(Ok(()))) => "ok".to_string(),
        Ok(Ok(Err(e))) => e,
        _ => "the call driver did not answer within 2 s".to_string(),
    };
    let bus = match node.cluster.get() {
        None => "none (single node)".to_string(),
        Some(c) if c.connected() => "ok".to_string(),
        Some(_) => "not connected".to_string(),
    };
    let draining = node.draining.load(Ordering::Relaxed);
    let ready = store == "ok" && (bus == "ok" || node.cluster.get().is_none()) && !draining;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "notReady" },
        "store": store,
        "bus": bus,
        "draining": draining,
    });
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}
