//! A datagram as the WebRTC endpoint's reader sees it: the username of a STUN binding
//! request, or nothing, never a panic or a read past the end.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::stun_username(data));
