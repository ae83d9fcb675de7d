//! The prompt decoder (WAV parsing, format checks, resampling), fed arbitrary files.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::wav(data));
