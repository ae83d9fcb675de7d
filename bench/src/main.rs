//! Benchmark: full call lifecycles per second through the real HTTP API with the durable
//! SQLite store — create → simulated answer → `established` delivered to a real webhook →
//! delete → `terminated` delivered — then API latency at half that rate, and the same load
//! against an empty axum handler as the baseline. Prints a Markdown table.
//!
//!   cargo run --release -p ringside-bench -- [seconds per phase, default 10] [workers, default 64] [default-limits | app-rate=N]
//!   RINGSIDE_BENCH_STORE=postgres://… cargo run --release -p ringside-bench -- …   (state in PostgreSQL)
//!
//! Every failed lifecycle is counted under its cause (a create or delete answered with an
//! error status, 429 among them; a notification that did not arrive within 10 s). With
//! `default-limits` ringside runs with its default request budgets (5,000 requests/s per
//! app), with `app-rate=N` with N requests/s per app; otherwise with budgets no two cores
//! can reach. The table says which limits were in force.

use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, oneshot};

const TENANT: &str = "bench-tenant";
const APP: &str = "bench-app";
const USER: &str = "bench-user";

/// Waiters for (call id, state), and arrivals nobody waited for yet (a notification can
/// arrive before the create response does).
#[derive(Default)]
struct Book {
    waiting: HashMap<(String, String), oneshot::Sender<()>>,
    arrived: std::collections::HashSet<(String, String)>,
}
type Waiters = Arc<Mutex<Book>>;

async fn webhook() -> (String, Waiters) {
    let waiters: Waiters = Default::default();
    let w = waiters.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let w = w.clone();
        async move {
            if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                for item in v["value"].as_array().into_iter().flatten() {
                    let data = &item["resourceData"];
                    if let (Some(id), Some(state)) = (data["id"].as_str(), data["state"].as_str()) {
                        let key = (id.to_string(), state.to_string());
                        let mut book = w.lock().await;
                        match book.waiting.remove(&key) {
                            Some(tx) => {
                                let _ = tx.send(());
                            }
                            None => {
                                book.arrived.insert(key);
                            }
                        }
                    }
                }
            }
            axum::http::StatusCode::ACCEPTED
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, waiters)
}

/// The limits the benchmark runs under: ringside's defaults (5,000 requests/s per app,
/// bursts of 10,000; 20,000/s per tenant), a given budget per app (`app-rate=N`: N
/// requests/s, bursts of N), or budgets far above what two cores can reach.
fn limits(arg: Option<&str>) -> String {
    let calls = "max_calls_per_app = 1000000\nmax_calls_per_tenant = 1000000\n";
    let rate = |app: f64| {
        format!(
            "rate_per_app = {app:.1}\nburst_per_app = {app:.1}\nrate_per_tenant = 1000000.0\nburst_per_tenant = 1000000.0\n"
        )
    };
    match arg {
        Some("default-limits") => calls.to_string(),
        Some(a) => match a
            .strip_prefix("app-rate=")
            .and_then(|n| n.parse::<f64>().ok())
        {
            Some(n) => format!("{calls}{}", rate(n)),
            None => panic!("the third argument is default-limits or app-rate=N, not {a}"),
        },
        None => format!("{calls}{}", rate(1_000_000.0)),
    }
}

fn config(hook: &str, limits: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
{limits}[admin]
token = "bench-admin"
[[tenants]]
id = "{TENANT}"
[[apps]]
id = "{APP}"
tenant = "{TENANT}"
secret = "bench-secret"
webhook = "{hook}/incoming"
[[users]]
id = "{USER}"
tenant = "{TENANT}"
behaviour = {{ action = "answer", answerAfterMs = 0 }}
"#
    )
}

/// Why a lifecycle failed: every failure is counted under its cause and printed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Failure {
    /// The create request was answered with this status (429 is throttling).
    Create(u16),
    /// The create request got no answer (connection refused, reset, timed out).
    CreateSend,
    NoEstablished,
    Delete(u16),
    DeleteSend,
    NoTerminated,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Create(s) => write!(f, "create answered {s}"),
            Failure::CreateSend => write!(f, "create got no answer"),
            Failure::NoEstablished => write!(f, "no `established` within 10 s"),
            Failure::Delete(s) => write!(f, "delete answered {s}"),
            Failure::DeleteSend => write!(f, "delete got no answer"),
            Failure::NoTerminated => write!(f, "no `terminated` within 10 s"),
        }
    }
}

#[derive(Default)]
struct Stats {
    done: AtomicU64,
    failed: AtomicU64,
    causes: std::sync::Mutex<std::collections::BTreeMap<Failure, u64>>,
    latencies: Mutex<Vec<Duration>>,
}

impl Stats {
    fn fail(&self, why: Failure) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        *self.causes.lock().unwrap().entry(why).or_default() += 1;
    }

    /// `N (x %): n1 cause1, n2 cause2`, or `0`.
    fn failures(&self) -> String {
        let failed = self.failed.load(Ordering::Relaxed);
        if failed == 0 {
            return "0".into();
        }
        let all = failed + self.done.load(Ordering::Relaxed);
        let causes: Vec<String> = self
            .causes
            .lock()
            .unwrap()
            .iter()
            .map(|(c, n)| format!("{n} {c}"))
            .collect();
        format!(
            "{failed} ({:.2} % of {all}): {}",
            failed as f64 * 100.0 / all as f64,
            causes.join(", ")
        )
    }

    fn failure_ratio(&self) -> f64 {
        let failed = self.failed.load(Ordering::Relaxed) as f64;
        failed / (failed + self.done.load(Ordering::Relaxed) as f64).max(1.0)
    }
}

async fn expect(w: &Waiters, id: &str, state: &str) -> oneshot::Receiver<()> {
    let (tx, rx) = oneshot::channel();
    let key = (id.to_string(), state.to_string());
    let mut book = w.lock().await;
    if book.arrived.remove(&key) {
        let _ = tx.send(());
    } else {
        book.waiting.insert(key, tx);
    }
    rx
}

/// One lifecycle. Returns the create and delete request latencies.
async fn lifecycle(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    hook: &str,
    w: &Waiters,
) -> Result<(Duration, Duration), Failure> {
    let body = json!({
        "callbackUri": format!("{hook}/cb"), "requestedModalities": ["audio"],
        "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
        "targets": [{"identity": {"user": {"id": USER}}}],
    });
    let t0 = Instant::now();
    let r = client
        .post(format!("{base}/v1.0/communications/calls"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .map_err(|_| Failure::CreateSend)?;
    let create = t0.elapsed();
    if r.status() != 201 {
        return Err(Failure::Create(r.status().as_u16()));
    }
    let v: Value = r.json().await.map_err(|_| Failure::CreateSend)?;
    let id = v["id"].as_str().ok_or(Failure::Create(201))?.to_string();
    // Register before the notification can arrive: it may already be on its way.
    let est = expect(w, &id, "established").await;
    let term = expect(w, &id, "terminated").await;
    tokio::time::timeout(Duration::from_secs(10), est)
        .await
        .map_err(|_| Failure::NoEstablished)?
        .map_err(|_| Failure::NoEstablished)?;
    let t1 = Instant::now();
    let r = client
        .delete(format!("{base}/v1.0/communications/calls/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .map_err(|_| Failure::DeleteSend)?;
    let delete = t1.elapsed();
    if r.status() != 204 {
        return Err(Failure::Delete(r.status().as_u16()));
    }
    tokio::time::timeout(Duration::from_secs(10), term)
        .await
        .map_err(|_| Failure::NoTerminated)?
        .map_err(|_| Failure::NoTerminated)?;
    Ok((create, delete))
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

/// What a worker needs to run lifecycles.
#[derive(Clone)]
struct Load {
    client: reqwest::Client,
    base: String,
    token: String,
    hook: String,
    waiters: Waiters,
}

/// `workers` running lifecycles back to back for `secs`: lifecycles/s, and what failed.
async fn closed_loop(w: &Load, workers: usize, secs: u64) -> (f64, Arc<Stats>) {
    let stats = Arc::new(Stats::default());
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = vec![];
    for _ in 0..workers {
        let (w, stats) = (w.clone(), stats.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                match lifecycle(&w.client, &w.base, &w.token, &w.hook, &w.waiters).await {
                    Ok(_) => {
                        stats.done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(why) => stats.fail(why),
                }
            }
        }));
    }
    let t = Instant::now();
    for t in tasks {
        t.await.unwrap();
    }
    let rate = stats.done.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64();
    (rate, stats)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let workers: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(64);
    let limits = limits(args.get(3).map(String::as_str));
    let (hook, waiters) = webhook().await;
    let dir = std::env::temp_dir().join(format!("ringside-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // RINGSIDE_BENCH_STORE=postgres://…: the same run with the state in PostgreSQL.
    let store = std::env::var("RINGSIDE_BENCH_STORE")
        .map(|u| format!("\n[store]\nurl = \"{u}\"\n"))
        .unwrap_or_default();
    std::fs::write(dir.join("ringside.toml"), config(&hook, &limits) + &store).unwrap();
    let running = server::start(server::Options {
        data_dir: dir.clone(),
        config: None,
        listen: None,
    })
    .await
    .unwrap();
    let base = format!("http://{}", running.addr);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()
        .unwrap();
    let tok: Value = client
        .post(format!("{base}/{TENANT}/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", APP),
            ("client_secret", "bench-secret"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = tok["access_token"].as_str().unwrap().to_string();

    // Phase 1: closed loop, as fast as it goes. A rate with more than 0.1 % failures is not
    // a throughput figure: the loop is run again with half the workers until one is.
    let w = Load {
        client: client.clone(),
        base: base.clone(),
        token: token.clone(),
        hook: hook.clone(),
        waiters: waiters.clone(),
    };
    let (rate, stats) = closed_loop(&w, workers, secs).await;
    let mut clean = (workers, rate, stats.failure_ratio());
    while clean.2 > 0.001 && clean.0 > 1 {
        let fewer = clean.0 / 2;
        let (r, st) = closed_loop(&w, fewer, secs).await;
        clean = (fewer, r, st.failure_ratio());
    }

    // Phase 2: open loop at half that rate; latency of every create and delete.
    let half = (rate / 2.0).max(1.0);
    let stats2 = Arc::new(Stats::default());
    let interval = Duration::from_secs_f64(1.0 / half);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let end = Instant::now() + Duration::from_secs(secs);
    let mut tasks = vec![];
    while Instant::now() < end {
        ticker.tick().await;
        let (client, base, token, hook, w, stats) = (
            client.clone(),
            base.clone(),
            token.clone(),
            hook.clone(),
            waiters.clone(),
            stats2.clone(),
        );
        tasks.push(tokio::spawn(async move {
            match lifecycle(&client, &base, &token, &hook, &w).await {
                Ok((c, d)) => {
                    stats.done.fetch_add(1, Ordering::Relaxed);
                    let mut l = stats.latencies.lock().await;
                    l.push(c);
                    l.push(d);
                }
                Err(why) => stats.fail(why),
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut lat = stats2.latencies.lock().await.clone();
    let (p50, p99) = (pct(&mut lat, 0.50), pct(&mut lat, 0.99));

    // Baseline: an empty axum handler under the same client and concurrency.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let empty = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            listener,
            axum::Router::new().fallback(|| async { axum::http::StatusCode::OK }),
        )
        .await
        .unwrap()
    });
    let count = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = vec![];
    for _ in 0..workers {
        let (client, empty, count) = (client.clone(), empty.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                if client
                    .post(format!("{empty}/v1.0/communications/calls"))
                    .json(&json!({"a": 1}))
                    .send()
                    .await
                    .is_ok()
                {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let t = Instant::now();
    for t in tasks {
        t.await.unwrap();
    }
    let baseline = count.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64();

    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| limits in force | {} |",
        limits.trim().replace('\n', ", ")
    );
    println!("| full call lifecycles/s (closed loop, {workers} workers, {secs} s) | {rate:.0} |");
    println!("| failed lifecycles (phase 1) | {} |", stats.failures());
    if clean.0 != workers {
        println!(
            "| highest closed-loop rate with failures under 0.1 % ({} workers) | {:.0} lifecycles/s ({:.2} % failed) |",
            clean.0,
            clean.1,
            clean.2 * 100.0
        );
    }
    println!(
        "| API requests/s in those lifecycles (create + delete) | {:.0} |",
        rate * 2.0
    );
    println!(
        "| notifications delivered/s (5 per lifecycle) | {:.0} |",
        rate * 5.0
    );
    println!("| API latency p50 at {half:.0} lifecycles/s (create + delete) | {p50:.2} ms |");
    println!("| API latency p99 at {half:.0} lifecycles/s | {p99:.2} ms |");
    println!("| failed lifecycles (phase 2) | {} |", stats2.failures());
    println!("| empty axum handler, same client and concurrency | {baseline:.0} req/s |");
    println!(
        "| ringside requests/s as a share of the empty handler | {:.1} % |",
        rate * 2.0 / baseline * 100.0
    );
    let _ = std::fs::remove_dir_all(&dir);
    std::process::exit(0);
}
