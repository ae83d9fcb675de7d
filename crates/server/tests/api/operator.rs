//! What an operator reads: `/metrics` in Prometheus text format, `/healthz` and `/readyz`.

use crate::common::*;
use serde_json::Value;

async fn scrape(h: &Harness) -> String {
    let r = h
        .client
        .get(format!("{}/metrics", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    r.text().await.unwrap()
}

/// The value of the sample `name_and_labels` exactly, e.g. `ringside_calls{state="established"}`.
fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(name_and_labels)?
            .strip_prefix(' ')?
            .parse()
            .ok()
    })
}

#[tokio::test]
async fn metrics_show_calls_requests_and_deliveries_as_they_happen() {
    let h = Harness::start().await;
    let call = h.call_user(ALICE).await;
    h.until_state(&call, "established").await;
    let text = scrape(&h).await;
    // Every sample line is `name{labels} number`, every family has HELP and TYPE.
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let (_, v) = l.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {l}"));
        assert!(v.parse::<f64>().is_ok(), "bad value in {l}");
    }
    assert!(text.contains("# TYPE ringside_api_request_duration_seconds histogram"));
    assert_eq!(
        sample(&text, "ringside_calls{state=\"established\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample(&text, "ringside_calls{state=\"terminated\"}"), None);
    let created = "ringside_api_requests_total{route=\"/communications/calls\",method=\"POST\",status=\"201\"}";
    assert_eq!(sample(&text, created), Some(1.0), "{text}");
    assert!(
        sample(
            &text,
            "ringside_api_request_duration_seconds_count{route=\"/communications/calls\",method=\"POST\"}"
        ) == Some(1.0)
    );
    assert!(
        sample(
            &text,
            "ringside_notification_attempts_total{result=\"delivered\"}"
        )
        .unwrap()
            >= 1.0
    );
    assert!(sample(&text, "ringside_notification_delivery_seconds_count").unwrap() >= 1.0);
    assert!(sample(&text, "ringside_media_ticks_total").unwrap() > 0.0);
    assert!(sample(&text, "ringside_driver_batches_total").unwrap() > 0.0);
    // A bad request is counted under its status; ids never become labels.
    let (s, _, _) = h
        .req(
            "GET",
            "/v1.0/communications/calls/00000000-0000-0000-0000-000000000000",
            None,
        )
        .await;
    assert_eq!(s, 404);
    let (s, _, _) = h
        .req(
            "DELETE",
            &format!("/v1.0/communications/calls/{call}"),
            None,
        )
        .await;
    assert_eq!(s, 204);
    h.until_state(&call, "terminated").await;
    let text = scrape(&h).await;
    let missing = "ringside_api_requests_total{route=\"/communications/calls/{id}\",method=\"GET\",status=\"404\"}";
    assert_eq!(sample(&text, missing), Some(1.0), "{text}");
    assert!(!text.contains("00000000-0000"), "no ids in labels");
    assert_eq!(
        sample(&text, "ringside_calls{state=\"established\"}"),
        Some(0.0)
    );
}

#[tokio::test]
async fn health_and_readiness_say_what_they_checked() {
    let h = Harness::start().await;
    let r = h
        .client
        .get(format!("{}/healthz", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = h
        .client
        .get(format!("{}/readyz", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "ready");
    assert_eq!(v["store"], "ok");
    assert_eq!(v["draining"], false);
    assert!(v["bus"].as_str().unwrap().contains("single node"), "{v}");
}

#[tokio::test]
async fn doctor_names_each_problem_in_words() {
    let dir = std::env::temp_dir().join(format!("ringside-doctor-{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    std::fs::write(
        dir.join("ringside.toml"),
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
https_listen = "127.0.0.1:0"
tls_cert = "{d}/missing-cert.pem"
tls_key = "{d}/missing-key.pem"

[store]
url = "postgres://ringside:hunter2@127.0.0.1:1/nowhere"

[transcription]
model = "{d}/no-model-here"
"#,
            d = dir.display()
        ),
    )
    .unwrap();
    let checks = server::doctor::run(&dir, None).await;
    let (text, ok) = server::doctor::report(&checks);
    assert!(!ok, "{text}");
    let fails: Vec<&str> = checks
        .iter()
        .filter(|c| c.outcome == server::doctor::Outcome::Fail)
        .map(|c| c.area)
        .collect();
    assert_eq!(
        fails,
        ["port", "certificate", "store", "transcription"],
        "{text}"
    );
    assert!(
        text.contains(&format!("HTTP listen 127.0.0.1:{port} is in use")),
        "{text}"
    );
    assert!(text.contains("missing-cert.pem"), "{text}");
    assert!(
        text.contains("ringside:***@127.0.0.1:1"),
        "the password is not shown: {text}"
    );
    assert!(!text.contains("hunter2"));
    assert!(text.contains("no-model-here"), "{text}");
    assert!(text.ends_with("4 problems.\n"), "{text}");

    // A sound configuration passes, and the command says so with exit code 0.
    std::fs::write(
        dir.join("ringside.toml"),
        "[server]\nlisten = \"127.0.0.1:0\"\n[transcription]\nenabled = false\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringside"))
        .arg("--data-dir")
        .arg(&dir)
        .arg("doctor")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("Nothing wrong found."), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
