//! Benchmark: what a shared store and a second node cost, on one machine. Release ringside
//! processes (`target/release/ringside`), a PostgreSQL server (`RINGSIDE_BENCH_PG`, as
//! `scripts/postgres.sh` prints it) and a NATS server of the benchmark's own.
//!
//! 1. One node, SQLite vs PostgreSQL: closed-loop call lifecycles (create a call to a user
//!    who answers at once, then delete it) from W workers for T seconds: lifecycles/s and
//!    the latency of both requests.
//! 2. Two nodes on PostgreSQL and NATS: calls created on node a; then `GET` and `DELETE` of
//!    them through a (the owner) and through b (forwarded over NATS): requests/s and latency,
//!    the forwarding cost being the difference.
//!
//!   RINGSIDE_BENCH_PG=postgres://ringside@127.0.0.1:54329/ringside \
//!     cargo run --release -p ringside-bench --bin cluster -- [seconds, default 10] [workers, default 32]

use ringside_bench::{Ringside, free_port, percentile};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const TENANT: &str = "11111111-1111-1111-1111-111111111111";
const APP: &str = "aaaaaaaa-0000-0000-0000-000000000001";
const USER: &str = "a11ce000-0000-0000-0000-000000000001";

fn config(listen: &str, hook: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "{listen}"
max_calls_per_app = 1000000
max_calls_per_tenant = 1000000
rate_per_app = 1000000.0
burst_per_app = 1000000.0
rate_per_tenant = 1000000.0
burst_per_tenant = 1000000.0
allow_private_network = true
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
{extra}
"#
    )
}

/// A webhook that accepts every notification at once.
async fn webhook() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(|| async { axum::http::StatusCode::ACCEPTED });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

struct Load {
    http: reqwest::Client,
    token: String,
    hook: String,
}

impl Load {
    async fn create(&self, base: &str) -> Option<String> {
        let body = json!({
            "callbackUri": format!("{}/cb", self.hook),
            "targets": [{"identity": {"user": {"id": USER}}}],
            "requestedModalities": ["audio"],
            "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
        });
        let r = self
            .http
            .post(format!("{base}/v1.0/communications/calls"))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .ok()?;
        if r.status() != 201 {
            return None;
        }
        let v: Value = r.json().await.ok()?;
        v["id"].as_str().map(str::to_string)
    }

    async fn request(&self, method: reqwest::Method, url: String, ok: u16) -> bool {
        self.http
            .request(method, url)
            .bearer_auth(&self.token)
            .send()
            .await
            .is_ok_and(|r| r.status() == ok)
    }
}

/// Latencies (ms) of the two steps of each round, and the rounds done, from `workers`
/// closed loops running `round` for `secs`.
async fn closed_loop<F, Fut>(
    workers: usize,
    secs: u64,
    round: F,
) -> (Vec<f64>, Vec<f64>, usize, usize)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Option<(f64, f64)>> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let round = Arc::new(round);
    let mut tasks = vec![];
    for _ in 0..workers {
        let (stop, round) = (stop.clone(), round.clone());
        tasks.push(tokio::spawn(async move {
            let (mut a, mut b, mut failed) = (vec![], vec![], 0);
            while !stop.load(Ordering::Relaxed) {
                match round().await {
                    Some((x, y)) => {
                        a.push(x);
                        b.push(y);
                    }
                    None => failed += 1,
                }
            }
            (a, b, failed)
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut a, mut b, mut failed) = (vec![], vec![], 0);
    for t in tasks {
        let (x, y, f) = t.await.unwrap();
        a.extend(x);
        b.extend(y);
        failed += f;
    }
    let done = a.len();
    (a, b, done, failed)
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// Create through `create_on`, then delete through `delete_on`: (create ms, delete ms).
async fn lifecycles(
    load: Arc<Load>,
    create_on: String,
    delete_on: String,
    workers: usize,
    secs: u64,
) -> String {
    let (mut c, mut d, done, failed) = closed_loop(workers, secs, move || {
        let (load, create_on, delete_on) = (load.clone(), create_on.clone(), delete_on.clone());
        async move {
            let t = Instant::now();
            let id = load.create(&create_on).await?;
            let created = ms(t);
            let t = Instant::now();
            let url = format!("{delete_on}/v1.0/communications/calls/{id}");
            load.request(reqwest::Method::DELETE, url, 204)
                .await
                .then(|| (created, ms(t)))
        }
    })
    .await;
    format!(
        "{:.0} | {:.2} / {:.2} | {:.2} / {:.2} | {failed}",
        done as f64 / secs as f64,
        percentile(&mut c, 0.5),
        percentile(&mut c, 0.99),
        percentile(&mut d, 0.5),
        percentile(&mut d, 0.99)
    )
}

/// `GET` of existing calls through `base`: (requests/s, p50, p99).
async fn gets(
    load: Arc<Load>,
    base: String,
    ids: Arc<Vec<String>>,
    workers: usize,
    secs: u64,
) -> String {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (mut g, _, done, failed) = closed_loop(workers, secs, move || {
        let (load, base, ids, next) = (load.clone(), base.clone(), ids.clone(), next.clone());
        async move {
            let id = &ids[next.fetch_add(1, Ordering::Relaxed) % ids.len()];
            let t = Instant::now();
            let url = format!("{base}/v1.0/communications/calls/{id}");
            load.request(reqwest::Method::GET, url, 200)
                .await
                .then(|| (ms(t), 0.0))
        }
    })
    .await;
    format!(
        "{:.0} | {:.2} / {:.2} | {failed}",
        done as f64 / secs as f64,
        percentile(&mut g, 0.5),
        percentile(&mut g, 0.99)
    )
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let workers: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(32);
    let pg = std::env::var("RINGSIDE_BENCH_PG")
        .expect("RINGSIDE_BENCH_PG=postgres://… (scripts/postgres.sh prints one)");
    let hook = webhook().await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()
        .unwrap();
    let nats_port = free_port();
    let mut nats =
        tokio::process::Command::new(if std::path::Path::new("/usr/sbin/nats-server").exists() {
            "/usr/sbin/nats-server"
        } else {
            "nats-server"
        })
        .args(["-a", "127.0.0.1", "-p", &nats_port.to_string()])
        .kill_on_drop(true)
        .spawn()
        .expect("nats-server (apt-get install nats-server)");
    tokio::time::sleep(Duration::from_millis(300)).await;

    println!("| setup | lifecycles/s | create p50 / p99 ms | delete p50 / p99 ms | failed |");
    println!("|---|---|---|---|---|");
    for (name, store) in [
        ("one node, SQLite", None),
        ("one node, PostgreSQL", Some("single")),
    ] {
        let extra = match store {
            Some(db) => format!(
                "[store]\nurl = \"{}\"\n",
                store::testing::fresh_database_at(&pg, &format!("ringside_bench_{db}"))
            ),
            None => String::new(),
        };
        let hook2 = hook.clone();
        let node = Ringside::start(&format!("cluster-{}", store.unwrap_or("lite")), move |l| {
            config(l, &hook2, &extra)
        })
        .await;
        let token = node.app_token(&http, TENANT, APP, "bench-secret").await;
        let load = Arc::new(Load {
            http: http.clone(),
            token,
            hook: hook.clone(),
        });
        let row = lifecycles(load, node.base.clone(), node.base.clone(), workers, secs).await;
        println!("| {name} | {row} |");
        node.stop().await;
    }

    let db = store::testing::fresh_database_at(&pg, "ringside_bench_cluster");
    let cluster = |id: &str| {
        format!(
            "[store]\nurl = \"{db}\"\n[cluster]\nnode_id = \"{id}\"\nnats = \"nats://127.0.0.1:{nats_port}\"\n"
        )
    };
    let (ha, hb) = (hook.clone(), hook.clone());
    let (ca, cb) = (cluster("a"), cluster("b"));
    let a = Ringside::start("cluster-a", move |l| config(l, &ha, &ca)).await;
    let b = Ringside::start("cluster-b", move |l| config(l, &hb, &cb)).await;
    let token = a.app_token(&http, TENANT, APP, "bench-secret").await;
    let load = Arc::new(Load {
        http: http.clone(),
        token,
        hook: hook.clone(),
    });
    for (name, delete_on) in [
        ("two nodes: create on a, delete on a (owner)", &a.base),
        ("two nodes: create on a, delete on b (forwarded)", &b.base),
    ] {
        let row = lifecycles(
            load.clone(),
            a.base.clone(),
            delete_on.clone(),
            workers,
            secs,
        )
        .await;
        println!("| {name} | {row} |");
    }
    let mut ids = vec![];
    for _ in 0..200 {
        ids.extend(load.create(&a.base).await);
    }
    let ids = Arc::new(ids);
    println!();
    println!("| GET /communications/calls/{{id}} | requests/s | p50 / p99 ms | failed |");
    println!("|---|---|---|---|");
    for (name, base) in [
        ("through a (owner)", &a.base),
        ("through b (forwarded over NATS)", &b.base),
    ] {
        let row = gets(load.clone(), base.clone(), ids.clone(), workers, secs).await;
        println!("| {name} | {row} |");
    }
    a.stop().await;
    b.stop().await;
    let _ = nats.kill().await;
}
