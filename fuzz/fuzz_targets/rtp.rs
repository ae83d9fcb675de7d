//! RTP and telephone-event parsing on arbitrary datagrams; what parses re-serialises.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sip::rtp::is_rtcp(data);
    if let Ok(p) = sip::rtp::Rtp::parse(data) {
        let mut out = vec![];
        p.write(&mut out);
        let again = sip::rtp::Rtp::parse(&out).expect("our packet parses");
        assert_eq!((again.sequence, again.timestamp, again.payload), (p.sequence, p.timestamp, p.payload));
        if let Some(e) = sip::rtp::TelephoneEvent::parse(p.payload) {
            assert_eq!(sip::rtp::TelephoneEvent::parse(&e.write()), Some(e));
        }
    }
});
