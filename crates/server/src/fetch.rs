//! Prompt fetching: `mediaInfo.uri` over http(s) (or `file://` below the configured folder)
//! with size and time limits, parsed as WAV to learn its real playing time; cached by
//! `resourceId` (else by uri) as Graph does. Recordings are written here too.

use crate::driver::Msg;
use crate::state::Shared;
use std::collections::HashMap;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Playing time of a WAV file in milliseconds; refuses what is not PCM WAV.
pub fn wav_duration_ms(bytes: &[u8]) -> Result<u64, String> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err("the file is not a WAV file (no RIFF/WAVE header)".into());
    }
    let r = hound::WavReader::new(Cursor::new(bytes))
        .map_err(|e| format!("the WAV file cannot be read: {e}"))?;
    let spec = r.spec();
    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, 8 | 16 | 24 | 32) | (hound::SampleFormat::Float, 32) => {}
        (f, b) => {
            return Err(format!(
                "unsupported WAV encoding: {b}-bit {f:?}; use 16-bit PCM"
            ));
        }
    }
    if spec.sample_rate < 8000
        || spec.sample_rate > 192_000
        || spec.channels == 0
        || spec.channels > 8
    {
        return Err(format!(
            "unsupported WAV format: {} Hz, {} channels",
            spec.sample_rate, spec.channels
        ));
    }
    let frames = r.duration() as u64;
    if frames == 0 {
        return Err("the WAV file holds no audio".into());
    }
    Ok(frames * 1000 / spec.sample_rate as u64)
}

async fn fetch_bytes(
    shared: &Shared,
    client: &reqwest::Client,
    uri: &str,
) -> Result<Vec<u8>, String> {
    let (max, folder) = {
        let c = shared.config.read().expect("config");
        (c.server.prompt_max_bytes, c.server.prompt_folder.clone())
    };
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
    shared
        .check_outbound(uri)
        .map_err(|e| format!("prompt refused: {e}"))?;
    let mut resp = client
        .get(uri)
        .send()
        .await
        .map_err(|e| format!("GET {uri} failed: {}", crate::notifier::error_chain(&e)))?;
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

pub type FetchJob = (String, String, usize, String, Option<String>);

pub async fn run(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<FetchJob>) {
    let timeout = Duration::from_millis(
        shared
            .config
            .read()
            .expect("config")
            .server
            .prompt_timeout_ms,
    );
    let client = shared.outbound_client(timeout, true);
    let cache: Arc<tokio::sync::Mutex<HashMap<String, u64>>> = Default::default();
    while let Some((call_id, op_id, index, uri, resource_id)) = rx.recv().await {
        let shared = shared.clone();
        let client = client.clone();
        let cache = cache.clone();
        tokio::spawn(async move {
            let key = resource_id
                .clone()
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| uri.clone());
            let cached = cache.lock().await.get(&key).copied();
            let result = match cached {
                Some(ms) => Ok(ms),
                None => {
                    let r = fetch_bytes(&shared, &client, &uri)
                        .await
                        .and_then(|b| wav_duration_ms(&b));
                    if let Ok(ms) = r {
                        let mut c = cache.lock().await;
                        if c.len() > 10_000 {
                            c.clear();
                        }
                        c.insert(key, ms);
                    }
                    r
                }
            };
            if op_id.is_empty() {
                if let Err(e) = result {
                    tracing::warn!(uri, error = %e, "preFetchMedia failed");
                }
                return;
            }
            let _ = shared.driver.send(Msg::Fetched {
                call_id,
                op_id,
                index,
                result,
            });
        });
    }
}

/// Write what the bot heard during a recordResponse. Until the media engine lands,
/// simulated users send no audio, so the recording is that silence at its real length.
pub async fn recordings(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<(String, String, String, u64)>,
) {
    let dir = shared.data_dir.join("recordings");
    let _ = std::fs::create_dir_all(&dir);
    while let Some((id, call_id, token, duration_ms)) = rx.recv().await {
        let path = dir.join(format!("{id}.wav"));
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let written = (|| -> Result<(), hound::Error> {
            let mut w = hound::WavWriter::create(&path, spec)?;
            for _ in 0..(duration_ms * 16) {
                w.write_sample(0i16)?;
            }
            w.finalize()
        })();
        if let Err(e) = written {
            tracing::error!(error = %e, "cannot write recording");
            continue;
        }
        let retention_ms = shared
            .config
            .read()
            .expect("config")
            .server
            .recording_retention_minutes
            * 60_000;
        let _ = shared.driver.send(Msg::AddRecording {
            id,
            call_id,
            token,
            path: path.display().to_string(),
            retention_ms,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(rate: u32, channels: u16, frames: usize) -> Vec<u8> {
        let mut buf = Cursor::new(Vec::new());
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::new(&mut buf, spec).unwrap();
        for _ in 0..frames * channels as usize {
            w.write_sample(0i16).unwrap();
        }
        w.finalize().unwrap();
        buf.into_inner()
    }

    #[test]
    fn wav_duration_comes_from_the_file() {
        assert_eq!(wav_duration_ms(&wav(16_000, 1, 16_000)).unwrap(), 1000);
        assert_eq!(wav_duration_ms(&wav(8_000, 2, 4_000)).unwrap(), 500);
    }

    #[test]
    fn non_wav_and_empty_wav_are_refused() {
        assert!(
            wav_duration_ms(b"<html>not found</html>")
                .unwrap_err()
                .contains("not a WAV")
        );
        assert!(
            wav_duration_ms(&wav(16_000, 1, 0))
                .unwrap_err()
                .contains("no audio")
        );
        let mut bad = wav(16_000, 1, 10);
        bad[20] = 7; // format tag 7 = mu-law
        assert!(wav_duration_ms(&bad).is_err());
    }
}
