//! Notification delivery: in order, at least once, retried, dead-lettered, redeliverable,
//! redirects followed for incoming calls, and nothing lost across kill -9.

use crate::common::*;
use crate::process::Process;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use std::time::Duration;

#[tokio::test]
async fn failing_webhook_is_retried_and_notifications_stay_in_order() {
    let h = Harness::start().await;
    h.hooks.fail_next.store(3, Ordering::SeqCst);
    let id = h.call_user(ALICE).await;
    let notes = h.until_state(&id, "established").await;
    assert_eq!(
        states(&notes),
        ["establishing", "ringing", "established"],
        "retries keep the order"
    );
    assert!(h.hooks.received.load(Ordering::SeqCst) >= 6);
}

#[tokio::test]
async fn undeliverable_notifications_are_dead_lettered_then_redelivered_in_place() {
    let h = Harness::start().await;
    h.hooks.status.store(500, Ordering::SeqCst);
    let id = h.call_user(ALICE).await;
    // 4 attempts per notification (config), 50 ms base backoff.
    eventually("three dead letters", || async {
        let (_, v) = h.admin("GET", "/dead-letters", None).await;
        v["value"].as_array().is_some_and(|a| a.len() >= 3)
    })
    .await;
    let (_, dead) = h.admin("GET", "/dead-letters", None).await;
    let letters = dead["value"].as_array().unwrap();
    assert!(
        letters
            .iter()
            .all(|l| l["callId"] == id.as_str() && l["attempts"] == 4)
    );
    assert!(letters[0]["lastError"].as_str().unwrap().contains("500"));
    h.hooks.status.store(0, Ordering::SeqCst);
    for l in letters {
        let (s, _) = h
            .admin(
                "POST",
                &format!("/dead-letters/{}/redeliver", l["seq"]),
                None,
            )
            .await;
        assert_eq!(s, 202);
    }
    let notes = h.until_state(&id, "established").await;
    assert_eq!(states(&notes), ["establishing", "ringing", "established"]);
    let (s, _) = h
        .admin("POST", "/dead-letters/999999/redeliver", None)
        .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn incoming_call_notification_follows_307_to_another_instance() {
    let h = Harness::start().await;
    // A second receiver answers the first with 307 → itself.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = std::sync::Arc::new(tokio::sync::Mutex::new(Vec::<(String, Value)>::new()));
    let g = got.clone();
    let target = format!("http://{addr}/pinned");
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, body: axum::body::Bytes| {
        let g = g.clone();
        let target = target.clone();
        async move {
            use axum::response::IntoResponse;
            if uri.path() == "/pinned" {
                g.lock().await.push((
                    uri.path().to_string(),
                    serde_json::from_slice(&body).unwrap(),
                ));
                return axum::http::StatusCode::ACCEPTED.into_response();
            }
            (
                axum::http::StatusCode::TEMPORARY_REDIRECT,
                [("location", target)],
            )
                .into_response()
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (s, _) = h
        .admin(
            "PATCH",
            &format!("/apps/{APP}"),
            Some(json!({"webhook": format!("http://{addr}/front")})),
        )
        .await;
    assert_eq!(s, 200);
    let (_, v) = h
        .admin(
            "POST",
            &format!("/users/{ALICE}/call"),
            Some(json!({"target": APP})),
        )
        .await;
    let call = v["callId"].as_str().unwrap().to_string();
    eventually("redirected delivery", || async {
        !got.lock().await.is_empty()
    })
    .await;
    let first = got.lock().await[0].1.clone();
    assert_eq!(first["value"][0]["changeType"], "created");
    assert_eq!(first["value"][0]["resourceData"]["id"], call.as_str());
}

/// kill -9 in the middle of traffic: acknowledged calls, operations and undelivered
/// notifications are all there after restart, and delivery resumes in order.
#[tokio::test]
async fn kill_9_loses_nothing_acknowledged() {
    kill_9_in_traffic("").await;
}

/// The same with the state in PostgreSQL (`[store] url`).
#[tokio::test]
async fn kill_9_loses_nothing_acknowledged_with_postgres() {
    if let Some(url) = store::testing::fresh_postgres("kill_9") {
        kill_9_in_traffic(&format!("\n[store]\nurl = \"{url}\"\n")).await;
    }
}

async fn kill_9_in_traffic(store: &str) {
    let hooks_h = Harness::start().await; // only for its webhook receiver
    let hook = hooks_h.hooks.clone();
    // Many attempts: while the webhook is down nothing may be dead-lettered.
    let mut ringside = Process::start(&hook.url, 100, store).await;
    let (base, client, token) = (
        ringside.base.clone(),
        reqwest::Client::new(),
        ringside.token().await,
    );
    // The webhook is down: notifications pile up in the outbox.
    hook.status.store(503, Ordering::SeqCst);
    // Traffic from eight clients at once; the server is killed in the middle of it.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut workers = vec![];
    for _ in 0..8 {
        let (client, base, token, acked, cb) = (
            client.clone(),
            base.clone(),
            token.clone(),
            acked.clone(),
            format!("{}/callback", hook.url),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let r = client
                    .post(format!("{base}/v1.0/communications/calls"))
                    .bearer_auth(&token)
                    .json(&p2p_body(&cb, CAROL_NO_ANSWER))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 201 => {
                        let v: Value = match r.json().await {
                            Ok(v) => v,
                            Err(_) => return,
                        };
                        acked
                            .lock()
                            .unwrap()
                            .push(v["id"].as_str().unwrap().to_string());
                    }
                    _ => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let first = acked.lock().unwrap()[0].clone();
    let r = client
        .post(format!(
            "{base}/v1.0/communications/calls/{first}/subscribeToTone"
        ))
        .bearer_auth(&token)
        .json(&json!({"clientContext": "before-crash"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let op: Value = r.json().await.unwrap();
    let op_id = op["id"].as_str().unwrap().to_string();
    ringside.kill(); // SIGKILL, mid-traffic
    for w in workers {
        w.await.unwrap();
    }
    let calls = acked.lock().unwrap().clone();
    assert!(
        calls.len() >= 10,
        "traffic was flowing: {} calls acknowledged",
        calls.len()
    );

    // Requests the dead process had already written may still wait in the hook's sockets:
    // let the hook refuse them (503) before it heals. One it accepted anyway would have no
    // one to hear the 202, and would rightly come again after the restart.
    tokio::time::sleep(Duration::from_millis(300)).await;
    hook.status.store(0, Ordering::SeqCst);
    ringside.restart().await;
    for id in &calls {
        let r = client
            .get(format!("{base}/v1.0/communications/calls/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "call {id} survived");
    }
    let r = client
        .get(format!(
            "{base}/v1.0/communications/calls/{}/operations/{op_id}",
            calls[0]
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the acknowledged operation survived");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["clientContext"], "before-crash");
    // The tokens issued before the crash still work, and the pending notifications arrive.
    let mut first = std::collections::HashMap::new();
    for id in &calls {
        let notes = hooks_h.until_state(id, "establishing").await;
        assert_eq!(notes[0].state(), Some("establishing"));
        first.insert(id.clone(), notes.last().unwrap().data.clone());
    }
    for id in &calls {
        let r = client
            .delete(format!("{base}/v1.0/communications/calls/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let notes = hooks_h.until_state(id, "terminated").await;
        let st = states(&notes);
        assert_eq!(st.last().unwrap(), "terminated");
        // Delivery is at least once: a POST whose 202 the killed process never read comes
        // again, identical. Nothing else repeats.
        let again: Vec<_> = notes
            .iter()
            .filter(|n| n.state() == Some("establishing"))
            .collect();
        assert!(
            again.len() <= 1 && again.iter().all(|n| n.data == first[id]),
            "nothing but an unacknowledged POST delivered twice: {st:?}"
        );
    }
    ringside.kill();
}

/// kill -9 while a prompt plays and the call is recorded: after the restart the prompt plays
/// again to its end, the recording made before the crash is kept (as long as it got), and
/// the call goes on being recorded in a new file.
#[tokio::test]
async fn kill_9_during_media_restarts_the_prompt_and_keeps_the_recording() {
    let h = Harness::start().await;
    let mut ringside = Process::start(&h.hooks.url, 4, "").await;
    let (base, client, token) = (
        ringside.base.clone(),
        reqwest::Client::new(),
        ringside.token().await,
    );
    let post = |path: String, body: Value| {
        let r = client
            .post(format!("{base}{path}"))
            .bearer_auth(&token)
            .json(&body)
            .send();
        async move {
            let r = r.await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (s, call) = post(
        "/v1.0/communications/calls".into(),
        p2p_body(&format!("{}/callback", h.hooks.url), ALICE),
    )
    .await;
    assert_eq!(s, 201);
    let id = call["id"].as_str().unwrap().to_string();
    h.until_state(&id, "established").await;
    let (s, _) = post(
        format!("/beta/communications/calls/{id}/startRecording"),
        json!({}),
    )
    .await;
    assert_eq!(s, 202);
    let prompt = json!({"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": {"uri": format!("{}/prompt/3000.wav", h.hooks.url)}});
    let (s, op) = post(
        format!("/v1.0/communications/calls/{id}/playPrompt"),
        json!({"prompts": [prompt], "clientContext": "survives"}),
    )
    .await;
    assert_eq!(s, 200);
    let op = op["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(2300)).await;
    ringside.kill();
    ringside.restart().await;
    let notes = h
        .until(&id, "prompt done", |n| n.resource.ends_with(&op))
        .await;
    let d = &notes.last().unwrap().data;
    assert_eq!(
        (
            d["status"].as_str(),
            d["completionReason"].as_str(),
            d["clientContext"].as_str()
        ),
        (
            Some("completed"),
            Some("completedSuccessfully"),
            Some("survives")
        )
    );
    let list: Value = client
        .get(format!("{base}/beta/communications/calls/{id}/recordings"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let recs = list["value"].as_array().unwrap();
    assert_eq!(recs.len(), 2, "{list}");
    assert_eq!(recs[0]["status"], "available", "the one cut by the crash");
    let ms = recs[0]["durationInMilliseconds"].as_i64().unwrap();
    assert!((1000..=2600).contains(&ms), "kept up to the crash: {ms} ms");
    assert_eq!(recs[1]["status"], "recording", "and recording goes on");
    let wav = client
        .get(recs[0]["recordingContentUrl"].as_str().unwrap())
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let r = hound::WavReader::new(std::io::Cursor::new(wav.to_vec())).unwrap();
    assert_eq!(r.duration() as i64 * 1000 / 16_000, ms, "a playable file");
    ringside.kill();
}
