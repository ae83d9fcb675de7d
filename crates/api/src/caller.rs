//! Who is calling a Graph route: the app and roles of its bearer token (or, in dev mode, the
//! loopback app), and whether its app and tenant have requests left in their budgets.

use crate::guard;
use crate::plumbing::Via;
use crate::state::Api;
use axum::http::HeaderMap;
use engine::{ApiError, AppCtx};
use node::Node;

/// Development convenience: in dev mode, a request from loopback with no Authorization acts
/// as `server.loopback_anonymous_app` (e.g. for curl experiments and the security benchmark).
pub fn loopback_anonymous(
    shared: &Node,
    headers: &HeaderMap,
    via: Via,
) -> Option<(AppCtx, Vec<String>)> {
    if headers.contains_key("authorization") || !via.peer.ip().is_loopback() {
        return None;
    }
    let c = shared.directory.read();
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
pub fn authenticate(shared: &Node, headers: &HeaderMap) -> Result<(AppCtx, Vec<String>), ApiError> {
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
    let claims: std::sync::Arc<identity::Claims> =
        shared.keys.validate(token.trim()).map_err(|m| {
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
    let cfg = shared.directory.read();
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

/// Room in the app's and the tenant's request budgets, or 429 with `Retry-After`.
pub fn throttle(shared: &Api, app: &AppCtx) -> Result<(), ApiError> {
    let c = shared.node.directory.read();
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
    Ok(())
}

/// The directory user a web phone request is from: a user token the admin API minted.
pub fn authenticate_user(shared: &Node, headers: &HeaderMap) -> Result<directory::User, ApiError> {
    let unauthorized = |m: &str| ApiError {
        status: 401,
        code: "InvalidAuthenticationToken".into(),
        message: m.to_string(),
    };
    let token = crate::plumbing::bearer(headers);
    if token.is_empty() {
        return Err(unauthorized(
            "A user token is required (Authorization: Bearer).",
        ));
    }
    let claims: identity::UserClaims = shared.keys.validate_as(&token).map_err(|m| {
        tracing::info!(target: "audit", event = "auth_failure", reason = %m, kind = "user");
        unauthorized(&format!("{m} (a user token is required)"))
    })?;
    let user = shared.directory.read().user(&claims.sub).cloned();
    match user {
        Some(u) if u.tenant.eq_ignore_ascii_case(&claims.tid) => Ok(u),
        _ => Err(unauthorized("The user of this token no longer exists.")),
    }
}
