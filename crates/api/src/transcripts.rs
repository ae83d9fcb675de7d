//! Transcripts, Graph-shaped (docs/transcription.md):
//! * a meeting's: `GET …/onlineMeetings/{id}/transcripts`, `…/transcripts/{tid}` and
//!   `…/transcripts/{tid}/content` (WebVTT with `<v Speaker>` tags), under
//!   `/communications/`, `/users/{userId}/` or `/me/`;
//! * any call's, a ringside extension: the same under `…/communications/calls/{id}/`;
//! * and `…/transcripts/{tid}/lines`, the lines as JSON (what the notifications carried).

use crate::plumbing::{json_ok, stopped};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use engine::render::{duration, iso};
use engine::{ApiError, AppCtx, Version};
use identity::permissions;
use node::{Msg, Node};
use serde_json::{Value, json};
use store::{StoredLine, StoredTranscript};
use tokio::sync::oneshot;

enum Want {
    List,
    One,
    Content,
    Lines,
}

/// Which transcripts a path names: (owner id, by meeting, the owner's path, transcript id, what).
fn parse<'a>(rest: &[&'a str]) -> Option<(&'a str, bool, String, Option<&'a str>, Want)> {
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    let at = rest.iter().position(|s| eq(s, "transcripts"))?;
    let (owner_path, tail) = rest.split_at(at);
    let (owner, by_meeting) = match owner_path {
        [c, k, id] if eq(c, "communications") && eq(k, "calls") => (*id, false),
        [c, m, id] if eq(c, "communications") && eq(m, "onlineMeetings") => (*id, true),
        [u, _, m, id] if eq(u, "users") && eq(m, "onlineMeetings") => (*id, true),
        [me, m, id] if eq(me, "me") && eq(m, "onlineMeetings") => (*id, true),
        _ => return None,
    };
    let (tid, want) = match tail {
        [_] => (None, Want::List),
        [_, t] => (Some(*t), Want::One),
        [_, t, c] if eq(c, "content") => (Some(*t), Want::Content),
        [_, t, l] if eq(l, "lines") => (Some(*t), Want::Lines),
        _ => return None,
    };
    Some((owner, by_meeting, owner_path.join("/"), tid, want))
}

/// Handle a transcripts route, or None when the path is not one.
pub async fn handle(
    shared: &Node,
    app: &AppCtx,
    roles: &[String],
    method: &Method,
    rest: &[&str],
    ver: Version,
    base: &str,
) -> Option<Result<Response, ApiError>> {
    let (owner, by_meeting, owner_path, tid, want) = parse(rest)?;
    Some(
        async {
            if method != Method::GET {
                return Err(ApiError {
                    status: 405,
                    code: "MethodNotAllowed".into(),
                    message: "Transcripts are read-only (GET).".into(),
                });
            }
            crate::guard::permit(roles, &[vec![permissions::ACCESS_MEDIA]])?;
            let (tx, rx) = oneshot::channel();
            let _ = shared.driver.send(Msg::Transcripts {
                owner: owner.to_string(),
                by_meeting,
                reply: tx,
            });
            let all = rx.await.map_err(|_| stopped())?;
            let mine: Vec<_> = all
                .into_iter()
                .filter(|(t, _)| t.tenant_id.eq_ignore_ascii_case(&app.tenant_id))
                .filter(|(t, _)| by_meeting || t.app_id.eq_ignore_ascii_case(&app.app_id))
                .collect();
            let v = if ver == Version::Beta { "beta" } else { "v1.0" };
            let prefix = format!("{base}/{v}/{owner_path}/transcripts");
            let Some(tid) = tid else {
                let list: Vec<Value> = mine.iter().map(|(t, _)| render(t, &prefix)).collect();
                return Ok(json_ok(&json!({ "@odata.context": prefix, "value": list })));
            };
            let Some((t, lines)) = mine.iter().find(|(t, _)| t.id.eq_ignore_ascii_case(tid)) else {
                return Err(ApiError::not_found("Transcript", tid));
            };
            Ok(match want {
                Want::Content => (
                    StatusCode::OK,
                    [("content-type", "text/vtt; charset=utf-8")],
                    vtt(lines),
                )
                    .into_response(),
                Want::Lines => {
                    let v: Vec<Value> = lines.iter().map(line_json).collect();
                    json_ok(&json!({ "value": v }))
                }
                _ => json_ok(&render(t, &prefix)),
            })
        }
        .await,
    )
}

fn render(t: &StoredTranscript, prefix: &str) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.callTranscript",
        "id": t.id,
        "callId": t.call_id,
        "meetingId": t.meeting_id,
        "contentCorrelationId": t.id,
        "createdDateTime": iso(t.created_ms as u64),
        "endDateTime": t.ended_ms.map(|m| iso(m as u64)),
        "transcriptContentUrl": format!("{prefix}/{}/content", t.id),
    })
}

fn line_json(l: &StoredLine) -> Value {
    json!({
        "participantId": l.participant_id,
        "speaker": l.speaker,
        "startOffset": duration(l.start_ms as u64),
        "endOffset": duration(l.end_ms as u64),
        "text": l.text,
        "gap": l.gap,
    })
}

fn stamp(ms: i64) -> String {
    let ms = ms.max(0);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// WebVTT: one cue per line, the speaker in a voice tag. A gap is a cue saying so.
pub fn vtt(lines: &[StoredLine]) -> String {
    let mut out = String::from("WEBVTT\n");
    for l in lines {
        let text = if l.gap {
            "[speech not transcribed: the transcription workers were busy]".to_string()
        } else {
            l.text.replace("-->", "->")
        };
        let speaker = l.speaker.replace(['>', '\n'], " ");
        out.push_str(&format!(
            "\n{} --> {}\n<v {speaker}>{text}</v>\n",
            stamp(l.start_ms),
            stamp(l.end_ms)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transcript_is_webvtt_with_a_voice_per_speaker_and_gaps_said_aloud() {
        let line = |speaker: &str, start: i64, text: &str, gap: bool| StoredLine {
            participant_id: "p".into(),
            speaker: speaker.into(),
            start_ms: start,
            end_ms: start + 2_500,
            text: text.into(),
            gap,
        };
        let v = vtt(&[
            line("Alice", 1_200, "Hello there.", false),
            line("Bob>", 3_723_004, "", true),
        ]);
        assert_eq!(
            v,
            "WEBVTT\n\n00:00:01.200 --> 00:00:03.700\n<v Alice>Hello there.</v>\n\n\
             01:02:03.004 --> 01:02:05.504\n<v Bob >[speech not transcribed: the transcription workers were busy]</v>\n"
        );
    }

    #[test]
    fn transcript_routes_are_recognised_under_calls_and_meetings_only() {
        fn p(s: &'static str) -> Option<(&'static str, bool, Option<&'static str>)> {
            parse(&s.split('/').collect::<Vec<_>>()).map(|(o, m, _, t, _)| (o, m, t))
        }
        assert_eq!(
            p("communications/calls/c1/transcripts"),
            Some(("c1", false, None))
        );
        assert_eq!(
            p("users/u1/onlineMeetings/m1/transcripts/t1/content"),
            Some(("m1", true, Some("t1")))
        );
        assert_eq!(
            p("me/onlineMeetings/m1/transcripts/t1"),
            Some(("m1", true, Some("t1")))
        );
        assert_eq!(p("communications/calls/c1/transcripts/t1/bogus"), None);
        assert_eq!(p("communications/calls/c1/recordings"), None);
        assert_eq!(p("communications/calls/transcripts"), None);
    }
}
