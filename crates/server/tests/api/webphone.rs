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

/// A tab's event stream (`GET /webrtc/events?token=`), read as the page's EventSource would;
/// its first event says the tab is ready.
async fn open_tab(h: &Harness, token: &str) -> EventStream {
    let url = format!("{}/webrtc/events?token={token}", h.base);
    let mut tab = EventStream::open(h, &url, None).await;
    assert_eq!(tab.next().await["type"], "ready");
    tab
}

#[tokio::test]
async fn a_bot_calls_a_signed_in_user_whose_browser_rings_answers_and_is_hung_up() {
    let h = Harness::start().await;
    let token = user_token(&h, ALICE).await;
    let mut tab = open_tab(&h, &token).await;

    // Alice is signed in: the bot's call rings her browser, not her script.
    let call = h.call_user(ALICE).await;
    let ring = tab.next().await;
    assert_eq!(ring["type"], "ring", "{ring}");
    let leg = ring["legId"].as_str().unwrap().to_string();
    h.until_state(&call, "ringing").await;

    let (mut browser, offer) = Browser::offer().unwrap();
    let (s, v, _) = h
        .req_as(
            &token,
            "POST",
            &format!("/webrtc/legs/{leg}/answer"),
            Some(json!({"sdp": offer})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    browser.accept_answer(v["sdp"].as_str().unwrap()).unwrap();
    assert_eq!(tab.next().await["type"], "answered");
    let media = std::thread::spawn(move || {
        browser
            .run(
                Duration::from_secs(10),
                &mut |n| Some(tone(440.0, n)),
                &mut |b| b.connected && b.sent > 25,
            )
            .unwrap();
        browser
    });
    h.until_state(&call, "established").await;
    let (s, v, _) = h
        .req(
            "GET",
            &format!("/v1.0/communications/calls/{call}/participants"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let ids: Vec<&str> = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["info"]["identity"]["user"]["id"].as_str())
        .collect();
    assert!(
        ids.contains(&ALICE),
        "the roster shows the browser's user: {v}"
    );
    // A second answer (another tab) finds the leg taken.
    let (s, _, _) = h
        .req_as(
            &token,
            "POST",
            &format!("/webrtc/legs/{leg}/answer"),
            Some(json!({"sdp": offer})),
        )
        .await;
    assert_eq!(s, 409);
    let browser = tokio::task::spawn_blocking(move || media.join().unwrap())
        .await
        .unwrap();
    assert!(browser.connected);

    // The bot hangs up: the tab hears that the call ended.
    let (s, _, _) = h
        .req(
            "DELETE",
            &format!("/v1.0/communications/calls/{call}"),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let ended = tab.next().await;
    assert_eq!(
        (ended["type"].as_str(), ended["legId"].as_str()),
        (Some("ended"), Some(leg.as_str())),
        "{ended}"
    );
    h.until_state(&call, "terminated").await;
}

#[tokio::test]
async fn a_browser_that_declines_fails_the_bots_call_and_a_cancelled_ring_stops_ringing() {
    let h = Harness::start().await;
    let token = user_token(&h, ALICE).await;
    let mut tab = open_tab(&h, &token).await;
    let call = h.call_user(ALICE).await;
    let leg = tab.next().await["legId"].as_str().unwrap().to_string();
    let (s, _, _) = h
        .req_as(&token, "POST", &format!("/webrtc/legs/{leg}/decline"), None)
        .await;
    assert_eq!(s, 204);
    let notes = h.until_state(&call, "terminated").await;
    let last = &notes.last().unwrap().data;
    assert_eq!(last["resultInfo"]["code"], 603, "{last}");

    // The bot gives up while the browser rings: the tab is told to stop ringing.
    let call = h.call_user(ALICE).await;
    let ring = loop {
        let e = tab.next().await;
        if e["type"] == "ring" {
            break e;
        }
        assert_eq!(
            e["legId"],
            leg.as_str(),
            "only the declined leg's notices come first: {e}"
        );
    };
    let second = ring["legId"].as_str().unwrap().to_string();
    let (s, _, _) = h
        .req(
            "DELETE",
            &format!("/v1.0/communications/calls/{call}"),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let stop = tab.next().await;
    assert_eq!(
        (stop["type"].as_str(), stop["legId"].as_str()),
        (Some("cancel"), Some(second.as_str())),
        "{stop}"
    );
    let (s, _, _) = h
        .req_as(
            &token,
            "POST",
            &format!("/webrtc/legs/{second}/decline"),
            None,
        )
        .await;
    assert_eq!(s, 409, "a ring that stopped cannot be declined");
}

#[tokio::test]
async fn keys_pressed_on_the_web_phones_keypad_reach_the_bot_as_tone_info() {
    let h = Harness::start().await;
    let token = user_token(&h, ALICE).await;
    let (mut browser, offer) = Browser::offer().unwrap();
    let (s, v) = web_call(&h, &token, json!({"target": APP, "sdp": offer})).await;
    assert_eq!(s, 201, "{v}");
    let call = v["callId"].as_str().unwrap().to_string();
    browser.accept_answer(v["sdp"].as_str().unwrap()).unwrap();
    h.next_incoming().await;
    let answer = json!({"callbackUri": h.callback(), "acceptedModalities": ["audio"], "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}});
    let (s, _, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{call}/answer"),
            Some(answer),
        )
        .await;
    assert_eq!(s, 202);
    h.until_state(&call, "established").await;
    let (s, _, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{call}/subscribeToTone"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200);
    browser.keys.extend("12#".chars());
    let media = std::thread::spawn(move || {
        browser
            .run(
                Duration::from_secs(8),
                &mut |_| Some([0; media::FRAME]),
                &mut |b| b.keys.is_empty() && b.sent > 40,
            )
            .unwrap();
    });
    let notes = h
        .until(&call, "third tone", |n| {
            n.data["toneInfo"]["sequenceId"] == 3
        })
        .await;
    let tones: Vec<String> = notes
        .iter()
        .filter_map(|n| n.data.get("toneInfo"))
        .map(|t| t["tone"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(tones, ["tone1", "tone2", "pound"]);
    tokio::task::spawn_blocking(move || media.join().unwrap())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_browser_joins_a_meeting_by_its_link_and_hears_the_bot_in_it() {
    let h = Harness::start().await;
    let (s, m, _) = h
        .req(
            "POST",
            "/beta/communications/onlineMeetings",
            Some(json!({"subject": "Standup"})),
        )
        .await;
    assert_eq!(s, 201, "{m}");
    let media = json!({"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"});
    let join = json!({
        "callbackUri": h.callback(), "requestedModalities": ["audio"], "mediaConfig": media,
        "chatInfo": {"threadId": m["chatInfo"]["threadId"], "messageId": "0"},
        "meetingInfo": {"@odata.type": "#microsoft.graph.organizerMeetingInfo", "organizer": {"user": {"id": "organizer-1", "tenantId": TENANT}}},
    });
    let (s, bot, _) = h
        .req("POST", "/v1.0/communications/calls", Some(join))
        .await;
    assert_eq!(s, 201, "{bot}");
    let bot = bot["id"].as_str().unwrap().to_string();
    h.until_state(&bot, "established").await;

    // The meeting's link opens a page that leads to the web phone, the meeting as its target.
    let page = h
        .client
        .get(m["joinWebUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let href = page
        .split("href=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap();
    let target = href
        .strip_prefix("/phone?target=")
        .expect("a link to the web phone");
    let target = percent_encoding::percent_decode_str(target)
        .decode_utf8()
        .unwrap();
    assert!(target.contains("/l/meetup-join/19%3Ameeting_"), "{target}");

    let token = user_token(&h, ALICE).await;
    let (mut browser, offer) = Browser::offer().unwrap();
    let (s, v) = web_call(&h, &token, json!({"target": target, "sdp": offer})).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["callId"], Value::Null, "joining a meeting places no call");
    browser.accept_answer(v["sdp"].as_str().unwrap()).unwrap();
    h.until(&bot, "Alice in the roster", |n| {
        n.resource.ends_with("/participants")
            && n.data
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["info"]["identity"]["user"]["id"] == ALICE)
    })
    .await;
    // A second tab of the same person cannot join the meeting twice.
    let (_, again) = Browser::offer().unwrap();
    let (s, v) = web_call(&h, &token, json!({"target": target, "sdp": again})).await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["error"]["code"], "Conflict");
    let media = std::thread::spawn(move || {
        browser
            .run(
                Duration::from_secs(15),
                &mut |_| Some([0; media::FRAME]),
                &mut |b| b.heard.iter().filter(|s| s.abs() > 2000).count() > 16_000,
            )
            .unwrap();
        browser
    });
    let prompt = json!({"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": {"uri": format!("{}/prompt/3000.wav", h.hooks.url)}});
    let (s, v, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{bot}/playPrompt"),
            Some(json!({"prompts": [prompt]})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let browser = tokio::task::spawn_blocking(move || media.join().unwrap())
        .await
        .unwrap();
    let loud: Vec<i16> = browser
        .heard
        .iter()
        .copied()
        .skip_while(|s| s.abs() < 2000)
        .collect();
    assert!(
        loud.len() >= 12_000,
        "the browser heard the bot in the meeting"
    );
    let hz = frequency(&loud[2_000..12_000]);
    assert!((hz - 127.3).abs() < 12.0, "{hz:.0} Hz");
    // A link to no meeting is refused.
    let (_, offer) = Browser::offer().unwrap();
    let bad = "https://teams.example/l/meetup-join/19%3Ameeting_nothing%40thread.v2/0";
    let (s, v) = web_call(&h, &token, json!({"target": bad, "sdp": offer})).await;
    assert_eq!(s, 404, "{v}");
}

/// A tab answers `leg` with a new browser that speaks a tone; the browser runs in a thread
/// until it has sent a second of audio.
async fn answer_in_browser(
    h: &Harness,
    token: &str,
    leg: &str,
) -> std::thread::JoinHandle<Browser> {
    let (mut browser, offer) = Browser::offer().unwrap();
    let (s, v, _) = h
        .req_as(
            token,
            "POST",
            &format!("/webrtc/legs/{leg}/answer"),
            Some(json!({"sdp": offer})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    browser.accept_answer(v["sdp"].as_str().unwrap()).unwrap();
    std::thread::spawn(move || {
        browser
            .run(
                Duration::from_secs(10),
                &mut |n| Some(tone(440.0, n)),
                &mut |b| b.connected && b.sent > 50,
            )
            .unwrap();
        browser
    })
}

#[tokio::test]
async fn a_sip_user_signed_in_in_a_browser_rings_on_both_and_answering_in_the_browser_cancels_the_phone()
 {
    let (h, sip_port) = crate::sip::sip_server().await;
    let phone = crate::sip::Phone::register_and_run(sip_port, "uas-ring-cancel.xml", &[]).await;
    let token = user_token(&h, HANK_SIP).await;
    let mut tab = open_tab(&h, &token).await;
    let call = h.call_user(HANK_SIP).await;
    let ring = tab.next().await;
    assert_eq!(ring["type"], "ring", "{ring}");
    let leg = ring["legId"].as_str().unwrap().to_string();
    h.until_state(&call, "ringing").await;
    let log = h.leg_log(&leg).await.to_string();
    assert!(
        log.contains("dialling 1 SIP contact"),
        "the phone rings too: {log}"
    );

    let media = answer_in_browser(&h, &token, &leg).await;
    assert_eq!(tab.next().await["type"], "answered");
    h.until_state(&call, "established").await;
    let (ok, errors) = phone.result().await;
    assert!(ok, "the phone that did not answer got CANCEL: {errors}");
    let browser = tokio::task::spawn_blocking(move || media.join().unwrap())
        .await
        .unwrap();
    assert!(browser.connected);
    // The call is the browser's: the phone's CANCEL did not end it.
    let (s, v, _) = h
        .req("GET", &format!("/v1.0/communications/calls/{call}"), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["state"], "established", "{v}");
    crate::sip::hang_up(&h, &call).await;
    let ended = tab.next().await;
    assert_eq!(ended["type"], "ended", "{ended}");
}

#[tokio::test]
async fn a_sip_user_whose_phone_answers_first_stops_ringing_in_the_browser() {
    let (h, sip_port) = crate::sip::sip_server().await;
    let phone = crate::sip::Phone::register_and_run(sip_port, "uas-answer.xml", &[]).await;
    let token = user_token(&h, HANK_SIP).await;
    let mut tab = open_tab(&h, &token).await;
    let call = h.call_user(HANK_SIP).await;
    let ring = tab.next().await;
    assert_eq!(ring["type"], "ring", "{ring}");
    let leg = ring["legId"].as_str().unwrap().to_string();
    let cancel = tab.next().await;
    assert_eq!(
        (cancel["type"].as_str(), cancel["reason"].as_str()),
        (Some("cancel"), Some("answered on a phone")),
        "{cancel}"
    );
    let notes = h.until_state(&call, "established").await;
    assert_eq!(states(&notes), ["establishing", "ringing", "established"]);
    // Too late for the browser.
    let (_, offer) = Browser::offer().unwrap();
    let (s, _, _) = h
        .req_as(
            &token,
            "POST",
            &format!("/webrtc/legs/{leg}/answer"),
            Some(json!({"sdp": offer})),
        )
        .await;
    assert_eq!(s, 409);
    crate::sip::hang_up(&h, &call).await;
    let (ok, errors) = phone.result().await;
    assert!(ok, "the phone that answered got the BYE: {errors}");
}

#[tokio::test]
async fn a_busy_phone_leaves_the_browser_ringing_and_the_browser_takes_the_call() {
    let (h, sip_port) = crate::sip::sip_server().await;
    let phone = crate::sip::Phone::register_and_run(sip_port, "uas-busy.xml", &[]).await;
    let token = user_token(&h, HANK_SIP).await;
    let mut tab = open_tab(&h, &token).await;
    let call = h.call_user(HANK_SIP).await;
    let leg = tab.next().await["legId"].as_str().unwrap().to_string();
    let (ok, errors) = phone.result().await;
    assert!(ok, "the phone said busy: {errors}");
    let log = h.leg_log(&leg).await.to_string();
    assert!(log.contains("still ringing in the browser"), "{log}");
    let media = answer_in_browser(&h, &token, &leg).await;
    let notes = h.until_state(&call, "established").await;
    assert!(
        !states(&notes).contains(&"terminated".to_string()),
        "the busy phone did not fail the call"
    );
    let browser = tokio::task::spawn_blocking(move || media.join().unwrap())
        .await
        .unwrap();
    assert!(browser.connected, "{}", h.leg_log(&leg).await);
    crate::sip::hang_up(&h, &call).await;
}

#[tokio::test]
async fn opus_settings_out_of_range_stop_ringside_with_the_reason() {
    for (line, says) in [
        (
            "opus_mode = \"fast\"",
            "opus_mode 'fast' is not 'voice' or 'low-delay'",
        ),
        ("opus_complexity = 11", "opus_complexity 11 is not 0 to 10"),
    ] {
        let dir = std::env::temp_dir().join(format!("ringside-opus-{}", uuid_like()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = config_text("http://127.0.0.1:9", "");
        let webrtc = "[webrtc]\nudp = \"127.0.0.1:0\"";
        assert!(text.contains(webrtc));
        let text = text.replace(webrtc, &format!("{webrtc}\n{line}"));
        std::fs::write(dir.join("ringside.toml"), text).unwrap();
        let r = server::start(server::Options {
            data_dir: dir.clone(),
            config: None,
            listen: None,
        })
        .await;
        let err = r.err().expect("ringside refuses the setting");
        assert!(err.contains(says), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
