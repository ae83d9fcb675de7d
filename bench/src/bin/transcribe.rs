//! Transcription benchmark (issue #14).
//!
//! 1. **Per stream**: the real-time factor of Whisper tiny.en on one core (compute time over
//!    audio time) for espeak-ng sentences of different lengths, as ringside's workers run it.
//! 2. **Concurrent speakers**: a release ringside (`target/release/ringside`, or
//!    `RINGSIDE_BIN`) with `n` calls, each to a simulated user who talks without end (six
//!    sentences with short pauses, looped), every call transcribed. For `hold` seconds:
//!    utterances cut, transcribed, gaps (the queue was full), the latency from the end of an
//!    utterance (its `endOffset` on the transcript clock) to its notification at the bot's
//!    webhook, and media ticks late. A count of speakers is kept up with when no utterance
//!    became a gap and the latency p95 stays within 2 s.
//!
//!   cargo build --release -p server --bin ringside
//!   cargo run --release -p ringside-bench --bin transcribe -- [speakers, default 4,8,12] [hold s, default 60]

use ringside_bench::{Ringside, cpu_s, percentile};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TENANT: &str = "bench-tenant";
const APP: &str = "bench-app";
const ADMIN: &str = "bench-admin";
const SENTENCES: [&str; 6] = [
    "Thank you for calling the support line.",
    "I would like to change the address on my account please.",
    "Hello, I need some help with my order.",
    "Can you tell me when the store opens tomorrow?",
    "Please call me back this afternoon.",
    "The meeting has been moved to next Thursday at ten.",
];

fn speak(text: &str, out: &Path) {
    let raw = out.with_extension("raw.wav");
    let ok = std::process::Command::new("espeak-ng")
        .args(["-s", "150", "-w"])
        .arg(&raw)
        .arg(text)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
        && std::process::Command::new("sox")
            .arg(&raw)
            .args(["-r", "16000", "-c", "1", "-b", "16", "-e", "signed-integer"])
            .arg(out)
            .args(["norm", "-3"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
    assert!(ok, "espeak-ng and sox make the speech");
    let _ = std::fs::remove_file(raw);
}

fn pcm(path: &Path) -> Vec<i16> {
    hound::WavReader::open(path)
        .unwrap()
        .into_samples::<i16>()
        .map(Result::unwrap)
        .collect()
}

fn per_stream(dir: &Path) {
    let model_dir = asr::find_model(None).expect("a Whisper model (scripts/models.sh)");
    let mut model = asr::Model::load(&model_dir).unwrap();
    println!("| utterance | audio | compute, one core | real-time factor |");
    println!("|---|---|---|---|");
    let mut clips: Vec<(String, Vec<i16>)> = vec![];
    for (i, s) in SENTENCES.iter().enumerate().take(3) {
        let p = dir.join(format!("s{i}.wav"));
        speak(s, &p);
        clips.push((format!("\"{s}\""), pcm(&p)));
    }
    let all: Vec<i16> = clips.iter().flat_map(|(_, a)| a.clone()).collect();
    clips.push(("the three, back to back".into(), all));
    let (mut audio_s, mut busy_s) = (0.0, 0.0);
    for (name, audio) in &clips {
        let _ = asr::single_threaded(|| model.transcribe(audio)); // warm
        let t = Instant::now();
        let runs = 3;
        for _ in 0..runs {
            asr::single_threaded(|| model.transcribe(audio)).unwrap();
        }
        let took = t.elapsed().as_secs_f64() / runs as f64;
        let secs = audio.len() as f64 / 16_000.0;
        audio_s += secs;
        busy_s += took;
        println!(
            "| {name} | {secs:.1} s | {:.0} ms | {:.3} |",
            took * 1000.0,
            took / secs
        );
    }
    println!(
        "| all | {audio_s:.1} s | {:.0} ms | {:.3} |\n",
        busy_s * 1000.0,
        busy_s / audio_s
    );
}

/// Line notifications as they arrive: (call id, endOffset s, arrival).
type Lines = Arc<Mutex<Vec<(String, f64, Instant)>>>;
/// When each call's transcription became active.
type Active = Arc<Mutex<HashMap<String, Instant>>>;

async fn webhook(lines: Lines, active: Active) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let (lines, active) = (lines.clone(), active.clone());
        async move {
            let now = Instant::now();
            if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                for item in v["value"].as_array().into_iter().flatten() {
                    let d = &item["resourceData"];
                    let url = item["resourceUrl"].as_str().unwrap_or("");
                    let call = url.split('/').nth(3).unwrap_or("").to_string();
                    if d["@odata.type"] == "#ringside.transcriptLine" {
                        let end = d["endOffset"]
                            .as_str()
                            .and_then(|s| s.strip_prefix("PT")?.strip_suffix('S'))
                            .map(|s| match s.split_once('M') {
                                Some((m, s)) => {
                                    m.parse::<f64>().unwrap_or(0.0) * 60.0
                                        + s.parse::<f64>().unwrap_or(0.0)
                                }
                                None => s.parse().unwrap_or(0.0),
                            })
                            .unwrap_or(0.0);
                        lines.lock().unwrap().push((call, end, now));
                    } else if d["transcription"]["state"] == "active" {
                        active.lock().unwrap().entry(call).or_insert(now);
                    }
                }
            }
            axum::http::StatusCode::ACCEPTED
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn config(listen: &str, speakers: usize, folder: &Path) -> String {
    let users: String = (0..speakers)
        .map(|u| format!("[[users]]\nid = \"speaker-{u}\"\ntenant = \"{TENANT}\"\ndisplay_name = \"Speaker {u}\"\n"))
        .collect();
    format!(
        r#"
[server]
listen = "{listen}"
prompt_folder = "{}"
[admin]
token = "{ADMIN}"
[[tenants]]
id = "{TENANT}"
[[apps]]
id = "{APP}"
tenant = "{TENANT}"
secret = "bench-secret"
{users}"#,
        folder.display()
    )
}

async fn get(http: &reqwest::Client, url: &str) -> Value {
    http.get(url)
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn speakers(n: usize, hold: u64, talk: &Path) {
    let folder = talk.parent().unwrap().to_path_buf();
    let rs = Ringside::start("transcribe", |l| config(l, n, &folder)).await;
    let http = reqwest::Client::new();
    let token = rs.app_token(&http, TENANT, APP, "bench-secret").await;
    let (lines, active): (Lines, Active) = Default::default();
    let hook = webhook(lines.clone(), active.clone()).await;
    let talk_ms = pcm(talk).len() as u64 / 16;
    let mut calls = vec![];
    for i in 0..n {
        // Staggered, so that speakers do not all pause at once.
        let script = json!({"speak": [{"uri": format!("file://{}", talk.display()), "atMs": 300 + (talk_ms * i as u64 / n as u64), "loop": true}]});
        let body = json!({
            "@odata.type": "#microsoft.graph.call", "callbackUri": format!("{hook}/cb"),
            "targets": [{"identity": {"user": {"id": format!("speaker-{i}"), "displayName": format!("Speaker {i}")}}, "ringside": script}],
            "requestedModalities": ["audio"], "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
        });
        let v: Value = http
            .post(format!("{}/beta/communications/calls", rs.base))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        calls.push(v["id"].as_str().expect("a call").to_string());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for id in &calls {
        http.post(format!(
            "{}/beta/communications/calls/{id}/startTranscription",
            rs.base
        ))
        .bearer_auth(&token)
        .json(&json!({"language": "en-us"}))
        .send()
        .await
        .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let m0 = get(&http, &format!("{}/admin/media", rs.base)).await;
    let cpu0 = cpu_s(rs.pid);
    let from = Instant::now();
    tokio::time::sleep(Duration::from_secs(hold)).await;
    let secs = from.elapsed().as_secs_f64();
    let m1 = get(&http, &format!("{}/admin/media", rs.base)).await;
    let cpu1 = cpu_s(rs.pid);
    let starts = active.lock().unwrap().clone();
    let mut lat: Vec<f64> = lines
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, _, at)| *at >= from)
        .filter_map(|(c, end, at)| {
            let t0 = starts.get(c)?;
            Some(at.duration_since(*t0).as_secs_f64() - end)
        })
        .collect();
    rs.stop().await;
    let d = |k: &str, v: &Value| v["transcription"][k].as_u64().unwrap_or(0);
    let (t0, t1) = (&m0, &m1);
    let utter = d("utterances", t1) - d("utterances", t0);
    let gaps = d("gaps", t1) - d("gaps", t0);
    let audio = t1["transcription"]["audioSeconds"].as_f64().unwrap_or(0.0)
        - t0["transcription"]["audioSeconds"].as_f64().unwrap_or(0.0);
    let busy = t1["transcription"]["busySeconds"].as_f64().unwrap_or(0.0)
        - t0["transcription"]["busySeconds"].as_f64().unwrap_or(0.0);
    let ticks = t1["ticks"].as_u64().unwrap_or(0) - t0["ticks"].as_u64().unwrap_or(0);
    let late = t1["ticksLate5ms"].as_u64().unwrap_or(0) - t0["ticksLate5ms"].as_u64().unwrap_or(0);
    let (p50, p95, max) = (
        percentile(&mut lat, 0.5),
        percentile(&mut lat, 0.95),
        percentile(&mut lat, 1.0),
    );
    let kept = gaps == 0 && p95 <= 2.0 && d("queued", t1) < 4;
    println!(
        "| {n} | {utter} | {:.2} | {gaps} | {} | {p50:.2} / {p95:.2} / {max:.2} s | {:.0} % | {:.3} % | {} |",
        utter as f64 / secs,
        d("queued", t1),
        100.0 * (cpu1 - cpu0) / secs,
        100.0 * late as f64 / ticks.max(1) as f64,
        if kept { "yes" } else { "no" },
    );
    let _ = (audio, busy);
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let counts: Vec<usize> = args
        .first()
        .map(|a| a.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or(vec![4, 8, 12]);
    let hold: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(60);
    let dir = std::env::temp_dir().join(format!("ringside-bench-speech-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    per_stream(&dir);

    // Six sentences, 700 ms apart: a speaker who never stops for long.
    let mut talk: Vec<i16> = vec![];
    for (i, s) in SENTENCES.iter().enumerate() {
        let p = dir.join(format!("t{i}.wav"));
        speak(s, &p);
        talk.extend(pcm(&p));
        talk.extend(std::iter::repeat_n(0, 16 * 700));
    }
    let talk_path = dir.join("talk.wav");
    let mut w = hound::WavWriter::create(
        &talk_path,
        hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        },
    )
    .unwrap();
    for s in &talk {
        w.write_sample(*s).unwrap();
    }
    w.finalize().unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "| speakers ({cores} cores, {hold} s, each talking {:.0} % of the time) | utterances | per second | gaps | queued at end | end of utterance → notification p50 / p95 / max | ringside CPU | media ticks late ≥ 5 ms | kept up |",
        100.0 * (talk.len() as f64 - 6.0 * 16.0 * 700.0) / talk.len() as f64
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for n in counts {
        speakers(n, hold, &talk_path).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
