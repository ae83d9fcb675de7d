//! The access-token validator, fed arbitrary bearer strings.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::token(data));
