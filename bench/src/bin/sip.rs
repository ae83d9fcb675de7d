//! Benchmark: SIP calls into a bot, with SIPp as the load and a real webhook bot that answers
//! every incoming call through the Graph API and plays it a prompt.
//!
//! Phase 1, call setup rate: SIPp places calls at a fixed rate (INVITE → 200 → ACK, 1 s, BYE);
//! success rate and INVITE→200 times from SIPp's own records.
//! Phase 2, concurrent calls with RTP: SIPp holds N calls, each streaming G.711 µ-law both
//! ways; once all are up, 10 s of steady state are measured: RTP loss as ringside received it,
//! CPU of ringside (this process, with the bot) and of SIPp, memory per call.
//!
//!   cargo run --release -p ringside-bench --bin sip -- [rate, default 500] [calls at rate,
//!   default 5000] [concurrent, default 2000]

use ringside_bench::cpu_s;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const TENANT: &str = "bench-tenant";
const APP: &str = "bench-app";

#[derive(Default)]
struct Bot {
    answered: AtomicU64,
    prompts: AtomicU64,
    errors: AtomicU64,
}

/// The bot: answers every incoming call and plays a prompt once it is established.
async fn bot(base: String, token: String) -> (String, Arc<Bot>) {
    let stats = Arc::new(Bot::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}", listener.local_addr().unwrap());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let prompt = prompt_wav();
    let (s, h) = (stats.clone(), hook.clone());
    let app = axum::Router::new()
        .route(
            "/prompt.wav",
            axum::routing::get(move || {
                let p = prompt.clone();
                async move { ([("content-type", "audio/wav")], p) }
            }),
        )
        .fallback(move |body: axum::body::Bytes| {
            let (s, h, client, base, token) =
                (s.clone(), h.clone(), client.clone(), base.clone(), token.clone());
            async move {
                let Ok(v) = serde_json::from_slice::<Value>(&body) else {
                    return axum::http::StatusCode::BAD_REQUEST;
                };
                for item in v["value"].as_array().into_iter().flatten() {
                    let d = &item["resourceData"];
                    let (Some(id), Some(state)) = (d["id"].as_str(), d["state"].as_str()) else {
                        continue;
                    };
                    let (url, body) = match (item["changeType"].as_str(), state) {
                        (Some("created"), "incoming") => (
                            format!("{base}/v1.0/communications/calls/{id}/answer"),
                            json!({"callbackUri": format!("{h}/cb"), "acceptedModalities": ["audio"],
                                   "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}}),
                        ),
                        (_, "established") => (
                            format!("{base}/v1.0/communications/calls/{id}/playPrompt"),
                            json!({"prompts": [{"@odata.type": "#microsoft.graph.mediaPrompt",
                                   "mediaInfo": {"uri": format!("{h}/prompt.wav")}}]}),
                        ),
                        _ => continue,
                    };
                    let answer = state == "incoming";
                    let (s, client, token) = (s.clone(), client.clone(), token.clone());
                    tokio::spawn(async move {
                        let ok = client
                            .post(url)
                            .bearer_auth(token)
                            .json(&body)
                            .send()
                            .await
                            .is_ok_and(|r| r.status().is_success());
                        let counter = match (ok, answer) {
                            (false, _) => &s.errors,
                            (true, true) => &s.answered,
                            (true, false) => &s.prompts,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                    });
                }
                axum::http::StatusCode::ACCEPTED
            }
        });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (hook, stats)
}

/// One second of a 440 Hz tone at 16 kHz.
fn prompt_wav() -> Vec<u8> {
    let samples: Vec<i16> = (0..16000)
        .map(|i| (6000.0 * (i as f32 * 440.0 * std::f32::consts::TAU / 16000.0).sin()) as i16)
        .collect();
    media::wav::encode(&samples)
}

/// 4 s of speech-like µ-law audio at 8 kHz for SIPp's rtp_stream (it sends the bytes after
/// the header as they are).
fn ulaw_wav() -> Vec<u8> {
    let pcm: Vec<i16> = (0..32000)
        .map(|i| {
            let t = i as f32 / 8000.0;
            (5000.0
                * (t * 300.0 * std::f32::consts::TAU).sin()
                * (0.5 + 0.5 * (t * 3.0 * std::f32::consts::TAU).sin())) as i16
        })
        .collect();
    let mut data = vec![];
    media::g711::Law::Mu.encode(&pcm, &mut data);
    let mut w = vec![];
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&7u16.to_le_bytes()); // µ-law
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&8u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(data.len() as u32).to_le_bytes());
    w.extend_from_slice(&data);
    w
}

fn scenario(rtp: bool) -> String {
    let port = if rtp {
        "[rtpstream_audio_port]"
    } else {
        "[media_port]"
    };
    let (start, stop) = if rtp {
        (
            "  <nop><action><exec rtp_stream=\"ulaw.wav,-1,0\"/></action></nop>\n",
            "  <nop><action><exec rtp_stream=\"pause\"/></action></nop>\n",
        )
    } else {
        ("", "")
    };
    let hdr = |method: &str, seq: u32, uri: &str, peer: &str| {
        format!(
            "      {method} {uri} SIP/2.0\n      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n      From: <sip:load@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\n      To: <sip:[service]@[remote_ip]:[remote_port]>{peer}\n      Call-ID: [call_id]\n      CSeq: {seq} {method}\n      Contact: <sip:load@[local_ip]:[local_port]>\n      Max-Forwards: 70\n"
        )
    };
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="bench">
  <send retrans="500"><![CDATA[
{invite}      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=load 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio {port} RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=ptime:20
]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true" rrs="true"/>
  <send><![CDATA[
{ack}      Content-Length: 0

]]></send>
{start}  <pause/>
{stop}  <send retrans="500"><![CDATA[
{bye}      Content-Length: 0

]]></send>
  <recv response="200" crlf="true"/>
</scenario>
"#,
        invite = hdr("INVITE", 1, "sip:[service]@[remote_ip]:[remote_port]", ""),
        ack = hdr("ACK", 1, "[next_url]", "[peer_tag_param]"),
        bye = hdr("BYE", 2, "[next_url]", "[peer_tag_param]"),
    )
}

/// ringside's RTP ports (`rtp_ports`), and where SIPp's calls take theirs (`-mp`) upward.
const RTP_PORTS: std::ops::Range<u16> = 20000..30000;
const SIPP_MEDIA_PORTS: std::ops::Range<u16> = 30000..60000;

/// Datagrams the kernel dropped at UDP sockets bound to ports in `ports` (their receive
/// buffers were full), from /proc/net/udp's per-socket `drops`.
fn udp_drops(ports: std::ops::Range<u16>) -> u64 {
    let s = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    s.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
            ports
                .contains(&port)
                .then(|| f.last()?.parse::<u64>().ok())?
        })
        .sum()
}

fn rss_mb() -> f64 {
    ringside_bench::rss_kb() as f64 / 1024.0
}

struct Sipp {
    child: tokio::process::Child,
    pid: u32,
    dir: std::path::PathBuf,
}

fn sipp(dir: &std::path::Path, sip_port: u16, xml: &str, args: &[String]) -> Sipp {
    std::fs::write(dir.join("bench.xml"), xml).unwrap();
    let mut all: Vec<String> = vec![
        format!("127.0.0.1:{sip_port}"),
        "-sf".into(),
        "bench.xml".into(),
        "-s".into(),
        "bot".into(),
        "-i".into(),
        "127.0.0.1".into(),
        "-mi".into(),
        "127.0.0.1".into(),
        "-nostdin".into(),
        "-trace_stat".into(),
        "-fd".into(),
        "1".into(),
        "-trace_rtt".into(),
        "-rtt_freq".into(),
        "1".into(),
        "-trace_err".into(),
        "-trace_screen".into(),
    ];
    if std::env::var_os("BENCH_SIPP_TRACE").is_some() {
        all.push("-trace_msg".into());
    }
    all.extend(args.iter().cloned());
    let child = tokio::process::Command::new("sipp")
        .current_dir(dir)
        .args(&all)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sipp is installed (Debian: sip-tester)");
    let pid = child.id().unwrap_or(0);
    Sipp {
        child,
        pid,
        dir: dir.to_path_buf(),
    }
}

/// SIPp's final counters: (successful, failed), from its -trace_stat CSV.
fn sipp_counts(dir: &std::path::Path) -> (u64, u64) {
    let Some(csv) = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("_.csv"))
    else {
        return (0, 0);
    };
    let text = std::fs::read_to_string(csv).unwrap_or_default();
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap_or("").split(';').collect();
    let last: Vec<&str> = lines.last().unwrap_or("").split(';').collect();
    let col = |name: &str| {
        head.iter()
            .position(|h| *h == name)
            .and_then(|i| last.get(i))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (col("SuccessfulCall(C)"), col("FailedCall(C)"))
}

/// INVITE → 200 times (ms) SIPp recorded with -trace_rtt.
fn sipp_rtts(dir: &std::path::Path) -> Vec<f64> {
    let mut v: Vec<f64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with("_rtt.csv"))
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .skip(1)
                .filter_map(|l| l.split(';').nth(1)?.trim().parse::<f64>().ok())
                .collect::<Vec<_>>()
        })
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rate = args.first().copied().unwrap_or(500);
    let total = args.get(1).copied().unwrap_or(5000);
    let concurrent = args.get(2).copied().unwrap_or(2000);

    let dir = std::env::temp_dir().join(format!("ringside-bench-sip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sip_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The bot's address is only known once it listens, and ringside needs it in its config:
    // start a placeholder config, then point the app's webhook at the bot.
    let hook_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_port = hook_listener.local_addr().unwrap().port();
    drop(hook_listener);
    // rtp_ports takes even ports in [lo, hi).
    let (rtp_lo, rtp_hi) = (RTP_PORTS.start, RTP_PORTS.end - 2);
    std::fs::write(
        dir.join("ringside.toml"),
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
max_calls_per_app = 1000000
max_calls_per_tenant = 1000000
rate_per_app = 1000000
burst_per_app = 1000000
rate_per_tenant = 1000000
burst_per_tenant = 1000000
[admin]
token = "bench-admin"
[[tenants]]
id = "{TENANT}"
[[apps]]
id = "{APP}"
tenant = "{TENANT}"
secret = "bench-secret"
webhook = "http://127.0.0.1:{hook_port}/incoming"
addresses = ["sip:bot@ringside"]
[sip]
udp = ["127.0.0.1:{sip_port}"]
rtp_ports = [{rtp_lo}, {rtp_hi}]
"#
        ),
    )
    .unwrap();
    let running = server::start(server::Options {
        data_dir: dir.clone(),
        config: None,
        listen: None,
    })
    .await
    .expect("ringside starts");
    let base = format!("http://{}", running.addr);
    let client = reqwest::Client::new();
    let tok: Value = client
        .post(format!("{base}/{TENANT}/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", APP),
            ("client_secret", "bench-secret"),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = tok["access_token"].as_str().expect("token").to_string();
    // The bot listens on the port the config names.
    let (hook, bot_stats) = {
        let (h, s) = bot(base.clone(), token.clone()).await;
        (h, s)
    };
    // Re-point the app at the bot's real address through the admin API.
    let r = client
        .patch(format!("{base}/admin/apps/{APP}"))
        .bearer_auth("bench-admin")
        .json(&json!({"webhook": format!("{hook}/incoming")}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "webhook updated: {}", r.status());
    std::fs::write(dir.join("ulaw.wav"), ulaw_wav()).unwrap();
    let me = std::process::id();

    // Phase 1: call setup rate.
    let p1 = dir.join("setup");
    std::fs::create_dir_all(&p1).unwrap();
    std::fs::copy(dir.join("ulaw.wav"), p1.join("ulaw.wav")).unwrap();
    let cpu0 = cpu_s(me);
    running.node.driver_stats.reset();
    let t0 = Instant::now();
    let mut s = sipp(
        &p1,
        sip_port,
        &scenario(false),
        &[
            "-r".into(),
            rate.to_string(),
            "-m".into(),
            total.to_string(),
            "-d".into(),
            "1000".into(),
            "-timeout".into(),
            format!("{}s", total / rate.max(1) + 60),
        ],
    );
    let mut sipp_cpu = 0.0;
    // Every call has had time to finish (or fail on its timers) by then.
    let deadline = t0 + Duration::from_secs(total / rate.max(1) + 40);
    loop {
        tokio::select! {
            _ = s.child.wait() => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                sipp_cpu = cpu_s(s.pid).max(sipp_cpu);
                if Instant::now() > deadline {
                    // SIGTERM: SIPp writes its final statistics and screen, then exits.
                    let _ = std::process::Command::new("kill").arg(s.pid.to_string()).status();
                }
            }
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let ringside_cpu = cpu_s(me) - cpu0;
    let (ok, failed) = sipp_counts(&s.dir);
    let rtts = sipp_rtts(&s.dir);
    let attempted = ok + failed;
    let driver = running.node.driver_stats.to_json();

    // Phase 2: concurrent calls with RTP both ways.
    let p2 = dir.join("rtp");
    std::fs::create_dir_all(&p2).unwrap();
    std::fs::copy(dir.join("ulaw.wav"), p2.join("ulaw.wav")).unwrap();
    let ramp_rate = 200u64;
    let hold_ms = (concurrent * 1000 / ramp_rate) + 20_000;
    let rss_idle = rss_mb();
    let mut s2 = sipp(
        &p2,
        sip_port,
        &scenario(true),
        &[
            "-r".into(),
            ramp_rate.to_string(),
            "-m".into(),
            concurrent.to_string(),
            "-l".into(),
            concurrent.to_string(),
            "-d".into(),
            hold_ms.to_string(),
            "-mp".into(),
            SIPP_MEDIA_PORTS.start.to_string(),
            "-timeout".into(),
            format!("{}s", hold_ms / 1000 + 60),
        ],
    );
    let sip = running.node.sip.get().expect("SIP is on");
    let up = Instant::now();
    while (sip.rtp_totals().legs as u64) < concurrent
        && up.elapsed() < Duration::from_secs(60)
        && s2.child.try_wait().ok().flatten().is_none()
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let legs = sip.rtp_totals().legs;
    tokio::time::sleep(Duration::from_secs(2)).await; // settle
    let (a, ca, sa) = (sip.rtp_totals(), cpu_s(me), cpu_s(s2.pid));
    let udp_a = (udp_drops(RTP_PORTS), udp_drops(SIPP_MEDIA_PORTS));
    // Worst lateness within the window, not during the ramp.
    running
        .node
        .media
        .stats
        .max_late_us
        .store(0, Ordering::Relaxed);
    let ma = running.node.media.stats.snapshot();
    let window = 10.0;
    tokio::time::sleep(Duration::from_secs_f64(window)).await;
    let (b, cb, sb) = (sip.rtp_totals(), cpu_s(me), cpu_s(s2.pid));
    let udp_b = (udp_drops(RTP_PORTS), udp_drops(SIPP_MEDIA_PORTS));
    let mb = running.node.media.stats.snapshot();
    let rss_busy = rss_mb();
    let _ = s2.child.kill().await;
    let expected = b.expected.saturating_sub(a.expected);
    let received = b.received.saturating_sub(a.received);
    let late = b.late.saturating_sub(a.late);
    let lost = expected.saturating_sub(received);
    let loss_pct = if expected == 0 {
        f64::NAN
    } else {
        100.0 * (lost + late) as f64 / expected as f64
    };

    println!("| measure | value |");
    println!("|---|---|");
    println!("| **call setup** (SIPp at {rate} calls/s, {total} calls, 1 s each) | |");
    println!("| calls attempted / successful / failed | {attempted} / {ok} / {failed} |");
    println!(
        "| success rate | {:.3} % |",
        100.0 * ok as f64 / attempted.max(1) as f64
    );
    println!(
        "| achieved rate | {:.0} calls/s |",
        attempted as f64 / (total as f64 / rate.max(1) as f64)
    );
    println!(
        "| INVITE → 200 OK p50 / p99 / max | {:.0} / {:.0} / {:.0} ms |",
        pct(&rtts, 0.5),
        pct(&rtts, 0.99),
        pct(&rtts, 1.0)
    );
    let batches = driver["batches"].as_f64().unwrap_or(0.0).max(1.0);
    let slow: u64 = ["under50ms", "under100ms", "under200ms", "200msOrMore"]
        .iter()
        .map(|k| driver["batchesByDuration"][k].as_u64().unwrap_or(0))
        .sum();
    println!(
        "| driver: batches / messages | {} / {} |",
        driver["batches"], driver["messages"]
    );
    println!(
        "| driver: engine mean / max, commit mean / max | {:.2} / {:.1} ms, {:.2} / {:.1} ms |",
        driver["engineMs"].as_f64().unwrap_or(0.0) / batches,
        driver["maxEngineMs"].as_f64().unwrap_or(0.0),
        driver["commitMs"].as_f64().unwrap_or(0.0) / batches,
        driver["maxCommitMs"].as_f64().unwrap_or(0.0),
    );
    println!("| driver: batches taking 20 ms or more | {slow} |");
    println!(
        "| bot, both phases: answers / prompts / errors | {} / {} / {} |",
        bot_stats.answered.load(Ordering::Relaxed),
        bot_stats.prompts.load(Ordering::Relaxed),
        bot_stats.errors.load(Ordering::Relaxed)
    );
    println!(
        "| ringside + bot CPU | {:.0} % of one core |",
        100.0 * ringside_cpu / wall
    );
    println!(
        "| SIPp CPU | {:.0} % of one core |",
        100.0 * sipp_cpu / wall
    );
    println!("| **concurrent RTP calls** (G.711 both ways) | |");
    println!("| calls up (target {concurrent}) | {legs} |");
    println!("| RTP packets expected / received in {window:.0} s | {expected} / {received} |");
    println!("| lost + late | {lost} + {late} ({loss_pct:.3} %) |");
    let due = (legs as f64 * window * 50.0) as u64;
    let sent = b.packets_out.saturating_sub(a.packets_out);
    println!(
        "| RTP packets sent by ringside in {window:.0} s (due: {due}) | {sent} ({:.3} % short) |",
        100.0 * due.saturating_sub(sent) as f64 / due.max(1) as f64
    );
    println!(
        "| media threads: ticks / busy | {} / {:.0} % of one core |",
        mb.ticks - ma.ticks,
        (mb.busy_us - ma.busy_us) as f64 / 1e6 / window * 100.0
    );
    println!(
        "| media ticks started > 5 ms late / resyncs / worst lateness | {} / {} / {:.1} ms |",
        mb.late_5ms - ma.late_5ms,
        mb.resyncs - ma.resyncs,
        mb.max_late_us as f64 / 1000.0
    );
    let never = mb.skipped_frames - ma.skipped_frames;
    println!(
        "| RTP packets never sent (ticks skipped by resyncs) | {never} ({:.3} % of those due) |",
        100.0 * never as f64 / due.max(1) as f64
    );
    println!(
        "| ringside + bot CPU | {:.0} % of one core |",
        100.0 * (cb - ca) / window
    );
    println!(
        "| SIPp CPU | {:.0} % of one core |",
        100.0 * (sb - sa) / window
    );
    println!(
        "| datagrams the kernel dropped for full receive buffers: at ringside's RTP sockets / at SIPp's (it does not read RTP in rtp_stream mode) | {} / {} |",
        udp_b.0.saturating_sub(udp_a.0),
        udp_b.1.saturating_sub(udp_a.1)
    );
    println!(
        "| memory per call | {:.3} MB ({:.0} MB idle, {:.0} MB with {legs} calls) |",
        (rss_busy - rss_idle) / legs.max(1) as f64,
        rss_idle,
        rss_busy
    );
    if failed + (total - attempted.min(total)) == 0 {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("SIPp's records are kept in {}", dir.display());
    }
    std::process::exit(0);
}
