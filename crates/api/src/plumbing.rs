//! Request plumbing every route shares: the request id and the Graph error envelope on
//! every 4xx/5xx, JSON responses, body limits, path segments and action names, and the
//! base URL a request reached ringside at.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use engine::ApiError;
use node::Node;
use serde_json::{Value, json};

pub struct Ctx {
    pub request_id: String,
    pub client_request_id: Option<String>,
    /// The app the request authenticated as, once known (for the request's log line).
    pub app: std::sync::OnceLock<String>,
}

pub fn error_response(ctx: &Ctx, e: &ApiError) -> Response {
    let date = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string();
    let body = json!({"error": {
        "code": e.code, "message": e.message,
        "innerError": {"date": date, "request-id": ctx.request_id, "client-request-id": ctx.client_request_id}
    }});
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response();
    if e.status == 429 {
        // Throttling messages end with "retry after N s"; the header carries the same N.
        let secs = e
            .message
            .rsplit("retry after ")
            .next()
            .and_then(|t| t.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(1);
        r.headers_mut()
            .insert("retry-after", HeaderValue::from(secs));
    }
    if e.status == 401 {
        r.headers_mut()
            .insert("www-authenticate", HeaderValue::from_static("Bearer"));
    }
    stamp(ctx, r)
}

pub fn stamp(ctx: &Ctx, mut r: Response) -> Response {
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        h.insert("request-id", v);
    }
    if let Some(c) = ctx
        .client_request_id
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        h.insert("client-request-id", c);
    }
    r
}

pub fn json_response(ctx: &Ctx, status: u16, body: &Value, location: Option<String>) -> Response {
    let mut r = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response();
    if let Some(l) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        r.headers_mut().insert("location", l);
    }
    stamp(ctx, r)
}

pub fn empty_response(ctx: &Ctx, status: u16, location: Option<String>) -> Response {
    let mut r = StatusCode::from_u16(status)
        .unwrap_or(StatusCode::OK)
        .into_response();
    if let Some(l) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        r.headers_mut().insert("location", l);
    }
    stamp(ctx, r)
}

pub fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg)
}

pub fn not_found_route(method: &Method, path: &str) -> ApiError {
    ApiError {
        status: 404,
        code: "UnknownResource".into(),
        message: format!("No resource matches {method} {path}."),
    }
}

pub fn method_not_allowed(method: &Method, path: &str) -> ApiError {
    ApiError {
        status: 405,
        code: "MethodNotAllowed".into(),
        message: format!("{method} is not supported on {path}."),
    }
}

/// Action segments: case-insensitive, with or without the `microsoft.graph.` namespace.
pub fn action_name(seg: &str) -> String {
    let l = seg.to_ascii_lowercase();
    l.strip_prefix("microsoft.graph.")
        .map(str::to_string)
        .unwrap_or(l)
}

pub fn decode(seg: &str) -> String {
    percent_encoding::percent_decode_str(seg)
        .decode_utf8_lossy()
        .into_owned()
}

/// Read the body with the configured limit: 413 with a Graph envelope when over.
pub async fn read_body(shared: &Node, body: Body) -> Result<Vec<u8>, ApiError> {
    let limit = shared.directory.read().server.max_body_bytes;
    axum::body::to_bytes(body, limit)
        .await
        .map(|b| b.to_vec())
        .map_err(|_| ApiError {
            status: 413,
            code: "RequestEntityTooLarge".into(),
            message: format!("The request body is larger than the limit of {limit} bytes."),
        })
}

/// The base URL this request reached ringside at (`https://` on the TLS listener): the
/// OIDC document must name endpoints on the scheme and host the client used.
pub fn request_base(shared: &Node, uri: &Uri, headers: &HeaderMap, tls: bool) -> String {
    // HTTP/2 carries the host as :authority (in the URI), HTTP/1.1 as the Host header.
    let host = uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| headers.get("host").and_then(|h| h.to_str().ok()));
    match host.filter(|h| {
        h.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
    }) {
        Some(host) => format!("{}://{host}", if tls { "https" } else { "http" }),
        None => shared.public_url.clone(),
    }
}

/// The base URL responses name (`Location`, `@odata.context`, links): the configured
/// `public_url`, else the scheme and host this request reached ringside at.
pub fn public_base(shared: &Node, uri: &Uri, headers: &HeaderMap, tls: bool) -> String {
    if shared.public_url_configured {
        shared.public_url.clone()
    } else {
        request_base(shared, uri, headers, tls)
    }
}

/// A path's segments, percent-decoded, empty ones dropped (`//` is `/`).
pub fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(decode)
        .collect()
}

/// The token of an `Authorization: Bearer …` header, or "" when there is none.
pub fn bearer(headers: &HeaderMap) -> String {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("")
        .trim()
        .to_string()
}

/// Parse a JSON body; a 400 naming what is wrong otherwise.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    graph::requests::parse(body).map_err(bad)
}

/// How a request reached ringside.
#[derive(Debug, Clone, Copy)]
pub struct Via {
    pub tls: bool,
    pub peer: std::net::SocketAddr,
}

pub fn json_ok(v: &Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// A request the driver took but could not commit or answer: it is stopping, or storage failed.
pub fn not_taken() -> ApiError {
    ApiError {
        status: 503,
        code: "ServiceUnavailable".into(),
        message: "ringside could not take this request: it is stopping, or its storage is failing; retry.".into(),
    }
}

pub fn stopped() -> ApiError {
    ApiError {
        status: 503,
        code: "ServiceUnavailable".into(),
        message: "ringside is shutting down.".into(),
    }
}
