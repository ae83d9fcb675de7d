//! One function per fuzz target, each taking arbitrary bytes. A target passes when it returns:
//! a parser may refuse the input, never panic, and whatever it accepts must survive the
//! target's round-trip checks.
//!
//! Two runners share these entry points: cargo-fuzz under libFuzzer (`fuzz/fuzz_targets`, the
//! big recorded runs in fuzz/README.md) and the test suite on stable (`tests/replay.rs`: every
//! committed corpus input plus a fixed budget of mutated and random inputs).

use std::sync::LazyLock;

/// A target's entry point.
pub type Target = fn(&[u8]);

/// Every target by the name of its cargo-fuzz binary and corpus folder.
pub const TARGETS: &[(&str, Target)] = &[
    ("graph_request", graph_request),
    ("token", token),
    ("wav", wav),
    ("sdp", sdp),
    ("rtp", rtp),
    ("rtcp", rtcp),
    ("digest", digest),
    ("contact", contact),
    ("sip_message", sip_message),
    ("dialog_bodies", dialog_bodies),
    ("webrtc_offer", webrtc_offer),
    ("stun_username", stun_username),
    ("ct2_model", ct2_model),
    ("stream_message", stream_message),
];

/// Every Graph request parser behind the routing table: the first byte picks the method, the
/// second where the path ends and the body begins.
pub fn graph_request(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let method = data[0];
    let split = (data[1] as usize).min(data.len() - 2);
    let (path, body) = data[2..].split_at(split);
    api::calls::fuzz_route(method, &String::from_utf8_lossy(path), body);
}

static KEYS: LazyLock<identity::KeyRing> = LazyLock::new(identity::KeyRing::ephemeral);

/// The access-token validator, fed arbitrary bearer strings.
pub fn token(data: &[u8]) {
    let _ = KEYS.validate(&String::from_utf8_lossy(data));
}

/// The WAV reader (prompts): whatever decodes is 16 kHz mono, and re-encoding it round-trips.
pub fn wav(data: &[u8]) {
    if let Ok(audio) = media::wav::decode(data) {
        let again = media::wav::decode(&media::wav::encode(&audio)).expect("own WAV decodes");
        assert_eq!(&again[..], &audio[..]);
    }
}

/// SDP offer/answer: an answer or a clear error, and any answer written reads back.
pub fn sdp(data: &[u8]) {
    let local = sip::sdp::Local {
        addr: "127.0.0.1".parse().expect("address"),
        rtp_port: 40000,
        session_id: 1,
        version: 1,
    };
    if let Ok((answer, n)) = sip::sdp::answer(data, &local) {
        let back = sip::sdp::accept_answer(&answer).expect("our answer reads back");
        assert_eq!(back.codec, n.codec);
    }
    let _ = sip::sdp::accept_answer(data);
}

/// RTP and RFC 4733 telephone events: what parses re-serialises to the same packet.
pub fn rtp(data: &[u8]) {
    let _ = sip::rtp::is_rtcp(data);
    if let Ok(p) = sip::rtp::Rtp::parse(data) {
        let mut out = vec![];
        p.write(&mut out);
        let again = sip::rtp::Rtp::parse(&out).expect("our packet parses");
        assert_eq!(
            (again.sequence, again.timestamp, again.payload),
            (p.sequence, p.timestamp, p.payload)
        );
        if let Some(e) = sip::rtp::TelephoneEvent::parse(p.payload) {
            assert_eq!(sip::rtp::TelephoneEvent::parse(&e.write()), Some(e));
        }
    }
}

/// RTCP compound packets and a session's RTCP path: reports re-serialise to the same reports.
pub fn rtcp(data: &[u8]) {
    use sip::rtcp;
    if let Ok(c) = rtcp::parse(data) {
        let mut out = vec![];
        let reports = &c.reports[..c.reports.len().min(31)];
        rtcp::write_report(&mut out, c.ssrc, c.sender.as_ref(), reports);
        let again = rtcp::parse(&out).expect("our report parses");
        assert_eq!(again.sender, c.sender);
        assert_eq!(again.reports.len(), reports.len());
    }
    let mut s = sip::session::RtpSession::new(
        media::g711::Law::Mu,
        0,
        Some(101),
        "127.0.0.1:9".parse().expect("address"),
        1,
        1,
        1,
    );
    s.receive_rtcp(data, 1000);
    let _ = s.rtcp_report(1_700_000_000_000, 2000);
}

/// Digest credentials and nonce checks.
pub fn digest(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    if let Ok(c) = sip::digest::parse_authorization(&s) {
        let _ = sip::digest::verify(&c, "REGISTER", "0123456789abcdef0123456789abcdef");
    }
    let n = sip::digest::Nonces::new([1; 32], 300);
    let _ = n.check(&s, 1_000_000);
}

/// Contact headers (one per line) and the registrar taking them.
pub fn contact(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let values: Vec<&str> = s.split('\n').collect();
    if let Ok(contacts) = sip::registrar::parse_contacts(&values) {
        let mut r = sip::registrar::Registrar::default();
        let _ = r.register(
            sip::registrar::Register {
                user: "u",
                contacts,
                expires: None,
                call_id: "c",
                cseq: 1,
                source: None,
            },
            0,
        );
    }
}

/// rsipstack's SIP parser and the fields ringside reads from a request (REGISTER).
pub fn sip_message(data: &[u8]) {
    if let Ok(req) = sip::server::parse_request(data) {
        let _ = sip::server::read_register(&req);
    }
}

/// In-dialog bodies: SIP INFO keys (first line the Content-Type) and a REFER's sipfrag NOTIFY.
pub fn dialog_bodies(data: &[u8]) {
    let _ = sip::server::sipfrag_status(data);
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let ct = String::from_utf8_lossy(&data[..split]);
    let body = data.get(split + 1..).unwrap_or_default();
    if let Some(k) = sip::server::info_key(&ct, body) {
        assert!(matches!(k, '0'..='9' | '*' | '#' | 'A'..='D'));
    }
}

/// A browser's SDP offer, answered by the WebRTC endpoint's session (str0m).
pub fn webrtc_offer(data: &[u8]) {
    webrtc::endpoint::fuzz_offer(data);
}

/// The WebRTC reader's look at a datagram: the ICE username of a STUN binding request.
pub fn stun_username(data: &[u8]) {
    let _ = webrtc::endpoint::stun_username(data);
}

/// CTranslate2's `model.bin` reader and Whisper's byte-level vocabulary.
pub fn ct2_model(data: &[u8]) {
    if let Ok(f) = asr::ct2::parse(data) {
        for v in &f.vars {
            // Every tensor holds exactly what its shape and type say.
            let n: usize = v.dims.iter().product();
            assert_eq!(n * v.dtype.size(), v.data.len());
            let _ = v.scalar();
        }
    }
    let text = String::from_utf8_lossy(data);
    if let Ok(v) = asr::vocab::Vocab::parse(&text) {
        let _ = v.specials();
        let ids: Vec<u32> = data.iter().map(|&b| b as u32 * 7).collect();
        let _ = v.decode(&ids);
    }
}

/// A media-streaming app's WebSocket messages (`AudioData`, `StopAudio`).
pub fn stream_message(data: &[u8]) {
    use graph::streaming::{Incoming, parse_message};
    let text = String::from_utf8_lossy(data);
    match parse_message(&text) {
        // Whatever is accepted as audio is whole samples, never more than the text carried.
        Ok(Incoming::Audio(pcm)) => assert!(pcm.len() * 2 <= text.len()),
        Ok(Incoming::Stop) => {}
        Err(e) => assert!(!e.is_empty()),
    }
}
