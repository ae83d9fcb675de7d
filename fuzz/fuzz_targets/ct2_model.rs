//! The speech-to-text model files: CTranslate2's `model.bin` reader and Whisper's byte-level
//! vocabulary, fed arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::ct2_model(data));
