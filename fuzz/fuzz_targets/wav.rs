//! The prompt decoder (WAV parsing, format checks, resampling), fed arbitrary files.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(audio) = media::wav::decode(data) {
        // Whatever decodes is 16 kHz mono: re-encoding it must round-trip.
        let again = media::wav::decode(&media::wav::encode(&audio)).expect("own WAV decodes");
        assert_eq!(&again[..], &audio[..]);
    }
});
