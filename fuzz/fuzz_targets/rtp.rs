//! RTP and telephone-event parsing on arbitrary datagrams; what parses re-serialises.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::rtp(data));
