//! A bot that hosts its own media (tests/e2e/test_media_streaming.py drives it).
//!
//!   stream-bot <word>
//!
//! Listens on a loopback port and prints `LISTENING ws://…` for the call's `transportUrl`.
//! ringside connects when the call is established and streams what the bot hears; the bot
//! cuts it into utterances by loudness, transcribes each with Whisper (the same weights as
//! ringside's, found the same way), prints `HEARD <text>`, and when `<word>` is among the
//! words prints `WORD <word>` and answers with a short tone (bidirectional audio).

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Loud enough to be speech (mean square of a 20 ms frame; about −45 dBFS).
const LOUD: f64 = 32768.0 * 32768.0 / 2.0 * 3e-5;
/// Quiet frames that end an utterance: 400 ms.
const END_FRAMES: usize = 20;

fn tone() -> String {
    let pcm: Vec<u8> = (0..16_000 / 2)
        .flat_map(|i| {
            let t = i as f64 / 16_000.0;
            (((2.0 * std::f64::consts::PI * 880.0 * t).sin() * 8000.0) as i16).to_le_bytes()
        })
        .collect();
    base64::engine::general_purpose::STANDARD.encode(pcm)
}

#[tokio::main]
async fn main() {
    let word = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "order".into())
        .to_lowercase();
    let dir = asr::find_model(None).expect("a Whisper model (scripts/models.sh)");
    let model = asr::Model::load(&dir).expect("the model loads");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("LISTENING ws://{}", listener.local_addr().unwrap());
    let (tcp, _) = listener.accept().await.unwrap();
    let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
    let (mut tx, mut rx) = ws.split();
    let mut speech: Vec<i16> = vec![];
    let mut quiet = 0usize;
    while let Some(Ok(m)) = rx.next().await {
        let Message::Text(t) = m else { continue };
        let v: Value = serde_json::from_str(&t).unwrap_or_default();
        if v["kind"] != "AudioData" {
            continue;
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(v["audioData"]["data"].as_str().unwrap_or_default())
            .unwrap_or_default();
        let frame: Vec<i16> = raw
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        let energy =
            frame.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / frame.len().max(1) as f64;
        if energy > LOUD {
            quiet = 0;
            speech.extend(&frame);
        } else if !speech.is_empty() {
            speech.extend(&frame);
            quiet += 1;
            if quiet >= END_FRAMES {
                let utterance = std::mem::take(&mut speech);
                let mut m = model.clone();
                let heard = tokio::task::spawn_blocking(move || m.transcribe(&utterance))
                    .await
                    .unwrap()
                    .map(|t| t.text)
                    .unwrap_or_default();
                println!("HEARD {heard}");
                let words: Vec<String> = heard
                    .split(|c: char| !c.is_alphanumeric())
                    .map(str::to_lowercase)
                    .collect();
                if words.contains(&word) {
                    println!("WORD {word}");
                    let reply = json!({"kind": "AudioData", "audioData": {"data": tone()}});
                    let _ = tx.send(Message::text(reply.to_string())).await;
                }
            }
        }
    }
    println!("CLOSED");
}
