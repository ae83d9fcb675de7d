//! The speech-to-text model files: CTranslate2's `model.bin` reader and Whisper's byte-level
//! vocabulary, fed arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = asr::ct2::parse(data) {
        for v in &f.vars {
            // Every tensor holds exactly what its shape and type say.
            let n: usize = v.dims.iter().product();
            assert_eq!(n * v.dtype.size(), v.data.len());
            let _ = v.scalar();
        }
    }
    let text = String::from_utf8_lossy(data);
    if let Ok(v) = asr::vocab::Vocab::parse(&text) {
        let _ = v.specials();
        let ids: Vec<u32> = data.iter().map(|&b| b as u32 * 7).collect();
        let _ = v.decode(&ids);
    }
});
