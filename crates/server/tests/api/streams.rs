//! App-hosted media over a WebSocket, with a bot written against tokio-tungstenite: ringside
//! connects out to the bot (mixed, both ways: the bot echoes, the caller hears itself), or
//! the bot connects in (unmixed, one-way), and a slow reader loses frames but not time.

use crate::common::*;
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const SAID: &str = "Thank you for calling the support line.";

fn pcm_of(wav: &[u8]) -> Vec<i16> {
    hound::WavReader::new(std::io::Cursor::new(wav))
        .unwrap()
        .into_samples::<i16>()
        .map(Result::unwrap)
        .collect()
}

fn decode(d: &Value) -> Vec<i16> {
    let b = base64::engine::general_purpose::STANDARD
        .decode(d["audioData"]["data"].as_str().unwrap())
        .unwrap();
    b.chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// How well `heard` holds `said`: the best normalised correlation over alignments near where
/// each first gets loud.
fn correlation(heard: &[i16], said: &[i16]) -> f64 {
    let first_loud = |x: &[i16]| x.iter().position(|s| s.abs() > 2000).unwrap_or(0);
    let (h0, s0) = (first_loud(heard), first_loud(said));
    let n = said.len() - s0;
    let mut best = 0.0f64;
    for shift in -400i64..=400 {
        let start = h0 as i64 + shift;
        if start < 0 || start as usize + n > heard.len() {
            continue;
        }
        let h = &heard[start as usize..start as usize + n];
        let s = &said[s0..];
        let (mut hs, mut hh, mut ss) = (0f64, 0f64, 0f64);
        for (a, b) in h.iter().zip(s) {
            let (a, b) = (*a as f64, *b as f64);
            hs += a * b;
            hh += a * a;
            ss += b * b;
        }
        best = best.max(hs / (hh * ss).sqrt().max(1.0));
    }
    best
}

/// The next text message, as JSON.
async fn next<S, E>(rx: &mut S) -> Value
where
    S: futures_util::Stream<Item = Result<Message, E>> + Unpin,
    E: std::fmt::Debug,
{
    loop {
        match tokio::time::timeout(Duration::from_secs(5), rx.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str::<Value>(&t).unwrap(),
            Ok(Some(Ok(_))) => continue,
            other => panic!("no message: {other:?}"),
        }
    }
}

fn app_hosted_call(h: &Harness, streaming: Value, speak_at: u64, looped: bool) -> Value {
    let mut body = p2p_body(&h.callback(), ALICE);
    body["mediaConfig"] = json!({
        "@odata.type": "#microsoft.graph.appHostedMediaConfig",
        "blob": "{}",
        "mediaStreaming": streaming,
    });
    body["targets"][0]["ringside"] = json!({"speak": [{"uri": format!("{}/say/{}.wav", h.hooks.url, SAID.replace(' ', "%20")), "atMs": speak_at, "loop": looped}]});
    body
}

async fn alice_leg(h: &Harness) -> String {
    let (s, v) = h.admin("GET", &format!("/legs?user={ALICE}"), None).await;
    assert_eq!(s, 200, "{v}");
    v["value"].as_array().unwrap().last().unwrap()["legId"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ringside_streams_the_call_to_the_bot_which_echoes_and_the_caller_hears_itself() {
    let h = Harness::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    // The bot: keep what it hears, send it straight back.
    let bot = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let (mut tx, mut rx) = ws.split();
        let mut got: Vec<Value> = vec![];
        while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(8), rx.next()).await {
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["kind"] == "AudioData" {
                let echo =
                    json!({"kind": "AudioData", "audioData": {"data": v["audioData"]["data"]}});
                tx.send(Message::text(echo.to_string())).await.unwrap();
            }
            got.push(v);
            if got.len() > 300 {
                break;
            }
        }
        got
    });
    let body = app_hosted_call(
        &h,
        json!({"transportUrl": url, "audioChannelType": "mixed"}),
        500,
        false,
    );
    let (s, v, _) = h
        .req("POST", "/beta/communications/calls", Some(body))
        .await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    h.until_state(&id, "established").await;
    let got = bot.await.unwrap();
    assert_eq!(got[0]["kind"], "AudioMetadata", "{}", got[0]);
    assert_eq!(got[0]["audioMetadata"]["sampleRate"], 16000);
    assert_eq!(got[0]["audioMetadata"]["subscriptionId"], id.as_str());
    let frames: Vec<&Value> = got.iter().filter(|v| v["kind"] == "AudioData").collect();
    assert!(frames.len() >= 250, "{} frames", frames.len());
    assert!(
        frames
            .iter()
            .all(|f| f["audioData"]["participantRawID"].is_null()),
        "mixed"
    );
    assert!(frames.iter().all(|f| decode(f).len() == 320));
    assert!(frames.iter().any(|f| f["audioData"]["silent"] == true));
    assert!(frames.iter().any(|f| f["audioData"]["silent"] == false));
    let heard_by_bot: Vec<i16> = frames.iter().flat_map(|f| decode(f)).collect();
    let said = pcm_of(&say(SAID));
    let c = correlation(&heard_by_bot, &said);
    assert!(c > 0.95, "the bot heard Alice (correlation {c:.3})");

    // Alice heard herself, through the bot.
    let leg = alice_leg(&h).await;
    let r = h
        .client
        .get(format!("{}/admin/legs/{leg}/heard", h.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let heard_by_alice = pcm_of(&r.bytes().await.unwrap());
    let c = correlation(&heard_by_alice, &said);
    assert!(c > 0.9, "Alice heard the echo (correlation {c:.3})");
    let (_, m) = h.admin("GET", "/media", None).await;
    assert!(
        m["streams"]["framesReceived"].as_u64().unwrap() >= 100,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_connects_in_and_hears_each_participant_apart() {
    let h = Harness::start().await;
    let body = app_hosted_call(
        &h,
        json!({"audioChannelType": "unmixed", "bidirectional": false}),
        300,
        true,
    );
    let (s, v, _) = h
        .req("POST", "/beta/communications/calls", Some(body))
        .await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    h.until_state(&id, "established").await;
    let (_, call, _) = h
        .req("GET", &format!("/beta/communications/calls/{id}"), None)
        .await;
    let ws_url = call["mediaStreaming"]["websocketUrl"]
        .as_str()
        .unwrap_or_else(|| panic!("a websocketUrl: {call}"))
        .to_string();
    assert_eq!(call["mediaStreaming"]["audioChannelType"], "unmixed");
    let ws_url = ws_url.replace("127.0.0.1:8480", h.base.trim_start_matches("http://"));

    // A wrong token is refused before any upgrade.
    let bad = ws_url.split("?token=").next().unwrap().to_string() + "?token=nope";
    let err = tokio_tungstenite::connect_async(bad.as_str())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");

    let (ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
        .await
        .unwrap();
    let (mut tx, mut rx) = ws.split();
    let meta = next(&mut rx).await;
    assert_eq!(meta["kind"], "AudioMetadata");
    // A second connection to the same stream is turned away.
    let (ws2, _) = tokio_tungstenite::connect_async(ws_url.as_str())
        .await
        .unwrap();
    let (_, mut rx2) = ws2.split();
    let refused = next(&mut rx2).await;
    assert_eq!(refused["error"]["code"], "alreadyConnected", "{refused}");

    let (_, roster, _) = h
        .req(
            "GET",
            &format!("/beta/communications/calls/{id}/participants"),
            None,
        )
        .await;
    let alice_pid = roster["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["info"]["identity"]["user"]["id"] == ALICE)
        .unwrap()["id"]
        .clone();
    let mut speech = vec![];
    while speech.len() < 20 {
        let f = next(&mut rx).await;
        assert_eq!(f["kind"], "AudioData");
        assert_eq!(
            f["audioData"]["participantRawID"], alice_pid,
            "unmixed: {f}"
        );
        speech.push(f);
    }

    // A one-way stream takes no audio; nonsense gets an error, and the stream goes on.
    let frame = base64::engine::general_purpose::STANDARD.encode([0u8; 640]);
    tx.send(Message::text(
        json!({"kind": "AudioData", "audioData": {"data": frame}}).to_string(),
    ))
    .await
    .unwrap();
    tx.send(Message::text("{not json")).await.unwrap();
    let mut errors = vec![];
    while errors.len() < 2 {
        let m = next(&mut rx).await;
        if m["kind"] == "Error" {
            errors.push(m["error"]["message"].as_str().unwrap().to_string());
        }
    }
    assert!(errors[0].contains("one-way"), "{errors:?}");
    assert!(errors[1].contains("not JSON"), "{errors:?}");

    // Keys still reach an app that hosts its own media.
    let (s, v, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{id}/subscribeToTone"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200, "{v}");

    // The call ends: the socket closes.
    let (s, _, _) = h
        .req("DELETE", &format!("/v1.0/communications/calls/{id}"), None)
        .await;
    assert_eq!(s, 204);
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(m)) = rx.next().await {
            if matches!(m, Message::Close(_)) {
                return true;
            }
        }
        true
    })
    .await;
    assert_eq!(closed, Ok(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_that_stops_reading_loses_frames_and_the_room_keeps_its_time() {
    let h = Harness::start().await;
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = sock.listen(4).unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let body = app_hosted_call(&h, json!({"transportUrl": url}), 0, true);
    let (s, v, _) = h
        .req("POST", "/beta/communications/calls", Some(body))
        .await;
    assert_eq!(s, 201, "{v}");
    let (tcp, _) = listener.accept().await.unwrap();
    let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
    let (_tx, mut rx) = ws.split();
    for _ in 0..10 {
        next(&mut rx).await;
    }
    // Asleep for six seconds while Alice talks on.
    let (_, m0) = h.admin("GET", "/media", None).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (_, m1) = h.admin("GET", "/media", None).await;
    let ticks = m1["ticks"].as_u64().unwrap() - m0["ticks"].as_u64().unwrap();
    assert!(ticks >= 290, "the room kept its time: {ticks} ticks in 6 s");
    let dropped = m1["streams"]["framesDropped"].as_u64().unwrap();
    assert!(
        dropped >= 100,
        "a slow reader loses frames: {}",
        m1["streams"]
    );
    // Awake again: what comes next is at most a couple of seconds old, not six.
    let mut newest = String::new();
    for _ in 0..200 {
        let f = next(&mut rx).await;
        newest = f["audioData"]["timestamp"]
            .as_str()
            .unwrap_or_default()
            .to_string();
    }
    let age = chrono::Utc::now()
        - chrono::DateTime::parse_from_rfc3339(&newest)
            .unwrap()
            .with_timezone(&chrono::Utc);
    assert!(age.num_milliseconds() < 2500, "lag after waking: {age}");
}

#[tokio::test]
async fn a_stream_with_a_bad_transport_url_or_channel_type_is_refused() {
    let h = Harness::start().await;
    for (streaming, says) in [
        (
            json!({"transportUrl": "http://127.0.0.1:9/x"}),
            "ws:// or wss://",
        ),
        (json!({"audioChannelType": "stereo"}), "audioChannelType"),
        (json!({"audioFormat": "pcm24KMono"}), "pcm16KMono"),
        (json!("yes"), "must be an object"),
    ] {
        let body = app_hosted_call(&h, streaming, 0, false);
        let (s, v, _) = h
            .req("POST", "/beta/communications/calls", Some(body))
            .await;
        assert_eq!(s, 400, "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(says), "{msg}");
    }
    let (_, m) = h.admin("GET", "/media", None).await;
    assert_eq!(m["streams"]["open"], 0);
}
