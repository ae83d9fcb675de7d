//! `/admin/media`, `/admin/driver`, `/admin/calls`, `/admin/sip/…`, `/admin/dead-letters`,
//! `/admin/device-quality`, `/admin/signing-keys/rotate`: how the node is doing, and the
//! operator's levers.

use super::reply::{Answer, audit, created, ok};
use crate::plumbing::bad;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use engine::ApiError;
use node::{Msg, Node, now_ms};
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub fn rotate_keys(node: &Node) -> Answer {
    let kid = node.keys.rotate(now_ms()).map_err(bad)?;
    created(json!({ "kid": kid }))
}

/// The media threads' timing (ticks that started late are audio sent late) and the RTP
/// counters of connected SIP legs.
pub fn media(node: &Node) -> Answer {
    ok(media_json(node))
}

pub fn media_json(node: &Node) -> Value {
    let m = node.media.stats.snapshot();
    let rtp = node.sip.get().map(|s| {
        let t = s.rtp_totals();
        json!({
            "legs": t.legs, "dialogs": t.dialogs, "packetsIn": t.packets_in, "packetsOut": t.packets_out,
            "expected": t.expected, "received": t.received, "late": t.late,
            "concealed": t.concealed, "dropped": t.dropped,
        })
    });
    let webrtc = node.webrtc.get().map(|w| {
        let s = &w.stats;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        json!({
            "legs": get(&s.legs), "ticks": get(&s.ticks), "ticksLate5ms": get(&s.late_ticks),
            "maxLateMs": get(&s.max_late_us) as f64 / 1000.0, "strayDatagrams": get(&s.strays),
            "realtimeThreads": get(&s.sched.realtime), "demotions": get(&s.sched.demotions),
            "framesEncoded": get(&s.own_encodes), "commonMixEncodes": get(&s.common_encodes),
            "commonMixFrames": get(&s.common_frames), "silentPacketsUndecoded": get(&s.undecoded),
        })
    });
    let sp = &node.speech;
    let st = &sp.stats;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let (audio_ms, busy_us) = (get(&st.audio_ms), get(&st.busy_us));
    let latency = st
        .latency()
        .map(|(p50, p95, max)| json!({"p50": p50, "p95": p95, "max": max}));
    let transcription = json!({
        "available": sp.unavailable.is_none(), "unavailableReason": sp.unavailable,
        "workers": sp.workers, "queued": get(&st.queued), "utterances": get(&st.utterances),
        "transcribed": get(&st.transcribed), "gaps": get(&st.gaps),
        "audioSeconds": audio_ms as f64 / 1000.0, "busySeconds": busy_us as f64 / 1e6,
        "realTimeFactor": if audio_ms > 0 { busy_us as f64 / 1000.0 / audio_ms as f64 } else { 0.0 },
        "latencyMs": latency,
    });
    let ss = &node.streams.stats;
    let streams = json!({
        "open": get(&ss.open), "connected": get(&ss.connected), "framesSent": get(&ss.frames_sent),
        "framesDropped": get(&ss.frames_dropped), "framesReceived": get(&ss.frames_received), "underflows": get(&ss.underflows),
        "badMessages": get(&ss.bad_messages),
    });
    json!({
        "ticks": m.ticks, "ticksLate5ms": m.late_5ms, "maxLateMs": m.max_late_us as f64 / 1000.0,
        "resyncs": m.resyncs, "skippedFrames": m.skipped_frames, "busyMs": m.busy_us / 1000, "rooms": m.rooms, "members": m.members, "ports": node.media.ports.len(),
        "realtimeThreads": node.media.stats.sched.realtime.load(std::sync::atomic::Ordering::Relaxed),
        "demotions": node.media.stats.sched.demotions.load(std::sync::atomic::Ordering::Relaxed),
        "rtp": rtp,
        "webrtc": webrtc,
        "transcription": transcription,
        "streams": streams,
    })
}

pub fn driver(node: &Node) -> Answer {
    let mut v = node.driver_stats.to_json();
    v["heap"] = node::stats::heap();
    ok(v)
}

pub fn sip_registrations(node: &Node, user: &str) -> Answer {
    let Some(sip) = node.sip.get() else {
        return Err(ApiError::not_found("SIP endpoint", "(no [sip] section)"));
    };
    let now = now_ms();
    let v: Vec<Value> = sip
        .contacts(user)
        .iter()
        .map(|b| json!({"contact": b.uri, "expiresInSeconds": b.remaining_s(now)}))
        .collect();
    ok(json!({ "user": user, "contacts": v }))
}

pub async fn calls(node: &Node) -> Answer {
    let (tx, rx) = oneshot::channel();
    let _ = node.driver.send(Msg::Snapshot { reply: tx });
    ok(rx.await.unwrap_or(Value::Null))
}

pub async fn dead_letters(node: &Node) -> Answer {
    let (tx, rx) = oneshot::channel();
    let _ = node.driver.send(Msg::DeadLetters { reply: tx });
    let dead = rx.await.unwrap_or_default();
    let v: Vec<Value> = dead
        .into_iter()
        .map(|d| json!({"seq": d.seq, "callId": d.row.call_id, "appId": d.row.app_id, "url": d.row.url, "attempts": d.row.attempts, "lastError": d.row.last_error, "diedMs": d.died_ms, "body": serde_json::from_str::<Value>(&d.row.body).unwrap_or(Value::Null)}))
        .collect();
    ok(json!({ "value": v }))
}

/// Put a dead letter back in its call's queue, with its original sequence number.
pub async fn redeliver(node: &Node, seq: &str) -> Answer {
    let seq: i64 = seq
        .parse()
        .map_err(|_| bad(format!("'{seq}' is not a dead-letter sequence number")))?;
    let (tx, rx) = oneshot::channel();
    let _ = node.driver.send(Msg::Redeliver { seq, reply: tx });
    match rx.await.unwrap_or(None) {
        Some(_) => {
            audit("dead_letter_redelivered", &seq.to_string());
            Ok(StatusCode::ACCEPTED.into_response())
        }
        None => Err(ApiError::not_found("Dead letter", &seq.to_string())),
    }
}

pub async fn device_quality(node: &Node, query: Option<&str>) -> Answer {
    let tenant = query
        .and_then(|q| q.strip_prefix("tenant="))
        .map(str::to_string)
        .ok_or_else(|| bad("?tenant=<id> is required"))?;
    let (tx, rx) = oneshot::channel();
    let _ = node.driver.send(Msg::ListQuality { tenant, reply: tx });
    let v: Vec<Value> = rx
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(id, app, at, q)| json!({"id": id, "appId": app, "receivedMs": at, "quality": q}))
        .collect();
    ok(json!({ "value": v }))
}
