//! Contact headers of a REGISTER, and the registrar applying them: parsed or refused.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let values: Vec<&str> = s.split('\n').collect();
    if let Ok(contacts) = sip::registrar::parse_contacts(&values) {
        let mut r = sip::registrar::Registrar::default();
        let _ = r.register(
            sip::registrar::Register {
                user: "u",
                contacts,
                expires: None,
                call_id: "c",
                cseq: 1,
                source: None,
            },
            0,
        );
    }
});
