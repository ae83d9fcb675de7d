//! What the benchmarks share: reading a process's CPU and memory from /proc, percentiles,
//! and running a release ringside as a process of its own.

use std::time::{Duration, Instant};

/// A `/proc/<pid>/status` field in kB (`VmRSS:`, `Threads:`…); `pid` 0 is this process.
pub fn proc_status(pid: u32, key: &str) -> u64 {
    let path = match pid {
        0 => "/proc/self/status".to_string(),
        p => format!("/proc/{p}/status"),
    };
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Resident memory of this process, in kB.
pub fn rss_kb() -> u64 {
    proc_status(0, "VmRSS:")
}

/// CPU seconds (user + system) a process has used.
pub fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds the hypervisor gave to other guests while this machine's CPUs wanted it
/// (steal, all CPUs, since boot): late ticks on a virtual machine come with it.
pub fn stolen_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu = stat.lines().next().unwrap_or("");
    cpu.split_whitespace()
        .nth(8)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 100.0
}

/// The machine's UDP counters since boot (`/proc/net/snmp`): datagrams delivered to a
/// socket, and those dropped because the socket's receive buffer was full.
pub fn udp_datagrams() -> (u64, u64) {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut rows = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (rows.next(), rows.next()) else {
        return (0, 0);
    };
    let field = |name: &str| {
        let i = names.split_whitespace().position(|n| n == name);
        i.and_then(|i| values.split_whitespace().nth(i))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("InDatagrams"), field("RcvbufErrors"))
}

/// The `p` quantile (0..=1) of `v` (sorted in place); NaN when empty.
pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A release ringside (`target/release/ringside`, or `RINGSIDE_BIN`) on a fresh data folder,
/// killed when dropped.
pub struct Ringside {
    pub child: tokio::process::Child,
    pub pid: u32,
    pub base: String,
    pub dir: std::path::PathBuf,
}

impl Ringside {
    /// Start one with the config `config(listen address)`; wait until it answers.
    pub async fn start(name: &str, config: impl Fn(&str) -> String) -> Ringside {
        let bin =
            std::env::var("RINGSIDE_BIN").unwrap_or_else(|_| "target/release/ringside".into());
        let dir =
            std::env::temp_dir().join(format!("ringside-bench-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let listen = format!("127.0.0.1:{}", free_port());
        std::fs::write(dir.join("ringside.toml"), config(&listen)).unwrap();
        // BENCH_LOG=<filter> keeps ringside's log (at that filter) in <data dir>.log.
        let (filter, log) = match std::env::var("BENCH_LOG") {
            Ok(f) => {
                let path = dir.with_extension("log");
                eprintln!("ringside's log: {}", path.display());
                (f, Some(std::fs::File::create(path).unwrap()))
            }
            Err(_) => ("warn".to_string(), None),
        };
        let output = |log: &Option<std::fs::File>| match log {
            Some(f) => std::process::Stdio::from(f.try_clone().unwrap()),
            None => std::process::Stdio::null(),
        };
        let child = tokio::process::Command::new(&bin)
            .args(["--data-dir", dir.to_str().unwrap(), "serve"])
            .env("RUST_LOG", filter)
            .stdout(output(&log))
            .stderr(output(&log))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{bin}: {e} (cargo build --release -p server --bin ringside)")
            });
        let pid = child.id().unwrap();
        let base = format!("http://{listen}");
        let http = reqwest::Client::new();
        let up = Instant::now();
        while http.get(format!("{base}/healthz")).send().await.is_err() {
            assert!(
                up.elapsed() < Duration::from_secs(20),
                "ringside did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ringside {
            child,
            pid,
            base,
            dir,
        }
    }

    /// An app token from the token endpoint.
    pub async fn app_token(
        &self,
        http: &reqwest::Client,
        tenant: &str,
        app: &str,
        secret: &str,
    ) -> String {
        let v: serde_json::Value = http
            .post(format!("{}/{tenant}/oauth2/v2.0/token", self.base))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", app),
                ("client_secret", secret),
                ("scope", "https://graph.microsoft.com/.default"),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["access_token"].as_str().expect("a token").to_string()
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
