//! G.711 µ-law (PCMU) and A-law (PCMA): 8 kHz, one byte per sample, as ITU-T G.711 defines
//! them. Decoding is a table lookup; encoding finds the segment of the sample.

use std::sync::OnceLock;

const BIAS: i32 = 0x84;
const CLIP: i32 = 32635;

/// One linear sample to µ-law.
pub fn ulaw_encode(pcm: i16) -> u8 {
    let mut s = pcm as i32;
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    let mut exp = 7;
    let mut mask = 0x4000;
    while exp > 0 && s & mask == 0 {
        exp -= 1;
        mask >>= 1;
    }
    let mantissa = (s >> (exp + 3)) & 0x0F;
    !((sign | (exp << 4) | mantissa) as u8)
}

fn ulaw_decode_slow(u: u8) -> i16 {
    let u = !u;
    let exp = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0F) as i32;
    let s = (((mantissa << 3) + BIAS) << exp) - BIAS;
    (if u & 0x80 != 0 { -s } else { s }) as i16
}

/// One linear sample to A-law.
pub fn alaw_encode(pcm: i16) -> u8 {
    const SEG_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let mut v = (pcm as i32) >> 3;
    let mask = if v >= 0 {
        0xD5
    } else {
        v = -v - 1;
        0x55
    };
    let Some(seg) = SEG_END.iter().position(|&end| v <= end) else {
        return 0x7F ^ mask;
    };
    let mut a = (seg as i32) << 4;
    a |= if seg < 2 {
        (v >> 1) & 0x0F
    } else {
        (v >> seg) & 0x0F
    };
    (a as u8) ^ mask
}

fn alaw_decode_slow(a: u8) -> i16 {
    let a = a ^ 0x55;
    let mut t = ((a & 0x0F) as i32) << 4;
    let seg = ((a & 0x70) >> 4) as i32;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

fn tables() -> &'static ([i16; 256], [i16; 256]) {
    static T: OnceLock<([i16; 256], [i16; 256])> = OnceLock::new();
    T.get_or_init(|| {
        let mut u = [0i16; 256];
        let mut a = [0i16; 256];
        for i in 0..256 {
            u[i] = ulaw_decode_slow(i as u8);
            a[i] = alaw_decode_slow(i as u8);
        }
        (u, a)
    })
}

/// Every 16-bit sample's code, per law (64 KB each, built on first use): encoding a frame is
/// then one lookup per sample.
fn encode_table(law: Law) -> &'static [u8] {
    static MU: OnceLock<Vec<u8>> = OnceLock::new();
    static A: OnceLock<Vec<u8>> = OnceLock::new();
    let (cell, f): (_, fn(i16) -> u8) = match law {
        Law::Mu => (&MU, ulaw_encode),
        Law::A => (&A, alaw_encode),
    };
    cell.get_or_init(|| (0..=u16::MAX).map(|i| f(i as i16)).collect())
}

pub fn ulaw_decode(u: u8) -> i16 {
    tables().0[u as usize]
}

pub fn alaw_decode(a: u8) -> i16 {
    tables().1[a as usize]
}

/// The two G.711 laws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    /// PCMU, RTP payload type 0.
    Mu,
    /// PCMA, RTP payload type 8.
    A,
}

impl Law {
    pub fn encode(self, pcm: &[i16], out: &mut Vec<u8>) {
        let t = encode_table(self);
        out.extend(pcm.iter().map(|&s| t[s as u16 as usize]));
    }
    /// The code of a zero sample.
    pub fn silence(self) -> u8 {
        encode_table(self)[0]
    }
    pub fn decode(self, bytes: &[u8], out: &mut Vec<i16>) {
        let t = match self {
            Law::Mu => &tables().0,
            Law::A => &tables().1,
        };
        out.extend(bytes.iter().map(|&b| t[b as usize]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_is_the_code_of_a_zero_sample() {
        for law in [Law::Mu, Law::A] {
            let mut out = vec![];
            law.encode(&[0], &mut out);
            assert_eq!(out, [law.silence()]);
        }
        assert_eq!(Law::Mu.silence(), 0xFF);
        assert_eq!(Law::A.silence(), 0xD5);
    }

    #[test]
    fn known_code_points() {
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xAA), 32256);
    }

    #[test]
    fn the_encoding_tables_agree_with_the_formula_for_every_sample() {
        let all: Vec<i16> = (i16::MIN..=i16::MAX).collect();
        for (law, f) in [
            (Law::Mu, ulaw_encode as fn(i16) -> u8),
            (Law::A, alaw_encode),
        ] {
            let mut enc = vec![];
            law.encode(&all, &mut enc);
            assert!(all.iter().zip(&enc).all(|(&s, &c)| f(s) == c), "{law:?}");
        }
    }

    #[test]
    fn every_code_decodes_and_re_encodes_to_itself() {
        for b in 0..=255u8 {
            // µ-law has two zeros (0x7F and 0xFF); both decode to 0, which encodes as 0xFF.
            if b != 0x7F {
                assert_eq!(ulaw_encode(ulaw_decode(b)), b, "µ-law {b:#x}");
            }
            assert_eq!(alaw_encode(alaw_decode(b)), b, "A-law {b:#x}");
        }
    }

    #[test]
    fn quantisation_error_is_within_half_a_step() {
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            for law in [Law::Mu, Law::A] {
                let mut enc = vec![];
                law.encode(&[s], &mut enc);
                let mut dec = vec![];
                law.decode(&enc, &mut dec);
                let err = (dec[0] as i32 - s as i32).abs();
                // Logarithmic: the step is about 1/16 of the value (1/32 error), never under 8.
                assert!(err <= (s as i32).abs() / 16 + 16, "{law:?} {s}: {}", dec[0]);
            }
        }
    }
}
