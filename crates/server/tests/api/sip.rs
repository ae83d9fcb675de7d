//! A SIP phone (SIPp, a real third-party SIP stack) calls an app: the bot gets the
//! incoming-call notification, answers through the Graph API, the phone gets 200 OK with an
//! SDP answer, and when the phone hangs up the bot's call ends.

use crate::common::*;
use serde_json::json;
use std::time::Duration;

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// ringside with SIP on a free port, and SIPp calling the app `bot` with `scenario`.
async fn phone_calls(scenario: &[&str]) -> (Harness, tokio::process::Child, std::path::PathBuf) {
    phone_calls_with(scenario, "").await
}

async fn phone_calls_with(
    scenario: &[&str],
    extra_server: &str,
) -> (Harness, tokio::process::Child, std::path::PathBuf) {
    let port = free_udp_port();
    let h = Harness::start_with(&format!(
        "{extra_server}\n[sip]\nudp = [\"127.0.0.1:{port}\"]\nrtp_ports = [43000, 43100]\n"
    ))
    .await;
    let dir = std::env::temp_dir().join(format!("ringside-sipp-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut args: Vec<String> = vec![format!("127.0.0.1:{port}")];
    args.extend(scenario.iter().map(|s| s.to_string()));
    args.extend(
        [
            "-s",
            "bot",
            "-m",
            "1",
            "-i",
            "127.0.0.1",
            "-timeout",
            "20s",
            "-nostdin",
            "-trace_err",
            "-p",
        ]
        .map(String::from),
    );
    args.push(free_udp_port().to_string());
    let sipp = tokio::process::Command::new("sipp")
        .current_dir(&dir)
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sipp is installed (Debian: sip-tester)");
    (h, sipp, dir)
}

/// SIPp's exit status, with its error log when it failed.
async fn sipp_result(mut sipp: tokio::process::Child, dir: &std::path::Path) -> (bool, String) {
    let status = tokio::time::timeout(Duration::from_secs(20), sipp.wait())
        .await
        .expect("sipp finished")
        .unwrap();
    let errors = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with("errors.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let _ = std::fs::remove_dir_all(dir);
    (status.success(), errors)
}

#[tokio::test]
async fn a_sip_phone_calls_the_app_which_answers_and_the_phone_hangs_up() {
    // SIPp's built-in caller: INVITE (PCMU offer), expects 100/180 then 200, ACKs, keeps the
    // call up 1.5 s and hangs up with BYE.
    let (h, sipp, dir) = phone_calls(&["-sn", "uac", "-d", "1500"]).await;
    let incoming = h.next_incoming().await;
    assert_eq!(incoming.state(), Some("incoming"));
    let id = incoming.data["id"].as_str().unwrap().to_string();
    let (s, v, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{id}/answer"),
            Some(json!({
                "callbackUri": h.callback(),
                "acceptedModalities": ["audio"],
                "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}
            })),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    h.until_state(&id, "established").await;
    let notes = h.until_state(&id, "terminated").await;
    let last = notes.last().unwrap();
    assert_eq!(last.change, "deleted", "the phone's BYE ended the call");
    let (ok, errors) = sipp_result(sipp, &dir).await;
    assert!(ok, "SIPp saw the call through: {errors}");
}

#[tokio::test]
async fn a_rejected_call_gets_486_at_the_phone() {
    let xml = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/sip/uac-rejected.xml"
    );
    let (h, sipp, dir) = phone_calls(&["-sf", xml]).await;
    let incoming = h.next_incoming().await;
    let id = incoming.data["id"].as_str().unwrap().to_string();
    assert_eq!(
        incoming.data["source"]["identity"]["user"]["displayName"], "Carol",
        "the caller as the phone named itself"
    );
    let (s, v, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{id}/reject"),
            Some(json!({"reason": "busy"})),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let (ok, errors) = sipp_result(sipp, &dir).await;
    assert!(ok, "the phone got 486 Busy Here: {errors}");
}

fn scenario(name: &str) -> String {
    format!("{}/../../tests/sip/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn a_call_the_bot_does_not_answer_in_time_gets_408_and_ends_with_1106() {
    let xml = scenario("uac-unanswered.xml");
    let (h, sipp, dir) = phone_calls_with(&["-sf", &xml], "answer_deadline_seconds = 1").await;
    let incoming = h.next_incoming().await;
    let id = incoming.data["id"].as_str().unwrap().to_string();
    let notes = h.until_state(&id, "terminated").await;
    let r = &notes.last().unwrap().data["resultInfo"];
    assert_eq!(
        (r["code"].as_i64(), r["subcode"].as_i64()),
        (Some(408), Some(1106))
    );
    let (ok, errors) = sipp_result(sipp, &dir).await;
    assert!(ok, "the phone got 408: {errors}");
}

#[tokio::test]
async fn a_phone_that_cancels_while_ringing_ends_the_incoming_call() {
    let xml = scenario("uac-cancel.xml");
    let (h, sipp, dir) = phone_calls(&["-sf", &xml]).await;
    let incoming = h.next_incoming().await;
    let id = incoming.data["id"].as_str().unwrap().to_string();
    let notes = h.until_state(&id, "terminated").await;
    assert_eq!(notes.last().unwrap().change, "deleted");
    let (ok, errors) = sipp_result(sipp, &dir).await;
    assert!(ok, "CANCEL got 200 and the INVITE 487: {errors}");
}
