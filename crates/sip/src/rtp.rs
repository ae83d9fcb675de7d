//! RTP packets (RFC 3550 §5.1) and RFC 4733 telephone-events, parsed without copying and
//! built into a caller's buffer. Anything malformed is an error, never a panic: the RTP
//! port drops it and counts it.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtpError {
    TooShort,
    NotVersion2,
    /// CSRC list, extension or padding runs past the end.
    Truncated,
    BadPadding,
}

impl std::fmt::Display for RtpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RtpError::TooShort => "shorter than an RTP header",
            RtpError::NotVersion2 => "not RTP version 2",
            RtpError::Truncated => "header fields run past the end of the packet",
            RtpError::BadPadding => "padding length is larger than the payload",
        })
    }
}

impl std::error::Error for RtpError {}

/// A parsed RTP packet borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rtp<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

/// RTCP packet types occupy 200–204 in the second byte, which would read as marker + payload
/// type 72–76: RFC 5761 demultiplexing.
pub fn is_rtcp(packet: &[u8]) -> bool {
    packet.len() >= 2 && (200..=204).contains(&packet[1])
}

impl<'a> Rtp<'a> {
    pub fn parse(b: &'a [u8]) -> Result<Rtp<'a>, RtpError> {
        if b.len() < 12 {
            return Err(RtpError::TooShort);
        }
        if b[0] >> 6 != 2 {
            return Err(RtpError::NotVersion2);
        }
        let padding = b[0] & 0x20 != 0;
        let extension = b[0] & 0x10 != 0;
        let csrcs = (b[0] & 0x0F) as usize;
        let mut off = 12 + 4 * csrcs;
        if extension {
            if b.len() < off + 4 {
                return Err(RtpError::Truncated);
            }
            let words = u16::from_be_bytes([b[off + 2], b[off + 3]]) as usize;
            off += 4 + 4 * words;
        }
        if b.len() < off {
            return Err(RtpError::Truncated);
        }
        let mut end = b.len();
        if padding {
            let pad = b[end - 1] as usize;
            if pad == 0 || off + pad > end {
                return Err(RtpError::BadPadding);
            }
            end -= pad;
        }
        Ok(Rtp {
            marker: b[1] & 0x80 != 0,
            payload_type: b[1] & 0x7F,
            sequence: u16::from_be_bytes([b[2], b[3]]),
            timestamp: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            payload: &b[off..end],
        })
    }

    /// Append the packet (no CSRCs, extension or padding) to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(0x80);
        out.push((self.marker as u8) << 7 | (self.payload_type & 0x7F));
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(self.payload);
    }
}

/// An RFC 4733 §2.3 telephone-event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// 0–9, 10 = `*`, 11 = `#`, 12–15 = A–D (other events are not DTMF).
    pub event: u8,
    pub end: bool,
    /// −dBm0 of the tone, 0–63.
    pub volume: u8,
    /// In timestamp units since the event began.
    pub duration: u16,
}

impl TelephoneEvent {
    pub fn parse(p: &[u8]) -> Option<TelephoneEvent> {
        // Several events may be stacked (RFC 4733 §2.5.1.5); the first is what is pressed now.
        if p.len() < 4 {
            return None;
        }
        Some(TelephoneEvent {
            event: p[0],
            end: p[1] & 0x80 != 0,
            volume: p[1] & 0x3F,
            duration: u16::from_be_bytes([p[2], p[3]]),
        })
    }

    pub fn write(&self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (self.end as u8) << 7 | (self.volume & 0x3F),
            d[0],
            d[1],
        ]
    }

    /// The DTMF key of this event, if it is one.
    pub fn key(&self) -> Option<char> {
        Some(match self.event {
            0..=9 => (b'0' + self.event) as char,
            10 => '*',
            11 => '#',
            12..=15 => (b'A' + self.event - 12) as char,
            _ => return None,
        })
    }

    pub fn event_of(key: char) -> Option<u8> {
        Some(match key.to_ascii_uppercase() {
            c @ '0'..='9' => c as u8 - b'0',
            '*' => 10,
            '#' => 11,
            c @ 'A'..='D' => c as u8 - b'A' + 12,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_round_trips() {
        let p = Rtp {
            marker: true,
            payload_type: 0,
            sequence: 65535,
            timestamp: 0xDEADBEEF,
            ssrc: 0x01020304,
            payload: &[1, 2, 3],
        };
        let mut b = vec![];
        p.write(&mut b);
        assert_eq!(b.len(), 15);
        assert_eq!(Rtp::parse(&b), Ok(p));
        assert!(!is_rtcp(&b));
    }

    #[test]
    fn csrcs_extensions_and_padding_are_skipped() {
        let mut b = vec![0x80 | 0x20 | 0x10 | 0x01, 8, 0, 1, 0, 0, 0, 160, 0, 0, 0, 9];
        b.extend_from_slice(&[0, 0, 0, 7]); // one CSRC
        b.extend_from_slice(&[0xBE, 0xDE, 0, 1, 1, 2, 3, 4]); // extension, one word
        b.extend_from_slice(&[0xAA, 0xBB]); // payload
        b.extend_from_slice(&[0, 0, 3]); // padding of 3
        let p = Rtp::parse(&b).unwrap();
        assert_eq!((p.payload_type, p.sequence, p.timestamp), (8, 1, 160));
        assert_eq!(p.payload, &[0xAA, 0xBB]);
    }

    #[test]
    fn malformed_packets_are_errors() {
        assert_eq!(Rtp::parse(&[0x80; 11]), Err(RtpError::TooShort));
        assert_eq!(Rtp::parse(&[0x40; 12]), Err(RtpError::NotVersion2));
        let mut csrc = vec![0x8F, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        csrc.extend_from_slice(&[0; 8]);
        assert_eq!(Rtp::parse(&csrc), Err(RtpError::Truncated));
        let pad = [0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
        assert_eq!(Rtp::parse(&pad), Err(RtpError::BadPadding));
        assert!(is_rtcp(&[0x80, 200, 0, 6]));
    }

    #[test]
    fn telephone_events_carry_keys() {
        let e = TelephoneEvent {
            event: TelephoneEvent::event_of('#').unwrap(),
            end: true,
            volume: 10,
            duration: 800,
        };
        let w = e.write();
        assert_eq!(w, [11, 0x8A, 0x03, 0x20]);
        let back = TelephoneEvent::parse(&w).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.key(), Some('#'));
        for k in "0123456789*#ABCD".chars() {
            let ev = TelephoneEvent::event_of(k).unwrap();
            let t = TelephoneEvent {
                event: ev,
                end: false,
                volume: 0,
                duration: 0,
            };
            assert_eq!(t.key(), Some(k));
        }
        assert_eq!(TelephoneEvent::parse(&[1, 2, 3]), None);
        let flash = TelephoneEvent::parse(&[16, 0, 0, 0]).unwrap();
        assert_eq!(flash.key(), None, "hook flash is not a key");
    }
}
