//! RTCP (RFC 3550 §6): sender and receiver reports, SDES CNAME and BYE, parsed from compound
//! packets and built for sending; and the receive-side statistics a report block carries
//! (§6.4.1, appendix A.3 and A.8). Malformed input is an error, never a panic.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpError {
    TooShort,
    NotVersion2,
    /// A packet's length field runs past the end of the datagram.
    Truncated,
    /// The first packet of a compound is neither SR nor RR (RFC 3550 §6.1).
    NotAReport,
}

impl std::fmt::Display for RtcpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RtcpError::TooShort => "shorter than an RTCP header",
            RtcpError::NotVersion2 => "not RTCP version 2",
            RtcpError::Truncated => "a length field runs past the end of the datagram",
            RtcpError::NotAReport => "a compound RTCP packet must start with SR or RR",
        })
    }
}

impl std::error::Error for RtcpError {}

pub const SR: u8 = 200;
pub const RR: u8 = 201;
pub const SDES: u8 = 202;
pub const BYE: u8 = 203;

/// One report block: how the sender of the report hears the stream `ssrc`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportBlock {
    pub ssrc: u32,
    /// Fraction of packets lost since the last report, in 1/256.
    pub fraction_lost: u8,
    /// Packets lost since the start (24-bit signed: duplicates can make it negative).
    pub cumulative_lost: i32,
    pub highest_seq: u32,
    /// Interarrival jitter in RTP timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP time of the last SR from `ssrc` (0: none yet).
    pub last_sr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub delay_since_last_sr: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SenderInfo {
    pub ntp: u64,
    pub rtp_ts: u32,
    pub packets: u32,
    pub octets: u32,
}

/// What one compound RTCP datagram said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compound {
    pub ssrc: u32,
    /// Present when the first packet is an SR.
    pub sender: Option<SenderInfo>,
    pub reports: Vec<ReportBlock>,
    pub cname: Option<String>,
    /// SSRCs that said goodbye.
    pub bye: Vec<u32>,
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

fn block(b: &[u8]) -> ReportBlock {
    let lost = u32_at(b, 4) & 0x00FF_FFFF;
    // Sign-extend 24 bits.
    let cumulative_lost = ((lost << 8) as i32) >> 8;
    ReportBlock {
        ssrc: u32_at(b, 0),
        fraction_lost: b[4],
        cumulative_lost,
        highest_seq: u32_at(b, 8),
        jitter: u32_at(b, 12),
        last_sr: u32_at(b, 16),
        delay_since_last_sr: u32_at(b, 20),
    }
}

/// Parse a compound RTCP datagram. Packets of types it does not know are skipped.
pub fn parse(d: &[u8]) -> Result<Compound, RtcpError> {
    let mut out = Compound::default();
    let mut off = 0;
    let mut first = true;
    while off < d.len() {
        let b = &d[off..];
        if b.len() < 4 {
            return Err(RtcpError::TooShort);
        }
        if b[0] >> 6 != 2 {
            return Err(RtcpError::NotVersion2);
        }
        let count = (b[0] & 0x1F) as usize;
        let pt = b[1];
        let len = (u16::from_be_bytes([b[2], b[3]]) as usize + 1) * 4;
        if len > b.len() {
            return Err(RtcpError::Truncated);
        }
        let p = &b[..len];
        if first && pt != SR && pt != RR {
            return Err(RtcpError::NotAReport);
        }
        first = false;
        match pt {
            SR | RR => {
                let head = if pt == SR { 28 } else { 8 };
                if p.len() < head + 24 * count {
                    return Err(RtcpError::Truncated);
                }
                if out.ssrc == 0 {
                    out.ssrc = u32_at(p, 4);
                }
                if pt == SR && out.sender.is_none() {
                    out.sender = Some(SenderInfo {
                        ntp: (u32_at(p, 8) as u64) << 32 | u32_at(p, 12) as u64,
                        rtp_ts: u32_at(p, 16),
                        packets: u32_at(p, 20),
                        octets: u32_at(p, 24),
                    });
                }
                for i in 0..count {
                    out.reports.push(block(&p[head + 24 * i..]));
                }
            }
            SDES => {
                // Chunks: SSRC, then items (type, length, text) up to a zero type, padded.
                let mut i = 4;
                for _ in 0..count {
                    if i + 4 > p.len() {
                        return Err(RtcpError::Truncated);
                    }
                    i += 4;
                    loop {
                        if i >= p.len() {
                            return Err(RtcpError::Truncated);
                        }
                        let kind = p[i];
                        if kind == 0 {
                            i = (i + 4) & !3;
                            break;
                        }
                        if i + 2 > p.len() || i + 2 + p[i + 1] as usize > p.len() {
                            return Err(RtcpError::Truncated);
                        }
                        let n = p[i + 1] as usize;
                        if kind == 1 && out.cname.is_none() {
                            out.cname = Some(String::from_utf8_lossy(&p[i + 2..i + 2 + n]).into());
                        }
                        i += 2 + n;
                    }
                }
            }
            BYE => {
                if p.len() < 4 + 4 * count {
                    return Err(RtcpError::Truncated);
                }
                for i in 0..count {
                    out.bye.push(u32_at(p, 4 + 4 * i));
                }
            }
            _ => {}
        }
        off += len;
    }
    Ok(out)
}

fn header(out: &mut Vec<u8>, count: usize, pt: u8, words_after: usize) {
    out.push(0x80 | count as u8);
    out.push(pt);
    out.extend_from_slice(&(words_after as u16).to_be_bytes());
}

/// Append an SR (when `sender` is given) or RR, with up to 31 report blocks.
pub fn write_report(
    out: &mut Vec<u8>,
    ssrc: u32,
    sender: Option<&SenderInfo>,
    reports: &[ReportBlock],
) {
    let reports = &reports[..reports.len().min(31)];
    let body = 4 + if sender.is_some() { 20 } else { 0 } + 24 * reports.len();
    header(
        out,
        reports.len(),
        if sender.is_some() { SR } else { RR },
        body / 4,
    );
    out.extend_from_slice(&ssrc.to_be_bytes());
    if let Some(s) = sender {
        out.extend_from_slice(&s.ntp.to_be_bytes());
        out.extend_from_slice(&s.rtp_ts.to_be_bytes());
        out.extend_from_slice(&s.packets.to_be_bytes());
        out.extend_from_slice(&s.octets.to_be_bytes());
    }
    for r in reports {
        out.extend_from_slice(&r.ssrc.to_be_bytes());
        let lost = (r.cumulative_lost.clamp(-0x80_0000, 0x7F_FFFF) as u32) & 0x00FF_FFFF;
        out.extend_from_slice(&((r.fraction_lost as u32) << 24 | lost).to_be_bytes());
        out.extend_from_slice(&r.highest_seq.to_be_bytes());
        out.extend_from_slice(&r.jitter.to_be_bytes());
        out.extend_from_slice(&r.last_sr.to_be_bytes());
        out.extend_from_slice(&r.delay_since_last_sr.to_be_bytes());
    }
}

/// Append an SDES with one chunk: `ssrc` and its CNAME (at most 255 bytes).
pub fn write_sdes(out: &mut Vec<u8>, ssrc: u32, cname: &str) {
    let name = &cname.as_bytes()[..cname.len().min(255)];
    // SSRC + type + length + text + at least one zero byte, padded to 32 bits.
    let chunk = (4 + 2 + name.len() + 1).div_ceil(4) * 4;
    header(out, 1, SDES, chunk / 4);
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.push(1);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    let pad = chunk - (4 + 2 + name.len());
    out.extend(std::iter::repeat_n(0, pad));
}

/// Append a BYE for `ssrc`.
pub fn write_bye(out: &mut Vec<u8>, ssrc: u32) {
    header(out, 1, BYE, 1);
    out.extend_from_slice(&ssrc.to_be_bytes());
}

/// Receive statistics of one incoming stream (RFC 3550 appendix A.3 and A.8).
#[derive(Debug, Clone, Default)]
pub struct Reception {
    started: bool,
    ssrc: u32,
    base_seq: u32,
    max_seq: u16,
    cycles: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    transit: Option<i64>,
    /// Interarrival jitter, scaled by 16 (A.8).
    jitter16: u64,
    /// Middle 32 bits of the last SR's NTP time, and when it arrived (ms, caller's clock).
    last_sr: Option<(u32, u64)>,
}

impl Reception {
    /// An RTP packet of the stream arrived; `arrival` in RTP timestamp units.
    pub fn packet(&mut self, ssrc: u32, seq: u16, ts: u32, arrival: u64) {
        if !self.started || ssrc != self.ssrc {
            *self = Reception {
                started: true,
                ssrc,
                base_seq: seq as u32,
                max_seq: seq,
                last_sr: self.last_sr.filter(|_| ssrc == self.ssrc),
                ..Default::default()
            };
        }
        let delta = seq.wrapping_sub(self.max_seq);
        if delta != 0 && delta < 0x8000 {
            if seq < self.max_seq {
                self.cycles += 1 << 16;
            }
            self.max_seq = seq;
        }
        self.received += 1;
        let transit = arrival as i64 - ts as i64;
        if let Some(prev) = self.transit {
            let d = (transit - prev).unsigned_abs();
            // J += (|D| - J) / 16, kept scaled by 16.
            self.jitter16 = self.jitter16 + d - (self.jitter16 + 8) / 16;
        }
        self.transit = Some(transit);
    }

    /// Packets expected (from the sequence numbers) and received since the stream began.
    pub fn totals(&self) -> (u64, u64) {
        if !self.started {
            return (0, 0);
        }
        let highest = self.cycles + self.max_seq as u32;
        let expected = highest.wrapping_sub(self.base_seq).wrapping_add(1);
        (expected as u64, self.received as u64)
    }

    /// An SR from the far end arrived at `now_ms`.
    pub fn sender_report(&mut self, ntp: u64, now_ms: u64) {
        self.last_sr = Some(((ntp >> 16) as u32, now_ms));
    }

    /// The report block for now (and start the next interval), if anything was received.
    pub fn report(&mut self, now_ms: u64) -> Option<ReportBlock> {
        if !self.started {
            return None;
        }
        let highest = self.cycles + self.max_seq as u32;
        let expected = highest.wrapping_sub(self.base_seq).wrapping_add(1);
        let lost = expected as i64 - self.received as i64;
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        let received_interval = self.received.wrapping_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval as i64).min(255) as u8
        };
        let (last_sr, delay_since_last_sr) = match self.last_sr {
            Some((lsr, at)) => (lsr, (now_ms.saturating_sub(at) * 65536 / 1000) as u32),
            None => (0, 0),
        };
        Some(ReportBlock {
            ssrc: self.ssrc,
            fraction_lost,
            cumulative_lost: lost.clamp(-0x80_0000, 0x7F_FFFF) as i32,
            highest_seq: highest,
            jitter: (self.jitter16 / 16) as u32,
            last_sr,
            delay_since_last_sr,
        })
    }
}

/// NTP time (RFC 5905: seconds since 1900 in the high 32 bits) for a Unix time in ms.
pub fn ntp_from_unix_ms(ms: u64) -> u64 {
    const EPOCH_OFFSET: u64 = 2_208_988_800;
    let secs = ms / 1000 + EPOCH_OFFSET;
    let frac = ((ms % 1000) << 32) / 1000;
    secs << 32 | frac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compound_sr_sdes_bye_round_trips() {
        let sender = SenderInfo {
            ntp: ntp_from_unix_ms(1_700_000_000_500),
            rtp_ts: 160_000,
            packets: 1000,
            octets: 160_000,
        };
        let rb = ReportBlock {
            ssrc: 0xAABB_CCDD,
            fraction_lost: 12,
            cumulative_lost: -3,
            highest_seq: 70_000,
            jitter: 45,
            last_sr: 0x1234_5678,
            delay_since_last_sr: 65536,
        };
        let mut d = vec![];
        write_report(&mut d, 42, Some(&sender), &[rb]);
        write_sdes(&mut d, 42, "ringside@example");
        write_bye(&mut d, 42);
        assert_eq!(d.len() % 4, 0);
        let c = parse(&d).unwrap();
        assert_eq!(c.ssrc, 42);
        assert_eq!(c.sender, Some(sender));
        assert_eq!(c.reports, vec![rb]);
        assert_eq!(c.cname.as_deref(), Some("ringside@example"));
        assert_eq!(c.bye, vec![42]);
        assert!(crate::rtp::is_rtcp(&d), "demultiplexes as RTCP");
    }

    #[test]
    fn a_receiver_report_with_no_blocks_parses() {
        let mut d = vec![];
        write_report(&mut d, 7, None, &[]);
        assert_eq!(d.len(), 8);
        let c = parse(&d).unwrap();
        assert_eq!((c.ssrc, c.sender, c.reports.len()), (7, None, 0));
    }

    #[test]
    fn malformed_datagrams_are_errors() {
        let mut d = vec![];
        write_report(&mut d, 7, None, &[ReportBlock::default()]);
        assert_eq!(parse(&d[..d.len() - 4]), Err(RtcpError::Truncated));
        assert_eq!(parse(&d[..3]), Err(RtcpError::TooShort));
        let mut v1 = d.clone();
        v1[0] = 0x41;
        assert_eq!(parse(&v1), Err(RtcpError::NotVersion2));
        let mut bye_first = vec![];
        write_bye(&mut bye_first, 1);
        assert_eq!(parse(&bye_first), Err(RtcpError::NotAReport));
        // A count that claims more blocks than the length holds.
        let mut lie = d.clone();
        lie[0] = 0x80 | 5;
        assert_eq!(parse(&lie), Err(RtcpError::Truncated));
        // An SDES item longer than its packet.
        let mut s = vec![];
        write_report(&mut s, 7, None, &[]);
        write_sdes(&mut s, 7, "abc");
        let n = s.len();
        s[n - 8 + 1] = 200;
        assert_eq!(parse(&s), Err(RtcpError::Truncated));
    }

    #[test]
    fn reception_counts_loss_wraparound_and_jitter() {
        let mut r = Reception::default();
        // 100 packets from seq 65500 (wrapping), every 10th lost, 160 samples apart,
        // arriving with ±40 samples of jitter.
        let mut sent = 0;
        for i in 0u32..100 {
            let seq = 65500u16.wrapping_add(i as u16);
            let ts = 1000 + i * 160;
            sent += 1;
            if i % 10 == 5 {
                continue;
            }
            let wobble = if i % 2 == 0 { 40 } else { 0 };
            r.packet(9, seq, ts, 50_000 + (i as u64) * 160 + wobble);
        }
        let b = r.report(1000).unwrap();
        assert_eq!(sent, 100);
        assert_eq!(b.cumulative_lost, 10);
        assert_eq!(b.fraction_lost, (10 * 256 / 100) as u8);
        assert_eq!(b.highest_seq, 65_599, "one wrap: 65536 + 63");
        assert!((20..=45).contains(&b.jitter), "jitter {}", b.jitter);
        // The next interval without packets loses nothing more.
        let b2 = r.report(2000).unwrap();
        assert_eq!(b2.fraction_lost, 0);
        assert_eq!(b2.cumulative_lost, 10);
    }

    #[test]
    fn lsr_and_dlsr_come_from_the_last_sender_report() {
        let mut r = Reception::default();
        r.packet(9, 1, 0, 0);
        let ntp = ntp_from_unix_ms(1_700_000_000_000);
        r.sender_report(ntp, 10_000);
        let b = r.report(10_500).unwrap();
        assert_eq!(b.last_sr, (ntp >> 16) as u32);
        assert_eq!(b.delay_since_last_sr, 32768, "half a second in 1/65536 s");
    }
}
