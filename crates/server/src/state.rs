//! What every request handler and background task shares.

use crate::auth::KeyRing;
use crate::config::Config;
use crate::driver::Msg;
use crate::endpoints::{Control, Registry};
use std::path::PathBuf;
use std::sync::{Arc, RwLock, mpsc};

pub struct Shared {
    pub config: RwLock<Config>,
    pub config_path: PathBuf,
    pub data_dir: PathBuf,
    pub keys: KeyRing,
    pub driver: mpsc::Sender<Msg>,
    pub endpoints: tokio::sync::mpsc::UnboundedSender<Control>,
    pub registry: Arc<Registry>,
    pub engine_cfg: engine::Config,
    pub public_url: String,
    pub buckets: crate::guard::Buckets,
    /// Where outbound requests may go (callbacks, webhooks, prompts).
    pub policy: Arc<RwLock<crate::netpolicy::Policy>>,
    /// `host:port` forms ringside itself answers on: callbacks may not point back at it.
    pub own_authorities: Vec<String>,
    /// The media runtime: rooms, ports, recordings.
    pub media: Arc<media::runtime::Media>,
    pub prompts: crate::fetch::PromptCache,
    /// The SIP endpoint, when `[sip]` is configured.
    pub sip: std::sync::OnceLock<sip::server::Sip>,
    /// How the driver spends its time (`GET /admin/driver`).
    pub driver_stats: Arc<crate::driver::DriverStats>,
}

/// The directory as the SIP registrar sees it: users' digest hashes.
pub struct SipDirectory(pub std::sync::Arc<Shared>);

impl sip::server::Directory for SipDirectory {
    fn ha1(&self, user: &str, realm: &str, alg: sip::digest::Algorithm) -> Option<String> {
        let c = self.0.config.read().expect("config");
        let h = c.sip_user(user)?.sip_ha1.as_ref()?;
        if h.realm != realm {
            return None;
        }
        Some(match alg {
            sip::digest::Algorithm::Md5 => h.md5.clone(),
            sip::digest::Algorithm::Sha256 => h.sha256.clone(),
        })
    }
}

impl Shared {
    /// An HTTP client for outbound requests under the policy: forbidden addresses are dropped
    /// at resolution time, and redirects are followed only to allowed URLs (at most 5).
    pub fn outbound_client(
        &self,
        timeout: std::time::Duration,
        follow_redirects: bool,
    ) -> reqwest::Client {
        let resolver = crate::netpolicy::GuardedResolver {
            policy: self.policy.clone(),
        };
        let policy = self.policy.clone();
        let redirect = if follow_redirects {
            reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 5 {
                    return attempt.error("too many redirects");
                }
                let p = policy.read().expect("policy").clone();
                match p.check_url(attempt.url().as_str()) {
                    Ok(_) => attempt.follow(),
                    Err(e) => attempt.error(format!("redirect refused: {e}")),
                }
            })
        } else {
            reqwest::redirect::Policy::none()
        };
        reqwest::Client::builder()
            .dns_resolver(Arc::new(resolver))
            .redirect(redirect)
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(64)
            .build()
            .expect("http client")
    }

    pub fn check_outbound(&self, url: &str) -> Result<reqwest::Url, String> {
        let u = self.policy.read().expect("policy").check_url(url)?;
        let authority = format!(
            "{}:{}",
            u.host_str().unwrap_or_default().trim_matches(['[', ']']),
            u.port_or_known_default().unwrap_or(0)
        )
        .to_ascii_lowercase();
        if self.own_authorities.contains(&authority) {
            return Err(format!("'{url}' points at ringside itself"));
        }
        Ok(u)
    }

    /// Persist a directory change made through the admin API.
    pub fn save_config(&self) -> Result<(), String> {
        let c = self.config.read().expect("config").clone();
        c.save(&self.config_path)
    }
}
