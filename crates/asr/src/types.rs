//! What the crate's parts share: the sample rate, errors and results.

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
