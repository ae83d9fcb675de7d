//! The identity endpoints, shaped like Entra ID's: the token endpoint (client credentials
//! with a secret or a certificate assertion), the OIDC documents and the JWKS.

use crate::plumbing::{json_ok, read_body};
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use engine::ApiError;
use identity::Claims;
use node::{Node, now_ms};
use serde_json::json;

#[derive(serde::Deserialize)]
struct Form {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
    client_assertion: Option<String>,
    client_assertion_type: Option<String>,
}

/// A refused token request, as Entra words it: the OAuth error, the AADSTS number (in
/// `error_codes` and leading the description, where MSAL and azure-identity look).
struct Refusal {
    status: StatusCode,
    error: &'static str,
    aadsts: u32,
    description: String,
}

impl Refusal {
    fn new(
        status: StatusCode,
        error: &'static str,
        aadsts: u32,
        description: impl Into<String>,
    ) -> Refusal {
        Refusal {
            status,
            error,
            aadsts,
            description: description.into(),
        }
    }

    fn response(self) -> Response {
        let now = chrono::Utc::now();
        let (trace, correlation) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let stamp = now.format("%Y-%m-%d %H:%M:%SZ");
        let body = json!({
            "error": self.error,
            "error_description": format!(
                "AADSTS{}: {} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {stamp}",
                self.aadsts, self.description
            ),
            "error_codes": [self.aadsts],
            "timestamp": stamp.to_string(),
            "trace_id": trace.to_string(),
            "correlation_id": correlation.to_string(),
        });
        (
            self.status,
            [("content-type", "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}

const BAD: StatusCode = StatusCode::BAD_REQUEST;
const UNAUTHORIZED: StatusCode = StatusCode::UNAUTHORIZED;

/// `Authorization: Basic` client credentials (client_secret_basic, RFC 6749 §2.3.1: the id
/// and secret are form-encoded, then joined by a colon and base64-encoded).
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine as _;
    let h = headers.get("authorization")?.to_str().ok()?;
    let (scheme, b64) = h.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let (id, secret) = std::str::from_utf8(&raw).ok()?.split_once(':')?;
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .ok()
            .map(|c| c.into_owned())
    };
    Some((decode(id)?, decode(secret)?))
}

/// `POST /{tenant}/oauth2/v2.0/token`: client credentials with a secret (in the form or as
/// HTTP Basic) or a certificate assertion.
pub async fn token(
    shared: &Node,
    tenant: &str,
    headers: &HeaderMap,
    body: Body,
    base: &str,
) -> Result<Response, ApiError> {
    let bytes = read_body(shared, body).await?;
    Ok(match grant(shared, tenant, headers, &bytes, base) {
        Ok((app, scope)) => issue_token(shared, &app, scope.as_deref(), base),
        Err(r) => r.response(),
    })
}

/// The app a token request proves it is, and the scope it asks for.
fn grant(
    shared: &Node,
    tenant: &str,
    headers: &HeaderMap,
    bytes: &[u8],
    base: &str,
) -> Result<(directory::App, Option<String>), Refusal> {
    let Ok(mut form) = serde_urlencoded::from_bytes::<Form>(bytes) else {
        return Err(Refusal::new(
            BAD,
            "invalid_request",
            900144,
            "The request body must be application/x-www-form-urlencoded.",
        ));
    };
    match form.grant_type.as_deref() {
        Some("client_credentials") => {}
        None => {
            return Err(Refusal::new(
                BAD,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
            ));
        }
        Some(_) => {
            return Err(Refusal::new(
                BAD,
                "unsupported_grant_type",
                70003,
                "The app requested an unsupported grant type; only client_credentials is supported.",
            ));
        }
    }
    if let Some((id, secret)) = basic_credentials(headers) {
        if form.client_id.as_deref().is_some_and(|f| f != id) {
            return Err(Refusal::new(
                BAD,
                "invalid_request",
                900144,
                "client_id in the body and in the Authorization header differ.",
            ));
        }
        form.client_id = Some(id);
        form.client_secret.get_or_insert(secret);
    }
    let Some(id) = form.client_id.clone() else {
        return Err(Refusal::new(
            BAD,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        ));
    };
    let app = shared
        .directory
        .read()
        .app(&id)
        .filter(|a| a.tenant.eq_ignore_ascii_case(tenant))
        .cloned();
    let refused = |aadsts: u32, why: String| {
        tracing::info!(target: "audit", event = "token_refused", client_id = %id, tenant = %tenant, reason = %why);
        Refusal::new(UNAUTHORIZED, "invalid_client", aadsts, why)
    };
    let Some(app) = app else {
        return Err(refused(
            700016,
            format!(
                "Application with identifier '{id}' was not found in the directory '{tenant}'. The client id, secret or tenant is wrong."
            ),
        ));
    };
    let scope = form.scope.clone();
    if let Some(assertion) = &form.client_assertion {
        if form.client_assertion_type.as_deref()
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        {
            return Err(Refusal::new(
                BAD,
                "invalid_request",
                900144,
                "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer.",
            ));
        }
        let endpoint = format!("{base}/{tenant}/oauth2/v2.0/token");
        identity::verify_client_assertion(
            assertion,
            &app.id,
            &endpoint,
            &app.certificates,
            now_ms() / 1000,
        )
        .map_err(|why| refused(identity::assertion::aadsts(&why), why))?;
        return Ok((app, scope));
    }
    let Some(secret) = form.client_secret else {
        return Err(Refusal::new(
            UNAUTHORIZED,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        ));
    };
    let ok = app
        .secret_hash
        .as_deref()
        .is_some_and(|h| identity::verify_secret(h, &secret));
    if !ok {
        return Err(refused(
            7000215,
            format!(
                "Invalid client secret provided for app '{id}'. The client id, secret or tenant is wrong."
            ),
        ));
    }
    Ok((app, scope))
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
///
/// Its issuer is the `iss` of those tokens, which are minted with no request to follow:
/// the configured `public_url`, else ringside's HTTP address. The key set is named on the
/// scheme and host the document was asked for (`base`).
pub fn callback_openid(shared: &Node, base: &str) -> Response {
    json_ok(&json!({
        "issuer": shared.public_url,
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
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic", "private_key_jwt"],
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
