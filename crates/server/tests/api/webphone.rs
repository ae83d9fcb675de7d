//! The web phone, with a browser as ringside sees one (full ICE, DTLS-SRTP, Opus over real
//! UDP): a signed-in user calls the bot, the bot answers and plays a prompt the browser
//! hears, the browser hangs up; bad offers and wrong tokens change nothing.

use crate::common::*;
use serde_json::{Value, json};
use std::time::Duration;
use webrtc::client::{Browser, frequency, tone};

async fn user_token(h: &Harness, user: &str) -> String {
    let (s, v) = h.admin("POST", &format!("/users/{user}/token"), None).await;
    assert_eq!(s, 201, "{v}");
    v["token"].as_str().unwrap().to_string()
}

async fn web_call(h: &Harness, token: &str, body: Value) -> (u16, Value) {
    let (s, v, _) = h.req_as(token, "POST", "/webrtc/calls", Some(body)).await;
    (s, v)
}

#[tokio::test]
async fn a_browser_user_calls_the_bot_hears_its_prompt_and_hangs_up() {
    let h = Harness::start().await;
    let token = user_token(&h, ALICE).await;
    let (mut browser, offer) = Browser::offer().unwrap();
    let (s, v) = web_call(&h, &token, json!({"target": APP, "sdp": offer})).await;
    assert_eq!(s, 201, "{v}");
    let (call, leg) = (
        v["callId"].as_str().unwrap().to_string(),
        v["legId"].as_str().unwrap().to_string(),
    );
    browser.accept_answer(v["sdp"].as_str().unwrap()).unwrap();

    // The browser runs on its own thread, speaking 440 Hz, until it has heard 1.5 s.
    let media = std::thread::spawn(move || {
        browser
            .run(
                Duration::from_secs(15),
                &mut |n| Some(tone(440.0, n)),
                &mut |b| b.heard.iter().filter(|s| s.abs() > 2000).count() > 24_000,
            )
            .unwrap();
        browser
    });

    let n = h.next_incoming().await;
    assert_eq!(
        n.data["source"]["identity"]["user"]["id"], ALICE,
        "the caller is the signed-in user"
    );
    let answer = json!({"callbackUri": h.callback(), "acceptedModalities": ["audio"], "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}});
    let (s, v, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{call}/answer"),
            Some(answer),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    h.until_state(&call, "established").await;
    // The prompt is a 127 Hz sine (the hooks' /prompt/<ms>.wav).
    let prompt = json!({"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": {"uri": format!("{}/prompt/3000.wav", h.hooks.url)}});
    let (s, v, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{call}/playPrompt"),
            Some(json!({"prompts": [prompt]})),
        )
        .await;
    assert_eq!(s, 200, "{v}");

    let browser = tokio::task::spawn_blocking(move || media.join().unwrap())
        .await
        .unwrap();
    assert!(browser.connected, "ICE and DTLS came up");
    let loud: Vec<i16> = browser
        .heard
        .iter()
        .copied()
        .skip_while(|s| s.abs() < 2000)
        .collect();
    assert!(
        loud.len() >= 16_000,
        "the browser heard the prompt ({} loud samples)",
        loud.len()
    );
    let hz = frequency(&loud[4_000..16_000]);
    assert!(
        (hz - 127.3).abs() < 12.0,
        "the browser hears the prompt's 127 Hz: {hz:.0} Hz"
    );

    let (s, _, _) = h
        .req_as(&token, "DELETE", &format!("/webrtc/calls/{leg}"), None)
        .await;
    assert_eq!(s, 204);
    let notes = h.until_state(&call, "terminated").await;
    assert_eq!(notes.last().unwrap().change, "deleted");
}

#[tokio::test]
async fn bad_offers_wrong_tokens_and_unknown_targets_change_nothing() {
    let h = Harness::start().await;
    let token = user_token(&h, ALICE).await;
    let (_, offer) = Browser::offer().unwrap();
    for (body, status, says) in [
        (json!({"target": APP, "sdp": "v=0\r\nnot sdp"}), 400, "sdp"),
        (json!({"target": APP, "sdp": 7}), 400, "sdp"),
        (json!({"target": APP}), 400, "sdp"),
        (
            json!({"target": "no-such-app", "sdp": offer}),
            404,
            "no-such-app",
        ),
    ] {
        let (s, v) = web_call(&h, &token, body.clone()).await;
        assert_eq!(s, status, "{body}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(says),
            "{v}"
        );
    }
    // An app's token is not a user's, nor is no token, nor another user's leg to hang up.
    let app = h.token().await;
    let (s, v) = web_call(&h, &app, json!({"target": APP, "sdp": offer})).await;
    assert_eq!(s, 401, "{v}");
    let (s, _) = web_call(&h, "", json!({"target": APP, "sdp": offer})).await;
    assert_eq!(s, 401);
    let (s, _, _) = h
        .req_as(&token, "DELETE", "/webrtc/calls/not-a-leg", None)
        .await;
    assert_eq!(s, 404);
    // A user token is not an app's either.
    let (s, _, _) = h
        .req_as(&token, "GET", "/v1.0/communications/calls", None)
        .await;
    assert_eq!(s, 401);
    let (s, v) = h.admin("GET", "/calls", None).await;
    assert_eq!(s, 200);
    assert_eq!(v["calls"], json!([]), "nothing was created");
}
