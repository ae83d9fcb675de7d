//! What stock clients (MSAL, azure-identity, the Node libraries) need from the token
//! endpoint and the URLs ringside names: Entra's error numbers, client_secret_basic, padded
//! certificate thumbprints, keys with x5t, a config file that keeps only what the user set,
//! and https URLs for https requests.

use crate::common::*;
use base64::Engine as _;
use serde_json::{Value, json};

async fn token_error(r: reqwest::Response) -> (u16, Value) {
    let s = r.status().as_u16();
    (s, r.json().await.unwrap())
}

fn assert_aadsts(v: &Value, error: &str, code: u64) {
    assert_eq!(v["error"], error, "{v}");
    assert_eq!(v["error_codes"], json!([code]), "{v}");
    let d = v["error_description"].as_str().unwrap();
    assert!(d.starts_with(&format!("AADSTS{code}: ")), "{d}");
    assert!(
        d.contains("Trace ID: ") && d.contains("Correlation ID: "),
        "{d}"
    );
}

#[tokio::test]
async fn token_errors_carry_the_aadsts_numbers_entra_uses() {
    let h = Harness::start().await;
    let (s, v) = token_error(h.token_for(TENANT, APP, "wrong").await).await;
    assert_eq!(s, 401);
    assert_aadsts(&v, "invalid_client", 7000215);
    let (s, v) = token_error(h.token_for(TENANT, "no-such-app", SECRET).await).await;
    assert_eq!(s, 401);
    assert_aadsts(&v, "invalid_client", 700016);
    let (s, v) = token_error(h.token_for(TENANT2, APP, SECRET).await).await;
    assert_eq!(s, 401, "an app gets tokens only in its own tenant");
    assert_aadsts(&v, "invalid_client", 700016);
    let endpoint = format!("{}/{TENANT}/oauth2/v2.0/token", h.base);
    for (form, status, error, code) in [
        (
            vec![("grant_type", "password"), ("client_id", APP)],
            400,
            "unsupported_grant_type",
            70003,
        ),
        (
            vec![("client_id", APP), ("client_secret", SECRET)],
            400,
            "invalid_request",
            900144,
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_secret", SECRET),
            ],
            400,
            "invalid_request",
            900144,
        ),
        (
            vec![("grant_type", "client_credentials"), ("client_id", APP)],
            401,
            "invalid_client",
            7000218,
        ),
    ] {
        let r = h.client.post(&endpoint).form(&form).send().await.unwrap();
        let (s, v) = token_error(r).await;
        assert_eq!(s, status, "{form:?}: {v}");
        assert_aadsts(&v, error, code);
    }
}

#[tokio::test]
async fn client_secret_basic_is_accepted_as_well_as_client_secret_post() {
    let h = Harness::start().await;
    let endpoint = format!("{}/{TENANT}/oauth2/v2.0/token", h.base);
    let form = [
        ("grant_type", "client_credentials"),
        ("scope", "https://graph.microsoft.com/.default"),
    ];
    let r = h
        .client
        .post(&endpoint)
        .basic_auth(APP, Some(SECRET))
        .form(&form)
        .send()
        .await
        .unwrap();
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
    assert_eq!(s, 200, "the token works");
    let r = h
        .client
        .post(&endpoint)
        .basic_auth(APP, Some("wrong"))
        .form(&form)
        .send()
        .await
        .unwrap();
    let (s, v) = token_error(r).await;
    assert_eq!(s, 401);
    assert_aadsts(&v, "invalid_client", 7000215);
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
    let methods = oidc["token_endpoint_auth_methods_supported"].to_string();
    assert!(methods.contains("client_secret_basic"), "{methods}");
}

#[tokio::test]
async fn published_keys_name_their_certificate_thumbprint() {
    let h = Harness::start().await;
    let jwks: Value = h
        .client
        .get(format!("{}/{TENANT}/discovery/v2.0/keys", h.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for k in jwks["keys"].as_array().unwrap() {
        let der = base64::engine::general_purpose::STANDARD
            .decode(k["x5c"][0].as_str().unwrap())
            .unwrap();
        let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &der);
        assert_eq!(
            k["x5t"],
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha1.as_ref()),
            "{k}"
        );
    }
}

#[tokio::test]
async fn an_admin_change_writes_back_only_what_the_user_set() {
    let h = Harness::start().await;
    let path = h.dir.join("ringside.toml");
    let before: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let (s, v) = h
        .admin(
            "POST",
            "/tenants",
            Some(json!({"id": "t-new", "name": "New"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let after: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        after["server"], before["server"],
        "the settings are as the user wrote them: no public_url, no defaults"
    );
    assert!(after["server"].get("public_url").is_none());
    assert_eq!(after["admin"], before["admin"]);
    let tenants = after["tenants"].as_array().unwrap();
    assert!(tenants.iter().any(|t| t["id"].as_str() == Some("t-new")));
}

#[tokio::test]
async fn without_a_public_url_https_requests_get_https_urls() {
    let h = Harness::start_with("https_listen = \"127.0.0.1:0\"").await;
    let port = h.running.https_addr.expect("https listener").port();
    let pem = std::fs::read(h.running.tls_generated.clone().expect("dev certificate")).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .build()
        .unwrap();
    let base = format!("https://localhost:{port}");
    let t = h.token().await;
    let r = client
        .post(format!("{base}/v1.0/communications/calls"))
        .bearer_auth(&t)
        .json(&p2p_body(&h.callback(), ALICE))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(&format!("{base}/v1.0/communications/calls/")),
        "{location}"
    );
    let v: Value = r.json().await.unwrap();
    let ctx = v["@odata.context"].as_str().unwrap();
    assert!(ctx.starts_with(&format!("{base}/v1.0/$metadata#")), "{ctx}");
    let oidc: Value = client
        .get(format!("{base}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(oidc["jwks_uri"], format!("{base}/discovery/keys"));
    // The issuer is the `iss` of the callback tokens, whichever way the document is read.
    assert_eq!(oidc["issuer"], h.base);
    // Plain HTTP requests still get http URLs.
    let (s, v, headers) = h
        .req_as(
            &t,
            "POST",
            "/v1.0/communications/calls",
            Some(p2p_body(&h.callback(), ALICE)),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let location = headers["location"].to_str().unwrap();
    assert!(
        location.starts_with(&format!("{}/v1.0/", h.base)),
        "{location}"
    );
}
