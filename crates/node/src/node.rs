//! The node: what every part of one ringside process shares — the directory, the signing
//! keys, the channels into the driver and the endpoints, the media runtime, SIP, the prompt
//! cache and where outbound requests may go.

use crate::inputs::{Control, Msg};
use crate::outbound::Outbound;
use crate::prompts::{PromptCache, PromptLimits};
use crate::registry::Registry;
use crate::stats::DriverStats;
use directory::Directory;
use identity::KeyRing;
use media::Audio;
use std::path::PathBuf;
use std::sync::{Arc, mpsc};
use std::time::Duration;

pub struct Node {
    pub directory: Directory,
    pub data_dir: PathBuf,
    pub keys: Arc<KeyRing>,
    pub driver: mpsc::Sender<Msg>,
    pub endpoints: tokio::sync::mpsc::UnboundedSender<Control>,
    /// What simulated users experienced (`GET /admin/legs`).
    pub registry: Arc<Registry>,
    pub engine_cfg: engine::Config,
    /// Where ringside is reached: the configured `public_url`, else the HTTP listener.
    pub public_url: String,
    /// Without a configured `public_url`, responses follow each request's scheme and host.
    pub public_url_configured: bool,
    /// Where outbound requests may go (callbacks, webhooks, prompts).
    pub outbound: Outbound,
    /// The media runtime: rooms, ports, recordings.
    pub media: Arc<media::runtime::Media>,
    /// Speech-to-text for transcription.
    pub speech: Arc<crate::speech::Speech>,
    /// Apps' media streams (app-hosted media over WebSockets).
    pub streams: crate::streams::Streams,
    pub prompts: PromptCache,
    /// The SIP endpoint, when `[sip]` is configured.
    pub sip: std::sync::OnceLock<sip::server::Sip>,
    /// The WebRTC endpoint for browsers, when `[webrtc]` is configured.
    pub webrtc: std::sync::OnceLock<webrtc::WebRtc>,
    /// Signed-in browser tabs, where calls to their users ring.
    pub tabs: crate::tabs::Tabs,
    /// How the driver spends its time (`GET /admin/driver`).
    pub driver_stats: Arc<DriverStats>,
    /// Recent calls and their notifications' deliveries, and the console's live feed.
    pub journal: Arc<crate::journal::Journal>,
    /// The other nodes, when `[cluster]` is configured.
    pub cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
    /// API and delivery counters for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Stopping (SIGTERM): no new calls; `/readyz` says so.
    pub draining: std::sync::atomic::AtomicBool,
}

impl Node {
    /// The HTTP client for prompt fetches, with the configured time limit.
    pub fn prompt_client(&self) -> reqwest::Client {
        let timeout = Duration::from_millis(self.directory.read().server.prompt_timeout_ms);
        self.outbound.client(timeout, true)
    }

    /// Fetch and decode a prompt (or a simulated user's speech), through the cache.
    pub async fn load_prompt(
        &self,
        client: &reqwest::Client,
        uri: &str,
        resource_id: Option<&str>,
    ) -> Result<Audio, String> {
        let limits = {
            let c = self.directory.read();
            PromptLimits {
                max_bytes: c.server.prompt_max_bytes,
                folder: c.server.prompt_folder.clone(),
            }
        };
        self.prompts
            .load(&self.outbound, &limits, client, uri, resource_id)
            .await
    }
}

/// The directory as the SIP registrar sees it: users' digest hashes.
pub struct SipDirectory(pub Arc<Node>);

impl sip::server::Directory for SipDirectory {
    fn ha1(&self, user: &str, realm: &str, alg: sip::digest::Algorithm) -> Option<String> {
        let c = self.0.directory.read();
        let h = c.sip_user(user)?.sip_ha1.as_ref()?;
        if h.realm != realm {
            return None;
        }
        Some(match alg {
            sip::digest::Algorithm::Md5 => h.md5.clone(),
            sip::digest::Algorithm::Sha256 => h.sha256.clone(),
        })
    }

    fn draining(&self) -> bool {
        self.0.draining.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn registered(&self, user: &str, bindings: &[sip::registrar::Binding]) {
        if let Some(c) = self.0.cluster.get() {
            let (c, user) = (c.clone(), user.to_string());
            let held: Vec<(String, u64)> = bindings
                .iter()
                .map(|b| (b.uri.clone(), b.expires_at))
                .collect();
            tokio::spawn(async move { c.share_bindings(&user, &held).await });
        }
    }
}
