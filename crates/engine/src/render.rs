//! Resources as Graph JSON: full null-filled shapes for GET/create responses (reference §2.1),
//! partial shapes for notifications (§8.2).

use crate::model::*;
use graph::*;
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    Beta,
}

pub fn iso(ms: Ms) -> String {
    let secs = (ms / 1000) as i64;
    let nanos = ((ms % 1000) * 1_000_000) as u32;
    chrono_like(secs, nanos)
}

/// RFC 3339 UTC without a date library (days-from-civil, Howard Hinnant's algorithm).
fn chrono_like(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        nanos / 1_000_000
    )
}

pub fn participant_info(info: &ParticipantInfo) -> Value {
    let mut v = serde_json::to_value(info).unwrap_or_default();
    if let Value::Object(m) = &mut v {
        m.insert(
            "@odata.type".into(),
            "#microsoft.graph.participantInfo".into(),
        );
    }
    v
}

pub fn invitation_info(info: &InvitationParticipantInfo) -> Value {
    let mut v = serde_json::to_value(info).unwrap_or_default();
    if let Value::Object(m) = &mut v {
        m.insert(
            "@odata.type".into(),
            "#microsoft.graph.invitationParticipantInfo".into(),
        );
    }
    v
}

pub fn media_streams(m: &Member) -> Value {
    let mut streams = vec![json!({
        "@odata.type":"#microsoft.graph.mediaStream","mediaType":"audio","label":"main-audio",
        "sourceId": m.source_id.to_string(),
        "direction": if m.held { "receiveOnly" } else { "sendReceive" },
        "serverMuted": m.muted,
    })];
    if m.screen_sharing {
        streams.push(json!({"@odata.type":"#microsoft.graph.mediaStream","mediaType":"videoBasedScreenSharing",
            "label":"applicationsharing-video","sourceId":(m.source_id + 1).to_string(),"direction":"sendOnly","serverMuted":false}));
    }
    if m.large_gallery {
        streams.push(json!({"@odata.type":"#microsoft.graph.mediaStream","mediaType":"video",
            "label":"largeGalleryView","sourceId":(m.source_id + 2).to_string(),"direction":"receiveOnly","serverMuted":false}));
    }
    Value::Array(streams)
}

pub fn participant(m: &Member, removed: Option<&str>) -> Value {
    let recording = m.recording.as_ref().map(|(status, who)| {
        json!({"@odata.type":"#microsoft.graph.recordingInfo","recordingStatus":status,"initiator":who})
    });
    let mut v = json!({
        "@odata.type":"#microsoft.graph.participant",
        "id": m.id,
        "info": participant_info(&m.info),
        "isMuted": m.muted,
        "isInLobby": false,
        "mediaStreams": media_streams(m),
        "metadata": null,
        "recordingInfo": recording,
        "rosterSequenceNumber": m.seq,
    });
    if let Some(reason) = removed {
        v["removedState"] = json!({"@odata.type":"#microsoft.graph.removedState","reason":reason});
    }
    v
}

pub fn operation(op: &Operation) -> Value {
    let mut v = json!({
        "@odata.type": op.kind.odata_type(),
        "id": op.id,
        "status": op.status,
        "clientContext": op.client_context,
        "resultInfo": op.result_info.as_ref().map(ResultInfo::to_value),
    });
    match op.kind {
        OpKind::PlayPrompt | OpKind::SendDtmfTones => {
            v["completionReason"] = op
                .completion_reason
                .clone()
                .map(Value::String)
                .unwrap_or(Value::Null);
        }
        OpKind::Record => {
            v["completionReason"] = op
                .completion_reason
                .clone()
                .map(Value::String)
                .unwrap_or(Value::Null);
            v["recordingLocation"] = op
                .recording_location
                .clone()
                .map(Value::String)
                .unwrap_or(Value::Null);
            v["recordingAccessToken"] = op
                .recording_access_token
                .clone()
                .map(Value::String)
                .unwrap_or(Value::Null);
        }
        OpKind::InviteParticipants | OpKind::MuteParticipants => {
            v["participants"] = op.participants.clone().unwrap_or(Value::Array(vec![]));
        }
        _ => {}
    }
    v
}

/// The full call resource, as returned by create and GET.
pub fn call(c: &Call, ver: Version) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    put("@odata.type", "#microsoft.graph.call".into());
    put("id", c.id.clone().into());
    put("state", json!(c.state));
    put("direction", json!(c.direction));
    put("callbackUri", c.callback_uri.clone().into());
    put("callChainId", c.call_chain_id.clone().into());
    put("callRoutes", json!([]));
    put("source", participant_info(&c.source));
    put(
        "targets",
        Value::Array(c.targets.iter().map(invitation_info).collect()),
    );
    put("requestedModalities", json!(c.requested_modalities));
    put(
        "mediaConfig",
        c.media_config
            .as_ref()
            .map(MediaConfig::to_value)
            .unwrap_or(Value::Null),
    );
    put(
        "chatInfo",
        c.chat_info.as_ref().map(chat_info).unwrap_or(Value::Null),
    );
    put(
        "meetingInfo",
        c.meeting_info
            .as_ref()
            .map(MeetingInfo::to_value)
            .unwrap_or(Value::Null),
    );
    put("tenantId", c.tenant_id.clone().into());
    put("myParticipantId", c.my_participant_id.clone().into());
    put(
        "subject",
        c.subject.clone().map(Value::String).unwrap_or(Value::Null),
    );
    put("mediaState", media_state(c));
    put(
        "resultInfo",
        c.result_info
            .as_ref()
            .map(ResultInfo::to_value)
            .unwrap_or(Value::Null),
    );
    put("toneInfo", tone_info(c));
    put("transcription", transcription(c));
    if let Some(s) = &c.stream {
        // ringside's extension: the stream, and where the bot connects when it connects in.
        put(
            "mediaStreaming",
            json!({
                "transportUrl": s.spec.transport_url,
                "audioChannelType": if s.spec.mixed { "mixed" } else { "unmixed" },
                "bidirectional": s.spec.bidirectional,
                "websocketUrl": s.url,
            }),
        );
    }
    put("callOptions", call_options(&c.call_options));
    put("incomingContext", Value::Null);
    if ver == Version::Beta {
        put(
            "activeModalities",
            if c.media_active {
                json!(c.requested_modalities)
            } else {
                json!([])
            },
        );
        put(
            "answeredBy",
            c.answered_by
                .as_ref()
                .map(participant_info)
                .unwrap_or(Value::Null),
        );
        put("meetingCapability", Value::Null);
        put("routingPolicies", json!([]));
        put(
            "ringingTimeoutInSeconds",
            c.ringing_timeout_s.map(Value::from).unwrap_or(Value::Null),
        );
        put(
            "terminationReason",
            c.termination_reason
                .clone()
                .map(Value::String)
                .unwrap_or(Value::Null),
        );
    }
    for (k, v) in &c.extra {
        m.entry(k.clone()).or_insert_with(|| v.clone());
    }
    Value::Object(m)
}

pub fn chat_info(ci: &ChatInfo) -> Value {
    let mut v = serde_json::to_value(ci).unwrap_or_default();
    v["@odata.type"] = "#microsoft.graph.chatInfo".into();
    v
}

pub fn call_options(o: &CallOptions) -> Value {
    let mut v = serde_json::to_value(o).unwrap_or_default();
    if let Value::Object(m) = &mut v
        && m.is_empty()
    {
        return Value::Null;
    }
    v
}

pub fn media_state(c: &Call) -> Value {
    match c.state {
        CallState::Incoming | CallState::Establishing | CallState::Ringing => Value::Null,
        _ => {
            json!({"@odata.type":"#microsoft.graph.callMediaState","audio": if c.media_active { "active" } else { "inactive" }})
        }
    }
}

pub fn tone_info(c: &Call) -> Value {
    match c.tone_info {
        Some((seq, tone)) => {
            json!({"@odata.type":"#microsoft.graph.toneInfo","sequenceId":seq,"tone":tone})
        }
        None => Value::Null,
    }
}

/// A transcript line as notifications and the lines route show it (docs/transcription.md).
pub fn transcript_line(l: &crate::types::TranscriptLine) -> Value {
    json!({
        "@odata.type": "#ringside.transcriptLine",
        "transcriptId": l.transcript_id,
        "participantId": l.participant_id,
        "speaker": l.speaker,
        "startOffset": duration(l.start_ms),
        "endOffset": duration(l.end_ms),
        "text": l.text,
        "gap": l.gap,
    })
}

/// An ISO 8601 duration (`PT1M2.345S`).
pub fn duration(ms: u64) -> String {
    let (m, rest) = (ms / 60_000, ms % 60_000);
    let s = format!("{}.{:03}", rest / 1000, rest % 1000);
    if m > 0 {
        format!("PT{m}M{s}S")
    } else {
        format!("PT{s}S")
    }
}

pub fn transcription(c: &Call) -> Value {
    match c.transcription {
        Some((state, at)) => {
            json!({"@odata.type":"#microsoft.graph.callTranscriptionInfo","state":state,"lastModifiedDateTime":iso(at)})
        }
        None => Value::Null,
    }
}

pub fn content_sharing(s: &ContentSharing) -> Value {
    json!({"@odata.type":"#microsoft.graph.contentSharingSession","id":s.id,"presenterParticipantId":s.presenter})
}

pub fn routing_group(g: &AudioRoutingGroup) -> Value {
    json!({"@odata.type":"#microsoft.graph.audioRoutingGroup","id":g.id,"routingMode":g.routing_mode,"sources":g.sources,"receivers":g.receivers})
}

pub fn meeting(m: &Meeting) -> Value {
    json!({
        "@odata.type":"#microsoft.graph.onlineMeeting",
        "id": m.id,
        "creationDateTime": iso(m.created_at),
        "startDateTime": m.start,
        "endDateTime": m.end,
        "subject": m.subject,
        "joinWebUrl": m.join_web_url,
        "joinUrl": m.join_web_url,
        "chatInfo": {"@odata.type":"#microsoft.graph.chatInfo","threadId": m.thread_id, "messageId":"0", "replyChainMessageId": null},
        "joinMeetingIdSettings": {"@odata.type":"#microsoft.graph.joinMeetingIdSettings","joinMeetingId": m.join_meeting_id, "passcode": m.passcode, "isPasscodeRequired": true},
        "participants": {"organizer": {"identity": m.organizer, "upn": null, "role": "organizer"}, "attendees": []},
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso_formats_utc() {
        assert_eq!(super::iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::iso(1_764_290_000_123), "2025-11-28T00:33:20.123Z");
    }
}
