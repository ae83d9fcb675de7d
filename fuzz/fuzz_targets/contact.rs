//! Contact headers of a REGISTER, and the registrar applying them: parsed or refused.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::contact(data));
