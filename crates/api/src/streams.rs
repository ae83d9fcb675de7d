//! The app connects in to its call's media stream: `GET /media/streams/{callId}?token=…`
//! upgraded to a WebSocket (the call's `mediaStreaming.websocketUrl`). The session is the
//! node's ([`node::streams::session`]); this is only the door and the socket.

use crate::plumbing::{Ctx, error_response};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use engine::ApiError;
use futures_util::{SinkExt, StreamExt};
use node::Node;
use std::sync::Arc;
use tokio::sync::mpsc;

pub async fn upgrade(
    node: Arc<Node>,
    call_id: String,
    token: Option<String>,
    ws: WebSocketUpgrade,
) -> Response {
    let ctx = Ctx {
        request_id: uuid::Uuid::new_v4().to_string(),
        client_request_id: None,
        app: Default::default(),
    };
    let Some(entry) = node.streams.get(&call_id) else {
        return error_response(&ctx, &ApiError::not_found("Media stream of call", &call_id));
    };
    if token.as_deref() != Some(entry.token.as_str()) {
        let e = ApiError {
            status: 401,
            code: "InvalidAuthenticationToken".into(),
            message: "The media stream's token is missing or wrong (see the call's mediaStreaming.websocketUrl).".into(),
        };
        return error_response(&ctx, &e);
    }
    let stats = node.streams.stats.clone();
    ws.on_upgrade(move |socket| serve(socket, entry, stats))
}

async fn serve(
    socket: WebSocket,
    entry: Arc<node::streams::Entry>,
    stats: Arc<node::streams::StreamStats>,
) {
    let (mut sink, mut source) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<String>(8);
    let (in_tx, in_rx) = mpsc::channel::<String>(64);
    let writer = tokio::spawn(async move {
        while let Some(t) = out_rx.recv().await {
            if sink.send(Message::Text(t.into())).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let reader = tokio::spawn(async move {
        while let Some(Ok(m)) = source.next().await {
            let text = match m {
                Message::Text(t) => t.to_string(),
                Message::Close(_) => break,
                _ => continue,
            };
            if in_tx.send(text).await.is_err() {
                break;
            }
        }
    });
    node::streams::session(entry, stats, out_tx, in_rx).await;
    reader.abort();
    let _ = writer.await;
}
