//! A media-streaming app's WebSocket messages (`AudioData`, `StopAudio`), fed arbitrary text.
#![no_main]
use graph::streaming::{Incoming, parse_message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match parse_message(&text) {
        // Whatever is accepted as audio is whole samples, never more than the text carried.
        Ok(Incoming::Audio(pcm)) => assert!(pcm.len() * 2 <= text.len()),
        Ok(Incoming::Stop) => {}
        Err(e) => assert!(!e.is_empty()),
    }
});
