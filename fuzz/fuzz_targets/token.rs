//! The access-token validator, fed arbitrary bearer strings.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let keys = server::auth::TokenKeys::from_secret(b"fuzz-fuzz-fuzz-fuzz-fuzz-fuzz-32");
    let _ = keys.validate(&String::from_utf8_lossy(data));
});
