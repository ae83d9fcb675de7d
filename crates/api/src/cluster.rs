//! Requests for a call another node owns (docs/cluster.md): found by the call's owner in the
//! shared store, carried over NATS to that node, answered there exactly as if it had been
//! asked directly, and the answer brought back. Each node also serves what others carry to it.

use crate::plumbing::{Ctx, Via, error_response};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use engine::{ApiError, ObjKind};
use futures_util::StreamExt;
use node::Node;
use node::cluster::{FORWARDED_HEADER, Forwarded, ForwardedReply, b64, subject, unb64};
use std::sync::Arc;

/// The node that owns what this request is about, when that is not this node.
pub async fn owner_elsewhere(node: &Node, headers: &HeaderMap, segs: &[&str]) -> Option<String> {
    let cluster = node.cluster.get()?;
    if headers.contains_key(FORWARDED_HEADER) {
        return None; // carried here already: answer it, whatever has changed since
    }
    let (kind, id) = match segs {
        [ver, c, "calls", id, ..]
            if graph_version(ver) && c.eq_ignore_ascii_case("communications") =>
        {
            (ObjKind::Call, *id)
        }
        [ver, "communications" | "me", m, id, ..] | [ver, "users", _, m, id, ..]
            if graph_version(ver) && m.eq_ignore_ascii_case("onlineMeetings") =>
        {
            (ObjKind::Meeting, *id)
        }
        _ => return None,
    };
    if cluster.owned.contains(kind, id) {
        return None;
    }
    match cluster.owner_of(kind, id).await {
        Ok(Some(owner)) if owner != cluster.node_id && !owner.is_empty() => Some(owner),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot find the owner of {id}; answering here");
            None
        }
    }
}

fn graph_version(v: &str) -> bool {
    v.eq_ignore_ascii_case("v1.0") || v.eq_ignore_ascii_case("beta")
}

/// Where a request goes: answered here (with its body), or carried to another node.
pub enum Route {
    Here(Body),
    To(String, Body),
    /// Refused before it could be routed (a body over the size limit).
    Refused(ApiError),
}

fn too_large(limit: usize) -> ApiError {
    ApiError {
        status: 413,
        code: "RequestEntityTooLarge".into(),
        message: format!("The request body is larger than {limit} bytes."),
    }
}

/// A new call that joins a meeting is created on the node that holds the meeting, so the
/// meeting and its calls stay together.
pub async fn route_new_call(
    node: &Node,
    method: &Method,
    headers: &HeaderMap,
    segs: &[&str],
    body: Body,
) -> Route {
    let Some(cluster) = node.cluster.get() else {
        return Route::Here(body);
    };
    let create = matches!(segs, [ver, c, "calls"] if graph_version(ver) && c.eq_ignore_ascii_case("communications"));
    if !create || method != Method::POST || headers.contains_key(FORWARDED_HEADER) {
        return Route::Here(body);
    }
    let limit = node.directory.read().server.max_body_bytes;
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return Route::Refused(too_large(limit));
    };
    let owner = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(v) => cluster.meeting_owner(&v).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot find the meeting's node; creating the call here");
            None
        }),
        Err(_) => None, // malformed: answered here with the usual 400
    };
    match owner {
        Some(o) => Route::To(o, Body::from(bytes)),
        None => Route::Here(Body::from(bytes)),
    }
}

/// Carry the request to `owner` and give back its answer (or a 503 saying it could not).
#[allow(clippy::too_many_arguments)]
pub async fn forward(
    node: &Node,
    ctx: &Ctx,
    owner: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
    via: &Via,
) -> Response {
    let Some(cluster) = node.cluster.get() else {
        return error_response(ctx, &unavailable("this node is not in a cluster".into()));
    };
    let limit = node.directory.read().server.max_body_bytes;
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => return error_response(ctx, &too_large(limit)),
    };
    let mut hs: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    hs.push((FORWARDED_HEADER.into(), cluster.node_id.clone()));
    let req = Forwarded {
        method: method.to_string(),
        uri: uri.to_string(),
        headers: hs,
        body: b64(&bytes),
        tls: via.tls,
        peer: via.peer.to_string(),
    };
    match cluster.forward(owner, &req).await {
        Ok(reply) => response_of(reply).unwrap_or_else(|e| {
            error_response(
                ctx,
                &unavailable(format!("node {owner} answered badly: {e}")),
            )
        }),
        Err(e) => error_response(
            ctx,
            &unavailable(format!(
                "The node that owns this call could not be reached: {e}"
            )),
        ),
    }
}

fn unavailable(message: String) -> ApiError {
    ApiError {
        status: 503,
        code: "ServiceUnavailable".into(),
        message,
    }
}

fn response_of(reply: ForwardedReply) -> Result<Response, String> {
    let mut r = Response::new(Body::from(unb64(&reply.body)?));
    *r.status_mut() = StatusCode::from_u16(reply.status).map_err(|e| e.to_string())?;
    for (k, v) in reply.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            r.headers_mut().append(k, v);
        }
    }
    Ok(r)
}

/// Answers a forwarded request (the one dispatch, in the crate root).
pub type Answer = Arc<
    dyn Fn(Method, Uri, HeaderMap, Body, Via) -> futures_util::future::BoxFuture<'static, Response>
        + Send
        + Sync,
>;

/// Answer what other nodes carry here, each request on a task of its own.
pub async fn serve(node: Arc<Node>, answer: Answer) {
    let Some(cluster) = node.cluster.get().cloned() else {
        return;
    };
    let mut sub = match cluster.nats.subscribe(subject(&cluster.node_id)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot take forwarded requests from NATS");
            return;
        }
    };
    while let Some(msg) = sub.next().await {
        let (answer, nats) = (answer.clone(), cluster.nats.clone());
        tokio::spawn(async move {
            let Some(reply_to) = msg.reply.clone() else {
                return;
            };
            let reply = match serde_json::from_slice::<Forwarded>(&msg.payload)
                .map_err(|e| format!("not a forwarded request: {e}"))
                .and_then(request_of)
            {
                Ok((m, u, h, b, via)) => reply_of(answer(m, u, h, b, via).await).await,
                Err(e) => ForwardedReply {
                    status: 400,
                    headers: vec![],
                    body: b64(e.as_bytes()),
                },
            };
            if let Ok(bytes) = serde_json::to_vec(&reply) {
                let _ = nats.publish(reply_to, bytes.into()).await;
            }
        });
    }
}

type Parts = (Method, Uri, HeaderMap, Body, Via);

fn request_of(req: Forwarded) -> Result<Parts, String> {
    let (Ok(method), Ok(uri), Ok(body)) = (
        Method::from_bytes(req.method.as_bytes()),
        req.uri.parse::<Uri>(),
        unb64(&req.body),
    ) else {
        return Err("a forwarded request with a bad method, URI or body".into());
    };
    let mut headers = HeaderMap::new();
    for (k, v) in req.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            headers.append(k, v);
        }
    }
    let via = Via {
        tls: req.tls,
        peer: req
            .peer
            .parse()
            .unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], 0))),
    };
    Ok((method, uri, headers, Body::from(body), via))
}

async fn reply_of(r: Response) -> ForwardedReply {
    let status = r.status().as_u16();
    let headers = r
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    match axum::body::to_bytes(r.into_body(), usize::MAX).await {
        Ok(b) => ForwardedReply {
            status,
            headers,
            body: b64(&b),
        },
        Err(e) => ForwardedReply {
            status: 500,
            headers: vec![],
            body: b64(format!("the answer could not be read: {e}").as_bytes()),
        },
    }
}
