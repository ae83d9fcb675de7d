//! Bodies of in-dialog requests: the key of an INFO (`application/dtmf-relay` or
//! `application/dtmf`) and the status line of a REFER's NOTIFY (`message/sipfrag`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::dialog_bodies(data));
