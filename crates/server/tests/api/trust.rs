//! Entra-shaped tokens, signed callbacks, key rotation and hashed secrets (issue #5).

use crate::common::*;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Value, json};

/// Verify a JWT the way a bot would: fetch the OIDC document, then the JWKS, pick the key by kid.
async fn verify(h: &Harness, oidc_path: &str, token: &str, aud: Option<&str>) -> Value {
    let oidc: Value = h
        .client
        .get(format!("{}{oidc_path}", h.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwks: Value = h
        .client
        .get(oidc["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kid = decode_header(token).unwrap().kid.expect("kid");
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("key in JWKS");
    let key =
        DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap())
            .unwrap();
    let mut v = Validation::new(Algorithm::RS256);
    match aud {
        Some(a) => v.set_audience(&[a]),
        None => v.validate_aud = false,
    }
    v.set_issuer(&[oidc["issuer"].as_str().unwrap()]);
    decode::<Value>(token, &key, &v)
        .expect("token verifies against the published keys")
        .claims
}

#[tokio::test]
async fn access_tokens_are_rs256_and_verify_against_the_tenant_jwks() {
    let h = Harness::start().await;
    let t = h.token().await;
    let header = decode_header(&t).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    let claims = verify(
        &h,
        &format!("/{TENANT}/v2.0/.well-known/openid-configuration"),
        &t,
        Some("https://graph.microsoft.com"),
    )
    .await;
    assert_eq!(claims["tid"], TENANT);
    assert_eq!(claims["appid"], APP);
    assert_eq!(claims["azp"], APP);
    assert!(
        claims["roles"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "Calls.Initiate.All")
    );
    let oidc: Value = h
        .client
        .get(format!(
            "{}/{TENANT}/v2.0/.well-known/openid-configuration",
            h.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        oidc["token_endpoint"],
        format!("{}/{TENANT}/oauth2/v2.0/token", h.base)
    );
}

#[tokio::test]
async fn every_notification_carries_a_token_the_bot_can_verify() {
    let h = Harness::start().await;
    let id = h.call_user(ALICE).await;
    let notes = h.until_state(&id, "established").await;
    for n in &notes {
        let auth = n
            .auth
            .as_deref()
            .expect("Authorization header on the callback");
        let token = auth.strip_prefix("Bearer ").expect("Bearer token");
        let claims = verify(&h, "/.well-known/openid-configuration", token, Some(APP)).await;
        assert_eq!(claims["tid"], TENANT);
        assert_eq!(claims["iss"], h.base.as_str());
        let life = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
        assert!(life <= 600, "short-lived: {life} s");
    }
}

#[tokio::test]
async fn rotated_keys_keep_earlier_tokens_valid_until_the_next_rotation() {
    let h = Harness::start().await;
    let before = h.token().await;
    let (s, v) = h.admin("POST", "/signing-keys/rotate", None).await;
    assert_eq!(s, 201, "{v}");
    let jwks: Value = h
        .client
        .get(format!("{}/discovery/keys", h.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        jwks["keys"].as_array().unwrap().len(),
        2,
        "current and previous key"
    );
    let (s, _, _) = h
        .req_as(&before, "GET", "/v1.0/communications/calls", None)
        .await;
    assert_eq!(s, 200, "a token signed with the previous key still works");
    let after = h.app_token(TENANT, APP, SECRET).await;
    assert_ne!(
        decode_header(&after).unwrap().kid,
        decode_header(&before).unwrap().kid
    );
    h.admin("POST", "/signing-keys/rotate", None).await;
    let (s, v, _) = h
        .req_as(&before, "GET", "/v1.0/communications/calls", None)
        .await;
    assert_eq!(s, 401, "two rotations retire the key: {v}");
}

#[tokio::test]
async fn secrets_are_kept_hashed_and_can_be_reset() {
    let h = Harness::start().await;
    let text = std::fs::read_to_string(h.dir.join("ringside.toml")).unwrap();
    assert!(
        !text.contains(SECRET),
        "the clear secret was replaced by its hash"
    );
    assert!(text.contains("secret_hash = \"sha256$"));
    assert_eq!(h.token_for(TENANT, APP, SECRET).await.status(), 200);
    let (s, v) = h.admin("POST", &format!("/apps/{APP}/secret"), None).await;
    assert_eq!(s, 201);
    let new = v["secret"].as_str().unwrap().to_string();
    assert_eq!(
        h.token_for(TENANT, APP, SECRET).await.status(),
        401,
        "the old secret is gone"
    );
    assert_eq!(h.token_for(TENANT, APP, &new).await.status(), 200);
    let (s, v) = h
        .admin(
            "POST",
            "/apps",
            Some(json!({"tenant": TENANT, "name": "New"})),
        )
        .await;
    assert_eq!(s, 201);
    let (id, secret) = (v["id"].as_str().unwrap(), v["secret"].as_str().unwrap());
    assert_eq!(h.token_for(TENANT, id, secret).await.status(), 200);
    assert!(
        !std::fs::read_to_string(h.dir.join("ringside.toml"))
            .unwrap()
            .contains(secret)
    );
}

#[tokio::test]
async fn forged_tokens_are_refused() {
    let h = Harness::start().await;
    let good = h.token().await;
    let parts: Vec<&str> = good.split('.').collect();
    // Same header and signature, a payload claiming another tenant.
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["tid"] = json!(TENANT2);
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        parts[2]
    );
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    for t in [forged, none] {
        let (s, v, _) = h
            .req_as(&t, "GET", "/v1.0/communications/calls", None)
            .await;
        assert_eq!(s, 401, "{v}");
    }
    // A deleted app's tokens stop working at once.
    let t3 = h.app_token(TENANT2, APP3, "secret-three").await;
    let (s, _) = h.admin("DELETE", &format!("/apps/{APP3}"), None).await;
    assert_eq!(s, 204);
    let (s, v, _) = h
        .req_as(&t3, "GET", "/v1.0/communications/calls", None)
        .await;
    assert_eq!(s, 401);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no longer exists")
    );
}

#[tokio::test]
async fn each_method_checks_the_permissions_of_the_token() {
    let h = Harness::start().await;
    let (s, v) = h.admin("POST", "/apps", Some(json!({"tenant": TENANT, "name": "P2P only", "permissions": ["Calls.Initiate.All"]}))).await;
    assert_eq!(s, 201);
    let t = h
        .app_token(
            TENANT,
            v["id"].as_str().unwrap(),
            v["secret"].as_str().unwrap(),
        )
        .await;
    let (s, call, _) = h
        .req_as(
            &t,
            "POST",
            "/v1.0/communications/calls",
            Some(p2p_body(&h.callback(), ALICE)),
        )
        .await;
    assert_eq!(s, 201, "P2P needs Calls.Initiate.All only: {call}");
    let id = call["id"].as_str().unwrap().to_string();
    h.until_state(&id, "established").await;
    let forbidden = [
        (
            "POST",
            format!("/v1.0/communications/calls/{id}/participants/invite"),
            json!({"participants": [{"identity": {"user": {"id": GINA}}}]}),
            "Calls.InitiateGroupCall.All",
        ),
        (
            "POST",
            format!("/beta/communications/calls/{id}/startRecording"),
            json!({}),
            "Calls.JoinGroupCall.All",
        ),
        (
            "POST",
            "/v1.0/communications/calls".to_string(),
            {
                let mut b = p2p_body(&h.callback(), ALICE);
                b["mediaConfig"] =
                    json!({"@odata.type": "#microsoft.graph.appHostedMediaConfig", "blob": "{}"});
                b
            },
            "Calls.AccessMedia.All",
        ),
        (
            "POST",
            "/v1.0/communications/calls".to_string(),
            json!({
                "callbackUri": h.callback(), "requestedModalities": ["audio"], "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
                "chatInfo": {"threadId": "19:meeting_x@thread.v2"}, "meetingInfo": {"@odata.type": "#microsoft.graph.organizerMeetingInfo", "organizer": {"user": {"id": "o"}}},
            }),
            "Calls.JoinGroupCall.All",
        ),
    ];
    for (m, path, body, perm) in forbidden {
        let (s, v, _) = h.req_as(&t, m, &path, Some(body)).await;
        assert_eq!(s, 403, "{path}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(perm),
            "{path}: {v}"
        );
    }
    let (s, _, _) = h.req_as(&t, "POST", &format!("/v1.0/communications/calls/{id}/playPrompt"), Some(json!({"prompts": [{"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": {"uri": format!("{}/prompt/100.wav", h.hooks.url)}}]}))).await;
    assert_eq!(s, 200, "in-call media actions are authorised by the create");
}

#[tokio::test]
async fn requests_over_the_app_rate_get_429_with_retry_after() {
    let h = Harness::start_with("rate_per_app = 2.0\nburst_per_app = 3.0").await;
    let t = h.token().await;
    let mut statuses = vec![];
    let mut retry = None;
    for _ in 0..6 {
        let r = h
            .client
            .get(format!("{}/v1.0/communications/calls", h.base))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "TooManyRequests");
        }
    }
    assert_eq!(&statuses[..3], &[200, 200, 200]);
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(retry.unwrap().parse::<u64>().unwrap() >= 1);
    // Another app of another tenant is not affected.
    let other = h.app_token(TENANT2, APP3, "secret-three").await;
    let (s, _, _) = h
        .req_as(&other, "GET", "/v1.0/communications/calls", None)
        .await;
    assert_eq!(s, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (s, _, _) = h
        .req_as(&t, "GET", "/v1.0/communications/calls", None)
        .await;
    assert_eq!(s, 200, "the budget refills");
}

#[tokio::test]
async fn https_serves_the_token_endpoint_with_a_generated_dev_certificate() {
    let h = Harness::start_with("https_listen = \"127.0.0.1:0\"").await;
    let port = h.running.https_addr.expect("https listener").port();
    let cert_path = h
        .running
        .tls_generated
        .clone()
        .expect("a dev certificate was generated");
    assert!(cert_path.starts_with(&h.dir));
    let pem = std::fs::read(&cert_path).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .build()
        .unwrap();
    let base = format!("https://localhost:{port}");
    let oidc: Value = client
        .get(format!(
            "{base}/{TENANT}/v2.0/.well-known/openid-configuration"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        oidc["token_endpoint"],
        format!("{base}/{TENANT}/oauth2/v2.0/token")
    );
    let tok: Value = client
        .post(oidc["token_endpoint"].as_str().unwrap())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", APP),
            ("client_secret", SECRET),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let t = tok["access_token"].as_str().unwrap();
    let r = client
        .post(format!("{base}/v1.0/communications/calls"))
        .bearer_auth(t)
        .json(&p2p_body(&h.callback(), ALICE))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // Plain HTTP stays available on the loopback listener.
    let (s, _, _) = h.req_as(t, "GET", "/v1.0/communications/calls", None).await;
    assert_eq!(s, 200);
    // An untrusting client is refused at the handshake, and the server keeps serving.
    assert!(
        reqwest::Client::new()
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_err()
    );
    assert!(
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
}

#[tokio::test]
async fn production_mode_refuses_callbacks_and_prompts_inside_the_network() {
    let h = Harness::start_with("dev_mode = false").await;
    let cases = [
        ("http://127.0.0.1:9/cb", "https"),
        ("https://127.0.0.1:9/cb", "loopback"),
        ("https://169.254.169.254/latest", "metadata"),
        ("https://10.1.2.3/cb", "private"),
        ("https://[fe80::1]/cb", "link-local"),
    ];
    for (cb, why) in cases {
        let (s, v, _) = h
            .req(
                "POST",
                "/v1.0/communications/calls",
                Some(p2p_body(cb, ALICE)),
            )
            .await;
        assert_eq!(s, 400, "{cb}: {v}");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains("callbackUri") && m.contains(why), "{cb}: {m}");
    }
    let (s, v) = h
        .admin(
            "PATCH",
            &format!("/apps/{APP}"),
            Some(json!({"webhook": "https://192.168.1.10/hook"})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let (_, list, _) = h.req("GET", "/v1.0/communications/calls", None).await;
    assert_eq!(
        list["value"].as_array().unwrap().len(),
        0,
        "nothing was created"
    );
}

#[tokio::test]
async fn allow_listed_hosts_work_and_redirects_into_the_network_are_refused() {
    let h = Harness::start_with("dev_mode = false\noutbound_allow = [\"127.0.0.1\"]").await;
    let id = h.call_user(ALICE).await;
    h.until_state(&id, "established").await;
    let body = json!({"prompts": [{"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": {"uri": format!("{}/redirect-to-metadata", h.hooks.url)}}]});
    let (s, v, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{id}/playPrompt"),
            Some(body),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let op = v["id"].as_str().unwrap().to_string();
    let notes = h
        .until(&id, "prompt refused", |n| n.resource.ends_with(&op))
        .await;
    let done = &notes.last().unwrap().data;
    assert_eq!(done["status"], "failed");
    assert!(
        done["resultInfo"]["message"]
            .as_str()
            .unwrap()
            .contains("redirect refused"),
        "{done}"
    );
}

/// What MSAL's certificate credential sends: a JWT signed with the certificate's key,
/// `x5t` = its SHA-1 thumbprint, aud = the token endpoint.
fn client_assertion(key_pem: &str, cert_der: &[u8], app: &str, aud: &str, exp_in: i64) -> String {
    use sha1_thumb::thumb;
    let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
    header.x5t = Some(thumb(cert_der));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims =
        json!({"aud": aud, "iss": app, "sub": app, "jti": "j1", "nbf": now, "exp": now + exp_in});
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

mod sha1_thumb {
    use base64::Engine as _;
    pub fn thumb(der: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der).as_ref(),
        )
    }
}

#[tokio::test]
async fn apps_authenticate_with_a_certificate_assertion() {
    let h = Harness::start().await;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["bot.example.com".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (s, v) = h
        .admin(
            "POST",
            "/apps",
            Some(json!({"tenant": TENANT, "name": "Cert bot", "certificates": [cert.pem()]})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let app = v["id"].as_str().unwrap().to_string();
    let endpoint = format!("{}/{TENANT}/oauth2/v2.0/token", h.base);
    let post = |assertion: String| {
        let (c, e, a) = (h.client.clone(), endpoint.clone(), app.clone());
        async move {
            c.post(&e)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", a.as_str()),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", assertion.as_str()),
                    ("scope", "https://graph.microsoft.com/.default"),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let r = post(client_assertion(
        &key.serialize_pem(),
        cert.der(),
        &app,
        &endpoint,
        300,
    ))
    .await;
    assert_eq!(r.status(), 200);
    let tok: Value = r.json().await.unwrap();
    let (s, _, _) = h
        .req_as(
            tok["access_token"].as_str().unwrap(),
            "GET",
            "/v1.0/communications/calls",
            None,
        )
        .await;
    assert_eq!(s, 200);
    // MSAL for Python pads the thumbprint with `=` (as Entra accepts): so does ringside.
    let padded = client_assertion(&key.serialize_pem(), cert.der(), &app, &endpoint, 300);
    let (h64, rest) = padded.split_once('.').unwrap();
    let mut header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(h64)
            .unwrap(),
    )
    .unwrap();
    header["x5t"] = format!("{}=", header["x5t"].as_str().unwrap()).into();
    let resigned = {
        let h2 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header.to_string());
        let payload = rest.split('.').next().unwrap();
        let msg = format!("{h2}.{payload}");
        let key_pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(&key.serialize_der()).unwrap();
        let mut sig = vec![0; key_pair.public_modulus_len()];
        key_pair
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                msg.as_bytes(),
                &mut sig,
            )
            .unwrap();
        format!(
            "{msg}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig)
        )
    };
    assert!(resigned.split('.').next().unwrap() != h64);
    assert_eq!(
        post(resigned).await.status(),
        200,
        "a padded x5t is the same thumbprint"
    );
    // Wrong audience, expired, or signed by another key: refused.
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    for (assertion, why) in [
        (
            client_assertion(
                &key.serialize_pem(),
                cert.der(),
                &app,
                "https://elsewhere/token",
                300,
            ),
            "aud",
        ),
        (
            client_assertion(&key.serialize_pem(), cert.der(), &app, &endpoint, -600),
            "expired",
        ),
        (
            client_assertion(&other.serialize_pem(), cert.der(), &app, &endpoint, 300),
            "signature",
        ),
    ] {
        let r = post(assertion).await;
        assert_eq!(r.status(), 401);
        let v: Value = r.json().await.unwrap();
        assert!(
            v["error_description"].as_str().unwrap().contains(why),
            "{v}"
        );
    }
}

#[tokio::test]
async fn loopback_anonymous_app_only_in_dev_mode() {
    let h = Harness::start_with(&format!("loopback_anonymous_app = \"{APP}\"")).await;
    let r = h
        .client
        .get(format!("{}/v1.0/communications/calls", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "dev mode: loopback without a token acts as the configured app"
    );
    let prod = Harness::start_with(&format!(
        "loopback_anonymous_app = \"{APP}\"\ndev_mode = false"
    ))
    .await;
    let r = prod
        .client
        .get(format!("{}/v1.0/communications/calls", prod.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "never outside dev mode");
}

#[tokio::test]
async fn callbacks_after_a_rotation_are_signed_with_the_new_key() {
    let h = Harness::start().await;
    let a = h.call_user(ALICE).await;
    let notes = h.until_state(&a, "established").await;
    let kid_of = |n: &Note| {
        decode_header(n.auth.as_deref().unwrap().strip_prefix("Bearer ").unwrap())
            .unwrap()
            .kid
            .unwrap()
    };
    let old = kid_of(&notes[0]);
    h.admin("POST", "/signing-keys/rotate", None).await;
    let (_, v) = h.admin("POST", "/signing-keys/rotate", None).await;
    let fresh = h.app_token(TENANT, APP, SECRET).await;
    let (s, call, _) = h
        .req_as(
            &fresh,
            "POST",
            "/v1.0/communications/calls",
            Some(p2p_body(&h.callback(), ALICE)),
        )
        .await;
    assert_eq!(s, 201);
    let b = call["id"].as_str().unwrap().to_string();
    let notes = h.until_state(&b, "established").await;
    assert!(
        notes
            .iter()
            .all(|n| kid_of(n) == v["kid"].as_str().unwrap()),
        "signed with the current key, not {old}"
    );
}

#[tokio::test]
async fn a_used_token_with_a_tampered_payload_is_refused() {
    let h = Harness::start().await;
    let good = h.token().await;
    let (s, _, _) = h
        .req_as(&good, "GET", "/v1.0/communications/calls", None)
        .await;
    assert_eq!(s, 200);
    let parts: Vec<&str> = good.split('.').collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["roles"] = json!(["Calls.Everything"]);
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        parts[2]
    );
    let (s, _, _) = h
        .req_as(&tampered, "GET", "/v1.0/communications/calls", None)
        .await;
    assert_eq!(
        s, 401,
        "the cache of verified tokens must not accept a changed payload"
    );
}

#[tokio::test]
async fn tokens_for_another_api_and_callbacks_to_ringside_itself_are_refused() {
    let h = Harness::start().await;
    let r = h
        .client
        .post(format!("{}/{TENANT}/oauth2/v2.0/token", h.base))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", APP),
            ("client_secret", SECRET),
            ("scope", "api://payroll.example/.default"),
        ])
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    let (s, e, _) = h
        .req_as(
            v["access_token"].as_str().unwrap(),
            "GET",
            "/v1.0/communications/calls",
            None,
        )
        .await;
    assert_eq!(s, 401, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("audience"));
    // kiota without scopes asks for the host it talks to: that audience is ringside's.
    let r = h
        .client
        .post(format!("{}/{TENANT}/oauth2/v2.0/token", h.base))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", APP),
            ("client_secret", SECRET),
            ("scope", "http://127.0.0.1/.default"),
        ])
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    let (s, _, _) = h
        .req_as(
            v["access_token"].as_str().unwrap(),
            "GET",
            "/v1.0/communications/calls",
            None,
        )
        .await;
    assert_eq!(s, 200);
    // A callbackUri on ringside's own listener would make it notify itself.
    let (s, v, _) = h
        .req(
            "POST",
            "/v1.0/communications/calls",
            Some(p2p_body(
                &format!("{}/v1.0/communications/calls", h.base),
                ALICE,
            )),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ringside itself")
    );
}

#[tokio::test]
async fn tokens_not_yet_valid_are_refused() {
    let ring = identity::KeyRing::ephemeral();
    let far = 4_000_000_000u64;
    let c = identity::Claims {
        iss: "i".into(),
        aud: "a".into(),
        tid: "t".into(),
        appid: "x".into(),
        azp: "x".into(),
        roles: vec![],
        iat: far - 10,
        nbf: far - 10,
        exp: far,
        idtyp: "app".into(),
    };
    let e = ring.validate(&ring.sign(&c)).unwrap_err();
    assert!(e.contains("not yet valid"), "{e}");
}
