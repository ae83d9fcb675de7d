//! The access-token validator, fed arbitrary bearer strings.
#![no_main]
use libfuzzer_sys::fuzz_target;

static KEYS: std::sync::LazyLock<identity::KeyRing> = std::sync::LazyLock::new(identity::KeyRing::ephemeral);

fuzz_target!(|data: &[u8]| {
    let _ = KEYS.validate(&String::from_utf8_lossy(data));
});
