//! ringside's wiring: configuration, the call driver thread, notifier, endpoints, prompt
//! fetcher and the HTTP API. `start` runs it all and returns once it listens.

pub mod admin;
pub mod api;
pub mod auth;
pub mod config;
pub mod driver;
pub mod endpoints;
pub mod fetch;
pub mod guard;
pub mod netpolicy;
pub mod notifier;
pub mod state;
pub mod tls;

use config::Config;
use engine::{Engine, IdSource, LegAction, LegState, ObjKind};
use state::Shared;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub struct Options {
    pub data_dir: PathBuf,
    pub config: Option<PathBuf>,
    pub listen: Option<String>,
}

pub struct Running {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
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

struct UuidIds;

impl IdSource for UuidIds {
    fn next_id(&mut self) -> String {
        uuid::Uuid::new_v4().to_string()
    }
}

pub async fn start(opts: Options) -> Result<Running, String> {
    // rustls is built with aws-lc-rs (ours) and ring (rsipstack's TLS): with two providers
    // compiled in, anything that asks rustls for "the" provider needs one installed.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    std::fs::create_dir_all(&opts.data_dir)
        .map_err(|e| format!("cannot create {}: {e}", opts.data_dir.display()))?;
    let config_path = opts
        .config
        .clone()
        .unwrap_or_else(|| opts.data_dir.join("ringside.toml"));
    let (mut cfg, seeded) = if config_path.exists() {
        (Config::load(&config_path)?, false)
    } else {
        (Config::seed_dev(), true)
    };
    // The seeded secret is shown once, then only its hash is kept (like Entra's portal).
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
    if cfg.hash_secrets() || seeded {
        cfg.save(&config_path)?;
    }
    if let Some(l) = &opts.listen {
        cfg.server.listen = l.clone();
    }
    let listener = tokio::net::TcpListener::bind(&cfg.server.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.server.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let https = match &cfg.server.https_listen {
        Some(h) => {
            let tls = tls::load(&cfg.server, &opts.data_dir)?;
            let l = tokio::net::TcpListener::bind(h)
                .await
                .map_err(|e| format!("cannot listen on {h}: {e}"))?;
            Some((l, tls))
        }
        None => None,
    };
    let https_addr = https.as_ref().and_then(|(l, _)| l.local_addr().ok());
    if cfg.server.public_url.is_none() {
        cfg.server.public_url = Some(format!("http://{addr}"));
    }
    let public_url = cfg.public_url();
    let engine_cfg = engine::Config {
        keepalive_ms: cfg.server.keepalive_seconds * 1000,
        answer_deadline_ms: cfg.server.answer_deadline_seconds * 1000,
        public_url: public_url.clone(),
        max_calls_per_app: cfg.server.max_calls_per_app,
        max_calls_per_tenant: cfg.server.max_calls_per_tenant,
        record_tracks: cfg.server.record_participant_tracks,
        ..engine::Config::default()
    };

    let store =
        store::Store::open(&opts.data_dir.join("ringside.db")).map_err(|e| e.to_string())?;
    store
        .set_fsync(cfg.server.fsync)
        .map_err(|e| e.to_string())?;
    let mut engine = Engine::new(engine_cfg.clone(), Box::new(UuidIds));
    let objects = store.load_objects().map_err(|e| e.to_string())?;
    let (calls, others): (Vec<_>, Vec<_>) =
        objects.into_iter().partition(|(k, _)| *k == ObjKind::Call);
    for (k, v) in others.into_iter().chain(calls) {
        engine
            .restore(k, v)
            .map_err(|e| format!("cannot restore state: {e}"))?;
    }
    let live_legs = engine.live_legs();
    let retention_ms = cfg
        .server
        .recording_retention_seconds
        .map(|s| s * 1000)
        .unwrap_or(cfg.server.recording_retention_minutes * 60_000);
    // Call recordings cut short by a crash keep what was written (the writer keeps each
    // file's header current); a call still recording continues in a new file.
    for mut r in store.unfinished_recordings().map_err(|e| e.to_string())? {
        let ms = hound::WavReader::open(&r.path)
            .map(|w| w.duration() as i64 * 1000 / media::RATE as i64)
            .unwrap_or(0);
        r.duration_ms = Some(ms);
        r.expires_ms = (driver::now_ms() + retention_ms) as i64;
        store.save_recording(&r).map_err(|e| e.to_string())?;
    }
    engine.resume_media(driver::now_ms());
    let pending = store.pending_outbox().map_err(|e| e.to_string())?;

    let keys = auth::KeyRing::load_or_create(
        &opts.data_dir,
        driver::now_ms(),
        cfg.server.signing_key_activation_seconds * 1000,
    )
    .map_err(|e| format!("signing keys: {e}"))?;
    let rotation_ms = cfg.server.signing_key_rotation_days.max(1) * 86_400_000;
    keys.rotate_if_older(driver::now_ms(), rotation_ms)?;
    let (driver_tx, driver_rx) = std::sync::mpsc::channel();
    let (outbox_tx, outbox_rx) = tokio::sync::mpsc::unbounded_channel();
    let (legs_tx, legs_rx) = tokio::sync::mpsc::unbounded_channel();
    let (fetch_tx, fetch_rx) = tokio::sync::mpsc::unbounded_channel();
    let media = {
        let to_driver = std::sync::Mutex::new(driver_tx.clone());
        let sink: media::runtime::Sink = Arc::new(move |ev| {
            let _ = to_driver
                .lock()
                .expect("driver")
                .send(driver::Msg::Media(ev));
        });
        Arc::new(media::runtime::Media::start(
            media::runtime::Config {
                threads: cfg.server.media_threads,
                recordings_dir: opts.data_dir.join("recordings"),
                ..Default::default()
            },
            sink,
        ))
    };
    let notifier_cfg = notifier::NotifierConfig {
        max_attempts: cfg.server.notification_max_attempts,
        backoff_ms: cfg.server.notification_backoff_ms,
        timeout: Duration::from_secs(10),
    };
    let policy = cfg.outbound_policy();
    let mut own_authorities = vec![];
    for a in [Some(addr), https_addr].into_iter().flatten() {
        let port = a.port();
        own_authorities.push(format!("{}:{port}", a.ip()));
        if a.ip().is_loopback() || a.ip().is_unspecified() {
            own_authorities.extend([
                format!("localhost:{port}"),
                format!("127.0.0.1:{port}"),
                format!("::1:{port}"),
            ]);
        }
    }
    if let Ok(u) = reqwest::Url::parse(&public_url) {
        own_authorities.push(
            format!(
                "{}:{}",
                u.host_str().unwrap_or_default(),
                u.port_or_known_default().unwrap_or(0)
            )
            .to_ascii_lowercase(),
        );
    }
    let shared = Arc::new(Shared {
        config: RwLock::new(cfg),
        config_path,
        data_dir: opts.data_dir.clone(),
        keys,
        driver: driver_tx.clone(),
        endpoints: legs_tx.clone(),
        registry: Arc::new(endpoints::Registry::default()),
        engine_cfg,
        public_url,
        buckets: guard::Buckets::default(),
        policy: Arc::new(RwLock::new(policy)),
        own_authorities,
        media: media.clone(),
        prompts: Default::default(),
        sip: Default::default(),
        driver_stats: Default::default(),
    });
    let (sip_cfg, server_cfg) = {
        let c = shared.config.read().expect("config");
        (c.sip.clone(), c.server.clone())
    };
    if let Some(sc) = sip_cfg {
        let (sip_tx, sip_rx) = tokio::sync::mpsc::unbounded_channel();
        let parse = |v: &[String]| -> Result<Vec<SocketAddr>, String> {
            v.iter()
                .map(|a| {
                    a.parse()
                        .map_err(|_| format!("[sip] address '{a}' is not ip:port"))
                })
                .collect()
        };
        let mut secret = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut secret);
        let (udp, tcp) = sc.udp_and_tcp();
        let s = sip::server::Sip::start(
            sip::server::Config {
                udp: parse(&udp)?,
                tcp: parse(&tcp)?,
                tls: parse(&sc.tls)?,
                tls_pem: if sc.tls.is_empty() {
                    None
                } else {
                    let (c, k, _) = tls::cert_files(&server_cfg, &opts.data_dir)?;
                    let read = |p: &std::path::Path| {
                        std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))
                    };
                    Some((read(&c)?, read(&k)?))
                },
                realm: sc.realm.clone(),
                nonce_secret: secret,
                nonce_lifetime_s: 300,
                min_expires: sc.min_expires,
                max_expires: sc.max_expires,
                algorithms: sc
                    .digest
                    .iter()
                    .map(|a| {
                        sip::digest::Algorithm::parse(a).ok_or_else(|| {
                            format!("[sip] digest algorithm '{a}' is not MD5 or SHA-256")
                        })
                    })
                    .collect::<Result<_, _>>()?,
                rtp_ip: sc
                    .rtp_ip
                    .as_deref()
                    .unwrap_or("127.0.0.1")
                    .parse()
                    .map_err(|_| "[sip] rtp_ip is not an IP address".to_string())?,
                rtp_ports: sc.rtp_ports,
                media_timeout_s: sc.media_timeout_seconds,
                max_new_calls_per_second: sc.max_new_calls_per_second,
                max_calls: sc.max_calls,
                authenticate_invites: sc.authenticate_invites,
                trusted_sources: sc
                    .trunks
                    .iter()
                    .flat_map(|t| t.accept_from.iter().filter_map(|a| a.parse().ok()))
                    .collect(),
            },
            Arc::new(state::SipDirectory(shared.clone())),
            sip_tx,
        )
        .await?;
        let _ = shared.sip.set(s);
        tokio::spawn(endpoints::sip_events(shared.clone(), sip_rx));
    }
    let sinks = driver::Sinks {
        outbox: outbox_tx.clone(),
        legs: legs_tx.clone(),
        fetch: fetch_tx,
        media,
        retention_ms,
        stats: shared.driver_stats.clone(),
    };
    std::thread::Builder::new()
        .name("ringside-driver".into())
        .spawn(move || driver::run(engine, store, driver_rx, sinks))
        .map_err(|e| e.to_string())?;
    tokio::spawn(notifier::run(
        notifier_cfg,
        outbox_rx,
        driver_tx,
        shared.clone(),
    ));
    let rotating = shared.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            if let Err(e) = rotating.keys.rotate_if_older(driver::now_ms(), rotation_ms) {
                tracing::error!(error = %e, "signing key rotation failed");
            }
        }
    });
    tokio::spawn(endpoints::run(shared.clone(), legs_rx));
    tokio::spawn(fetch::run(shared.clone(), fetch_rx));
    for row in pending {
        let _ = outbox_tx.send(row);
    }
    // Endpoints re-attach to legs that were ringing when ringside stopped.
    for (leg_id, party, state, script) in live_legs {
        if state == LegState::Ringing {
            let _ = legs_tx.send(endpoints::Control::Action(LegAction::Ring {
                leg_id,
                to: party,
                from: Default::default(),
                script,
            }));
        }
    }

    let mut tls_generated = None;
    if let Some((l, t)) = https {
        tls_generated = t.generated.clone();
        tokio::spawn(tls::serve(l, t.config, router(shared.clone(), true)));
    }
    let shared_for_http = shared.clone();
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(
            listener,
            router(shared_for_http, false).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    Ok(Running {
        addr,
        https_addr,
        tls_generated,
        shared,
        seeded,
        seeded_secret,
        seeded_sip,
        server,
    })
}

fn router(shared: Arc<Shared>, tls: bool) -> axum::Router {
    axum::Router::new().fallback(
        move |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
              method,
              uri,
              headers,
              body| {
            let s = shared.clone();
            async move { api::handle(s, method, uri, headers, body, api::Via { tls, peer }).await }
        },
    )
}

/// The first-start banner: how to use the seeded dev directory.
pub fn banner(r: &Running) -> String {
    let c = r.shared.config.read().expect("config");
    let base = &r.shared.public_url;
    let mut s = format!(
        "ringside is listening on {base}\n  config: {}\n  data:   {}\n",
        r.shared.config_path.display(),
        r.shared.data_dir.display()
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
    if let Some(sip) = r.shared.sip.get() {
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
