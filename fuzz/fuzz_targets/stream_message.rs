//! A media-streaming app's WebSocket messages (`AudioData`, `StopAudio`), fed arbitrary text.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::stream_message(data));
