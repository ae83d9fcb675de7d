//! SDP offer/answer on arbitrary bodies: an answer or a clear error, and any answer we write
//! must be one we can read back.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::sdp(data));
