//! Media operations: prompts timed by the real WAV, the media FIFO, tones, recordResponse.

use crate::common::*;
use serde_json::json;
use std::time::Instant;

async fn established(h: &Harness, user: &str) -> String {
    let id = h.call_user(user).await;
    h.until_state(&id, "established").await;
    id
}

fn prompt(h: &Harness, ms: u64) -> serde_json::Value {
    json!({"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": {"uri": format!("{}/prompt/{ms}.wav", h.hooks.url), "resourceId": format!("p{ms}")}})
}

#[tokio::test]
async fn play_prompt_completes_after_the_wav_has_played_and_echoes_client_context() {
    let h = Harness::start().await;
    let id = established(&h, ALICE).await;
    let started = Instant::now();
    let (s, v, headers) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{id}/playPrompt"),
            Some(json!({"prompts": [prompt(&h, 700)], "clientContext": "ctx-1", "loop": false})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["@odata.type"], "#microsoft.graph.playPromptOperation");
    assert_eq!(v["status"], "running");
    let op = v["id"].as_str().unwrap().to_string();
    assert!(
        headers["location"]
            .to_str()
            .unwrap()
            .ends_with(&format!("/v1.0/communications/calls/{id}/operations/{op}"))
    );
    let notes = h
        .until(&id, "prompt done", |n| n.resource.ends_with(&op))
        .await;
    assert!(
        started.elapsed().as_millis() >= 700,
        "a 700 ms prompt took {:?}",
        started.elapsed()
    );
    let done = notes.last().unwrap();
    assert_eq!(done.change, "deleted");
    assert_eq!(done.data["status"], "completed");
    assert_eq!(done.data["clientContext"], "ctx-1");
    assert_eq!(done.data["completionReason"], "completedSuccessfully");
    let (s, v, _) = h
        .req(
            "GET",
            &format!("/v1.0/communications/calls/{id}/operations/{op}"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["status"], "completed");
}

#[tokio::test]
async fn prompts_play_in_order_and_bad_prompts_fail_their_operation_only() {
    let h = Harness::start().await;
    let id = established(&h, ALICE).await;
    let mut ops = vec![];
    for body in [
        json!({"prompts": [prompt(&h, 300)], "clientContext": "first"}),
        json!({"prompts": [{"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": {"uri": format!("{}/notwav", h.hooks.url)}}], "clientContext": "bad"}),
        json!({"prompts": [{"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": {"uri": format!("{}/missing.wav", h.hooks.url)}}], "clientContext": "missing"}),
        json!({"prompts": [prompt(&h, 200)], "clientContext": "second"}),
    ] {
        let (s, v, _) = h
            .req(
                "POST",
                &format!("/v1.0/communications/calls/{id}/playPrompt"),
                Some(body),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        ops.push(v["id"].as_str().unwrap().to_string());
    }
    let last = ops[3].clone();
    let notes = h
        .until(&id, "last prompt", |n| n.resource.ends_with(&last))
        .await;
    let done: Vec<(String, String)> = notes
        .iter()
        .filter(|n| n.resource.contains("/operations/"))
        .map(|n| {
            (
                n.data["clientContext"].as_str().unwrap().to_string(),
                n.data["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let first_pos = done.iter().position(|d| d.0 == "first").unwrap();
    let second_pos = done.iter().position(|d| d.0 == "second").unwrap();
    assert!(first_pos < second_pos, "FIFO order: {done:?}");
    let bad = notes
        .iter()
        .find(|n| n.data["clientContext"] == "bad")
        .unwrap();
    assert_eq!(bad.data["status"], "failed");
    assert!(
        bad.data["resultInfo"]["message"]
            .as_str()
            .unwrap()
            .contains("not a WAV"),
        "{}",
        bad.data
    );
    let missing = notes
        .iter()
        .find(|n| n.data["clientContext"] == "missing")
        .unwrap();
    assert!(
        missing.data["resultInfo"]["message"]
            .as_str()
            .unwrap()
            .contains("404"),
        "{}",
        missing.data
    );
    let (_, v, _) = h
        .req("GET", &format!("/v1.0/communications/calls/{id}"), None)
        .await;
    assert_eq!(
        v["state"], "established",
        "bad prompts leave the call alone"
    );
}

#[tokio::test]
async fn cancel_media_processing_fails_running_and_queued_prompts() {
    let h = Harness::start().await;
    let id = established(&h, ALICE).await;
    let (_, a, _) = h
        .req(
            "POST",
            &format!("/beta/communications/calls/{id}/playPrompt"),
            Some(json!({"prompts": [prompt(&h, 200)], "loop": true, "clientContext": "looping"})),
        )
        .await;
    let (_, b, _) = h
        .req(
            "POST",
            &format!("/beta/communications/calls/{id}/recordResponse"),
            Some(json!({"clientContext": "queued-record"})),
        )
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (s, v, _) = h
        .req(
            "POST",
            &format!("/beta/communications/calls/{id}/cancelMediaProcessing"),
            Some(json!({"clientContext": "cancel"})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["status"], "completed");
    assert_eq!(
        v["@odata.type"],
        "#microsoft.graph.cancelMediaProcessingOperation"
    );
    let b_id = b["id"].as_str().unwrap().to_string();
    let notes = h
        .until(&id, "record cancelled", |n| n.resource.ends_with(&b_id))
        .await;
    let ops: Vec<_> = notes
        .iter()
        .filter(|n| n.resource.contains("/operations/"))
        .collect();
    assert_eq!(
        ops.len(),
        2,
        "exactly one notification per cancelled operation, none for cancel itself"
    );
    assert!(ops[0].resource.ends_with(a["id"].as_str().unwrap()));
    for n in &ops {
        assert_eq!(n.data["status"], "failed");
        assert_eq!(n.data["resultInfo"]["code"], 400);
        assert_eq!(n.data["resultInfo"]["subcode"], 8508);
    }
    assert_eq!(ops[0].data["completionReason"], "mediaOperationCanceled");
    assert_eq!(ops[1].data["completionReason"], "operationCanceled");
}

#[tokio::test]
async fn digits_pressed_by_the_user_arrive_as_tone_info_in_order() {
    let h = Harness::start().await;
    let id = h.call_user(ERIN_DTMF).await;
    h.until_state(&id, "established").await;
    let (s, v, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{id}/subscribeToTone"),
            Some(json!({"clientContext": "tones"})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["status"], "completed");
    let notes = h
        .until(&id, "third tone", |n| n.data["toneInfo"]["sequenceId"] == 3)
        .await;
    let tones: Vec<(i64, String)> = notes
        .iter()
        .filter_map(|n| n.data.get("toneInfo"))
        .map(|t| {
            (
                t["sequenceId"].as_i64().unwrap(),
                t["tone"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        tones,
        [
            (1, "tone1".to_string()),
            (2, "tone2".to_string()),
            (3, "pound".to_string())
        ]
    );
    assert!(
        notes
            .iter()
            .filter(|n| n.data.get("toneInfo").is_some())
            .all(|n| n.data["state"] == "established")
    );
}

#[tokio::test]
async fn record_response_stops_on_pound_and_the_recording_downloads_with_its_token() {
    let h = Harness::start().await;
    let id = h.call_user(ERIN_DTMF).await;
    h.until_state(&id, "established").await;
    let body = json!({"playBeep": false, "stopTones": ["#"], "maxRecordDurationInSeconds": 10, "initialSilenceTimeoutInSeconds": 10, "clientContext": "rec"});
    let (s, v, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{id}/recordResponse"),
            Some(body),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["@odata.type"], "#microsoft.graph.recordOperation");
    let op = v["id"].as_str().unwrap().to_string();
    let notes = h
        .until(&id, "record done", |n| n.resource.ends_with(&op))
        .await;
    let done = &notes.last().unwrap().data;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["completionReason"], "stopToneDetected");
    let url = done["recordingLocation"].as_str().unwrap();
    let token = done["recordingAccessToken"].as_str().unwrap();
    let resp = h.client.get(url).bearer_auth(token).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    let bytes = resp.bytes().await.unwrap();
    let wav = hound::WavReader::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    assert_eq!(wav.spec().sample_rate, 16_000);
    let resp = h.client.get(url).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = h.client.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn record_response_without_speech_ends_on_initial_silence_and_its_recording_expires() {
    let h = Harness::start_with("recording_retention_seconds = 2").await;
    let id = established(&h, ALICE).await;
    let body = json!({"prompts": [prompt(&h, 200)], "initialSilenceTimeoutInSeconds": 1, "maxRecordDurationInSeconds": 5});
    let (_, v, _) = h
        .req(
            "POST",
            &format!("/beta/communications/calls/{id}/recordResponse"),
            Some(body),
        )
        .await;
    let op = v["id"].as_str().unwrap().to_string();
    let notes = h
        .until(&id, "record done", |n| n.resource.ends_with(&op))
        .await;
    let d = &notes.last().unwrap().data;
    assert_eq!(d["completionReason"], "initialSilenceTimeout");
    let (url, token) = (
        d["recordingLocation"].as_str().unwrap(),
        d["recordingAccessToken"].as_str().unwrap(),
    );
    let get = |t: &str| {
        let r = reqwest::Client::new()
            .get(url)
            .bearer_auth(t.to_string())
            .send();
        async move { r.await.unwrap().status().as_u16() }
    };
    assert_eq!(get(token).await, 200);
    assert_eq!(get("not-the-token").await, 401);
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    assert_eq!(get(token).await, 404, "expired after the retention");
}

#[tokio::test]
async fn send_dtmf_tones_reach_the_user_and_complete() {
    let h = Harness::start().await;
    let id = established(&h, ALICE).await;
    let (s, v, _) = h.req("POST", &format!("/v1.0/communications/calls/{id}/sendDtmfTones"), Some(json!({"tones": ["tone1", "tone2", "star", "pound"], "delayBetweenTonesMs": 20, "clientContext": "dtmf"}))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "running");
    let op = v["id"].as_str().unwrap().to_string();
    let notes = h
        .until(&id, "dtmf done", |n| n.resource.ends_with(&op))
        .await;
    assert_eq!(
        notes.last().unwrap().data["completionReason"],
        "completedSuccessfully"
    );
    let (_, legs) = h.admin("GET", &format!("/legs?user={ALICE}"), None).await;
    assert!(
        legs["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["tonesHeard"] == "12*#"),
        "{legs}"
    );
}

#[tokio::test]
async fn keep_alive_lapse_ends_the_call_with_8537() {
    let h = Harness::start_with("keepalive_seconds = 1").await;
    let id = established(&h, ALICE).await;
    let notes = h.until_state(&id, "terminated").await;
    let r = &notes.last().unwrap().data["resultInfo"];
    assert_eq!(
        (r["code"].as_i64(), r["subcode"].as_i64()),
        (Some(408), Some(8537))
    );
}

#[tokio::test]
async fn prompts_that_time_out_are_too_large_or_not_playable_fail_with_a_reason_and_the_call_goes_on()
 {
    let h = Harness::start_with("prompt_timeout_ms = 400\nprompt_max_bytes = 100000").await;
    let id = established(&h, ALICE).await;
    let url = |p: &str| json!({"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": {"uri": format!("{}{p}", h.hooks.url)}});
    let cases = [
        ("/slow.wav", "timed out"),
        ("/big.wav", "larger than 100000 bytes"),
        ("/mulaw.wav", "unsupported"),
        ("/missing.wav", "HTTP 404"),
    ];
    for (path, why) in cases {
        let (s, v, _) = h
            .req(
                "POST",
                &format!("/v1.0/communications/calls/{id}/playPrompt"),
                Some(json!({"prompts": [url(path)], "clientContext": path})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let op = v["id"].as_str().unwrap().to_string();
        let notes = h.until(&id, path, |n| n.resource.ends_with(&op)).await;
        let d = &notes.last().unwrap().data;
        assert_eq!(d["status"], "failed", "{path}: {d}");
        assert_eq!(
            (
                d["resultInfo"]["code"].as_i64(),
                d["resultInfo"]["subcode"].as_i64()
            ),
            (Some(400), Some(8509)),
            "{path}"
        );
        let msg = d["resultInfo"]["message"].as_str().unwrap().to_lowercase();
        assert!(msg.contains(&why.to_lowercase()), "{path}: {msg}");
    }
    // The call is unaffected: a good prompt still plays to the end.
    let (s, v, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{id}/playPrompt"),
            Some(json!({"prompts": [prompt(&h, 200)]})),
        )
        .await;
    assert_eq!(s, 200);
    let op = v["id"].as_str().unwrap().to_string();
    let notes = h
        .until(&id, "good prompt", |n| n.resource.ends_with(&op))
        .await;
    assert_eq!(notes.last().unwrap().data["status"], "completed");
    let (s, v, _) = h
        .req("GET", &format!("/v1.0/communications/calls/{id}"), None)
        .await;
    assert_eq!((s, v["state"].as_str()), (200, Some("established")));
}

#[tokio::test]
async fn legs_that_end_by_themselves_leave_no_audio_port_behind() {
    // Found by the soak (tests/stress/soak.py): a simulated user who hung up, declined or was
    // busy was never let go of, so its scripted tasks and audio port stayed for good.
    let h = Harness::start().await;
    let frank = h.call_user(FRANK_HANGS_UP).await;
    let dave = h.call_user(DAVE_DECLINE).await;
    let bob = h.call_user(BOB_BUSY).await;
    let (s, v) = h
        .admin(
            "POST",
            &format!("/users/{ALICE}/call"),
            Some(json!({"target": APP, "script": {"hangupAfterMs": 200}})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let caller = v["callId"].as_str().unwrap().to_string();
    h.next_incoming().await;
    let answer = json!({"callbackUri": h.callback(), "acceptedModalities": ["audio"], "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}});
    let (s, v, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{caller}/answer"),
            Some(answer),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    for call in [&frank, &dave, &bob, &caller] {
        h.until_state(call, "terminated").await;
    }
    eventually(
        "every audio port is let go of once no call is up",
        || async {
            let (s, v) = h.admin("GET", "/media", None).await;
            assert_eq!(s, 200, "{v}");
            v["ports"] == 0
        },
    )
    .await;
}
