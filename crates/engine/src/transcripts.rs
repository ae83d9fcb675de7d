//! Transcripts. startTranscription begins one for the call: the media room cuts what each
//! participant says into utterances, the node's speech-to-text turns them into words, and the
//! words come back here as [`::media::Event::Transcribed`]. Each line is stored with the
//! batch that notifies it, and a call in an online meeting files its transcript under the
//! meeting too (docs/transcription.md).

use crate::core::Engine;
use crate::render;
use crate::types::*;
use graph::*;
use serde_json::json;

/// Subcode of a startTranscription that cannot run because this ringside has no model.
pub const UNAVAILABLE: i32 = 8511;

/// Begin the call's transcript; false (and nothing changes) when transcription is unavailable.
pub(crate) fn start(e: &mut Engine, call_id: &str) -> Option<ResultInfo> {
    if let Some(why) = &e.cfg.transcription_unavailable {
        return Some(ResultInfo::new(
            503,
            UNAVAILABLE,
            &format!("Transcription is unavailable on this server: {why}"),
        ));
    }
    let now = e.now;
    let id = e.id();
    let c = e.calls.get_mut(call_id).expect("exists");
    c.transcription = Some((TranscriptionState::Active, now));
    c.transcript = Some((id.clone(), now));
    let (conf_id, tenant_id, app_id) = (c.conf_id.clone(), c.tenant_id.clone(), c.app_id.clone());
    e.touch_call(call_id);
    let meeting_id = e
        .meetings
        .values()
        .find(|m| m.conf_id.as_deref() == Some(conf_id.as_str()))
        .map(|m| m.id.clone());
    e.effect(Effect::Transcript(Transcript {
        id: id.clone(),
        call_id: call_id.to_string(),
        meeting_id,
        tenant_id,
        app_id,
        created_ms: now,
        ended_ms: None,
    }));
    e.effect(Effect::Media(::media::Cmd::StartTranscription {
        conf_id,
        call_id: call_id.to_string(),
        transcript_id: id,
        offset_ms: 0,
    }));
    let t = render::transcription(&e.calls[call_id]);
    e.notify_call(call_id, json!({ "transcription": t }));
    None
}

/// End the call's transcript (stopTranscription, or the call ending). What was said up to
/// now is still transcribed and added.
pub(crate) fn stop(e: &mut Engine, call_id: &str) {
    let now = e.now;
    let Some(c) = e.calls.get_mut(call_id) else {
        return;
    };
    let Some((id, created_ms)) = c.transcript.take() else {
        return;
    };
    if matches!(c.transcription, Some((TranscriptionState::Active, _))) {
        c.transcription = Some((TranscriptionState::Inactive, now));
    }
    let (conf_id, tenant_id, app_id) = (c.conf_id.clone(), c.tenant_id.clone(), c.app_id.clone());
    e.touch_call(call_id);
    e.effect(Effect::Media(::media::Cmd::StopTranscription {
        conf_id,
        call_id: call_id.to_string(),
    }));
    e.effect(Effect::Transcript(Transcript {
        id,
        call_id: call_id.to_string(),
        meeting_id: None,
        tenant_id,
        app_id,
        created_ms,
        ended_ms: Some(now),
    }));
}

/// After a restart: the room starts cutting utterances again, on the transcript's clock.
pub(crate) fn resume(e: &mut Engine, call_id: &str) {
    let c = &e.calls[call_id];
    if let Some((id, started)) = &c.transcript {
        e.effect(Effect::Media(::media::Cmd::StartTranscription {
            conf_id: c.conf_id.clone(),
            call_id: call_id.to_string(),
            transcript_id: id.clone(),
            offset_ms: e.now.saturating_sub(*started),
        }));
    }
}

/// Words (or a gap) for a transcript: a line stored, and a notification while the call lives.
pub(crate) fn transcribed(e: &mut Engine, u: ::media::Utterance, text: String, gap: bool) {
    if text.trim().is_empty() && !gap {
        return; // the VAD heard something the model did not take for speech
    }
    let speaker = e
        .calls
        .get(&u.call_id)
        .and_then(|c| e.confs.get(&c.conf_id))
        .and_then(|conf| conf.members.iter().find(|m| m.id == u.participant_id))
        .and_then(|m| m.info.identity.display_name().map(str::to_string))
        .unwrap_or_else(|| u.participant_id.clone());
    let line = TranscriptLine {
        transcript_id: u.transcript_id,
        call_id: u.call_id,
        participant_id: u.participant_id,
        speaker,
        start_ms: u.start_ms,
        end_ms: u.end_ms,
        text: text.trim().to_string(),
        gap,
    };
    if e.calls.contains_key(&line.call_id) {
        let data = render::transcript_line(&line);
        // "updated" on the transcript, as Graph tells of roster changes: bots take a
        // "created" notification for an incoming call.
        let suffix = format!("/transcripts/{}", line.transcript_id);
        e.notify(&line.call_id.clone(), ChangeType::Updated, &suffix, data);
    }
    e.effect(Effect::TranscriptLine(line));
}
