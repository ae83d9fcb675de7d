//! The HTTP surface: one file per area, all reached from the one dispatch in [`handle`].
//!
//! * [`graph`] — a Graph request from arrival to response; [`calls`] — the calls route table;
//!   [`meetings`] — online meetings; [`recordings`] — call and response recordings;
//! * [`oauth`] — the token endpoint, OIDC documents and JWKS;
//! * [`admin`] — the admin API, one small handler per resource;
//! * [`caller`] — who a Graph request is from, and its request budget; [`guard`] — outbound
//!   URLs and budgets; [`plumbing`] — request ids, the error envelope, bodies, paths;
//! * [`webphone`] — the web phone's signalling (browser offers, ringside answers);
//! * [`listen`] — serving the router over plain TCP or TLS.

pub mod admin;
pub mod caller;
pub mod calls;
pub mod cluster;
pub mod graph;
pub mod guard;
pub mod health;
pub mod listen;
pub mod meetings;
pub mod metrics;
pub mod oauth;
pub mod plumbing;
pub mod recordings;
pub mod state;
pub mod streams;
pub mod transcripts;
pub mod webphone;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use engine::Version;
use plumbing::{
    Ctx, Via, error_response, json_ok, not_found_route, public_base, request_base, stamp,
};
pub use state::Api;
use std::net::SocketAddr;
use std::sync::Arc;

/// The router for one listener (`tls` says whether it is the HTTPS one).
pub fn router(api: Arc<Api>, tls: bool) -> axum::Router {
    let node = api.node.clone();
    axum::Router::new()
        .route(
            "/media/streams/{call_id}",
            axum::routing::get(
                move |axum::extract::Path(call_id): axum::extract::Path<String>,
                      axum::extract::Query(q): axum::extract::Query<
                    std::collections::HashMap<String, String>,
                >,
                      ws: axum::extract::ws::WebSocketUpgrade| {
                    let node = node.clone();
                    async move { streams::upgrade(node, call_id, q.get("token").cloned(), ws).await }
                },
            ),
        )
        .fallback(
        move |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
              method,
              uri,
              headers,
              body| {
            let api = api.clone();
            async move { handle(&api, method, uri, headers, body, Via { tls, peer }).await }
        },
    )
}

/// Answer the requests other nodes of a cluster carry here ([`cluster`]), through [`handle`].
pub async fn serve_cluster(api: Arc<Api>) {
    let node = api.node.clone();
    let answer: cluster::Answer = Arc::new(move |method, uri, headers, body, via| {
        let api = api.clone();
        Box::pin(async move { handle(&api, method, uri, headers, body, via).await })
    });
    cluster::serve(node, answer).await;
}

/// Every request: its id, the area its path belongs to, and the Graph error envelope on
/// whatever fails.
pub async fn handle(
    api: &Api,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
    via: Via,
) -> Response {
    let began = std::time::Instant::now();
    let ctx = Ctx {
        request_id: uuid::Uuid::new_v4().to_string(),
        client_request_id: headers
            .get("client-request-id")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(128).collect()),
        app: Default::default(),
    };
    let path = uri.path().to_string();
    let forwarded_from = headers
        .get(node::cluster::FORWARDED_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let m = method.clone();
    let r = dispatch(api, &ctx, method, uri, headers, body, via).await;
    let segs = plumbing::segments(&path);
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    if !matches!(s.as_slice(), ["healthz"] | ["readyz"] | ["metrics"]) {
        let route = node::metrics::route_of(&s);
        let (status, took) = (r.status().as_u16(), began.elapsed());
        api.node
            .metrics
            .api_request(&route, m.as_str(), status, took);
        let call_id = s
            .iter()
            .position(|x| x.eq_ignore_ascii_case("calls"))
            .and_then(|i| s.get(i + 1))
            .copied();
        tracing::info!(
            target: "http",
            method = %m,
            route = %route,
            status,
            duration_ms = took.as_secs_f64() * 1000.0,
            request_id = %ctx.request_id,
            call_id = call_id.unwrap_or(""),
            app = ctx.app.get().map(String::as_str).unwrap_or(""),
            forwarded_from = forwarded_from.as_deref().unwrap_or(""),
            "request"
        );
    }
    r
}

/// The one dispatch: the area a path belongs to, and the Graph error envelope on whatever
/// fails.
async fn dispatch(
    api: &Api,
    ctx: &Ctx,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
    via: Via,
) -> Response {
    let shared = &api.node;
    let path = uri.path().to_string();
    let segs = plumbing::segments(&path);
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let base = || request_base(shared, &uri, &headers, via.tls);
    let public = public_base(shared, &uri, &headers, via.tls);
    let get = method == Method::GET;
    if let Some(owner) = cluster::owner_elsewhere(shared, &headers, &s).await {
        return cluster::forward(shared, ctx, &owner, &method, &uri, &headers, body, &via).await;
    }
    let body = match cluster::route_new_call(shared, &method, &headers, &s, body).await {
        cluster::Route::Here(b) => b,
        cluster::Route::Refused(e) => return error_response(ctx, &e),
        cluster::Route::To(owner, b) => {
            return cluster::forward(shared, ctx, &owner, &method, &uri, &headers, b, &via).await;
        }
    };
    let r = match s.as_slice() {
        ["healthz"] => Ok(health::healthz()),
        ["readyz"] => Ok(health::readyz(shared).await),
        ["metrics"] if get => metrics::metrics(shared, &headers, via).await,
        [ver, c, "calls"]
            if method == Method::POST
                && c.eq_ignore_ascii_case("communications")
                && (ver.eq_ignore_ascii_case("v1.0") || ver.eq_ignore_ascii_case("beta"))
                && shared.draining.load(std::sync::atomic::Ordering::Relaxed) =>
        {
            Err(engine::ApiError {
                status: 503,
                code: "ServiceUnavailable".into(),
                message: "This node is stopping and takes no new calls; send the request to another node.".into(),
            })
        }
        ["phone"] if get => Ok(webphone::page()),
        ["console"] if get => Ok(admin::console::page()),
        ["webrtc", rest @ ..] => {
            webphone::handle(shared, &method, rest, uri.query(), &headers, body).await
        }
        ["admin", rest @ ..] => {
            admin::handle(shared, &method, rest, uri.query(), &headers, body).await
        }
        [tenant, "oauth2", "v2.0", "token"] if method == Method::POST => {
            oauth::token(shared, tenant, &headers, body, &base()).await
        }
        [tenant, "v2.0", ".well-known", "openid-configuration"] if get => {
            Ok(oauth::openid(&base(), tenant))
        }
        [_, "discovery", "v2.0", "keys"] | ["discovery", "keys"] if get => {
            Ok(json_ok(&shared.keys.jwks()))
        }
        [".well-known", "openid-configuration"] if get => {
            Ok(oauth::callback_openid(shared, &public))
        }
        ["recordings", id] if get => recordings::recording(shared, id, &headers).await,
        ["l", "meetup-join", ..] if get => Ok(meetings::meetup_page(&path)),
        [ver, rest @ ..]
            if ver.eq_ignore_ascii_case("v1.0") || ver.eq_ignore_ascii_case("beta") =>
        {
            let ver = if ver.eq_ignore_ascii_case("beta") {
                Version::Beta
            } else {
                Version::V1
            };
            let r = graph::Request {
                ver,
                method: &method,
                rest,
                path: &path,
                headers: &headers,
                via,
                base: &public,
            };
            graph::handle(api, ctx, r, body).await
        }
        _ => Err(not_found_route(&method, &path)),
    };
    match r {
        Ok(resp) => stamp(ctx, resp),
        Err(e) => error_response(ctx, &e),
    }
}
