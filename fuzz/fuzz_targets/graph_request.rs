//! Every Graph request parser behind the routing table, fed arbitrary method, path and body.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let method = data[0];
    let split = (data[1] as usize).min(data.len() - 2);
    let (path, body) = data[2..].split_at(split);
    api::calls::fuzz_route(method, &String::from_utf8_lossy(path), body);
});
