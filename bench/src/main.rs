//! Benchmark: full call lifecycles per second through the real HTTP API with the durable
//! SQLite store — create → simulated answer → `established` delivered to a real webhook →
//! delete → `terminated` delivered — then API latency at half that rate, and the same load
//! against an empty axum handler as the baseline. Prints a Markdown table.
//!
//!   cargo run --release -p ringside-bench -- [seconds per phase, default 10] [workers, default 64]

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

fn config(hook: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
max_calls_per_app = 1000000
[admin]
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

struct Stats {
    done: AtomicU64,
    failed: AtomicU64,
    latencies: Mutex<Vec<Duration>>,
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
) -> Result<(Duration, Duration), String> {
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
        .map_err(|e| e.to_string())?;
    let create = t0.elapsed();
    if r.status() != 201 {
        return Err(format!("create {}", r.status()));
    }
    let v: Value = r.json().await.map_err(|e| e.to_string())?;
    let id = v["id"].as_str().ok_or("no id")?.to_string();
    // Register before the notification can arrive: it may already be on its way.
    let est = expect(w, &id, "established").await;
    let term = expect(w, &id, "terminated").await;
    tokio::time::timeout(Duration::from_secs(10), est)
        .await
        .map_err(|_| "no established")?
        .map_err(|_| "dropped")?;
    let t1 = Instant::now();
    let r = client
        .delete(format!("{base}/v1.0/communications/calls/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let delete = t1.elapsed();
    if r.status() != 204 {
        return Err(format!("delete {}", r.status()));
    }
    tokio::time::timeout(Duration::from_secs(10), term)
        .await
        .map_err(|_| "no terminated")?
        .map_err(|_| "dropped")?;
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

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let workers: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(64);
    let (hook, waiters) = webhook().await;
    let dir = std::env::temp_dir().join(format!("ringside-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ringside.toml"), config(&hook)).unwrap();
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

    // Phase 1: closed loop, as fast as it goes.
    let stats = Arc::new(Stats {
        done: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        latencies: Mutex::new(vec![]),
    });
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = vec![];
    for _ in 0..workers {
        let (client, base, token, hook, w, stats) = (
            client.clone(),
            base.clone(),
            token.clone(),
            hook.clone(),
            waiters.clone(),
            stats.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                match lifecycle(&client, &base, &token, &hook, &w).await {
                    Ok(_) => stats.done.fetch_add(1, Ordering::Relaxed),
                    Err(_) => stats.failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    let t = Instant::now();
    for t in tasks {
        t.await.unwrap();
    }
    let rate = stats.done.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64();
    let failed1 = stats.failed.load(Ordering::Relaxed);

    // Phase 2: open loop at half that rate; latency of every create and delete.
    let half = (rate / 2.0).max(1.0);
    let stats2 = Arc::new(Stats {
        done: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        latencies: Mutex::new(vec![]),
    });
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
                Err(_) => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                }
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
    println!("| full call lifecycles/s (closed loop, {workers} workers, {secs} s) | {rate:.0} |");
    println!("| failed lifecycles (phase 1) | {failed1} |");
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
    println!(
        "| failed lifecycles (phase 2) | {} |",
        stats2.failed.load(Ordering::Relaxed)
    );
    println!("| empty axum handler, same client and concurrency | {baseline:.0} req/s |");
    println!(
        "| ringside requests/s as a share of the empty handler | {:.1} % |",
        rate * 2.0 / baseline * 100.0
    );
    let _ = std::fs::remove_dir_all(&dir);
    std::process::exit(0);
}
