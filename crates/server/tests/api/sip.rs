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
    let (sipp, dir) = spawn_caller(port, scenario);
    (h, sipp, dir)
}

/// SIPp calling the app `bot` at ringside's SIP port with `scenario`.
fn spawn_caller(port: u16, scenario: &[&str]) -> (tokio::process::Child, std::path::PathBuf) {
    let local = free_udp_port();
    let dir = std::env::temp_dir().join(format!("ringside-sipp-{local}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut args: Vec<String> = vec![format!("127.0.0.1:{port}")];
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
        ]
        .map(String::from),
    );
    // Over UDP the caller's own port; over TCP (`-t`) the kernel picks the connection's port,
    // as a port free for UDP may still be taken for TCP (a connection in TIME_WAIT).
    if !scenario.contains(&"-t") {
        args.extend(["-p".to_string(), local.to_string()]);
    }
    // The scenario's own arguments last, so they can override the defaults (-m).
    args.extend(scenario.iter().map(|s| s.to_string()));
    let sipp = tokio::process::Command::new("sipp")
        .current_dir(&dir)
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sipp is installed (Debian: sip-tester)");
    (sipp, dir)
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
    answer(&h, &id).await;
    let notes = h.until_state(&id, "terminated").await;
    let last = notes.last().unwrap();
    assert_eq!(last.change, "deleted", "the phone's BYE ended the call");
    let (ok, errors) = sipp_result(sipp, &dir).await;
    assert!(ok, "SIPp saw the call through: {errors}");
}

#[tokio::test]
async fn a_phone_that_dials_a_number_in_the_apps_addresses_reaches_the_app() {
    let (h, sipp, dir) = phone_calls(&["-sn", "uac", "-d", "500", "-s", "+15550100"]).await;
    let incoming = h.next_incoming().await;
    assert_eq!(incoming.state(), Some("incoming"));
    let id = incoming.data["id"].as_str().unwrap().to_string();
    answer(&h, &id).await;
    let notes = h.until_state(&id, "terminated").await;
    assert_eq!(notes.last().unwrap().change, "deleted", "the phone's BYE");
    let (ok, errors) = sipp_result(sipp, &dir).await;
    assert!(ok, "the call to +15550100 went through: {errors}");
}

#[tokio::test]
async fn a_rejected_call_gets_the_status_of_the_reason_at_the_phone() {
    for (reason, status) in [("busy", "486"), ("none", "603"), ("forbidden", "403")] {
        let xml = variant(
            "uac-rejected.xml",
            &[(
                r#"<recv response="486"/>"#,
                &format!(r#"<recv response="{status}"/>"#),
            )],
        );
        let (h, sipp, dir) = phone_calls(&["-sf", &xml]).await;
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
                Some(json!({ "reason": reason })),
            )
            .await;
        assert_eq!(s, 202, "{v}");
        let (ok, errors) = sipp_result(sipp, &dir).await;
        assert!(ok, "rejected as {reason}, the phone got {status}: {errors}");
        // /metrics counts the SIP responses by code.
        let text = h
            .client
            .get(format!("{}/metrics", h.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let line = format!("ringside_sip_responses_total{{code=\"{status}\"}} 1");
        assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
    }
}

#[tokio::test]
async fn the_bot_hangs_up_a_phones_call_and_the_phone_gets_bye() {
    let (h, sipp, dir) = phone_calls(&["-sf", &scenario("uac-hung-up.xml")]).await;
    let incoming = h.next_incoming().await;
    let id = incoming.data["id"].as_str().unwrap().to_string();
    answer(&h, &id).await; // established
    hang_up(&h, &id).await;
    let (ok, errors) = sipp_result(sipp, &dir).await;
    assert!(ok, "the phone got the bot's BYE and answered it: {errors}");
}

/// A scenario of tests/sip with some of its text replaced, written to a file of its own.
fn variant(name: &str, edits: &[(&str, &str)]) -> String {
    let mut xml = std::fs::read_to_string(scenario(name)).unwrap();
    for (from, to) in edits {
        assert!(xml.contains(from), "{name} holds {from}");
        xml = xml.replace(from, to);
    }
    let path = std::env::temp_dir().join(format!(
        "ringside-{}-{}-{name}",
        std::process::id(),
        VARIANTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::write(&path, xml).unwrap();
    path.to_string_lossy().into_owned()
}

static VARIANTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The bot answers the incoming call `id` with service-hosted media.
async fn answer(h: &Harness, id: &str) {
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
    h.until_state(id, "established").await;
}

/// Wait until SIPp has taken its UDP port (it is listening then).
async fn listening(port: u16) {
    for _ in 0..200 {
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The bot hangs up call `id` and waits for it to end.
pub(crate) async fn hang_up(h: &Harness, id: &str) {
    let (s, _, _) = h
        .req("DELETE", &format!("/v1.0/communications/calls/{id}"), None)
        .await;
    assert_eq!(s, 204);
    h.until_state(id, "terminated").await;
}

/// A scenario of tests/sip by name, or a path as it is.
fn scenario(name: &str) -> String {
    if name.starts_with('/') {
        return name.to_string();
    }
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

// ---- The bot calls a SIP user: every registered phone rings ----

/// ringside with SIP on a free port; MD5 is challenged first because SIPp 3.6 only
/// answers the first challenge and only knows MD5.
pub(crate) async fn sip_server() -> (Harness, u16) {
    let port = free_udp_port();
    let h = Harness::start_with(&format!(
        "\n[sip]\nudp = [\"127.0.0.1:{port}\"]\nrtp_ports = [43200, 43400]\ndigest = [\"MD5\", \"SHA-256\"]\n"
    ))
    .await;
    (h, port)
}

/// A SIPp phone: registered as `hank` (digest), then waiting for calls with `scenario`.
pub(crate) struct Phone {
    sipp: tokio::process::Child,
    dir: std::path::PathBuf,
}

impl Phone {
    pub(crate) async fn register_and_run(sip_port: u16, xml: &str, extra: &[&str]) -> Phone {
        let port = free_udp_port();
        let dir = std::env::temp_dir().join(format!("ringside-phone-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let register = tokio::process::Command::new("sipp")
            .current_dir(&dir)
            .args([
                &format!("127.0.0.1:{sip_port}"),
                "-sf",
                &scenario("register.xml"),
                "-s",
                "hank",
                "-au",
                "hank",
                "-ap",
                HANK_PASSWORD,
                "-m",
                "1",
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-timeout",
                "10s",
                "-nostdin",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await
            .expect("sipp is installed (Debian: sip-tester)");
        assert!(register.success(), "the phone registered as hank");
        let mut args: Vec<String> = vec!["-sf".into(), scenario(xml)];
        args.extend(
            [
                "-m",
                "1",
                "-i",
                "127.0.0.1",
                "-timeout",
                "20s",
                "-nostdin",
                "-trace_err",
            ]
            .map(String::from),
        );
        // The test's own arguments after the defaults, so they can override them (-m).
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(["-p".to_string(), port.to_string()]);
        let sipp = tokio::process::Command::new("sipp")
            .current_dir(&dir)
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        listening(port).await;
        Phone { sipp, dir }
    }

    pub(crate) async fn result(self) -> (bool, String) {
        sipp_result(self.sipp, &self.dir).await
    }

    /// Stop the phone without judging its own record.
    async fn stop(mut self) {
        let _ = self.sipp.kill().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn the_bot_calls_a_sip_phone_which_rings_and_answers_and_the_bot_hangs_up() {
    let (h, sip_port) = sip_server().await;
    let phone = Phone::register_and_run(sip_port, "uas-answer.xml", &[]).await;
    let id = h.call_user(HANK_SIP).await;
    let notes = h.until_state(&id, "established").await;
    assert_eq!(
        states(&notes),
        ["establishing", "ringing", "established"],
        "the phone's 180 shows as ringing"
    );
    let (s, v, _) = h
        .req("GET", &format!("/v1.0/communications/calls/{id}"), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["mediaState"]["audio"], "active", "{v}");
    // Operators see the media threads' timing and the SIP legs' RTP.
    let (s, m) = h.admin("GET", "/media", None).await;
    assert_eq!(s, 200, "{m}");
    assert!(m["ticks"].as_u64().unwrap() > 0, "{m}");
    assert_eq!(m["rtp"]["legs"], 1, "{m}");
    hang_up(&h, &id).await;
    let (ok, errors) = phone.result().await;
    assert!(ok, "the phone got the bot's BYE: {errors}");
}

#[tokio::test]
async fn a_phone_that_answers_as_it_rings_still_shows_ringing_first() {
    // An auto-answering phone: 180 and 200 back to back, a millisecond apart.
    let xml = variant("uas-answer.xml", &[(r#"<pause milliseconds="200"/>"#, "")]);
    let (h, sip_port) = sip_server().await;
    let phone = Phone::register_and_run(sip_port, &xml, &[]).await;
    let id = h.call_user(HANK_SIP).await;
    let notes = h.until_state(&id, "established").await;
    assert_eq!(states(&notes), ["establishing", "ringing", "established"]);
    hang_up(&h, &id).await;
    let (ok, errors) = phone.result().await;
    assert!(ok, "the phone got the bot's BYE: {errors}");
}

#[tokio::test]
async fn a_sip_phone_that_hangs_up_ends_the_bots_call() {
    let (h, sip_port) = sip_server().await;
    let phone = Phone::register_and_run(sip_port, "uas-hangup.xml", &[]).await;
    let id = h.call_user(HANK_SIP).await;
    h.until_state(&id, "established").await;
    let notes = h.until_state(&id, "terminated").await;
    assert_eq!(notes.last().unwrap().change, "deleted");
    let (ok, errors) = phone.result().await;
    assert!(ok, "the phone's BYE got 200 OK: {errors}");
}

#[tokio::test]
async fn a_phone_that_is_busy_declines_is_unavailable_or_times_out_fails_the_call_with_its_status()
{
    let busy = "SIP/2.0 486 Busy Here";
    for (xml, code) in [
        ("uas-busy.xml".to_string(), 486),
        ("uas-decline.xml".to_string(), 603),
        (
            variant(
                "uas-busy.xml",
                &[(busy, "SIP/2.0 480 Temporarily Unavailable")],
            ),
            480,
        ),
        (
            variant("uas-busy.xml", &[(busy, "SIP/2.0 408 Request Timeout")]),
            408,
        ),
    ] {
        let (h, sip_port) = sip_server().await;
        let phone = Phone::register_and_run(sip_port, &xml, &[]).await;
        let id = h.call_user(HANK_SIP).await;
        let notes = h.until_state(&id, "terminated").await;
        assert_eq!(
            notes.last().unwrap().data["resultInfo"]["code"],
            code,
            "{xml}"
        );
        let (ok, errors) = phone.result().await;
        assert!(ok, "the phone's {code} was ACKed: {errors}");
    }
}

#[tokio::test]
async fn a_phone_that_sends_183_session_progress_shows_as_ringing() {
    let xml = variant(
        "uas-answer.xml",
        &[("SIP/2.0 180 Ringing", "SIP/2.0 183 Session Progress")],
    );
    let (h, sip_port) = sip_server().await;
    let phone = Phone::register_and_run(sip_port, &xml, &[]).await;
    let id = h.call_user(HANK_SIP).await;
    let notes = h.until_state(&id, "established").await;
    assert_eq!(states(&notes), ["establishing", "ringing", "established"]);
    hang_up(&h, &id).await;
    let (ok, errors) = phone.result().await;
    assert!(ok, "the phone got the bot's BYE: {errors}");
}

#[tokio::test]
async fn a_phone_that_rings_past_the_ringing_timeout_is_cancelled_and_the_call_fails_with_408() {
    let (h, sip_port) = sip_server().await;
    let phone = Phone::register_and_run(sip_port, "uas-ring-cancel.xml", &[]).await;
    let mut body = p2p_body(&h.callback(), HANK_SIP);
    body["ringingTimeoutInSeconds"] = json!(1);
    let (s, v, _) = h
        .req("POST", "/beta/communications/calls", Some(body))
        .await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap();
    let notes = h.until_state(id, "terminated").await;
    assert_eq!(states(&notes), ["establishing", "ringing", "terminated"]);
    assert_eq!(
        notes.last().unwrap().data["resultInfo"]["code"],
        408,
        "no answer"
    );
    let (ok, errors) = phone.result().await;
    assert!(ok, "the phone that rang on got CANCEL: {errors}");
}

#[tokio::test]
async fn hanging_up_while_the_sip_phone_rings_cancels_the_invite() {
    let (h, sip_port) = sip_server().await;
    let phone = Phone::register_and_run(sip_port, "uas-ring-cancel.xml", &[]).await;
    let id = h.call_user(HANK_SIP).await;
    h.until_state(&id, "ringing").await;
    hang_up(&h, &id).await;
    let (ok, errors) = phone.result().await;
    assert!(ok, "the phone got CANCEL and its 487 was ACKed: {errors}");
}

#[tokio::test]
async fn a_sip_user_invited_into_a_call_joins_the_roster_and_gets_bye_when_removed() {
    let (h, sip_port) = sip_server().await;
    let phone = Phone::register_and_run(sip_port, "uas-answer.xml", &[]).await;
    let id = h.call_user(ALICE).await;
    h.until_state(&id, "established").await;
    let (s, op, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{id}/participants/invite"),
            Some(
                json!({"participants": [{"identity": {"user": {"id": HANK_SIP}}}],
                        "clientContext": "add-hank"}),
            ),
        )
        .await;
    assert_eq!(s, 200, "{op}");
    let op_id = op["id"].as_str().unwrap().to_string();
    let notes = h
        .until(&id, "invite completed", |n| n.resource.ends_with(&op_id))
        .await;
    assert_eq!(notes.last().unwrap().data["status"], "completed");
    let (_, list, _) = h
        .req(
            "GET",
            &format!("/v1.0/communications/calls/{id}/participants"),
            None,
        )
        .await;
    let users: Vec<&str> = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["info"]["identity"]["user"]["id"].as_str())
        .collect();
    assert!(users.contains(&HANK_SIP), "{list}");
    assert!(users.contains(&ALICE), "{list}");
    // The bot removes Hank: his phone gets the BYE.
    let hank = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["info"]["identity"]["user"]["id"] == HANK_SIP)
        .and_then(|p| p["id"].as_str())
        .unwrap()
        .to_string();
    let (s, v, _) = h
        .req(
            "DELETE",
            &format!("/v1.0/communications/calls/{id}/participants/{hank}"),
            None,
        )
        .await;
    assert_eq!(s, 204, "{v}");
    let (ok, errors) = phone.result().await;
    assert!(
        ok,
        "the phone was answered into the call and got the BYE: {errors}"
    );
    hang_up(&h, &id).await;
}

#[tokio::test]
async fn a_sip_user_with_no_registered_phone_is_unavailable() {
    let (h, _) = sip_server().await;
    let id = h.call_user(HANK_SIP).await;
    let notes = h.until_state(&id, "terminated").await;
    assert_eq!(notes.last().unwrap().data["resultInfo"]["code"], 480);
}

#[tokio::test]
async fn every_registered_phone_rings_the_first_to_answer_wins_and_the_other_is_cancelled() {
    let (h, sip_port) = sip_server().await;
    // Two phones registered as hank: the desk phone answers, the softphone keeps ringing.
    let desk = Phone::register_and_run(sip_port, "uas-answer.xml", &[]).await;
    let soft = Phone::register_and_run(sip_port, "uas-ring-cancel.xml", &[]).await;
    let (s, v) = h.admin("GET", "/sip/registrations/hank", None).await;
    assert_eq!(s, 200);
    assert_eq!(v["contacts"].as_array().map(Vec::len), Some(2), "{v}");
    let id = h.call_user(HANK_SIP).await;
    h.until_state(&id, "established").await;
    let (ok, errors) = soft.result().await;
    assert!(ok, "the phone that did not answer got CANCEL: {errors}");
    hang_up(&h, &id).await;
    let (ok, errors) = desk.result().await;
    assert!(ok, "the phone that answered got the BYE: {errors}");
}

#[tokio::test]
async fn two_phones_that_both_answer_leave_one_call_and_no_sip_dialog_behind() {
    let (h, sip_port) = sip_server().await;
    // Both of hank's phones answer 200 ms after ringing: one takes the call; the other is
    // cancelled, and answers the CANCEL with 487 if it had not answered yet, or its answer is
    // ended at once (by ringside's BYE, or by rsipstack's if the CANCEL crossed it).
    let _desk = Phone::register_and_run(sip_port, "uas-answer-or-cancel.xml", &[]).await;
    let _soft = Phone::register_and_run(sip_port, "uas-answer-or-cancel.xml", &[]).await;
    let id = h.call_user(HANK_SIP).await;
    h.until_state(&id, "established").await;
    hang_up(&h, &id).await;
    // A phone that takes the CANCEL just as it answers may send neither its 200 nor a 487
    // (SIPp answers such a CANCEL itself and drops the call): the INVITE then waits for a
    // final response until RFC 3261's 64*T1 (32 s) and is destroyed, its dialog with it.
    let mut dialogs = serde_json::Value::Null;
    for _ in 0..400 {
        dialogs = rtp_counters(&h).await["dialogs"].clone();
        if dialogs == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        dialogs, 0,
        "every answered branch was let go of once it ended"
    );
}

#[tokio::test]
async fn a_cancelled_phone_that_never_ends_its_invite_is_forgotten_after_64_t1() {
    let (h, sip_port) = sip_server().await;
    // The desk phone answers; the softphone takes the CANCEL but never sends its 487.
    let _desk = Phone::register_and_run(sip_port, "uas-answer-or-cancel.xml", &[]).await;
    let _soft = Phone::register_and_run(sip_port, "uas-ring-cancel-silent.xml", &[]).await;
    let id = h.call_user(HANK_SIP).await;
    h.until_state(&id, "established").await;
    hang_up(&h, &id).await;
    let dialogs = || async { rtp_counters(&h).await["dialogs"].clone() };
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        dialogs().await,
        1,
        "the cancelled INVITE still waits for its answer"
    );
    let mut left = serde_json::Value::Null;
    for _ in 0..400 {
        left = dialogs().await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "forgotten once RFC 3261's 64*T1 (32 s) passed");
}

#[tokio::test]
async fn a_phone_that_holds_and_resumes_shows_as_hold_and_is_answered_per_rfc3264() {
    // SIPp checks the answers: sendonly is answered recvonly, sendrecv again sendrecv.
    let (h, sipp, dir) = phone_calls(&["-sf", &scenario("uac-hold.xml")]).await;
    let incoming = h.next_incoming().await;
    let id = incoming.data["id"].as_str().unwrap().to_string();
    answer(&h, &id).await;
    h.until_state(&id, "hold").await;
    h.until_state(&id, "established").await;
    h.until_state(&id, "terminated").await;
    let (ok, errors) = sipp_result(sipp, &dir).await;
    assert!(ok, "the phone got recvonly, then sendrecv: {errors}");
}

#[tokio::test]
async fn keys_sent_as_sip_info_arrive_as_tone_info() {
    let (h, sipp, dir) = phone_calls(&["-sf", &scenario("uac-info.xml")]).await;
    let id = h.next_incoming().await.data["id"]
        .as_str()
        .unwrap()
        .to_string();
    answer(&h, &id).await;
    let (s, v, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{id}/subscribeToTone"),
            Some(json!({"clientContext": "keys"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let notes = h
        .until(&id, "second key", |n| n.data["toneInfo"]["sequenceId"] == 2)
        .await;
    let tones: Vec<_> = notes
        .iter()
        .filter_map(|n| n.data.get("toneInfo"))
        .map(|t| t["tone"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(tones, ["tone5", "pound"]);
    h.until_state(&id, "terminated").await;
    let (ok, errors) = sipp_result(sipp, &dir).await;
    assert!(ok, "each INFO got 200: {errors}");
}

#[tokio::test]
async fn a_phones_call_redirected_to_a_sip_user_connects_the_two_phones() {
    let (h, port) = sip_server().await;
    let callee = Phone::register_and_run(port, "uas-answer.xml", &[]).await;
    // The caller hangs up 1.5 s after it is answered; the callee gets that BYE through ringside.
    let (caller, dir) = spawn_caller(port, &["-sn", "uac", "-d", "1500"]);
    let id = h.next_incoming().await.data["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, v, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{id}/redirect"),
            Some(json!({"targets": [{"identity": {"user": {"id": HANK_SIP}}}], "callbackUri": h.callback()})),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let notes = h.until_state(&id, "terminated").await;
    assert_eq!(
        notes.last().unwrap().data["answeredBy"]["identity"]["user"]["id"],
        HANK_SIP
    );
    let (ok, errors) = sipp_result(caller, &dir).await;
    assert!(
        ok,
        "the caller was answered by the phone it was redirected to: {errors}"
    );
    let (ok, errors) = callee.result().await;
    assert!(ok, "the callee got the caller's BYE: {errors}");
}

#[tokio::test]
async fn a_sip_phone_transferred_to_a_user_stays_in_the_call_until_the_user_hangs_up() {
    let (h, port) = sip_server().await;
    let phone = Phone::register_and_run(port, "uas-answer.xml", &[]).await;
    let id = h.call_user(HANK_SIP).await;
    h.until_state(&id, "established").await;
    let (s, v, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{id}/transfer"),
            Some(json!({"transferTarget": {"endpointType": "default", "identity": {"user": {"id": FRANK_HANGS_UP}}}})),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let notes = h.until_state(&id, "terminated").await;
    assert!(
        states(&notes).contains(&"transferring".to_string()),
        "{:?}",
        states(&notes)
    );
    let (ok, errors) = phone.result().await;
    assert!(
        ok,
        "the phone was bridged to Frank and got BYE when he hung up: {errors}"
    );
}

/// Ask for a transfer of `id` to `target` (a user id).
async fn transfer_to(h: &Harness, id: &str, target: &str) {
    let (s, v, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{id}/transfer"),
            Some(json!({"transferTarget": {"endpointType": "default", "identity": {"user": {"id": target}}}})),
        )
        .await;
    assert_eq!(s, 202, "{v}");
}

/// The Refer-To user part a SIPp phone logged (`token=xfer-...`, with -trace_logs).
async fn logged_refer_token(dir: &std::path::Path) -> String {
    logged(dir, "token=").await
}

/// The SIP legs' RTP counters, as operators see them.
async fn rtp_counters(h: &Harness) -> serde_json::Value {
    h.admin("GET", "/media", None).await.1["rtp"].clone()
}

/// What a SIPp phone logged after `prefix` (with -trace_logs).
async fn logged(dir: &std::path::Path, prefix: &str) -> String {
    for _ in 0..200 {
        for e in std::fs::read_dir(dir).unwrap().filter_map(|e| e.ok()) {
            if e.file_name().to_string_lossy().ends_with("_logs.log") {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                if let Some(t) = text.lines().find_map(|l| l.trim().strip_prefix(prefix)) {
                    return t.to_string();
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the phone logged no {prefix}");
}

#[tokio::test]
async fn garbage_and_a_strangers_rtp_on_a_live_calls_port_are_dropped_and_the_call_carries_on() {
    // The phone's RTP is this test's socket (its SDP names it); SIPp logs ringside's port.
    let phone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let stranger = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&phone, &stranger] {
        s.set_nonblocking(true).unwrap();
    }
    let answered = r#"<recv response="200" rtd="true" rrs="true"/>"#;
    let logged_port = r#"<recv response="200" rtd="true" rrs="true">
    <action>
      <ereg regexp="m=audio ([0-9]+)" search_in="body" check_it="true" assign_to="m,port"/>
      <log message="rtp=[$port]"/>
    </action>
  </recv>
  <Reference variables="m"/>"#;
    let xml = variant(
        "uac-hung-up.xml",
        &[
            (
                "m=audio [media_port]",
                &format!("m=audio {}", phone.local_addr().unwrap().port()),
            ),
            (answered, logged_port),
        ],
    );
    let (h, sipp, dir) = phone_calls(&["-sf", &xml, "-trace_logs"]).await;
    let incoming = h.next_incoming().await;
    let id = incoming.data["id"].as_str().unwrap().to_string();
    answer(&h, &id).await;
    let port: u16 = logged(&dir, "rtp=").await.parse().unwrap();
    let ringside: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let rtp = |seq: u16, ssrc: u32| {
        let mut b = vec![];
        sip::rtp::Rtp {
            marker: false,
            payload_type: 0,
            sequence: seq,
            timestamp: seq as u32 * 160,
            ssrc,
            payload: &[0xFF; 160],
        }
        .write(&mut b);
        b
    };

    // Before the phone's RTP: junk on the port is dropped and latches nothing.
    for _ in 0..5 {
        stranger.send_to(b"not RTP at all", ringside).unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while rtp_counters(&h).await["dropped"].as_u64().unwrap() < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            rtp_counters(&h).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The phone's RTP latches; then a stranger's RTP and junk arrive alongside it.
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    for seq in 1..=50u16 {
        ticker.tick().await;
        phone.send_to(&rtp(seq, 0xA11CE), ringside).unwrap();
        if seq > 25 {
            stranger.send_to(&rtp(seq, 0xBAD), ringside).unwrap();
            stranger.send_to(&[0x80, 0, 1], ringside).unwrap();
            phone.send_to(&[0x80], ringside).unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let m = rtp_counters(&h).await;
    assert_eq!(m["packetsIn"], 50, "only the phone's RTP was taken in: {m}");
    assert_eq!(m["legs"], 1, "{m}");
    let mut buf = [0u8; 2048];
    let (n, from) = phone
        .recv_from(&mut buf)
        .expect("ringside sends the phone RTP");
    assert_eq!(
        (from, n),
        (ringside, 12 + 160),
        "a 20 ms PCMU packet from the leg's port"
    );
    while let Ok((_, from)) = phone.recv_from(&mut buf) {
        assert_eq!(from, ringside);
    }
    assert!(
        stranger.recv_from(&mut buf).is_err(),
        "the stranger is sent nothing"
    );
    let (s, v, _) = h
        .req("GET", &format!("/v1.0/communications/calls/{id}"), None)
        .await;
    assert_eq!((s, v["state"].as_str()), (200, Some("established")), "{v}");
    hang_up(&h, &id).await;
    let (ok, errors) = sipp_result(sipp, &dir).await;
    assert!(ok, "the phone got the bot's BYE: {errors}");
}

#[tokio::test]
async fn a_phone_that_allows_refer_is_transferred_by_refer_and_its_new_call_reaches_the_target() {
    let (h, port) = sip_server().await;
    let phone = Phone::register_and_run(port, "uas-refer.xml", &["-trace_logs"]).await;
    let id = h.call_user(HANK_SIP).await;
    h.until_state(&id, "established").await;
    transfer_to(&h, &id, ALICE).await;
    // The phone was asked (REFER) to call sip:xfer-…@ringside; its new call does so.
    let token = logged_refer_token(&phone.dir).await;
    let (new_call, new_dir) =
        spawn_caller(port, &["-sf", &scenario("uac-referred.xml"), "-s", &token]);
    let notes = h.until_state(&id, "terminated").await;
    assert_eq!(
        states(&notes),
        ["transferring", "transferAccepted", "terminated"]
    );
    let last = notes.last().unwrap();
    assert_eq!(last.data["resultInfo"]["subcode"], 7015, "{}", last.data);
    let (ok, errors) = phone.result().await;
    assert!(ok, "the phone's original call got ringside's BYE: {errors}");
    let (ok, errors) = sipp_result(new_call, &new_dir).await;
    assert!(
        ok,
        "the new call was answered once Alice answered: {errors}"
    );
}

#[tokio::test]
async fn a_phone_that_declines_refer_is_transferred_by_re_bridging() {
    let (h, port) = sip_server().await;
    let phone = Phone::register_and_run(port, "uas-refer-declined.xml", &[]).await;
    let id = h.call_user(HANK_SIP).await;
    h.until_state(&id, "established").await;
    transfer_to(&h, &id, FRANK_HANGS_UP).await;
    let notes = h.until_state(&id, "terminated").await;
    assert_eq!(
        states(&notes),
        ["transferring", "transferAccepted", "terminated"]
    );
    assert_eq!(notes.last().unwrap().data["resultInfo"]["subcode"], 7015);
    let (ok, errors) = phone.result().await;
    assert!(
        ok,
        "the phone was bridged to Frank and got BYE when he hung up: {errors}"
    );
}

#[tokio::test]
async fn a_refer_whose_new_call_fails_leaves_the_call_established_with_the_failure() {
    let (h, port) = sip_server().await;
    let phone = Phone::register_and_run(port, "uas-refer-fails.xml", &[]).await;
    let id = h.call_user(HANK_SIP).await;
    h.until_state(&id, "established").await;
    transfer_to(&h, &id, ALICE).await;
    let notes = h.until_state(&id, "established").await;
    assert_eq!(states(&notes), ["transferring", "established"]);
    let last = notes.last().unwrap();
    assert_eq!(last.data["resultInfo"]["code"], 500, "{}", last.data);
    assert_eq!(last.data["resultInfo"]["subcode"], 7000, "{}", last.data);
    assert!(
        last.data["resultInfo"]["message"]
            .as_str()
            .unwrap()
            .contains("486"),
        "{}",
        last.data
    );
    hang_up(&h, &id).await;
    let (ok, errors) = phone.result().await;
    assert!(ok, "the call went on until the bot hung up: {errors}");
}

#[tokio::test]
async fn a_phone_that_sends_no_rtp_is_hung_up_after_the_media_timeout() {
    let port = free_udp_port();
    let h = Harness::start_with(&format!(
        "\n[sip]\nudp = [\"127.0.0.1:{port}\"]\nrtp_ports = [43500, 43600]\nmedia_timeout_seconds = 1\n"
    ))
    .await;
    let (sipp, dir) = spawn_caller(port, &["-sf", &scenario("uac-silent.xml")]);
    let id = h.next_incoming().await.data["id"]
        .as_str()
        .unwrap()
        .to_string();
    answer(&h, &id).await;
    let notes = h.until_state(&id, "terminated").await;
    let r = &notes.last().unwrap().data["resultInfo"];
    assert_eq!(
        (r["code"].as_i64(), r["subcode"].as_i64()),
        (Some(410), Some(301005)),
        "{r}"
    );
    let (ok, errors) = sipp_result(sipp, &dir).await;
    assert!(ok, "the silent phone got BYE: {errors}");
}

// ---- Phone numbers: trunks out, numbers in ----

/// A SIPp carrier listening on a free port with `scenario`.
async fn carrier(xml: &str) -> (u16, Phone) {
    let port = free_udp_port();
    let dir = std::env::temp_dir().join(format!("ringside-carrier-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let sipp = tokio::process::Command::new("sipp")
        .current_dir(&dir)
        .args([
            "-sf",
            &scenario(xml),
            "-m",
            "1",
            "-i",
            "127.0.0.1",
            "-timeout",
            "20s",
            "-nostdin",
            "-trace_err",
            "-p",
            &port.to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sipp is installed (Debian: sip-tester)");
    listening(port).await;
    (port, Phone { sipp, dir })
}

#[tokio::test]
async fn the_bot_calls_a_phone_number_through_the_trunk_which_challenges_for_credentials() {
    let (carrier_port, carrier) = carrier("uas-trunk.xml").await;
    let port = free_udp_port();
    let h = Harness::start_with(&format!(
        "\n[sip]\nudp = [\"127.0.0.1:{port}\"]\nrtp_ports = [43700, 43800]\n\
         [[sip.trunks]]\nname = \"carrier\"\nproxy = \"sip:127.0.0.1:{carrier_port}\"\n\
         domain = \"carrier.example\"\nusername = \"carrier-user\"\npassword = \"carrier-pass\"\n\
         routes = [\"+1\"]\n"
    ))
    .await;
    let mut body = p2p_body(&h.callback(), ALICE);
    body["targets"] = json!([{"identity": {"phone": {"id": "+15557654321"}}}]);
    body["source"] =
        json!({"identity": {"applicationInstance": {"id": "ri-1", "displayName": "Main line"}}});
    let (s, v, _) = h
        .req("POST", "/v1.0/communications/calls", Some(body))
        .await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let notes = h.until_state(&id, "established").await;
    assert_eq!(states(&notes), ["establishing", "ringing", "established"]);
    hang_up(&h, &id).await;
    let (ok, errors) = carrier.result().await;
    assert!(
        ok,
        "the carrier saw +15557654321 from +15550199, with good credentials, and got BYE: {errors}"
    );
}

#[tokio::test]
async fn a_call_from_the_trunk_to_a_number_reaches_the_app_that_owns_it() {
    let (h, sipp, dir) = phone_calls(&["-sf", &scenario("uac-from-trunk.xml")]).await;
    let incoming = h.next_incoming().await;
    let d = &incoming.data;
    assert_eq!(
        d["source"]["identity"]["phone"]["id"], "+14255550123",
        "{d}"
    );
    let target = &d["targets"][0]["identity"]["applicationInstance"];
    assert_eq!(target["id"], "ri-1", "{d}");
    assert_eq!(target["displayName"], "Main line");
    assert_eq!(target["tenantId"], TENANT);
    let id = d["id"].as_str().unwrap().to_string();
    answer(&h, &id).await;
    h.until_state(&id, "terminated").await;
    let (ok, errors) = sipp_result(sipp, &dir).await;
    assert!(ok, "the carrier's call was answered: {errors}");
}

#[tokio::test]
async fn an_invite_flood_gets_503_with_retry_after_beyond_the_admitted_rate() {
    let port = free_udp_port();
    let h = Harness::start_with(&format!(
        "\n[sip]\nudp = [\"127.0.0.1:{port}\"]\nrtp_ports = [43900, 44000]\n\
         max_new_calls_per_second = 2\ndigest = [\"MD5\"]\n"
    ))
    .await;
    // A call in progress throughout: the phone hangs up after 5 s.
    let (live, live_dir) = spawn_caller(port, &["-sn", "uac", "-d", "5000"]);
    let live_id = h.next_incoming().await.data["id"]
        .as_str()
        .unwrap()
        .to_string();
    answer(&h, &live_id).await;
    // Its admission is a second old before the flood starts.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = sock.local_addr().unwrap();
    let sdp = "v=0\r\no=f 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9000 RTP/AVP 0\r\n";
    for i in 0..10 {
        let invite = format!(
            "INVITE sip:bot@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKflood{i}\r\n\
             From: <sip:flood@127.0.0.1>;tag=f{i}\r\nTo: <sip:bot@127.0.0.1:{port}>\r\n\
             Call-ID: flood-{i}@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:flood@{me}>\r\n\
             Max-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        sock.send_to(invite.as_bytes(), ("127.0.0.1", port))
            .await
            .unwrap();
    }
    // Final responses per Call-ID (100 Trying and 180 are provisional).
    let mut finals = std::collections::HashMap::new();
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while let Ok(Ok((n, _))) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await {
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        let call = text
            .lines()
            .find_map(|l| l.strip_prefix("Call-ID: "))
            .unwrap_or("")
            .to_string();
        if text.starts_with("SIP/2.0 503") {
            assert!(text.contains("Retry-After: 1"), "{text}");
            finals.insert(call, 503);
        } else if text.starts_with("SIP/2.0 180") {
            finals.entry(call).or_insert(180);
        }
    }
    let refused = finals.values().filter(|c| **c == 503).count();
    let ringing = finals.values().filter(|c| **c == 180).count();
    assert_eq!(
        ringing, 2,
        "a burst of one second's worth gets in: {finals:?}"
    );
    assert_eq!(
        refused, 8,
        "the rest are told to come back later: {finals:?}"
    );
    // The admitted calls reached the bot, and the call in progress went on to its end.
    let first = h.next_incoming().await;
    assert_eq!(first.state(), Some("incoming"));
    let notes = h.until_state(&live_id, "terminated").await;
    assert_eq!(
        states(&notes).first().map(String::as_str),
        Some("terminated"),
        "nothing happened to the call in progress before its phone hung up: {notes:?}"
    );
    let (ok, errors) = sipp_result(live, &live_dir).await;
    assert!(ok, "the call in progress went on to its BYE: {errors}");
}

#[tokio::test]
async fn a_corpus_of_malformed_messages_gets_the_right_answers_and_breaks_nothing() {
    let port = free_udp_port();
    let h = Harness::start_with(&format!(
        "\n[sip]\nudp = [\"127.0.0.1:{port}\"]\nrtp_ports = [44100, 44200]\n"
    ))
    .await;
    // A call in progress throughout: the phone hangs up after 5 s.
    let (live, live_dir) = spawn_caller(port, &["-sn", "uac", "-d", "5000"]);
    let live_id = h.next_incoming().await.data["id"]
        .as_str()
        .unwrap()
        .to_string();
    answer(&h, &live_id).await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = sock.local_addr().unwrap();
    let head = |method: &str, i: usize, extra: &str| {
        format!(
            "{method} sip:bot@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKbad{i}\r\n\
             From: <sip:bad@127.0.0.1>;tag=b{i}\r\nTo: <sip:bot@127.0.0.1:{port}>\r\n\
             Call-ID: bad-{i}@127.0.0.1\r\nCSeq: 1 {method}\r\nContact: <sip:bad@{me}>\r\n\
             Max-Forwards: 70\r\n{extra}"
        )
    };
    let with_body = |i: usize, ct: &str, body: &str| {
        format!(
            "{}Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n{body}",
            head("INVITE", i, ""),
            body.len()
        )
        .into_bytes()
    };
    // (message, the final status it must get: None = dropped or any non-2xx)
    let g729_only = "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
    let corpus: Vec<(Vec<u8>, Option<u16>)> = vec![
        (
            with_body(1, "application/sdp", "this is not SDP"),
            Some(400),
        ),
        (with_body(2, "application/sdp", g729_only), Some(488)),
        (b"INVITE sip:bot@127.0.0.1 SIP/2.0\r\n\r\n".to_vec(), None),
        (
            head("INVITE", 3, "Content-Length: 500\r\n\r\nv=0\r\n").into_bytes(),
            None,
        ),
        (
            format!(
                "{}X-Huge: {}\r\nContent-Length: 0\r\n\r\n",
                head("OPTIONS", 4, ""),
                "a".repeat(60_000)
            )
            .into_bytes(),
            None,
        ),
        ((0..255u8).cycle().take(1400).collect(), None),
        (head("INVITE", 5, "Content-Le").into_bytes(), None),
        (
            head("INVITE", 6, "Content-Length: 0\r\n\r\n")
                .replace("SIP/2.0\r\nVia", "SIP/3.0\r\nVia")
                .into_bytes(),
            None,
        ),
        (
            head(
                "REGISTER",
                7,
                "Contact: <not a uri\r\nContent-Length: 0\r\n\r\n",
            )
            .into_bytes(),
            None,
        ),
        (b"SIP/2.0 200 OK\r\n\r\n".to_vec(), None),
        (vec![], None),
    ];
    for (msg, _) in &corpus {
        sock.send_to(msg, ("127.0.0.1", port)).await.unwrap();
    }
    let mut finals = std::collections::HashMap::new();
    let mut buf = vec![0u8; 65_536];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Ok((n, _))) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await {
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        let code: u16 = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let call = text
            .lines()
            .find_map(|l| l.strip_prefix("Call-ID: "))
            .unwrap_or("")
            .to_string();
        if code >= 200 {
            finals.insert(call, code);
        }
    }
    assert_eq!(finals.get("bad-1@127.0.0.1"), Some(&400), "{finals:?}");
    assert_eq!(finals.get("bad-2@127.0.0.1"), Some(&488), "{finals:?}");
    assert_eq!(
        finals.get("bad-6@127.0.0.1"),
        Some(&505),
        "SIP/3.0: {finals:?}"
    );
    assert!(
        finals.values().all(|c| *c >= 400),
        "nothing malformed was accepted: {finals:?}"
    );
    // The call in progress is still up, nothing reached the bot, and ringside still takes
    // calls.
    let (s, v, _) = h
        .req(
            "GET",
            &format!("/v1.0/communications/calls/{live_id}"),
            None,
        )
        .await;
    assert_eq!((s, v["state"].as_str()), (200, Some("established")), "{v}");
    let (caller, dir) = spawn_caller(port, &["-sn", "uac", "-d", "500"]);
    let incoming = h.next_incoming().await;
    assert_eq!(
        incoming.data["source"]["identity"]["user"]["id"], "sipp",
        "the next incoming call is the well-formed one"
    );
    let id = incoming.data["id"].as_str().unwrap().to_string();
    answer(&h, &id).await;
    let (ok, errors) = sipp_result(caller, &dir).await;
    assert!(ok, "a good call after the corpus works: {errors}");
    let notes = h.until_state(&live_id, "terminated").await;
    assert_eq!(
        notes.last().unwrap().change,
        "deleted",
        "the call in progress ended when its phone hung up"
    );
    let (ok, errors) = sipp_result(live, &live_dir).await;
    assert!(ok, "the call in progress went on to its BYE: {errors}");
}

#[tokio::test]
async fn calls_survive_ten_percent_packet_loss_by_retransmission() {
    // SIPp drops 10 % of what it sends and receives: lost INVITEs, 200s, ACKs and BYEs are
    // retransmitted (RFC 3261 timers) until the call completes.
    let (h, sipp, dir) = phone_calls(&[
        "-sn", "uac", "-d", "1000", "-lost", "10", "-m", "5", "-r", "5",
    ])
    .await;
    let mut answered = 0;
    while answered < 5 {
        let incoming = h.next_incoming().await;
        let id = incoming.data["id"].as_str().unwrap().to_string();
        answer(&h, &id).await;
        answered += 1;
    }
    let (ok, errors) = sipp_result(sipp, &dir).await;
    assert!(ok, "all five calls completed despite the loss: {errors}");
}

#[tokio::test]
async fn calls_to_a_phone_survive_ten_percent_packet_loss_by_retransmission() {
    // Now ringside is the caller: lost INVITEs and BYEs are sent again on RFC 3261's timers,
    // and a 200 the phone sends again (its ACK was lost) is ACKed again.
    // When the phone's 180 and 200 are lost, ringside sends the INVITE again: the phone
    // answers it again. When the phone's ACK is lost, the bot's BYE may arrive before the
    // ACK sent again.
    let xml = variant(
        "uas-answer.xml",
        &[
            (
                "<pause milliseconds=\"200\"/>\n  <send retrans=\"500\">",
                "<pause milliseconds=\"200\"/>\n  <label id=\"answer\"/>\n  <send retrans=\"500\">",
            ),
            (
                r#"<recv request="ACK" crlf="true"/>"#,
                r#"<recv request="INVITE" optional="true" next="answer"/>
  <recv request="ACK" crlf="true" optional="true"/>"#,
            ),
        ],
    );
    let (h, sip_port) = sip_server().await;
    let phone = Phone::register_and_run(sip_port, &xml, &["-lost", "10", "-m", "5"]).await;
    for _ in 0..5 {
        let id = h.call_user(HANK_SIP).await;
        h.until_state(&id, "established").await;
        hang_up(&h, &id).await;
    }
    // What counts is that every call was set up and ended through the losses. SIPp's own
    // record is not: its scenario engine aborts a call when a retransmission meets it in
    // the middle of a step (say an ACK sent again while it resends its 200), even though
    // ringside got what it needed.
    phone.stop().await;
}

#[tokio::test]
async fn a_phone_that_never_answers_the_bye_holds_up_no_other_call() {
    // The phone takes the BYE and says nothing: ringside sends it again for 32 s (Timer F).
    let xml = std::fs::read_to_string(scenario("uas-answer.xml")).unwrap();
    let after_bye =
        &xml[xml.find(r#"<recv request="BYE"/>"#).unwrap()..xml.find("</scenario>").unwrap()];
    let mute = variant(
        "uas-answer.xml",
        &[(
            after_bye,
            "<recv request=\"BYE\"/>\n  <pause milliseconds=\"3000\"/>\n",
        )],
    );
    let (h, sip_port) = sip_server().await;
    let phone = Phone::register_and_run(sip_port, &mute, &["-m", "2"]).await;
    let first = h.call_user(HANK_SIP).await;
    h.until_state(&first, "established").await;
    hang_up(&h, &first).await;
    // The next call goes out at once, while that BYE is still unanswered.
    let next = h.call_user(HANK_SIP).await;
    h.until_state(&next, "established").await;
    hang_up(&h, &next).await;
    phone.stop().await;
}

/// An OPTIONS ping to ringside's `port` from `me` over `transport` (UDP or TCP).
fn options(port: u16, me: std::net::SocketAddr, transport: &str) -> String {
    format!(
        "OPTIONS sip:bot@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/{transport} {me};branch=z9hG4bKping{transport}\r\n\
         From: <sip:ping@127.0.0.1>;tag=p1\r\nTo: <sip:bot@127.0.0.1:{port}>\r\n\
         Call-ID: ping-{transport}@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

/// A TCP connection to ringside's SIP `port` (the listener starts just after ringside does).
async fn sip_tcp(port: u16) -> tokio::net::TcpStream {
    for _ in 0..100 {
        if let Ok(t) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("SIP listens on TCP port {port}");
}

#[tokio::test]
async fn with_no_address_configured_sip_listens_on_loopback_5060_and_takes_calls_over_tcp() {
    let h = Harness::start_with("\n[sip]\nrtp_ports = [44300, 44400]\n").await;
    // UDP: an OPTIONS ping is answered.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = sock.local_addr().unwrap();
    sock.send_to(options(5060, me, "UDP").as_bytes(), "127.0.0.1:5060")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("an answer over UDP")
        .unwrap();
    assert!(
        buf[..n].starts_with(b"SIP/2.0 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    // TCP: SIPp's caller over one TCP connection, answered by the bot, hangs up after 0.5 s.
    let (sipp, dir) = spawn_caller(5060, &["-sn", "uac", "-d", "500", "-t", "t1"]);
    let incoming = h.next_incoming().await;
    let id = incoming.data["id"].as_str().unwrap().to_string();
    answer(&h, &id).await;
    let notes = h.until_state(&id, "terminated").await;
    assert_eq!(notes.last().unwrap().change, "deleted", "the phone's BYE");
    let (ok, errors) = sipp_result(sipp, &dir).await;
    assert!(ok, "a call over TCP: {errors}");
}

#[tokio::test]
async fn an_endless_message_over_tcp_gets_its_connection_closed_and_others_are_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let _h = Harness::start_with(&format!(
        "\n[sip]\ntcp = [\"127.0.0.1:{port}\"]\nrtp_ports = [44300, 44400]\n"
    ))
    .await;
    // A request line, then headers that never end: past 64 KB the connection is closed.
    let mut endless = sip_tcp(port).await;
    let mut sent = 0;
    let line = format!("X-Junk: {}\r\n", "j".repeat(1000));
    endless
        .write_all(format!("OPTIONS sip:bot@127.0.0.1:{port} SIP/2.0\r\n").as_bytes())
        .await
        .unwrap();
    while sent < 1_000_000 {
        if endless.write_all(line.as_bytes()).await.is_err() {
            break; // closed by ringside
        }
        sent += line.len();
    }
    let mut buf = vec![0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match endless.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert_eq!(closed, Ok(true), "ringside closed the endless connection");
    // Another connection is answered as ever.
    let mut tcp = sip_tcp(port).await;
    let me = tcp.local_addr().unwrap();
    tcp.write_all(options(port, me, "TCP").as_bytes())
        .await
        .unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("an answer over TCP")
        .unwrap();
    assert!(
        buf[..n].starts_with(b"SIP/2.0 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
}

#[tokio::test]
async fn sip_over_tls_presents_the_servers_certificate_challenges_a_register_and_carries_a_call() {
    use rustls::pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tls_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let h = Harness::start_with(&format!(
        "\n[sip]\nudp = [\"127.0.0.1:{}\"]\ntls = [\"127.0.0.1:{tls_port}\"]\nrtp_ports = [44300, 44400]\n",
        free_udp_port()
    ))
    .await;
    // Dev mode generated the certificate (for localhost and 127.0.0.1): trust only it.
    let pem = std::fs::read(h.dir.join("tls").join("cert.pem")).expect("generated certificate");
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = sip_tcp(tls_port).await;
    let local = tcp.local_addr().unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
            tcp,
        )
        .await
        .expect("the TLS handshake verifies ringside's certificate");
    let register = format!(
        "REGISTER sips:127.0.0.1:{tls_port} SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch=z9hG4bKtls1\r\n\
         From: <sips:hank@127.0.0.1>;tag=t1\r\nTo: <sips:hank@127.0.0.1>\r\nCall-ID: tls-1@127.0.0.1\r\n\
         CSeq: 1 REGISTER\r\nContact: <sips:hank@{local};transport=tls>\r\nExpires: 60\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    tls.write_all(register.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
        .await
        .expect("an answer over TLS")
        .unwrap();
    let challenge = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
    assert!(
        challenge.contains("WWW-Authenticate: Digest"),
        "{challenge}"
    );

    // A call over the same TLS connection: INVITE, the bot answers, ACK, BYE.
    let sdp = "v=0\r\no=c 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9000 RTP/AVP 0\r\n";
    let dialog = |method: &str, cseq: u32, to_tag: &str, branch: &str| {
        format!(
            "{method} sips:bot@127.0.0.1:{tls_port} SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch=z9hG4bK{branch}\r\n\
             From: <sips:carol@127.0.0.1>;tag=c1\r\nTo: <sips:bot@127.0.0.1:{tls_port}>{to_tag}\r\n\
             Call-ID: tls-call@127.0.0.1\r\nCSeq: {cseq} {method}\r\n\
             Contact: <sips:carol@{local};transport=tls>\r\nMax-Forwards: 70\r\n"
        )
    };
    let invite = format!(
        "{}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        dialog("INVITE", 1, "", "inv1"),
        sdp.len()
    );
    tls.write_all(invite.as_bytes()).await.unwrap();
    let id = h.next_incoming().await.data["id"]
        .as_str()
        .unwrap()
        .to_string();
    answer(&h, &id).await;
    let mut seen = String::new();
    let ok_to_invite = loop {
        let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
            .await
            .expect("the 200 OK over TLS")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        if let Some(at) = seen.find("SIP/2.0 200 OK")
            && seen[at..].contains("m=audio")
        {
            break seen[at..].to_string();
        }
    };
    assert!(ok_to_invite.contains("CSeq: 1 INVITE"), "{ok_to_invite}");
    let to_tag = ok_to_invite
        .lines()
        .find(|l| l.starts_with("To:"))
        .and_then(|l| l.find(";tag=").map(|i| l[i..].to_string()))
        .expect("the 200 carries the To tag");
    let ack = format!(
        "{}Content-Length: 0\r\n\r\n",
        dialog("ACK", 1, &to_tag, "ack1")
    );
    let bye = format!(
        "{}Content-Length: 0\r\n\r\n",
        dialog("BYE", 2, &to_tag, "bye1")
    );
    tls.write_all(format!("{ack}{bye}").as_bytes())
        .await
        .unwrap();
    let notes = h.until_state(&id, "terminated").await;
    assert_eq!(notes.last().unwrap().change, "deleted", "the phone's BYE");
}

#[tokio::test]
async fn with_authenticated_invites_a_phone_must_answer_the_challenge() {
    let port = free_udp_port();
    let h = Harness::start_with(&format!(
        "\n[sip]\nudp = [\"127.0.0.1:{port}\"]\nrtp_ports = [44500, 44600]\n\
         digest = [\"MD5\"]\nauthenticate_invites = true\n"
    ))
    .await;
    // Wrong password: 407, then 403; nothing reaches the bot.
    let (sipp, dir) = spawn_caller(
        port,
        &[
            "-sf",
            &scenario("uac-auth-wrong.xml"),
            "-au",
            "hank",
            "-ap",
            "not-the-password",
        ],
    );
    let (ok, errors) = sipp_result(sipp, &dir).await;
    assert!(ok, "the wrong password got 403: {errors}");
    // The right one: the call reaches the bot as Hank.
    let (sipp, dir) = spawn_caller(
        port,
        &[
            "-sf",
            &scenario("uac-auth.xml"),
            "-au",
            "hank",
            "-ap",
            HANK_PASSWORD,
        ],
    );
    let incoming = h.next_incoming().await;
    assert_eq!(
        incoming.data["source"]["identity"]["user"]["id"], HANK_SIP,
        "the first call the bot sees is the authenticated one"
    );
    let id = incoming.data["id"].as_str().unwrap().to_string();
    answer(&h, &id).await;
    h.until_state(&id, "terminated").await;
    let (ok, errors) = sipp_result(sipp, &dir).await;
    assert!(ok, "the authenticated call went through: {errors}");
}

#[tokio::test]
async fn a_late_offer_is_answered_with_ringsides_offer_in_the_200() {
    let (h, sipp, dir) = phone_calls(&["-sf", &scenario("uac-late-offer.xml")]).await;
    let id = h.next_incoming().await.data["id"]
        .as_str()
        .unwrap()
        .to_string();
    answer(&h, &id).await;
    h.until_state(&id, "terminated").await;
    let (ok, errors) = sipp_result(sipp, &dir).await;
    assert!(
        ok,
        "the 200 carried an offer and the call completed: {errors}"
    );
}

#[tokio::test]
async fn with_authenticated_invites_a_trunks_carrier_still_calls_in_unchallenged() {
    let port = free_udp_port();
    let h = Harness::start_with(&format!(
        "\n[sip]\nudp = [\"127.0.0.1:{port}\"]\nrtp_ports = [44700, 44800]\n\
         authenticate_invites = true\n\
         [[sip.trunks]]\nname = \"carrier\"\nproxy = \"sip:127.0.0.1:5999\"\naccept_from = [\"127.0.0.1\"]\n"
    ))
    .await;
    let (sipp, dir) = spawn_caller(port, &["-sf", &scenario("uac-from-trunk.xml")]);
    let incoming = h.next_incoming().await;
    assert_eq!(
        incoming.data["source"]["identity"]["phone"]["id"],
        "+14255550123"
    );
    let id = incoming.data["id"].as_str().unwrap().to_string();
    answer(&h, &id).await;
    h.until_state(&id, "terminated").await;
    let (ok, errors) = sipp_result(sipp, &dir).await;
    assert!(
        ok,
        "the carrier's call went through without a challenge: {errors}"
    );
}
