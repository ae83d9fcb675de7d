//! A browser's SDP offer, answered by the WebRTC endpoint's session (str0m): an answer or an
//! error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::webrtc_offer(data));
