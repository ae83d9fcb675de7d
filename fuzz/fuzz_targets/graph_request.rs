//! Every Graph request parser behind the routing table, fed arbitrary method, path and body.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::graph_request(data));
