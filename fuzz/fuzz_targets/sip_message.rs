//! SIP requests from arbitrary datagrams: rsipstack's parser, then the fields ringside reads
//! from a REGISTER (To user, Authorization, Contact, Expires, Call-ID, CSeq).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::sip_message(data));
