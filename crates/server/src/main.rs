//! `ringside`: run the platform (`serve`) or manage a running one through its admin API.

use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "ringside",
    version,
    about = "A self-hosted Microsoft Graph calls API"
)]
struct Cli {
    /// Data folder: database, signing key, recordings, and the default config file.
    #[arg(
        long,
        global = true,
        default_value = "ringside-data",
        env = "RINGSIDE_DATA"
    )]
    data_dir: PathBuf,
    /// Config file (default: <data-dir>/ringside.toml, created on first start).
    #[arg(long, global = true, env = "RINGSIDE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run ringside with its embedded defaults.
    Serve {
        /// Listen address (overrides server.listen).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Show tenants, apps and users.
    /// Check the configuration and this machine (ports, certificates, store, bus, disk,
    /// speech-to-text weights) and say what is wrong; exit 1 if anything is.
    Doctor,
    Directory,
    /// Add a tenant.
    AddTenant {
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        id: Option<String>,
    },
    /// Add an application (prints its secret).
    AddApp {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        webhook: Option<String>,
        #[arg(long)]
        id: Option<String>,
    },
    /// Give an application a new random secret (printed once).
    SetSecret {
        app: String,
    },
    /// Replace the token signing key now (the previous one stays valid until the next rotation).
    RotateKeys,
    /// Set an application's calling webhook.
    SetWebhook {
        app: String,
        url: String,
    },
    /// Add a simulated user; --behaviour takes JSON like {"action":"answer","answerAfterMs":500}.
    AddUser {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        behaviour: Option<String>,
    },
    /// A simulated user calls an application (by app id or routed address).
    Call {
        user: String,
        target: String,
        /// JSON script, e.g. {"dtmf":[{"atMs":1000,"digits":"12#"}],"hangupAfterMs":10000}
        #[arg(long)]
        script: Option<String>,
    },
    /// A simulated user joins a meeting (by join URL, or join id and passcode).
    Join {
        user: String,
        #[arg(long)]
        url: Option<String>,
        #[arg(long)]
        meeting_id: Option<String>,
        #[arg(long)]
        passcode: Option<String>,
        #[arg(long)]
        script: Option<String>,
    },
    /// What simulated users experienced on their legs.
    Legs {
        #[arg(long)]
        user: Option<String>,
    },
    /// Save what a simulated user heard on a leg as a WAV file (16 kHz mono).
    Heard {
        leg: String,
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Sign a user in to the web phone: a token, and the phone's address with it.
    Phone {
        user: String,
    },
    /// Notifications that could not be delivered.
    DeadLetters,
    /// Put a dead letter back in its call's notification queue.
    Redeliver {
        seq: i64,
    },
}

fn main() {
    let cli = Cli::parse();
    // Structured logs: RINGSIDE_LOG_FORMAT=json writes one JSON object per event; audit events
    // (admin changes, auth failures, refused outbound requests) carry target "audit".
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,hyper=warn,reqwest=warn,rsipstack=warn".into());
    // A log that cannot be written (its disk is full) is skipped: tracing-subscriber would
    // otherwise report it on stderr, which panics the logging thread when stderr is on the
    // same full disk.
    if std::env::var("RINGSIDE_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .log_internal_errors(false)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .log_internal_errors(false)
            .init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = rt.block_on(run(cli));
    std::process::exit(code);
}

/// Ctrl-C or SIGTERM.
async fn stopped() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn run(cli: Cli) -> i32 {
    match cli.cmd {
        Cmd::Doctor => {
            let checks = server::doctor::run(&cli.data_dir, cli.config.as_deref()).await;
            let (text, ok) = server::doctor::report(&checks);
            print!("ringside doctor\n{text}");
            if ok { 0 } else { 1 }
        }
        Cmd::Serve { listen } => {
            let opts = server::Options {
                data_dir: cli.data_dir,
                config: cli.config,
                listen,
            };
            match server::start(opts).await {
                Ok(r) => {
                    if r.seeded {
                        println!("First start: seeded a development directory.\n");
                    }
                    println!("{}", server::banner(&r));
                    stopped().await;
                    server::drain(&r.node).await;
                    0
                }
                Err(e) => {
                    eprintln!("ringside: {e}");
                    1
                }
            }
        }
        other => match admin(&cli.data_dir, cli.config, other).await {
            Ok(v) => {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                0
            }
            Err(e) => {
                eprintln!("ringside: {e}");
                1
            }
        },
    }
}

/// CLI subcommands talk to the running server's admin API, found through the config file.
async fn admin(
    data_dir: &std::path::Path,
    config: Option<PathBuf>,
    cmd: Cmd,
) -> Result<Value, String> {
    let path = config.unwrap_or_else(|| data_dir.join("ringside.toml"));
    let cfg = directory::Config::load(&path)?;
    let token = cfg
        .admin
        .as_ref()
        .map(|a| a.token.clone())
        .ok_or("the config has no [admin] token")?;
    let base = format!("{}/admin", cfg.public_url());
    let client = reqwest::Client::new();
    let parse_json = |s: Option<String>| -> Result<Value, String> {
        s.map(|s| serde_json::from_str(&s).map_err(|e| format!("bad JSON: {e}")))
            .unwrap_or(Ok(json!({})))
    };
    if let Cmd::Heard { leg, out } = &cmd {
        let resp = client
            .get(format!("{base}/legs/{leg}/heard"))
            .bearer_auth(&token)
            .send()
            .await
            .map_err(|e| format!("cannot reach ringside at {base}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}: no audio for leg {leg}", resp.status()));
        }
        let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
        std::fs::write(out, &bytes).map_err(|e| format!("{}: {e}", out.display()))?;
        let ms = bytes.len().saturating_sub(44) as u64 / 32;
        return Ok(json!({"leg": leg, "file": out.display().to_string(), "durationMs": ms}));
    }
    let phone = matches!(cmd, Cmd::Phone { .. });
    let (method, path, body) = match cmd {
        Cmd::Serve { .. } | Cmd::Heard { .. } | Cmd::Doctor => unreachable!(),
        Cmd::Directory => ("GET", "/directory".to_string(), None),
        Cmd::AddTenant { name, id } => (
            "POST",
            "/tenants".into(),
            Some(json!({"name": name, "id": id})),
        ),
        Cmd::AddApp {
            tenant,
            name,
            webhook,
            id,
        } => (
            "POST",
            "/apps".into(),
            Some(json!({"tenant": tenant, "name": name, "webhook": webhook, "id": id})),
        ),
        Cmd::SetSecret { app } => ("POST", format!("/apps/{app}/secret"), None),
        Cmd::RotateKeys => ("POST", "/signing-keys/rotate".to_string(), None),
        Cmd::SetWebhook { app, url } => (
            "PATCH",
            format!("/apps/{app}"),
            Some(json!({ "webhook": url })),
        ),
        Cmd::AddUser {
            tenant,
            name,
            id,
            behaviour,
        } => (
            "POST",
            "/users".into(),
            Some(
                json!({"tenant": tenant, "displayName": name, "id": id, "behaviour": parse_json(behaviour)?}),
            ),
        ),
        Cmd::Call {
            user,
            target,
            script,
        } => (
            "POST",
            format!("/users/{user}/call"),
            Some(json!({"target": target, "script": parse_json(script)?})),
        ),
        Cmd::Join {
            user,
            url,
            meeting_id,
            passcode,
            script,
        } => (
            "POST",
            format!("/users/{user}/join"),
            Some(
                json!({"joinWebUrl": url, "joinMeetingId": meeting_id, "passcode": passcode, "script": parse_json(script)?}),
            ),
        ),
        Cmd::Legs { user } => (
            "GET",
            format!(
                "/legs{}",
                user.map(|u| format!("?user={u}")).unwrap_or_default()
            ),
            None,
        ),
        Cmd::Phone { user } => ("POST", format!("/users/{user}/token"), None),
        Cmd::DeadLetters => ("GET", "/dead-letters".into(), None),
        Cmd::Redeliver { seq } => ("POST", format!("/dead-letters/{seq}/redeliver"), None),
    };
    let mut req = client
        .request(method.parse().expect("method"), format!("{base}{path}"))
        .bearer_auth(token);
    if let Some(mut b) = body {
        if let Value::Object(m) = &mut b {
            m.retain(|_, v| !v.is_null());
        }
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("cannot reach ringside at {base}: {e}"))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let v: Value = serde_json::from_str(&text).unwrap_or(if text.is_empty() {
        json!({"status": status.as_u16()})
    } else {
        Value::String(text)
    });
    if status.is_success() {
        let mut v = v;
        if phone && let Some(t) = v["token"].as_str() {
            v["phone"] = format!("{}/phone?token={t}", cfg.public_url()).into();
        }
        Ok(v)
    } else {
        Err(format!("HTTP {status}: {v}"))
    }
}
