//! The identity endpoints, shaped like Entra ID's: the token endpoint (client credentials
//! with a secret or a certificate assertion), the OIDC documents and the JWKS.

use crate::plumbing::{json_ok, read_body};
use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use engine::ApiError;
use identity::Claims;
use node::{Node, now_ms};
use serde_json::json;

pub async fn token(
    shared: &Node,
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
            .directory
            .read()
            .app(&id)
            .filter(|a| a.tenant.eq_ignore_ascii_case(tenant))
            .cloned();
        let verdict = match &app {
            Some(a) => identity::verify_client_assertion(
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
    let cfg = shared.directory.read();
    let app = cfg
        .app(&id)
        .filter(|a| a.tenant.eq_ignore_ascii_case(tenant));
    let Some(app) = app.filter(|a| {
        a.secret_hash
            .as_deref()
            .is_some_and(|h| identity::verify_secret(h, &secret))
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
fn issue_token(shared: &Node, app: &directory::App, scope: Option<&str>, base: &str) -> Response {
    let now = now_ms() / 1000;
    let life = shared.directory.read().server.token_lifetime_seconds;
    let claims = Claims {
        iss: format!("{base}/{}/v2.0", app.tenant),
        aud: identity::audience_of_scope(scope),
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

/// The OIDC document for the tokens on ringside's callbacks (reference §8.3): bots point
/// their validator here instead of api.aps.skype.com.
pub fn callback_openid(shared: &Node) -> Response {
    let base = &shared.public_url;
    json_ok(&json!({
        "issuer": base,
        "jwks_uri": format!("{base}/discovery/keys"),
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post"],
    }))
}

pub fn openid(base: &str, tenant: &str) -> Response {
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
