//! Simulated users' scripts: how a user answers, what it says and presses, when it hangs up.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Behaviour {
    /// answer (default), busy, decline, noAnswer, unavailable
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default, alias = "answer_after_ms")]
    pub answer_after_ms: Option<u64>,
    #[serde(default, alias = "hangup_after_ms")]
    pub hangup_after_ms: Option<u64>,
    #[serde(default, alias = "hold_at_ms")]
    pub hold_at_ms: Option<u64>,
    #[serde(default, alias = "resume_at_ms")]
    pub resume_at_ms: Option<u64>,
    /// Start sharing the screen (a contentSharingSession) this long after connect.
    #[serde(default, alias = "share_screen_at_ms")]
    pub share_screen_at_ms: Option<u64>,
    #[serde(default, alias = "stop_sharing_at_ms")]
    pub stop_sharing_at_ms: Option<u64>,
    /// Digits pressed after the call is connected, as in-band DTMF in the user's audio.
    #[serde(default)]
    pub dtmf: Vec<DtmfPress>,
    /// WAV files the user speaks after the call is connected.
    #[serde(default)]
    pub speak: Vec<Speech>,
    /// How much of what the user hears is kept for `ringside heard` (default 300 s, 0: none).
    #[serde(default, alias = "record_heard_seconds")]
    pub record_heard_seconds: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Speech {
    /// https URL, or file:// below `server.prompt_folder` — the same rules as prompts.
    pub uri: String,
    #[serde(default, alias = "at_ms")]
    pub at_ms: u64,
    #[serde(default, rename = "loop")]
    pub looped: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DtmfPress {
    #[serde(alias = "at_ms")]
    pub at_ms: u64,
    pub digits: String,
    #[serde(default, alias = "gap_ms")]
    pub gap_ms: Option<u64>,
    /// How long each key is held (default 100 ms).
    #[serde(default, alias = "tone_ms")]
    pub tone_ms: Option<u64>,
}

impl Behaviour {
    /// Per-call script overrides the configured behaviour key by key.
    pub fn merged(&self, over: &Behaviour) -> Behaviour {
        Behaviour {
            action: over.action.clone().or(self.action.clone()),
            answer_after_ms: over.answer_after_ms.or(self.answer_after_ms),
            hangup_after_ms: over.hangup_after_ms.or(self.hangup_after_ms),
            hold_at_ms: over.hold_at_ms.or(self.hold_at_ms),
            resume_at_ms: over.resume_at_ms.or(self.resume_at_ms),
            share_screen_at_ms: over.share_screen_at_ms.or(self.share_screen_at_ms),
            stop_sharing_at_ms: over.stop_sharing_at_ms.or(self.stop_sharing_at_ms),
            dtmf: if over.dtmf.is_empty() {
                self.dtmf.clone()
            } else {
                over.dtmf.clone()
            },
            speak: if over.speak.is_empty() {
                self.speak.clone()
            } else {
                over.speak.clone()
            },
            record_heard_seconds: over.record_heard_seconds.or(self.record_heard_seconds),
        }
    }
    pub fn validate(&self) -> Result<(), String> {
        if let Some(a) = &self.action
            && !["answer", "busy", "decline", "noanswer", "unavailable"]
                .contains(&a.to_ascii_lowercase().as_str())
        {
            return Err(format!(
                "action '{a}' must be answer, busy, decline, noAnswer or unavailable"
            ));
        }
        for d in &self.dtmf {
            if let Some(c) = d
                .digits
                .chars()
                .find(|c| graph::Tone::from_char(*c).is_none())
            {
                return Err(format!(
                    "dtmf digit '{c}' is not a DTMF key (0-9, *, #, A-D)"
                ));
            }
            if d.tone_ms.is_some_and(|t| !(40..=2000).contains(&t)) {
                return Err("dtmf toneMs must be between 40 and 2000".into());
            }
        }
        for s in &self.speak {
            let lower = s.uri.to_ascii_lowercase();
            if !(lower.starts_with("https://")
                || lower.starts_with("http://")
                || lower.starts_with("file://"))
            {
                return Err(format!(
                    "speak uri '{}' must be an http(s) or file:// URL",
                    s.uri
                ));
            }
        }
        if self.record_heard_seconds.is_some_and(|s| s > 3600) {
            return Err("recordHeardSeconds must be at most 3600".into());
        }
        Ok(())
    }
}
