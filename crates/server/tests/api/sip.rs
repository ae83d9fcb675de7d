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

#[tokio::test]
async fn a_sip_phone_calls_the_app_which_answers_and_the_phone_hangs_up() {
    let port = free_udp_port();
    let h = Harness::start_with(&format!(
        "\n[sip]\nudp = [\"127.0.0.1:{port}\"]\nrtp_ports = [43000, 43100]\n"
    ))
    .await;
    let dir = std::env::temp_dir().join(format!("ringside-sipp-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    // SIPp's built-in caller: INVITE (PCMU offer), expects 100/180 then 200, ACKs, keeps the
    // call up 1.5 s and hangs up with BYE.
    let mut sipp = tokio::process::Command::new("sipp")
        .current_dir(&dir)
        .args([
            &format!("127.0.0.1:{port}"),
            "-sn",
            "uac",
            "-s",
            "bot",
            "-m",
            "1",
            "-d",
            "1500",
            "-i",
            "127.0.0.1",
            "-p",
            &free_udp_port().to_string(),
            "-timeout",
            "20s",
            "-nostdin",
            "-trace_err",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sipp is installed (Debian: sip-tester)");
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
    let status = tokio::time::timeout(Duration::from_secs(20), sipp.wait())
        .await
        .expect("sipp finished")
        .unwrap();
    let errors = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with("errors.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(status.success(), "SIPp saw the call through: {errors}");
    let _ = std::fs::remove_dir_all(&dir);
}
