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
}

impl Shared {
    /// Persist a directory change made through the admin API.
    pub fn save_config(&self) -> Result<(), String> {
        let c = self.config.read().expect("config").clone();
        c.save(&self.config_path)
    }
}
