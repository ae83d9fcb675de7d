//! The access-token validator, fed arbitrary bearer strings.
#![no_main]
use libfuzzer_sys::fuzz_target;

static KEYS: std::sync::LazyLock<server::auth::KeyRing> = std::sync::LazyLock::new(server::auth::KeyRing::ephemeral);

fuzz_target!(|data: &[u8]| {
    let _ = KEYS.validate(&String::from_utf8_lossy(data));
});
