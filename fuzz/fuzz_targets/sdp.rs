//! SDP offer/answer on arbitrary bodies: an answer or a clear error, and any answer we write
//! must be one we can read back.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let local = sip::sdp::Local {
        addr: "127.0.0.1".parse().unwrap(),
        rtp_port: 40000,
        session_id: 1,
        version: 1,
    };
    if let Ok((answer, n)) = sip::sdp::answer(data, &local) {
        let back = sip::sdp::accept_answer(&answer).expect("our answer reads back");
        assert_eq!(back.codec, n.codec);
    }
    let _ = sip::sdp::accept_answer(data);
});
