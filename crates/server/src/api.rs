//! The HTTP edge: path normalisation (both versions, `/app/calls`, `//`, case-insensitive and
//! `microsoft.graph.`-qualified action segments), authentication, the one routing table from
//! Graph routes to engine commands, and the Graph error envelope on every 4xx/5xx.

use crate::auth::{self, Claims};
use crate::driver::{Msg, now_ms};
use crate::guard;
use crate::state::Shared;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use engine::{ApiError, AppCtx, Command, Reply, Version};
use graph::requests::{self as rq, parse};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::oneshot;

pub struct Ctx {
    pub request_id: String,
    pub client_request_id: Option<String>,
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

fn stamp(ctx: &Ctx, mut r: Response) -> Response {
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

fn json_response(ctx: &Ctx, status: u16, body: &Value, location: Option<String>) -> Response {
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

fn empty_response(ctx: &Ctx, status: u16, location: Option<String>) -> Response {
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

fn not_found_route(method: &Method, path: &str) -> ApiError {
    ApiError {
        status: 404,
        code: "UnknownResource".into(),
        message: format!("No resource matches {method} {path}."),
    }
}

fn method_not_allowed(method: &Method, path: &str) -> ApiError {
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

fn decode(seg: &str) -> String {
    percent_encoding::percent_decode_str(seg)
        .decode_utf8_lossy()
        .into_owned()
}

/// Read the body with the configured limit: 413 with a Graph envelope when over.
pub async fn read_body(shared: &Shared, body: Body) -> Result<Vec<u8>, ApiError> {
    let limit = shared.config.read().expect("config").server.max_body_bytes;
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
fn request_base(shared: &Shared, uri: &Uri, headers: &HeaderMap, tls: bool) -> String {
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

/// How a request reached ringside.
#[derive(Debug, Clone, Copy)]
pub struct Via {
    pub tls: bool,
    pub peer: std::net::SocketAddr,
}

pub async fn handle(
    shared: Arc<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
    via: Via,
) -> Response {
    let tls = via.tls;
    let ctx = Ctx {
        request_id: uuid::Uuid::new_v4().to_string(),
        client_request_id: headers
            .get("client-request-id")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(128).collect()),
    };
    let path = uri.path().to_string();
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode)
        .collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let r = match s.as_slice() {
        ["healthz"] => Ok((StatusCode::OK, "ok").into_response()),
        ["admin", rest @ ..] => {
            crate::admin::handle(&shared, &ctx, &method, rest, uri.query(), &headers, body).await
        }
        [tenant, "oauth2", "v2.0", "token"] if method == Method::POST => {
            token(
                &shared,
                tenant,
                body,
                &request_base(&shared, &uri, &headers, tls),
            )
            .await
        }
        [tenant, "v2.0", ".well-known", "openid-configuration"] if method == Method::GET => {
            Ok(openid(&request_base(&shared, &uri, &headers, tls), tenant))
        }
        [_, "discovery", "v2.0", "keys"] | ["discovery", "keys"] if method == Method::GET => {
            Ok(json_ok(&shared.keys.jwks()))
        }
        [".well-known", "openid-configuration"] if method == Method::GET => {
            Ok(callback_openid(&shared))
        }
        ["recordings", id] if method == Method::GET => recording(&shared, id, &headers).await,
        ["l", "meetup-join", ..] if method == Method::GET => Ok(meetup_page(&path)),
        [ver, rest @ ..]
            if ver.eq_ignore_ascii_case("v1.0") || ver.eq_ignore_ascii_case("beta") =>
        {
            let v = if ver.eq_ignore_ascii_case("beta") {
                Version::Beta
            } else {
                Version::V1
            };
            graph(&shared, &ctx, v, &method, rest, &path, &headers, body, via).await
        }
        _ => Err(not_found_route(&method, &path)),
    };
    match r {
        Ok(resp) => stamp(&ctx, resp),
        Err(e) => error_response(&ctx, &e),
    }
}

// ------------------------------------------------------------------ auth

/// Development convenience: in dev mode, a request from loopback with no Authorization acts
/// as `server.loopback_anonymous_app` (e.g. for curl experiments and the security benchmark).
fn loopback_anonymous(
    shared: &Shared,
    headers: &HeaderMap,
    via: Via,
) -> Option<(AppCtx, Vec<String>)> {
    if headers.contains_key("authorization") || !via.peer.ip().is_loopback() {
        return None;
    }
    let c = shared.config.read().expect("config");
    if !c.server.dev_mode {
        return None;
    }
    let app = c.app(c.server.loopback_anonymous_app.as_deref()?)?;
    Some((
        AppCtx {
            tenant_id: app.tenant.clone(),
            app_id: app.id.clone(),
            app_name: app.name.clone(),
        },
        app.permissions.clone(),
    ))
}

/// Tokens are for Microsoft Graph (what bots ask for) or for ringside itself (what kiota asks
/// for when no scope is given: the request's host); a token for another API is refused.
fn audience_ok(aud: &str, public_url: &str, headers: &HeaderMap) -> bool {
    const GRAPH: [&str; 3] = [
        "https://graph.microsoft.com",
        "https://graph.microsoft.com/",
        "00000003-0000-0000-c000-000000000000",
    ];
    if GRAPH.iter().any(|g| aud.eq_ignore_ascii_case(g)) {
        return true;
    }
    let host_of = |u: &str| -> Option<String> {
        let rest = u.split_once("://").map(|(_, r)| r).unwrap_or(u);
        let authority = rest.split('/').next()?;
        let host = match authority.rsplit_once(':') {
            Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
            _ => authority,
        };
        Some(host.trim_matches(['[', ']']).to_ascii_lowercase())
    };
    let Some(aud_host) = host_of(aud).filter(|h| !h.is_empty()) else {
        return false;
    };
    let mut ours = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    ours.extend(host_of(public_url));
    if let Some(h) = headers.get("host").and_then(|h| h.to_str().ok()) {
        ours.extend(host_of(h));
    }
    ours.contains(&aud_host)
}

/// The app a request acts for, and the roles (permissions) its token carries.
pub fn authenticate(
    shared: &Shared,
    headers: &HeaderMap,
) -> Result<(AppCtx, Vec<String>), ApiError> {
    let unauthorized = |m: &str| ApiError {
        status: 401,
        code: "InvalidAuthenticationToken".into(),
        message: m.to_string(),
    };
    let Some(h) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err(unauthorized("Access token is empty."));
    };
    let Some(token) = h
        .strip_prefix("Bearer ")
        .or_else(|| h.strip_prefix("bearer "))
    else {
        return Err(unauthorized(
            "The Authorization header must be 'Bearer <token>'.",
        ));
    };
    let claims: std::sync::Arc<Claims> = shared.keys.validate(token.trim()).map_err(|m| {
        tracing::info!(target: "audit", event = "auth_failure", reason = %m);
        unauthorized(&m)
    })?;
    if !audience_ok(&claims.aud, &shared.public_url, headers) {
        tracing::info!(target: "audit", event = "auth_failure", reason = "wrong audience", aud = %claims.aud);
        return Err(unauthorized(&format!(
            "The access token's audience '{}' is not Microsoft Graph or this ringside.",
            claims.aud
        )));
    }
    let cfg = shared.config.read().expect("config");
    let Some(app) = cfg.app(&claims.appid) else {
        return Err(unauthorized(
            "The application of this token no longer exists.",
        ));
    };
    if !app.tenant.eq_ignore_ascii_case(&claims.tid) {
        return Err(unauthorized(
            "The token's tenant does not match its application.",
        ));
    }
    Ok((
        AppCtx {
            tenant_id: app.tenant.clone(),
            app_id: app.id.clone(),
            app_name: app.name.clone(),
        },
        claims.roles.clone(),
    ))
}

async fn token(
    shared: &Shared,
    tenant: &str,
    body: Body,
    base: &str,
) -> Result<Response, ApiError> {
    #[derive(serde::Deserialize)]
    struct Form {
        grant_type: Option<String>,
        client_id: Option<String>,
        client_secret: Option<String>,
        scope: Option<String>,
        client_assertion: Option<String>,
        client_assertion_type: Option<String>,
    }
    let oauth_err = |status: StatusCode, code: &str, desc: &str| {
        let body = json!({"error": code, "error_description": desc, "error_codes": [], "timestamp": chrono::Utc::now().to_rfc3339(), "trace_id": uuid::Uuid::new_v4().to_string(), "correlation_id": uuid::Uuid::new_v4().to_string()});
        (
            status,
            [("content-type", "application/json")],
            body.to_string(),
        )
            .into_response()
    };
    let bytes = read_body(shared, body).await?;
    let Ok(form) = serde_urlencoded::from_bytes::<Form>(&bytes) else {
        return Ok(oauth_err(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The body must be application/x-www-form-urlencoded.",
        ));
    };
    if form.grant_type.as_deref() != Some("client_credentials") {
        return Ok(oauth_err(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Only grant_type=client_credentials is supported.",
        ));
    }
    if let Some(assertion) = &form.client_assertion {
        if form.client_assertion_type.as_deref()
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        {
            return Ok(oauth_err(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer.",
            ));
        }
        let Some(id) = form.client_id.clone() else {
            return Ok(oauth_err(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "client_id is required.",
            ));
        };
        let endpoint = format!("{base}/{tenant}/oauth2/v2.0/token");
        let app = shared
            .config
            .read()
            .expect("config")
            .app(&id)
            .filter(|a| a.tenant.eq_ignore_ascii_case(tenant))
            .cloned();
        let verdict = match &app {
            Some(a) => auth::verify_client_assertion(
                assertion,
                &a.id,
                &endpoint,
                &a.certificates,
                now_ms() / 1000,
            ),
            None => Err("unknown client".into()),
        };
        return match (app, verdict) {
            (Some(a), Ok(())) => Ok(issue_token(shared, &a, form.scope.as_deref(), base)),
            (_, Err(why)) => {
                tracing::info!(target: "audit", event = "token_refused", client_id = %id, tenant = %tenant, reason = %why);
                Ok(oauth_err(StatusCode::UNAUTHORIZED, "invalid_client", &why))
            }
            (None, Ok(())) => unreachable!("no app, no verdict"),
        };
    }
    let (Some(id), Some(secret)) = (form.client_id, form.client_secret) else {
        return Ok(oauth_err(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "client_id and client_secret are required.",
        ));
    };
    let cfg = shared.config.read().expect("config");
    let app = cfg
        .app(&id)
        .filter(|a| a.tenant.eq_ignore_ascii_case(tenant));
    let Some(app) = app.filter(|a| {
        a.secret_hash
            .as_deref()
            .is_some_and(|h| auth::verify_secret(h, &secret))
    }) else {
        tracing::info!(target: "audit", event = "token_refused", client_id = %id, tenant = %tenant);
        return Ok(oauth_err(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The client id, secret or tenant is wrong.",
        ));
    };
    let app = app.clone();
    drop(cfg);
    Ok(issue_token(shared, &app, form.scope.as_deref(), base))
}

/// An access token for `app`, as Entra issues it for client credentials.
fn issue_token(
    shared: &Shared,
    app: &crate::config::App,
    scope: Option<&str>,
    base: &str,
) -> Response {
    let now = now_ms() / 1000;
    let life = shared
        .config
        .read()
        .expect("config")
        .server
        .token_lifetime_seconds;
    let claims = Claims {
        iss: format!("{base}/{}/v2.0", app.tenant),
        aud: auth::audience_of_scope(scope),
        tid: app.tenant.clone(),
        appid: app.id.clone(),
        azp: app.id.clone(),
        roles: app.permissions.clone(),
        iat: now,
        nbf: now,
        exp: now + life,
        idtyp: "app".into(),
    };
    let t = shared.keys.sign(&claims);
    let body = json!({"token_type": "Bearer", "expires_in": life, "ext_expires_in": life, "access_token": t});
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn json_ok(v: &Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// The OIDC document for the tokens on ringside's callbacks (reference §8.3): bots point
/// their validator here instead of api.aps.skype.com.
fn callback_openid(shared: &Shared) -> Response {
    let base = &shared.public_url;
    json_ok(&json!({
        "issuer": base,
        "jwks_uri": format!("{base}/discovery/keys"),
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post"],
    }))
}

fn openid(base: &str, tenant: &str) -> Response {
    let body = json!({
        "issuer": format!("{base}/{tenant}/v2.0"),
        "token_endpoint": format!("{base}/{tenant}/oauth2/v2.0/token"),
        "authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/authorize"),
        "jwks_uri": format!("{base}/{tenant}/discovery/v2.0/keys"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["token"],
        "grant_types_supported": ["client_credentials"],
        "tenant_region_scope": null,
    });
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Call recordings (startRecording), a ringside extension under the Graph routes and their
/// auth rules: `GET …/communications/calls/{id}/recordings`, `…/recordings/{rid}` and
/// `…/recordings/{rid}/content` (the WAV). They outlive the call for the retention period.
async fn call_recordings(
    shared: &Shared,
    app: &AppCtx,
    roles: &[String],
    method: &Method,
    rest: &[&str],
    ver: Version,
) -> Option<Result<Response, ApiError>> {
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    let (call_id, rec_id, content) = match rest {
        [c, k, id, r] if eq(c, "communications") && eq(k, "calls") && eq(r, "recordings") => {
            (*id, None, false)
        }
        [c, k, id, r, rid] if eq(c, "communications") && eq(k, "calls") && eq(r, "recordings") => {
            (*id, Some(*rid), false)
        }
        [c, k, id, r, rid, x]
            if eq(c, "communications")
                && eq(k, "calls")
                && eq(r, "recordings")
                && eq(x, "content") =>
        {
            (*id, Some(*rid), true)
        }
        _ => return None,
    };
    Some(
        async {
            if method != Method::GET {
                return Err(ApiError {
                    status: 405,
                    code: "MethodNotAllowed".into(),
                    message: "Call recordings are read-only (GET).".into(),
                });
            }
            guard::check(roles, &[vec![guard::ACCESS_MEDIA]])?;
            let (tx, rx) = oneshot::channel();
            let _ = shared.driver.send(Msg::CallRecordings {
                call_id: call_id.to_string(),
                reply: tx,
            });
            let all = rx.await.map_err(|_| stopped())?;
            if all
                .iter()
                .any(|r| !r.tenant_id.eq_ignore_ascii_case(&app.tenant_id))
            {
                return Err(ApiError {
                    status: 403,
                    code: "Forbidden".into(),
                    message: "request authorization tenant mismatch".into(),
                });
            }
            let mine: Vec<_> = all
                .into_iter()
                .filter(|r| r.app_id.eq_ignore_ascii_case(&app.app_id))
                .filter(|r| r.expires_ms > now_ms() as i64)
                .collect();
            let prefix = format!(
                "{}/{}/communications/calls/{call_id}/recordings",
                shared.public_url,
                if ver == Version::Beta { "beta" } else { "v1.0" }
            );
            let render = |r: &store::Recording| {
                let mut v = json!({
                    "@odata.type": "#microsoft.graph.callRecording",
                    "id": r.id,
                    "callId": r.call_id,
                    "createdDateTime": engine::render::iso(r.created_ms as u64),
                    "status": if r.duration_ms.is_some() { "available" } else { "recording" },
                    "durationInMilliseconds": r.duration_ms,
                    "recordingContentUrl": format!("{prefix}/{}/content", r.id),
                });
                if let Some(p) = &r.participant_id {
                    v["participantId"] = json!(p);
                }
                let tracks: Vec<Value> = mine
                    .iter()
                    .filter(|t| t.parent_id.as_deref() == Some(r.id.as_str()))
                    .map(|t| {
                        json!({
                            "id": t.id,
                            "participantId": t.participant_id,
                            "durationInMilliseconds": t.duration_ms,
                            "recordingContentUrl": format!("{prefix}/{}/content", t.id),
                        })
                    })
                    .collect();
                if !tracks.is_empty() {
                    v["tracks"] = json!(tracks);
                }
                v
            };
            let Some(rid) = rec_id else {
                let v: Vec<Value> = mine
                    .iter()
                    .filter(|r| r.kind == "call")
                    .map(render)
                    .collect();
                return Ok(json_ok(&json!({ "@odata.context": prefix, "value": v })));
            };
            let Some(r) = mine.iter().find(|r| r.id.eq_ignore_ascii_case(rid)) else {
                return Err(ApiError::not_found("Recording", rid));
            };
            if !content {
                return Ok(json_ok(&render(r)));
            }
            if r.duration_ms.is_none() {
                return Err(ApiError {
                    status: 409,
                    code: "RecordingInProgress".into(),
                    message: "The call is still being recorded; stop the recording first.".into(),
                });
            }
            let bytes = tokio::fs::read(&r.path)
                .await
                .map_err(|_| ApiError::not_found("Recording", rid))?;
            Ok((StatusCode::OK, [("content-type", "audio/wav")], bytes).into_response())
        }
        .await,
    )
}

async fn recording(shared: &Shared, id: &str, headers: &HeaderMap) -> Result<Response, ApiError> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("")
        .trim()
        .to_string();
    let (tx, rx) = oneshot::channel();
    let _ = shared.driver.send(Msg::GetRecording {
        id: id.to_string(),
        reply: tx,
    });
    let found = rx.await.unwrap_or(None);
    let denied = || ApiError {
        status: 401,
        code: "InvalidAuthenticationToken".into(),
        message: "The recordingAccessToken is missing or wrong.".into(),
    };
    let Some(rec) = found.filter(|r| r.kind == "response") else {
        return Err(ApiError::not_found("Recording", id));
    };
    if token.is_empty() || !crate::admin::constant_time_eq(rec.token.as_bytes(), token.as_bytes()) {
        return Err(denied());
    }
    if rec.expires_ms <= now_ms() as i64 {
        return Err(ApiError {
            status: 404,
            code: "ItemNotFound".into(),
            message: "The recording has expired.".into(),
        });
    }
    let path = rec.path;
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|_| ApiError::not_found("Recording", id))?;
    Ok((
        StatusCode::OK,
        [("content-type", "application/octet-stream")],
        bytes,
    )
        .into_response())
}

fn meetup_page(path: &str) -> Response {
    let html = format!(
        "<!doctype html><title>ringside meeting</title><p>This is a ringside meeting link.</p><p>Bots join it with chatInfo and meetingInfo, or with the join meeting id and passcode.</p><code>{}</code>",
        path.replace('<', "&lt;")
    );
    (
        StatusCode::OK,
        [("content-type", "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

// ------------------------------------------------------------------ Graph routes

// Built once per request and consumed at once; boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Target {
    Engine {
        call_id: Option<String>,
        cmd: Command,
        count: bool,
    },
    CreateMeeting(Value),
    GetMeeting(String),
    LogQuality(Value),
}

#[allow(clippy::too_many_arguments)]
async fn graph(
    shared: &Shared,
    ctx: &Ctx,
    ver: Version,
    method: &Method,
    rest: &[&str],
    path: &str,
    headers: &HeaderMap,
    body: Body,
    via: Via,
) -> Result<Response, ApiError> {
    let (app, roles) = match loopback_anonymous(shared, headers, via) {
        Some(a) => a,
        None => authenticate(shared, headers)?,
    };
    {
        let c = shared.config.read().expect("config");
        let sv = &c.server;
        shared
            .buckets
            .take(
                &format!("app:{}", app.app_id),
                sv.rate_per_app,
                sv.burst_per_app,
            )
            .map_err(|s| guard::throttled("application", s))?;
        shared
            .buckets
            .take(
                &format!("tenant:{}", app.tenant_id),
                sv.rate_per_tenant,
                sv.burst_per_tenant,
            )
            .map_err(|s| guard::throttled("tenant", s))?;
    }
    if let Some(r) = call_recordings(shared, &app, &roles, method, rest, ver).await {
        return r;
    }
    let bytes = read_body(shared, body).await?;
    let target = route(method, rest, path, &bytes)?;
    if let Target::Engine { cmd, .. } = &target {
        for (field, url) in guard::outbound_urls(cmd) {
            if let Err(why) = shared.check_outbound(&url) {
                tracing::warn!(target: "audit", event = "outbound_refused", app = %app.app_id, field, reason = %why);
                return Err(bad(format!("{field} is not allowed: {why}")));
            }
        }
    }
    if let Target::Engine {
        cmd: Command::CreateCall(c),
        ..
    } = &target
    {
        resource_account_check(shared, &app, c)?;
    }
    match &target {
        Target::Engine { cmd, .. } => guard::check(&roles, &guard::required(cmd))?,
        Target::LogQuality(_) => guard::check(
            &roles,
            &[vec![guard::ACCESS_MEDIA, guard::ACCESS_MEDIA_CHAT]],
        )?,
        Target::CreateMeeting(_) => {
            guard::check(&roles, &[vec![guard::JOIN_GROUP, guard::INITIATE_GROUP]])?
        }
        Target::GetMeeting(_) => {}
    }
    let prefix = format!(
        "{}/{}",
        shared.public_url,
        if ver == Version::Beta { "beta" } else { "v1.0" }
    );
    match target {
        Target::Engine {
            call_id,
            cmd,
            count,
        } => {
            let (tx, rx) = oneshot::channel();
            shared
                .driver
                .send(Msg::Api {
                    app,
                    call_id,
                    cmd,
                    ver,
                    reply: tx,
                })
                .map_err(|_| stopped())?;
            let reply: Reply = rx.await.map_err(|_| stopped())??;
            if count {
                let n = reply
                    .body
                    .as_ref()
                    .and_then(|b| b["value"].as_array())
                    .map(Vec::len)
                    .unwrap_or(0);
                return Ok((
                    StatusCode::OK,
                    [("content-type", "text/plain")],
                    n.to_string(),
                )
                    .into_response());
            }
            let location = reply.location.map(|l| format!("{prefix}{l}"));
            Ok(match reply.body {
                Some(mut b) => {
                    let ctx_path = context_of(rest, &b);
                    if let Value::Object(m) = &mut b
                        && !m.contains_key("@odata.context")
                    {
                        m.insert(
                            "@odata.context".into(),
                            format!("{prefix}/$metadata#{ctx_path}").into(),
                        );
                    }
                    json_response(ctx, reply.status, &b, location)
                }
                None => empty_response(ctx, reply.status, location),
            })
        }
        Target::CreateMeeting(v) => {
            let subject = v.get("subject").and_then(Value::as_str).map(str::to_string);
            let organizer = v
                .pointer("/participants/organizer/identity")
                .and_then(|i| serde_json::from_value::<graph::IdentitySet>(i.clone()).ok())
                .filter(|i| i.party().is_some())
                .unwrap_or_else(|| {
                    graph::IdentitySet::application(&app.app_id, app.app_name.as_deref())
                });
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
            let mut m = rx.await.map_err(|_| stopped())?;
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
        Target::GetMeeting(id) => {
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
        Target::LogQuality(q) => {
            let ua = headers
                .get("user-agent")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let ok = ua.split_whitespace().next().is_some_and(|p| {
                p.split_once('/')
                    .is_some_and(|(n, v)| !n.is_empty() && !v.is_empty())
            });
            if !ok {
                return Err(bad(
                    "logTeleconferenceDeviceQuality requires a User-Agent header of the form ApplicationName/Version.",
                ));
            }
            let (tx, rx) = oneshot::channel();
            shared
                .driver
                .send(Msg::LogQuality {
                    tenant: app.tenant_id,
                    app: app.app_id,
                    json: q,
                    reply: tx,
                })
                .map_err(|_| stopped())?;
            rx.await.map_err(|_| stopped())?.map_err(|e| ApiError {
                status: 503,
                code: "ServiceUnavailable".into(),
                message: e,
            })?;
            Ok(empty_response(ctx, 200, None))
        }
    }
}

fn stopped() -> ApiError {
    ApiError {
        status: 503,
        code: "ServiceUnavailable".into(),
        message: "ringside is shutting down.".into(),
    }
}

/// `@odata.context` as Graph writes it: the entity set, the navigation, or the returned type.
fn context_of(rest: &[&str], body: &Value) -> String {
    if body.get("value").is_some() {
        return match rest.get(3) {
            Some(nav) => format!(
                "communications/calls('{}')/{}",
                rest.get(2).unwrap_or(&""),
                nav
            ),
            None => "communications/calls".into(),
        };
    }
    match body.get("@odata.type").and_then(Value::as_str) {
        Some("#microsoft.graph.call") | None => "communications/calls/$entity".into(),
        Some(t) => t
            .trim_start_matches('#')
            .trim_start_matches("microsoft.graph.")
            .to_string(),
    }
}

fn p<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    parse(body).map_err(bad)
}

/// The routing table: Graph path and method → engine command (reference §0).
/// A call placed as a resource account (`source.identity.applicationInstance`, needed to
/// call phone numbers) must name one of the calling app's own (reference §7.1).
fn resource_account_check(
    shared: &Shared,
    app: &engine::AppCtx,
    c: &graph::requests::CreateCall,
) -> Result<(), ApiError> {
    let Some(id) = c
        .source
        .as_ref()
        .and_then(|s| s.identity.application_instance.as_ref())
        .and_then(|i| i.id.as_deref())
    else {
        return Ok(());
    };
    let config = shared.config.read().expect("config");
    match config.instance(id) {
        Some(i) if i.app.eq_ignore_ascii_case(&app.app_id) => Ok(()),
        Some(_) => Err(ApiError {
            status: 403,
            code: "Forbidden".into(),
            message: format!(
                "Application instance {id} belongs to another application than the caller's."
            ),
        }),
        None => Err(bad(format!(
            "source.identity.applicationInstance {id} is not a resource account of this application."
        ))),
    }
}

fn route(method: &Method, rest: &[&str], path: &str, body: &[u8]) -> Result<Target, ApiError> {
    let nf = || not_found_route(method, path);
    let na = || method_not_allowed(method, path);
    let (root, tail) = match rest {
        [c, "calls", tail @ ..]
            if c.eq_ignore_ascii_case("communications") || c.eq_ignore_ascii_case("app") =>
        {
            ("calls", tail)
        }
        [c, m, tail @ ..]
            if (c.eq_ignore_ascii_case("communications") || c.eq_ignore_ascii_case("app"))
                && m.eq_ignore_ascii_case("onlineMeetings") =>
        {
            ("meetings", tail)
        }
        _ => return Err(nf()),
    };
    let get = *method == Method::GET;
    let post = *method == Method::POST;
    let del = *method == Method::DELETE;
    let patch = *method == Method::PATCH;
    let e = |call_id: Option<&str>, cmd: Command| {
        Ok(Target::Engine {
            call_id: call_id.map(str::to_string),
            cmd,
            count: false,
        })
    };
    let count = |call_id: Option<&str>, cmd: Command| {
        Ok(Target::Engine {
            call_id: call_id.map(str::to_string),
            cmd,
            count: true,
        })
    };
    if root == "meetings" {
        return match tail {
            [] if post => Ok(Target::CreateMeeting(p::<Value>(body)?)),
            [id] if get => Ok(Target::GetMeeting(id.to_string())),
            [] | [_] => Err(na()),
            _ => Err(nf()),
        };
    }
    match tail {
        [] if get => e(None, Command::ListCalls),
        [] if post => e(None, Command::CreateCall(Box::new(p(body)?))),
        [] => Err(na()),
        ["$count"] if get => count(None, Command::ListCalls),
        [a] if action_name(a) == "logteleconferencedevicequality" => {
            if !post {
                return Err(na());
            }
            let q: rq::LogTeleconferenceDeviceQuality = p(body)?;
            q.validate().map_err(bad)?;
            Ok(Target::LogQuality(q.quality.unwrap_or_default()))
        }
        [id] if get => e(Some(id), Command::GetCall),
        [id] if del => e(Some(id), Command::DeleteCall),
        [_] => Err(na()),
        [id, nav] => {
            let a = action_name(nav);
            let id = Some(*id);
            match a.as_str() {
                "participants" if get => e(id, Command::ListParticipants),
                "operations" if get => e(id, Command::ListOperations),
                "audioroutinggroups" if get => e(id, Command::ListRoutingGroups),
                "audioroutinggroups" if post => e(id, Command::CreateRoutingGroup(p(body)?)),
                "contentsharingsessions" if get => e(id, Command::ListContentSharingSessions),
                "participants" | "operations" | "audioroutinggroups" | "contentsharingsessions" => {
                    Err(na())
                }
                _ if !post => Err(na()),
                "answer" => e(id, Command::Answer(p(body)?)),
                "reject" => e(id, Command::Reject(p(body)?)),
                "redirect" => e(id, Command::Redirect(p(body)?)),
                "transfer" => e(id, Command::Transfer(Box::new(p(body)?))),
                "keepalive" => e(id, Command::KeepAlive),
                "playprompt" => e(id, Command::PlayPrompt(p(body)?)),
                "recordresponse" | "record" => e(id, Command::RecordResponse(p(body)?)),
                "cancelmediaprocessing" => e(id, Command::CancelMediaProcessing(p(body)?)),
                "subscribetotone" => e(id, Command::SubscribeToTone(p(body)?)),
                "senddtmftones" => e(id, Command::SendDtmfTones(p(body)?)),
                "mute" => e(id, Command::Mute(p(body)?)),
                "unmute" => e(id, Command::Unmute(p(body)?)),
                "changescreensharingrole" => e(id, Command::ChangeScreenSharingRole(p(body)?)),
                "updaterecordingstatus" => e(id, Command::UpdateRecordingStatus(p(body)?)),
                "startrecording" => e(id, Command::StartRecording(p(body)?)),
                "stoprecording" => e(id, Command::StopRecording(p(body)?)),
                "starttranscription" => e(id, Command::StartTranscription(p(body)?)),
                "stoptranscription" => e(id, Command::StopTranscription(p(body)?)),
                "addlargegalleryview" => e(id, Command::AddLargeGalleryView(p(body)?)),
                _ => Err(nf()),
            }
        }
        [id, nav, "$count"] if get => {
            let cmd = match action_name(nav).as_str() {
                "participants" => Command::ListParticipants,
                "operations" => Command::ListOperations,
                "audioroutinggroups" => Command::ListRoutingGroups,
                "contentsharingsessions" => Command::ListContentSharingSessions,
                _ => return Err(nf()),
            };
            count(Some(id), cmd)
        }
        [id, nav, item] => {
            let id = Some(*id);
            let item = item.to_string();
            match (action_name(nav).as_str(), action_name(&item).as_str()) {
                ("participants", "invite") if post => e(id, Command::Invite(p(body)?)),
                ("participants", "muteall") if post => e(id, Command::MuteAll(p(body)?)),
                ("participants", "invite" | "muteall") => Err(na()),
                ("participants", _) if get => e(id, Command::GetParticipant(item)),
                ("participants", _) if del => e(id, Command::DeleteParticipant(item)),
                ("operations", _) if get => e(id, Command::GetOperation(item)),
                ("audioroutinggroups", _) if get => e(id, Command::GetRoutingGroup(item)),
                ("audioroutinggroups", _) if patch => {
                    e(id, Command::UpdateRoutingGroup(item, p(body)?))
                }
                ("audioroutinggroups", _) if del => e(id, Command::DeleteRoutingGroup(item)),
                ("contentsharingsessions", _) if get => {
                    e(id, Command::GetContentSharingSession(item))
                }
                (
                    "participants" | "operations" | "audioroutinggroups" | "contentsharingsessions",
                    _,
                ) => Err(na()),
                _ => Err(nf()),
            }
        }
        [id, nav, pid, action] if action_name(nav) == "participants" => {
            if !post {
                return Err(na());
            }
            let id = Some(*id);
            let pid = pid.to_string();
            match action_name(action).as_str() {
                "mute" => e(id, Command::MuteParticipant(pid, p(body)?)),
                "startholdmusic" => e(id, Command::StartHoldMusic(pid, p(body)?)),
                "stopholdmusic" => e(id, Command::StopHoldMusic(pid, p(body)?)),
                _ => Err(nf()),
            }
        }
        _ => Err(nf()),
    }
}

/// Fuzzing entry: every request parser behind the routing table, fed arbitrary bytes.
pub fn fuzz_route(method_idx: u8, path: &str, body: &[u8]) {
    let method =
        [Method::GET, Method::POST, Method::DELETE, Method::PATCH][method_idx as usize % 4].clone();
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode)
        .collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let _ = route(&method, &s, path, body);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(method: Method, path: &str, body: &str) -> Result<Target, ApiError> {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        route(&method, &segs, path, body.as_bytes())
    }

    #[test]
    fn action_segments_are_case_insensitive_and_may_be_qualified() {
        for a in [
            "StartRecording",
            "microsoft.graph.StartRecording",
            "MICROSOFT.GRAPH.startrecording",
        ] {
            let t = r(Method::POST, &format!("communications/calls/c1/{a}"), "").unwrap();
            assert!(
                matches!(
                    t,
                    Target::Engine {
                        cmd: Command::StartRecording(_),
                        ..
                    }
                ),
                "{a}"
            );
        }
        assert!(matches!(
            r(
                Method::POST,
                "app/calls/c1/participants/invite",
                r#"{"participants":[]}"#
            )
            .unwrap(),
            Target::Engine {
                cmd: Command::Invite(_),
                ..
            }
        ));
    }

    #[test]
    fn wrong_methods_and_unknown_paths_are_named() {
        assert_eq!(
            r(Method::PUT, "communications/calls", "")
                .err()
                .unwrap()
                .status,
            405
        );
        assert_eq!(
            r(Method::POST, "communications/calls/c1/dance", "")
                .err()
                .unwrap()
                .status,
            404
        );
        assert_eq!(
            r(Method::GET, "communications/calls/c1/answer", "")
                .err()
                .unwrap()
                .status,
            405
        );
    }

    /// The same property as `fuzz/fuzz_targets/graph_request.rs`, run on every test pass:
    /// arbitrary paths and bodies never panic the routing table or the body parsers.
    #[test]
    fn random_requests_never_panic_the_parsers() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let words = [
            "communications",
            "calls",
            "app",
            "c1",
            "participants",
            "invite",
            "p1",
            "mute",
            "startHoldMusic",
            "operations",
            "audioRoutingGroups",
            "$count",
            "microsoft.graph.StartRecording",
            "playPrompt",
            "recordResponse",
            "answer",
            "redirect",
            "transfer",
            "logTeleconferenceDeviceQuality",
            "onlineMeetings",
            "%ZZ",
            "..",
            "",
        ];
        let bodies = [
            r##"{"prompts":[{"@odata.type":"#microsoft.graph.mediaPrompt","mediaInfo":{"uri":"https://x/a.wav"}}]}"##,
            r##"{"targets":[{"identity":{"user":{"id":"u"}}}],"mediaConfig":{"@odata.type":"x"},"callbackUri":"https://a/b","requestedModalities":["audio"]}"##,
            r##"{"participants":[{"identity":{}}],"clientContext":7}"##,
            r##"{"transferTarget":{"identity":{"phone":{"id":"+1"}}},"transferee":{"identity":null}}"##,
            r##"{"quality":{"mediaQualityList":[1,2]}}"##,
            r##"{"tones":["tone1",3,null],"stopTones":["#"],"status":5}"##,
        ];
        for _ in 0..20_000 {
            let n = rng.random_range(0..7);
            let mut path: Vec<&str> = (0..n)
                .map(|_| words[rng.random_range(0..words.len())])
                .collect();
            if rng.random_bool(0.8) {
                path.splice(0..0, ["communications", "calls"]);
            }
            let mut body = bodies[rng.random_range(0..bodies.len())]
                .as_bytes()
                .to_vec();
            for _ in 0..rng.random_range(0..4) {
                let i = rng.random_range(0..body.len());
                body[i] = rng.random();
            }
            if rng.random_bool(0.2) {
                body.truncate(rng.random_range(0..body.len()));
            }
            fuzz_route(rng.random(), &path.join("/"), &body);
        }
    }

    #[test]
    fn bad_bodies_name_the_field() {
        let e = r(
            Method::POST,
            "communications/calls/c1/playPrompt",
            r#"{"prompts":"x"}"#,
        )
        .err()
        .unwrap();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("prompts"), "{}", e.message);
        let e = r(Method::POST, "communications/calls", "{not json")
            .err()
            .unwrap();
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
    }
}
