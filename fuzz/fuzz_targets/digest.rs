//! Digest credentials and nonces from arbitrary headers: parsed or refused, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::digest(data));
