//! The console's data: `GET /console`, the admin event stream that starts with what the
//! console draws and then carries each change, and the recordings it lists and plays.

use crate::common::*;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

async fn console(h: &Harness) -> EventStream {
    let url = format!("{}/admin/events", h.base);
    let mut s = EventStream::open(h, &url, Some(ADMIN)).await;
    let hello = s.next().await;
    assert_eq!(hello["type"], "hello", "{hello}");
    s
}

fn delivered(e: &Value, call: &str) -> bool {
    e["type"] == "notification" && e["callId"] == call && e["state"] == "delivered"
}

#[tokio::test]
async fn the_console_page_and_its_feed_need_the_admin_token() {
    let h = Harness::start().await;
    let page = h
        .client
        .get(format!("{}/console", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("ringside console"));
    for path in ["/admin/events", "/admin/recordings"] {
        let (s, v, _) = h.req_as("wrong", "GET", path, None).await;
        assert_eq!(s, 401, "{path}: {v}");
        assert_eq!(v["error"]["code"], "InvalidAuthenticationToken");
    }
    let (s, v) = h.admin("GET", "/recordings/nope/content", None).await;
    assert_eq!(s, 404, "{v}");
}

#[tokio::test]
async fn a_console_sees_each_notification_with_the_bots_answer_and_the_call_as_it_changes() {
    let h = Harness::start().await;
    let mut feed = console(&h).await;
    let call = h.call_user(ALICE).await;
    // Every notification of the call arrives queued, then delivered with the bot's status.
    let first = feed
        .until("the first notification queued", |e| {
            e["type"] == "notification" && e["callId"] == call.as_str()
        })
        .await;
    assert_eq!(first["state"], "pending");
    assert_eq!(first["url"], h.callback());
    assert_eq!(
        first["body"]["value"][0]["resourceData"]["state"], "establishing",
        "the payload exactly as sent: {first}"
    );
    let done = feed.until("a delivery", |e| delivered(e, &call)).await;
    let attempt = &done["attempts"][0];
    assert_eq!(attempt["status"], 202, "{done}");
    assert!(attempt["durationMs"].as_u64().is_some());
    // The call itself: its Graph shape and roster as they change.
    let est = feed
        .until("the call established", |e| {
            e["type"] == "call" && e["view"]["call"]["state"] == "established"
        })
        .await;
    assert_eq!(est["summary"]["id"], call.as_str());
    assert_eq!(est["view"]["call"]["id"], call.as_str());
    assert!(
        est["view"]["participants"]
            .as_array()
            .is_some_and(|p| p.len() == 2),
        "the bot and Alice: {est}"
    );
    let (s, _, _) = h
        .req(
            "DELETE",
            &format!("/v1.0/communications/calls/{call}"),
            None,
        )
        .await;
    assert_eq!(s, 204);
    feed.until("the call gone", |e| {
        e["type"] == "call" && e["summary"]["id"] == call.as_str() && e["summary"]["gone"] == true
    })
    .await;

    // A console opened later draws the same history.
    let url = format!("{}/admin/events", h.base);
    let mut late = EventStream::open(&h, &url, Some(ADMIN)).await;
    let hello = late.next().await;
    let notes: Vec<&Value> = hello["history"]["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["callId"] == call.as_str())
        .collect();
    assert!(notes.len() >= 4, "establishing … terminated: {hello}");
    let seqs: Vec<i64> = notes.iter().map(|n| n["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    let summary = hello["history"]["calls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == call.as_str())
        .expect("the ended call is remembered")
        .clone();
    assert_eq!(summary["gone"], true);
    assert_eq!(summary["state"], "terminated");
    assert!(hello["health"]["media"]["ticks"].is_u64());
    assert!(hello["health"]["driver"]["batches"].is_u64());
}

#[tokio::test]
async fn a_dead_letter_shows_its_attempts_and_redelivering_it_is_seen_delivered() {
    let h = Harness::start().await;
    let mut feed = console(&h).await;
    h.hooks.status.store(500, Ordering::SeqCst);
    let call = h.call_user(ALICE).await;
    let dead = feed
        .until("a dead letter", |e| {
            e["type"] == "notification" && e["callId"] == call.as_str() && e["state"] == "dead"
        })
        .await;
    let attempts = dead["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 4, "the configured attempts: {dead}");
    assert!(attempts.iter().all(|a| a["status"] == 500));
    assert!(attempts[0]["error"].as_str().unwrap().contains("500"));
    h.hooks.status.store(0, Ordering::SeqCst);
    let seq = dead["seq"].as_i64().unwrap();
    let (s, _) = h
        .admin("POST", &format!("/dead-letters/{seq}/redeliver"), None)
        .await;
    assert_eq!(s, 202);
    let back = feed
        .until("the redelivery", |e| {
            e["type"] == "notification" && e["seq"] == seq && e["state"] == "delivered"
        })
        .await;
    assert_eq!(back["attempts"].as_array().unwrap().len(), 5, "{back}");
}

#[tokio::test]
async fn directory_changes_and_new_recordings_are_announced_and_recordings_play() {
    let h = Harness::start().await;
    let mut feed = console(&h).await;
    let (s, _) = h
        .admin("POST", "/tenants", Some(json!({"name": "Fabrikam"})))
        .await;
    assert_eq!(s, 201);
    feed.until("the directory changed", |e| e["type"] == "directory")
        .await;

    let call = h.call_user(ALICE).await;
    h.until_state(&call, "established").await;
    let (s, v, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{call}/recordResponse"),
            Some(
                json!({"maxRecordDurationInSeconds": 1, "playBeep": false, "bargeInAllowed": true}),
            ),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    feed.until("a recording", |e| e["type"] == "recording")
        .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let listed = loop {
        let (_, v) = h.admin("GET", "/recordings", None).await;
        let done = v["value"].as_array().and_then(|a| {
            a.iter()
                .find(|r| r["callId"] == call.as_str() && r["durationMs"].is_i64())
                .cloned()
        });
        if let Some(r) = done {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the finished recording listed: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(listed["kind"], "response");
    let wav = h
        .client
        .get(format!(
            "{}/admin/recordings/{}/content",
            h.base,
            listed["id"].as_str().unwrap()
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(wav.status(), 200);
    assert_eq!(wav.headers()["content-type"], "audio/wav");
    assert!(wav.bytes().await.unwrap().starts_with(b"RIFF"));
}
