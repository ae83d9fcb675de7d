//! Starting a node: restore the engine from the store, start the media runtime and SIP,
//! then the driver thread, the notifier, the endpoints and the prompt fetcher.

use crate::clock::now_ms;
use crate::driver::{self, Sinks};
use crate::inputs::{Control, Msg};
use crate::node::{Node, SipDirectory};
use crate::notifier::{self, NotifierConfig};
use crate::outbound::{Outbound, Policy};
use crate::speech::Speech;
use crate::{endpoints, fetch, tls};
use directory::{Config, Directory, SipConfig};
use engine::{Engine, IdSource, LegAction, LegState, ObjKind};
use identity::KeyRing;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use store::{OutboxRow, Store};

/// What a node starts from.
pub struct Boot {
    /// The settings and directory as the file has them.
    pub config: Config,
    /// Where changes to the directory are written.
    pub config_path: PathBuf,
    pub data_dir: PathBuf,
    /// Where ringside is reached: the configured `public_url`, else the HTTP listener.
    pub public_url: String,
    /// `public_url` was configured; if not, responses follow each request's scheme and host.
    pub public_url_configured: bool,
    /// `host:port` forms ringside answers on: callbacks may not point back at it.
    pub own_authorities: Vec<String>,
}

struct UuidIds;

impl IdSource for UuidIds {
    fn next_id(&mut self) -> String {
        uuid::Uuid::new_v4().to_string()
    }
}

/// What the store held when the node stopped: the engine as it was, the legs that were
/// live, and the notifications not yet delivered.
struct Restored {
    engine: Engine,
    store: Store,
    /// In a cluster: the node's epoch, and the calls and meetings it holds.
    cluster: Option<(i64, Arc<crate::cluster::Owned>)>,
    live_legs: Vec<(String, graph::Party, LegState, Option<serde_json::Value>)>,
    pending: Vec<OutboxRow>,
}

fn restore(
    cfg: &Config,
    engine_cfg: &engine::Config,
    data_dir: &Path,
    retention_ms: u64,
) -> Result<Restored, String> {
    let mut store = open_store(cfg, data_dir)?;
    store
        .set_fsync(cfg.server.fsync)
        .map_err(|e| e.to_string())?;
    let mut engine = Engine::new(engine_cfg.clone(), Box::new(UuidIds));
    // A node of a cluster registers (renewing its lease) before it loads what it owns.
    let epoch = match &cfg.cluster {
        Some(c) => {
            store.set_owner(&c.node_id);
            let epoch = store
                .register_node(c.lease_ms as i64, &engine_cfg.public_url)
                .map_err(|e| format!("[cluster] cannot join: {e}"))?;
            Some(epoch)
        }
        None => None,
    };
    let objects = store.load_objects().map_err(|e| e.to_string())?;
    let cluster = epoch.map(|epoch| {
        let owned = Arc::new(crate::cluster::Owned::default());
        owned.update(
            objects
                .iter()
                .map(|(k, v)| (*k, v["id"].as_str().unwrap_or_default(), Some(v))),
        );
        (epoch, owned)
    });
    let (calls, others): (Vec<_>, Vec<_>) =
        objects.into_iter().partition(|(k, _)| *k == ObjKind::Call);
    for (k, v) in others.into_iter().chain(calls) {
        engine
            .restore(k, v)
            .map_err(|e| format!("cannot restore state: {e}"))?;
    }
    let live_legs = engine.live_legs();
    // Call recordings cut short by a crash keep what was written (the writer keeps each
    // file's header current); a call still recording continues in a new file.
    for mut r in store.unfinished_recordings().map_err(|e| e.to_string())? {
        let ms = hound::WavReader::open(&r.path)
            .map(|w| w.duration() as i64 * 1000 / media::RATE as i64)
            .unwrap_or(0);
        r.duration_ms = Some(ms);
        r.expires_ms = (now_ms() + retention_ms) as i64;
        store.save_recording(&r).map_err(|e| e.to_string())?;
    }
    engine.resume_media(now_ms());
    let pending = store.pending_outbox().map_err(|e| e.to_string())?;
    Ok(Restored {
        engine,
        store,
        cluster,
        live_legs,
        pending,
    })
}

/// `[store] url`, or SQLite in the data directory.
fn open_store(cfg: &Config, data_dir: &Path) -> Result<Store, String> {
    match cfg.store.as_ref().and_then(|s| s.url.as_deref()) {
        Some(url) => Store::open_url(url).map_err(|e| format!("[store] url: {e}")),
        None => Store::open(&data_dir.join("ringside.db")).map_err(|e| e.to_string()),
    }
}

/// crates/sip's settings from `[sip]`.
fn sip_config(
    sc: &SipConfig,
    server: &directory::ServerConfig,
    data_dir: &Path,
) -> Result<sip::server::Config, String> {
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
    Ok(sip::server::Config {
        udp: parse(&udp)?,
        tcp: parse(&tcp)?,
        tls: parse(&sc.tls)?,
        tls_pem: if sc.tls.is_empty() {
            None
        } else {
            let (c, k, _) = tls::cert_files(server, data_dir)?;
            let read =
                |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
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
                sip::digest::Algorithm::parse(a)
                    .ok_or_else(|| format!("[sip] digest algorithm '{a}' is not MD5 or SHA-256"))
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
    })
}

/// The media runtime, reporting to the driver.
fn start_media(
    cfg: &Config,
    data_dir: &Path,
    to_driver: std::sync::mpsc::Sender<Msg>,
    speech: Arc<Speech>,
) -> Arc<media::runtime::Media> {
    let to_driver = std::sync::Mutex::new(to_driver);
    let sink: media::runtime::Sink = Arc::new(move |ev| match ev {
        media::Event::Utterance(u) => speech.offer(u),
        ev => {
            let _ = to_driver.lock().expect("driver").send(Msg::Media(ev));
        }
    });
    Arc::new(media::runtime::Media::start(
        media::runtime::Config {
            threads: cfg.server.media_threads,
            recordings_dir: data_dir.join("recordings"),
            realtime: cfg.server.media_realtime,
            ..Default::default()
        },
        sink,
    ))
}

/// Start a node; it runs until the process ends.
pub async fn start(b: Boot) -> Result<Arc<Node>, String> {
    let cfg = b.config;
    let (driver_tx, driver_rx) = std::sync::mpsc::channel();
    let speech = Arc::new(Speech::start(
        cfg.transcription.as_ref(),
        &b.data_dir,
        driver_tx.clone(),
    ));
    let engine_cfg = engine::Config {
        transcription_unavailable: speech.unavailable.clone(),
        keepalive_ms: cfg.server.keepalive_seconds * 1000,
        answer_deadline_ms: cfg.server.answer_deadline_seconds * 1000,
        public_url: b.public_url.clone(),
        max_calls_per_app: cfg.server.max_calls_per_app,
        max_calls_per_tenant: cfg.server.max_calls_per_tenant,
        record_tracks: cfg.server.record_participant_tracks,
        ..engine::Config::default()
    };
    let retention_ms = cfg
        .server
        .recording_retention_seconds
        .map(|s| s * 1000)
        .unwrap_or(cfg.server.recording_retention_minutes * 60_000);
    // On a plain thread: the PostgreSQL client blocks, which tokio forbids on its own threads.
    let restored = std::thread::scope(|s| {
        s.spawn(|| restore(&cfg, &engine_cfg, &b.data_dir, retention_ms))
            .join()
            .map_err(|_| "restoring state panicked".to_string())?
    })?;
    let keys = KeyRing::load_or_create(
        &b.data_dir,
        now_ms(),
        cfg.server.signing_key_activation_seconds * 1000,
    )
    .map_err(|e| format!("signing keys: {e}"))?;
    let rotation_ms = cfg.server.signing_key_rotation_days.max(1) * 86_400_000;
    keys.rotate_if_older(now_ms(), rotation_ms)?;
    let (outbox_tx, outbox_rx) = tokio::sync::mpsc::unbounded_channel();
    let (legs_tx, legs_rx) = tokio::sync::mpsc::unbounded_channel();
    let (fetch_tx, fetch_rx) = tokio::sync::mpsc::unbounded_channel();
    let media = start_media(&cfg, &b.data_dir, driver_tx.clone(), speech.clone());
    let notifier_cfg = NotifierConfig {
        max_attempts: cfg.server.notification_max_attempts,
        backoff_ms: cfg.server.notification_backoff_ms,
        timeout: Duration::from_millis(cfg.server.notification_timeout_ms.max(1)),
    };
    let policy = Policy::of(&cfg.server);
    let (sip_cfg, server_cfg) = (cfg.sip.clone(), cfg.server.clone());
    let webrtc_cfg = cfg.webrtc.clone();
    let node = Arc::new(Node {
        directory: Directory::new(cfg, b.config_path),
        data_dir: b.data_dir.clone(),
        keys: Arc::new(keys),
        driver: driver_tx.clone(),
        endpoints: legs_tx.clone(),
        registry: Default::default(),
        engine_cfg,
        public_url: b.public_url,
        public_url_configured: b.public_url_configured,
        outbound: Outbound {
            policy: Arc::new(RwLock::new(policy)),
            own_authorities: b.own_authorities,
        },
        media: media.clone(),
        speech,
        streams: Default::default(),
        prompts: Default::default(),
        sip: Default::default(),
        webrtc: Default::default(),
        tabs: Default::default(),
        driver_stats: Default::default(),
        journal: Default::default(),
        cluster: Default::default(),
        draining: Default::default(),
        metrics: Default::default(),
    });
    if let Some(sc) = sip_cfg {
        let (sip_tx, sip_rx) = tokio::sync::mpsc::unbounded_channel();
        let s = sip::server::Sip::start(
            sip_config(&sc, &server_cfg, &b.data_dir)?,
            Arc::new(SipDirectory(node.clone())),
            sip_tx,
        )
        .await?;
        let _ = node.sip.set(s);
        tokio::spawn(endpoints::sip::events(node.clone(), sip_rx));
    }
    if let Some(w) = &webrtc_cfg {
        start_webrtc(&node, w, server_cfg.media_realtime)?;
    }
    let Restored {
        engine,
        store,
        cluster,
        live_legs,
        pending,
    } = restored;
    let sinks = Sinks {
        outbox: outbox_tx.clone(),
        legs: legs_tx.clone(),
        fetch: fetch_tx,
        media,
        speech: node.speech.clone(),
        retention_ms,
        stats: node.driver_stats.clone(),
        journal: node.journal.clone(),
        owned: cluster.as_ref().map(|(_, o)| o.clone()),
    };
    std::thread::Builder::new()
        .name("ringside-driver".into())
        .spawn(move || driver::run(engine, store, driver_rx, sinks))
        .map_err(|e| e.to_string())?;
    if let Some((epoch, owned)) = cluster {
        join_cluster(&node, epoch, owned, &driver_tx).await?;
    }
    tokio::spawn(notifier::run(
        notifier_cfg,
        outbox_rx,
        driver_tx,
        node.clone(),
    ));
    if node.cluster.get().is_none() {
        // A cluster's nodes rotate their shared keys together (cluster.rs).
        tokio::spawn(rotate_keys(node.clone(), rotation_ms));
    }
    tokio::spawn(endpoints::run(node.clone(), legs_rx));
    tokio::spawn(fetch::run(node.clone(), fetch_rx));
    for row in pending {
        let _ = outbox_tx.send(row);
    }
    // Endpoints re-attach to legs that were ringing when ringside stopped.
    for (leg_id, party, state, script) in live_legs {
        if state == LegState::Ringing {
            let _ = legs_tx.send(Control::Action(LegAction::Ring {
                leg_id,
                to: party,
                from: Default::default(),
                script,
            }));
        }
    }
    Ok(node)
}

/// Rotate the token signing key when it is older than `rotation_ms` (checked hourly).
async fn rotate_keys(node: Arc<Node>, rotation_ms: u64) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        if let Err(e) = node.keys.rotate_if_older(now_ms(), rotation_ms) {
            tracing::error!(error = %e, "signing key rotation failed");
        }
    }
}

/// Connect to the other nodes (NATS, the cluster's own PostgreSQL connection) and keep the
/// lease and the watch for stopped nodes going.
async fn join_cluster(
    node: &Arc<Node>,
    epoch: i64,
    owned: Arc<crate::cluster::Owned>,
    driver: &std::sync::mpsc::Sender<Msg>,
) -> Result<(), String> {
    let (c, store_url, rotation_ms) = {
        let cfg = node.directory.read();
        let store_url = cfg.store.as_ref().and_then(|s| s.url.clone());
        let rotation_ms = cfg.server.signing_key_rotation_days.max(1) * 86_400_000;
        (
            cfg.cluster.clone(),
            store_url.unwrap_or_default(),
            rotation_ms,
        )
    };
    let c = c.ok_or("[cluster] is missing")?;
    let cl = Arc::new(crate::cluster::Cluster::connect(&c, &store_url, owned, rotation_ms).await?);
    cl.share_keys(&node.keys).await?;
    let _ = node.cluster.set(cl.clone());
    tokio::spawn(cl.clone().follow_bindings());
    tokio::spawn(cl.watch(epoch, driver.clone(), node.keys.clone()));
    Ok(())
}

/// The WebRTC endpoint, as `[webrtc]` asks; a setting out of range is refused with its reason.
fn start_webrtc(
    node: &Arc<Node>,
    w: &directory::WebRtcConfig,
    realtime: bool,
) -> Result<(), String> {
    let bind = w
        .udp
        .parse()
        .map_err(|_| format!("[webrtc] udp '{}' is not ip:port", w.udp))?;
    if w.opus_complexity > 10 {
        return Err(format!(
            "[webrtc] opus_complexity {} is not 0 to 10",
            w.opus_complexity
        ));
    }
    let low_delay = match w.opus_mode.as_str() {
        "voice" => false,
        "low-delay" => true,
        other => {
            return Err(format!(
                "[webrtc] opus_mode '{other}' is not 'voice' or 'low-delay'"
            ));
        }
    };
    let opts = webrtc::endpoint::Options {
        shards: w.threads,
        opus: webrtc::opus::Tuning {
            complexity: w.opus_complexity,
            low_delay,
            dtx: w.opus_dtx,
        },
        realtime,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let _ = node.webrtc.set(webrtc::WebRtc::start(bind, tx, opts)?);
    endpoints::webrtc::watch(node.clone(), rx);
    Ok(())
}
