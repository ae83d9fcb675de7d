//! Digest credentials and nonces from arbitrary headers: parsed or refused, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    if let Ok(c) = sip::digest::parse_authorization(&s) {
        let _ = sip::digest::verify(&c, "REGISTER", "0123456789abcdef0123456789abcdef");
    }
    let n = sip::digest::Nonces::new([1; 32], 300);
    let _ = n.check(&s, 1_000_000);
});
