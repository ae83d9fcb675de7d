//! Speech-to-text for transcription: a pool of worker threads, each with its own copy of the
//! model (the weights are shared), fed by a bounded queue of utterances the media rooms cut.
//! The rooms never wait: when the queue is full the utterance becomes a gap in the transcript
//! (and a count in `/admin/media`). Workers run at a lower scheduling priority than media, and
//! each keeps to one core.

use crate::inputs::Msg;
use media::{Event, Utterance};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// How much less CPU priority speech-to-text has than media (nice steps).
const NICE: i32 = 10;
/// Latencies kept for the percentiles in `/admin/media`.
const LATENCIES: usize = 512;

#[derive(Default)]
pub struct SpeechStats {
    pub utterances: AtomicU64,
    pub transcribed: AtomicU64,
    /// Utterances that found the queue full (gaps in transcripts).
    pub gaps: AtomicU64,
    pub queued: AtomicU64,
    pub audio_ms: AtomicU64,
    pub busy_us: AtomicU64,
    /// From an utterance's end being handed over to its words going to the engine, in ms.
    latencies: Mutex<VecDeque<u32>>,
}

impl SpeechStats {
    /// (p50, p95, max) of recent latencies, in ms.
    pub fn latency(&self) -> Option<(u32, u32, u32)> {
        let l = self.latencies.lock().expect("latencies");
        if l.is_empty() {
            return None;
        }
        let mut v: Vec<u32> = l.iter().copied().collect();
        v.sort_unstable();
        let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        Some((at(0.5), at(0.95), *v.last().expect("non-empty")))
    }
}

/// The model, loaded when transcription is first asked for (a server that never transcribes
/// never pays for it).
struct Lazy {
    dir: std::path::PathBuf,
    model: OnceLock<Result<asr::Model, String>>,
}

impl Lazy {
    fn get(&self) -> &Result<asr::Model, String> {
        self.model.get_or_init(|| {
            let began = Instant::now();
            let m = asr::Model::load(&self.dir).map_err(|e| e.to_string());
            match &m {
                Ok(_) => tracing::info!(model = %self.dir.display(), ms = began.elapsed().as_millis() as u64, "speech-to-text model loaded"),
                Err(e) => tracing::error!(model = %self.dir.display(), error = %e, "speech-to-text model failed to load"),
            }
            m
        })
    }
}

pub struct Speech {
    queue: Option<SyncSender<(Utterance, Instant)>>,
    model: Option<Arc<Lazy>>,
    to_driver: Mutex<mpsc::Sender<Msg>>,
    pub stats: Arc<SpeechStats>,
    /// Why there is no speech-to-text, when there is none.
    pub unavailable: Option<String>,
    pub workers: usize,
}

impl Speech {
    /// Load the model and start the workers; without a model, say why and start none.
    pub fn start(
        cfg: Option<&directory::TranscriptionConfig>,
        data_dir: &Path,
        to_driver: mpsc::Sender<Msg>,
    ) -> Speech {
        let cfg = cfg.cloned().unwrap_or_default();
        let stats: Arc<SpeechStats> = Default::default();
        let mut speech = Speech {
            queue: None,
            model: None,
            to_driver: Mutex::new(to_driver.clone()),
            stats: stats.clone(),
            unavailable: None,
            workers: 0,
        };
        let dir = if !cfg.enabled {
            Err("transcription is disabled ([transcription] enabled = false)".to_string())
        } else {
            cfg.model
                .as_ref()
                .map(std::path::PathBuf::from)
                .or_else(|| asr::find_model(Some(data_dir)))
                .ok_or_else(|| "no speech-to-text model is installed (scripts/models.sh installs it, or set [transcription] model)".to_string())
                .and_then(|d| {
                    asr::check_model(&d)
                        .map(|()| d)
                        .map_err(|e| format!("the speech-to-text model cannot be used: {e}"))
                })
        };
        let dir = match dir {
            Ok(d) => d,
            Err(why) => {
                tracing::warn!("transcription unavailable: {why}");
                speech.unavailable = Some(why);
                return speech;
            }
        };
        speech.model = Some(Arc::new(Lazy {
            dir,
            model: OnceLock::new(),
        }));
        let workers = match cfg.workers {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            n => n,
        };
        let (tx, rx) = mpsc::sync_channel::<(Utterance, Instant)>(cfg.queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..workers {
            let model = speech.model.clone().expect("just set");
            let (rx, stats, to_driver) = (rx.clone(), stats.clone(), to_driver.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("speech-{n}"))
                .spawn(move || {
                    lower_priority();
                    asr::single_threaded(move || work(model, &rx, &stats, &to_driver))
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a speech-to-text worker");
            }
        }
        speech.queue = Some(tx);
        speech.workers = workers;
        speech
    }

    /// Transcription is starting somewhere: load the model now, off the caller's thread.
    pub fn warm_up(&self) {
        if let Some(m) = &self.model
            && m.model.get().is_none()
        {
            let m = m.clone();
            let _ = std::thread::Builder::new()
                .name("speech-load".into())
                .spawn(move || {
                    lower_priority();
                    let _ = m.get();
                });
        }
    }

    /// An utterance from a room: queued for a worker, or (queue full) a gap at once.
    pub fn offer(&self, u: Utterance) {
        let Some(q) = &self.queue else {
            return;
        };
        self.stats.utterances.fetch_add(1, Ordering::Relaxed);
        match q.try_send((u, Instant::now())) {
            Ok(()) => {
                self.stats.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full((u, _)) | TrySendError::Disconnected((u, _))) => {
                self.stats.gaps.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(call = %u.call_id, participant = %u.participant_id, "speech-to-text queue full: a gap in the transcript");
                let ev = Event::Transcribed {
                    utterance: Utterance { audio: vec![], ..u },
                    text: String::new(),
                    gap: true,
                };
                let _ = self.to_driver.lock().expect("driver").send(Msg::Media(ev));
            }
        }
    }
}

fn lower_priority() {
    // On Linux this applies to the calling thread only (and to threads it starts).
    #[cfg(target_os = "linux")]
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, NICE);
    }
}

type Queue = Mutex<mpsc::Receiver<(Utterance, Instant)>>;

fn work(shared: Arc<Lazy>, rx: &Queue, stats: &SpeechStats, to_driver: &mpsc::Sender<Msg>) {
    let mut model: Option<asr::Model> = None;
    loop {
        let next = rx.lock().expect("speech queue").recv();
        let Ok((u, handed)) = next else {
            return;
        };
        stats.queued.fetch_sub(1, Ordering::Relaxed);
        let began = Instant::now();
        if model.is_none() {
            model = shared.get().as_ref().ok().cloned();
        }
        let Some(model) = model.as_mut() else {
            let ev = Event::Transcribed {
                utterance: Utterance { audio: vec![], ..u },
                text: String::new(),
                gap: true,
            };
            stats.gaps.fetch_add(1, Ordering::Relaxed);
            let _ = to_driver.send(Msg::Media(ev));
            continue;
        };
        let text = match model.transcribe(&u.audio) {
            Ok(t) if t.is_speech() => t.text,
            Ok(_) => String::new(),
            Err(e) => {
                tracing::error!(error = %e, call = %u.call_id, "speech-to-text failed");
                String::new()
            }
        };
        stats
            .busy_us
            .fetch_add(began.elapsed().as_micros() as u64, Ordering::Relaxed);
        stats
            .audio_ms
            .fetch_add(u.end_ms - u.start_ms, Ordering::Relaxed);
        stats.transcribed.fetch_add(1, Ordering::Relaxed);
        {
            let mut l = stats.latencies.lock().expect("latencies");
            if l.len() == LATENCIES {
                l.pop_front();
            }
            l.push_back(handed.elapsed().as_millis() as u32);
        }
        let ev = Event::Transcribed {
            utterance: Utterance { audio: vec![], ..u },
            text,
            gap: false,
        };
        if to_driver.send(Msg::Media(ev)).is_err() {
            return;
        }
    }
}
