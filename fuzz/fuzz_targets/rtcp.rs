//! RTCP compound parsing on arbitrary datagrams, and the session's RTCP path: what parses
//! re-serialises to the same reports; nothing panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sip::rtcp;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = rtcp::parse(data) {
        let mut out = vec![];
        rtcp::write_report(&mut out, c.ssrc, c.sender.as_ref(), &c.reports[..c.reports.len().min(31)]);
        let again = rtcp::parse(&out).expect("our report parses");
        assert_eq!(again.sender, c.sender);
        assert_eq!(again.reports.len(), c.reports.len().min(31));
    }
    let mut s = sip::session::RtpSession::new(
        media::g711::Law::Mu,
        0,
        Some(101),
        "127.0.0.1:9".parse().unwrap(),
        1,
        1,
        1,
    );
    s.receive_rtcp(data, 1000);
    let _ = s.rtcp_report(1_700_000_000_000, 2000);
});
