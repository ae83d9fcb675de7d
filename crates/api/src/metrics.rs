//! `GET /metrics`: Prometheus text format. Open to loopback; from elsewhere it takes the
//! admin token (`Authorization: Bearer …`, as Prometheus' `authorization` setting sends it).

use crate::plumbing::Via;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use engine::ApiError;
use node::Node;
use node::inputs::Msg;
use node::metrics::family;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

pub async fn metrics(node: &Node, headers: &HeaderMap, via: Via) -> Result<Response, ApiError> {
    if !via.peer.ip().is_loopback() {
        crate::admin::authorise(node, headers)?;
    }
    let mut out = String::with_capacity(16 * 1024);
    calls_and_legs(node, &mut out).await;
    node.metrics.render(&mut out);
    media(node, &mut out);
    driver(node, &mut out);
    sip(node, &mut out);
    cluster(node, &mut out);
    Ok((
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        out,
    )
        .into_response())
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn gauge(out: &mut String, name: &str, help: &str, v: impl std::fmt::Display) {
    family(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {v}");
}

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    family(out, name, "counter", help);
    let _ = writeln!(out, "{name} {v}");
}

/// Calls by state and legs by party, from the engine.
async fn calls_and_legs(node: &Node, out: &mut String) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let _ = node.driver.send(Msg::Snapshot { reply: tx });
    let snap = rx.await.unwrap_or(Value::Null);
    let mut by_state: BTreeMap<String, u64> = BTreeMap::new();
    for c in snap["calls"].as_array().into_iter().flatten() {
        let state = c["state"].as_str().unwrap_or("unknown").to_string();
        *by_state.entry(state).or_default() += 1;
    }
    family(
        out,
        "ringside_calls",
        "gauge",
        "calls held by this node, by state",
    );
    for state in [
        "incoming",
        "establishing",
        "established",
        "hold",
        "transferring",
        "terminating",
    ] {
        by_state.entry(state.into()).or_default();
    }
    for (state, n) in by_state {
        let _ = writeln!(out, "ringside_calls{{state=\"{state}\"}} {n}");
    }
    let mut by_party: BTreeMap<String, u64> = BTreeMap::new();
    for l in snap["legs"].as_array().into_iter().flatten() {
        if l["state"] == "Ended" {
            continue;
        }
        let party = match &l["party"] {
            Value::Object(m) => m.keys().next().cloned().unwrap_or_default(),
            Value::String(s) => s.clone(),
            _ => "unknown".into(),
        };
        *by_party.entry(party.to_ascii_lowercase()).or_default() += 1;
    }
    family(
        out,
        "ringside_legs",
        "gauge",
        "live legs, by the kind of party at the far end",
    );
    for (party, n) in by_party {
        let _ = writeln!(out, "ringside_legs{{party=\"{party}\"}} {n}");
    }
    family(
        out,
        "ringside_transport_legs",
        "gauge",
        "live legs, by transport",
    );
    let sip = node.sip.get().map_or(0, |s| s.rtp_totals().legs as u64);
    let webrtc = node.webrtc.get().map_or(0, |w| get(&w.stats.legs));
    let _ = writeln!(out, "ringside_transport_legs{{transport=\"sip\"}} {sip}");
    let _ = writeln!(
        out,
        "ringside_transport_legs{{transport=\"webrtc\"}} {webrtc}"
    );
}

fn media(node: &Node, out: &mut String) {
    let m = node.media.stats.snapshot();
    counter(
        out,
        "ringside_media_ticks_total",
        "20 ms media ticks run",
        m.ticks,
    );
    counter(
        out,
        "ringside_media_late_ticks_total",
        "media ticks that started more than 5 ms late",
        m.late_5ms,
    );
    gauge(
        out,
        "ringside_media_max_late_seconds",
        "latest tick start seen",
        m.max_late_us as f64 / 1e6,
    );
    gauge(out, "ringside_media_rooms", "media rooms", m.rooms);
    gauge(
        out,
        "ringside_media_members",
        "media room members",
        m.members,
    );
    if let Some(s) = node.sip.get() {
        let t = s.rtp_totals();
        gauge(
            out,
            "ringside_rtp_expected_packets",
            "RTP packets expected by sequence number on live SIP legs",
            t.expected,
        );
        gauge(
            out,
            "ringside_rtp_received_packets",
            "RTP packets received on live SIP legs",
            t.received,
        );
        gauge(
            out,
            "ringside_rtp_lost_packets",
            "RTP packets expected and never received on live SIP legs",
            t.expected.saturating_sub(t.received),
        );
        gauge(
            out,
            "ringside_rtp_late_packets",
            "RTP packets too late for playout on live SIP legs",
            t.late,
        );
    }
    if let Some(w) = node.webrtc.get() {
        counter(
            out,
            "ringside_webrtc_late_ticks_total",
            "WebRTC ticks more than 5 ms late",
            get(&w.stats.late_ticks),
        );
    }
    let st = &node.speech.stats;
    gauge(
        out,
        "ringside_transcription_queued",
        "utterances waiting for a transcription worker",
        get(&st.queued),
    );
    counter(
        out,
        "ringside_transcription_gaps_total",
        "utterances not transcribed because the queue was full",
        get(&st.gaps),
    );
}

fn driver(node: &Node, out: &mut String) {
    let d = &node.driver_stats;
    counter(
        out,
        "ringside_driver_batches_total",
        "call driver batches",
        get(&d.batches),
    );
    counter(
        out,
        "ringside_driver_messages_total",
        "inputs handled by the call driver",
        get(&d.messages),
    );
    counter(
        out,
        "ringside_driver_engine_microseconds_total",
        "time spent running the engine",
        get(&d.engine_us),
    );
    counter(
        out,
        "ringside_driver_commit_microseconds_total",
        "time spent committing batches",
        get(&d.commit_us),
    );
    family(
        out,
        "ringside_driver_batch_duration_seconds",
        "histogram",
        "engine and commit time of each batch",
    );
    let mut total = 0;
    for (i, n) in d.batch_ms.iter().enumerate() {
        total += get(n);
        let le = match node::stats::BATCH_MS_BOUNDS.get(i) {
            Some(b) => (*b as f64 / 1000.0).to_string(),
            None => "+Inf".into(),
        };
        let _ = writeln!(
            out,
            "ringside_driver_batch_duration_seconds_bucket{{le=\"{le}\"}} {total}"
        );
    }
    let sum = (get(&d.engine_us) + get(&d.commit_us)) as f64 / 1e6;
    let _ = writeln!(out, "ringside_driver_batch_duration_seconds_sum {sum}");
    let _ = writeln!(out, "ringside_driver_batch_duration_seconds_count {total}");
}

fn sip(node: &Node, out: &mut String) {
    let Some(s) = node.sip.get() else {
        return;
    };
    family(
        out,
        "ringside_sip_responses_total",
        "counter",
        "SIP responses sent, by status code",
    );
    for (code, n) in s.responses.counts() {
        let _ = writeln!(out, "ringside_sip_responses_total{{code=\"{code}\"}} {n}");
    }
}

fn cluster(node: &Node, out: &mut String) {
    let draining = node.draining.load(Ordering::Relaxed) as u8;
    gauge(
        out,
        "ringside_draining",
        "1 while the node drains (SIGTERM)",
        draining,
    );
    if let Some(c) = node.cluster.get() {
        gauge(
            out,
            "ringside_cluster_owned_calls",
            "calls this node owns",
            c.owned.calls(),
        );
        gauge(
            out,
            "ringside_cluster_connected",
            "1 when NATS and the cluster's PostgreSQL connection are up",
            c.connected() as u8,
        );
    }
}
