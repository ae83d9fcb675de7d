//! RTCP compound parsing on arbitrary datagrams, and the session's RTCP path: what parses
//! re-serialises to the same reports; nothing panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::rtcp(data));
