//! Bodies of in-dialog requests: the key of an INFO (`application/dtmf-relay` or
//! `application/dtmf`) and the status line of a REFER's NOTIFY (`message/sipfrag`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sip::server::sipfrag_status(data);
    // The first line is the Content-Type, the rest the body.
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let ct = String::from_utf8_lossy(&data[..split]);
    let body = data.get(split + 1..).unwrap_or_default();
    if let Some(k) = sip::server::info_key(&ct, body) {
        assert!(matches!(k, '0'..='9' | '*' | '#' | 'A'..='D'));
    }
});
