//! The ringside process: reads (or seeds) the config, binds the HTTP listeners, starts a
//! node (crates/node) and serves the HTTP surface (crates/api) on it. `start` returns once it
//! listens; `main.rs` is the command line around it.

pub mod doctor;
use directory::Config;
use node::Node;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub struct Options {
    pub data_dir: PathBuf,
    pub config: Option<PathBuf>,
    pub listen: Option<String>,
}

/// Stop taking calls (SIGTERM): new calls are refused and `/readyz` says so; a node of a
/// cluster waits up to `[cluster] drain_seconds` for its calls to end, then gives up its
/// lease so another node takes what is left. A single node's calls are in its store and
/// resume when it starts again.
pub async fn drain(node: &Arc<Node>) {
    node.draining
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let Some(c) = node.cluster.get() else {
        return;
    };
    let secs = node
        .directory
        .read()
        .cluster
        .as_ref()
        .map_or(30, |c| c.drain_seconds);
    tracing::info!(
        calls = c.owned.calls(),
        "draining: no new calls; waiting up to {secs} s for these to end"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while c.owned.calls() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tracing::info!(
        left = c.owned.calls(),
        "drained; the other nodes take what is left"
    );
    if let Err(e) = c.release().await {
        tracing::warn!(error = %e, "could not give up the lease; the others take over when it runs out");
    }
}

pub struct Running {
    pub addr: SocketAddr,
    pub node: Arc<Node>,
    /// Set when this start seeded a fresh development directory.
    pub seeded: bool,
    /// The HTTPS listener, when `https_listen` is set.
    pub https_addr: Option<SocketAddr>,
    /// The dev certificate ringside generated, to be trusted by clients.
    pub tls_generated: Option<PathBuf>,
    /// The seeded app's secret, shown once in the banner.
    pub seeded_secret: Option<String>,
    /// SIP usernames and passwords of a freshly seeded directory (shown once).
    pub seeded_sip: Vec<(String, String)>,
    pub server: tokio::task::JoinHandle<()>,
}

/// The config file, or a freshly seeded dev directory (its secrets shown once, then only
/// their hashes kept, as Entra's portal does).
struct Loaded {
    cfg: Config,
    path: PathBuf,
    seeded: bool,
    seeded_secret: Option<String>,
    seeded_sip: Vec<(String, String)>,
}

fn load_config(opts: &Options) -> Result<Loaded, String> {
    let path = opts
        .config
        .clone()
        .unwrap_or_else(|| opts.data_dir.join("ringside.toml"));
    let (mut cfg, seeded) = if path.exists() {
        (Config::load(&path)?, false)
    } else {
        (Config::seed_dev(), true)
    };
    let seeded_secret = if seeded {
        cfg.apps.first().and_then(|a| a.secret.clone())
    } else {
        None
    };
    let seeded_sip: Vec<(String, String)> = if seeded {
        cfg.users
            .iter()
            .filter_map(|u| Some((u.sip_username().to_string(), u.sip_password.clone()?)))
            .collect()
    } else {
        vec![]
    };
    // Clear-text secrets in the file are replaced by their hashes.
    let hashed = cfg.hash_secrets();
    if seeded {
        cfg.save(&path)?;
    } else if hashed {
        cfg.save_directory(&path)?;
    }
    Ok(Loaded {
        cfg,
        path,
        seeded,
        seeded_secret,
        seeded_sip,
    })
}

/// The `host:port` forms ringside answers on, so callbacks cannot point back at it.
fn own_authorities(addrs: &[SocketAddr], public_url: &str) -> Vec<String> {
    let mut own = vec![];
    for a in addrs {
        let port = a.port();
        own.push(format!("{}:{port}", a.ip()));
        if a.ip().is_loopback() || a.ip().is_unspecified() {
            own.extend([
                format!("localhost:{port}"),
                format!("127.0.0.1:{port}"),
                format!("::1:{port}"),
            ]);
        }
    }
    if let Ok(u) = reqwest::Url::parse(public_url) {
        own.push(
            format!(
                "{}:{}",
                u.host_str().unwrap_or_default(),
                u.port_or_known_default().unwrap_or(0)
            )
            .to_ascii_lowercase(),
        );
    }
    own
}

pub async fn start(opts: Options) -> Result<Running, String> {
    // rustls is built with aws-lc-rs (ours) and ring (rsipstack's TLS): with two providers
    // compiled in, anything that asks rustls for "the" provider needs one installed.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    std::fs::create_dir_all(&opts.data_dir)
        .map_err(|e| format!("cannot create {}: {e}", opts.data_dir.display()))?;
    // A read-only (or full) data folder would only turn every request into a 503: say so now.
    doctor::probe_writable(&opts.data_dir).map_err(|e| {
        format!(
            "cannot write in the data folder {}: {e} (ringside keeps its database, keys and recordings there)",
            opts.data_dir.display()
        )
    })?;
    let Loaded {
        cfg,
        path,
        seeded,
        seeded_secret,
        seeded_sip,
    } = load_config(&opts)?;
    // `--listen` and the address ringside ends up on are this process's, not settings: the
    // config keeps only what the user wrote (an admin change writes back the directory).
    let listen = opts.listen.clone().unwrap_or(cfg.server.listen.clone());
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let https = match &cfg.server.https_listen {
        Some(h) => {
            let tls = node::tls::load(&cfg.server, &opts.data_dir)?;
            let l = tokio::net::TcpListener::bind(h)
                .await
                .map_err(|e| format!("cannot listen on {h}: {e}"))?;
            Some((l, tls))
        }
        None => None,
    };
    let https_addr = https.as_ref().and_then(|(l, _)| l.local_addr().ok());
    // Without a configured public_url, responses follow the scheme and host each request
    // came with; this one names ringside where nothing asked (callback tokens, the banner).
    let public_url_configured = cfg.server.public_url.is_some();
    let public_url = cfg
        .server
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"))
        .trim_end_matches('/')
        .to_string();
    let bound: Vec<SocketAddr> = [Some(addr), https_addr].into_iter().flatten().collect();
    let node = node::start(node::Boot {
        config: cfg,
        config_path: path,
        data_dir: opts.data_dir.clone(),
        own_authorities: own_authorities(&bound, &public_url),
        public_url,
        public_url_configured,
    })
    .await?;
    let api = Arc::new(api::Api {
        node: node.clone(),
        buckets: Default::default(),
    });
    tokio::spawn(api::serve_cluster(api.clone()));
    let mut tls_generated = None;
    if let Some((l, t)) = https {
        tls_generated = t.generated.clone();
        tokio::spawn(api::listen::serve_tls(
            l,
            t.config,
            api::router(api.clone(), true),
        ));
    }
    let server = tokio::spawn(async move {
        let app = api::router(api, false).into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    Ok(Running {
        addr,
        https_addr,
        tls_generated,
        node,
        seeded,
        seeded_secret,
        seeded_sip,
        server,
    })
}

/// The first-start banner: how to use the seeded dev directory.
pub fn banner(r: &Running) -> String {
    let c = r.node.directory.read();
    let base = &r.node.public_url;
    let mut s = format!(
        "ringside is listening on {base}\n  config: {}\n  data:   {}\n",
        r.node.directory.path().display(),
        r.node.data_dir.display()
    );
    if let Some(app) = c.apps.first() {
        let secret = r.seeded_secret.clone().unwrap_or_else(|| {
            "(stored hashed; set a new one with `ringside set-secret <app>`)".into()
        });
        s.push_str(&format!(
            "\nDev tenant : {}\nApp id     : {}\nApp secret : {secret}\nWebhook    : {}\n",
            app.tenant,
            app.id,
            app.webhook.clone().unwrap_or_default()
        ));
        if r.seeded_secret.is_some() {
            s.push_str("(the secret is shown only now; ringside keeps its hash)\n");
        }
        s.push_str(&format!(
            "\nGet a token:\n  curl -s -d grant_type=client_credentials -d client_id={} -d client_secret=<secret> -d scope=https://graph.microsoft.com/.default {base}/{}/oauth2/v2.0/token\n",
            app.id, app.tenant
        ));
        s.push_str(&format!("Graph base URLs: {base}/v1.0 and {base}/beta\n"));
        s.push_str(&format!(
            "Callback tokens: validate with {base}/.well-known/openid-configuration\n"
        ));
    }
    if let Some(sip) = r.node.sip.get() {
        let list: Vec<String> = sip
            .addrs
            .iter()
            .map(|(t, a)| format!("{a} ({t})"))
            .collect();
        s.push_str(&format!(
            "SIP: {} — users register with their sip_user / sip_password\n",
            list.join(", ")
        ));
        for (u, p) in &r.seeded_sip {
            s.push_str(&format!(
                "  {u} / {p} (shown only now; ringside keeps digest hashes)\n"
            ));
        }
    }
    if r.node.webrtc.get().is_some() {
        s.push_str(&format!(
            "Web phone: {base}/phone (sign a user in with `ringside phone <user id>`)\n"
        ));
    }
    if let Some(h) = r.https_addr {
        s.push_str(&format!(
            "\nHTTPS: https://localhost:{} (authority for azure-identity)\n",
            h.port()
        ));
        if let Some(cert) = &r.tls_generated {
            s.push_str(&format!(
                "Dev certificate: {p}\n  trust it for Python clients with REQUESTS_CA_BUNDLE={p} SSL_CERT_FILE={p}\n  or system-wide: sudo cp {p} /usr/local/share/ca-certificates/ringside.crt && sudo update-ca-certificates\n",
                p = cert.display()
            ));
        }
    }
    if !c.users.is_empty() {
        s.push_str(
            "\nSimulated users (call them as targets {\"identity\":{\"user\":{\"id\":…}}}):\n",
        );
        for u in &c.users {
            s.push_str(&format!(
                "  {:<8} {}\n",
                u.display_name.clone().unwrap_or_default(),
                u.id
            ));
        }
    }
    if let Some(a) = &c.admin {
        s.push_str(&format!("\nAdmin token: {}\n", a.token));
    }
    s
}
