//! Prompts: `mediaInfo.uri` over http(s) (or `file://` below the configured folder) with
//! size and time limits, decoded to the internal 16 kHz mono format; cached by `resourceId`
//! (else by uri) as Graph does.

use crate::outbound::{Outbound, error_chain};
use media::Audio;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// How big a prompt may be, and the folder `file://` prompts may come from.
pub struct PromptLimits {
    pub max_bytes: usize,
    pub folder: Option<PathBuf>,
}

async fn fetch_bytes(
    outbound: &Outbound,
    limits: &PromptLimits,
    client: &reqwest::Client,
    uri: &str,
) -> Result<Vec<u8>, String> {
    let (max, folder) = (limits.max_bytes, limits.folder.clone());
    let lower = uri.to_ascii_lowercase();
    if let Some(path) = lower.strip_prefix("file://").map(|_| &uri[7..]) {
        let Some(folder) = folder else {
            return Err("file:// prompts are not enabled (server.prompt_folder)".into());
        };
        let root = folder
            .canonicalize()
            .map_err(|e| format!("prompt folder: {e}"))?;
        let p = Path::new(path)
            .canonicalize()
            .map_err(|_| format!("{uri} does not exist"))?;
        if !p.starts_with(&root) {
            return Err(format!("{uri} is outside the prompt folder"));
        }
        let meta = std::fs::metadata(&p).map_err(|e| e.to_string())?;
        if meta.len() as usize > max {
            return Err(format!("the prompt is larger than {max} bytes"));
        }
        return std::fs::read(&p).map_err(|e| e.to_string());
    }
    outbound
        .check(uri)
        .map_err(|e| format!("prompt refused: {e}"))?;
    let mut resp = client
        .get(uri)
        .send()
        .await
        .map_err(|e| format!("GET {uri} failed: {}", error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(format!(
            "GET {uri} returned HTTP {}",
            resp.status().as_u16()
        ));
    }
    if resp.content_length().is_some_and(|l| l as usize > max) {
        return Err(format!("the prompt is larger than {max} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("GET {uri}: {e}"))? {
        body.extend_from_slice(&chunk);
        if body.len() > max {
            return Err(format!("the prompt is larger than {max} bytes"));
        }
    }
    Ok(body)
}

/// Decoded prompts by `resourceId` (else uri), bounded by the samples they hold.
///
/// One fetch per key: a playPrompt that arrives while preFetchMedia (or another call's
/// prompt) is still downloading the same resource waits for that download instead of
/// starting its own. A failed fetch is not cached, so the next request tries again.
#[derive(Default)]
pub struct PromptCache {
    map: Mutex<Slots>,
}

type Slot = Arc<tokio::sync::OnceCell<Result<Audio, String>>>;

#[derive(Default)]
struct Slots {
    by_key: HashMap<String, Slot>,
    samples: usize,
}

/// At most this many samples (about 128 MB) stay cached.
const CACHE_SAMPLES: usize = 64 << 20;

impl PromptCache {
    fn slot(&self, key: &str) -> Slot {
        let mut m = self.map.lock().expect("cache");
        m.by_key.entry(key.to_string()).or_default().clone()
    }

    /// A fetch of `key` finished: count what it holds, or forget it if it failed.
    fn settle(&self, key: &str, slot: &Slot, result: &Result<Audio, String>) {
        let mut m = self.map.lock().expect("cache");
        match result {
            Err(_) => {
                if m.by_key.get(key).is_some_and(|s| Arc::ptr_eq(s, slot)) {
                    m.by_key.remove(key);
                }
            }
            Ok(audio) => {
                if m.samples + audio.len() > CACHE_SAMPLES {
                    // Full: drop what is cached, keep downloads under way.
                    m.by_key.retain(|_, s| s.get().is_none());
                    m.samples = 0;
                }
                m.by_key
                    .entry(key.to_string())
                    .or_insert_with(|| slot.clone());
                m.samples += audio.len();
            }
        }
    }

    /// Fetch and decode a prompt (or a simulated user's speech), through the cache.
    pub async fn load(
        &self,
        outbound: &Outbound,
        limits: &PromptLimits,
        client: &reqwest::Client,
        uri: &str,
        resource_id: Option<&str>,
    ) -> Result<Audio, String> {
        let key = resource_id.filter(|r| !r.is_empty()).unwrap_or(uri);
        let slot = self.slot(key);
        let mut fetched_here = false;
        let result = slot
            .get_or_init(|| async {
                fetched_here = true;
                let bytes = fetch_bytes(outbound, limits, client, uri).await?;
                tokio::task::spawn_blocking(move || media::wav::decode(&bytes))
                    .await
                    .map_err(|e| e.to_string())?
            })
            .await
            .clone();
        if fetched_here {
            self.settle(key, &slot, &result);
        }
        result
    }
}
