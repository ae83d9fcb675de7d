//! Opus at 16 kHz mono, the rooms' format: libopus encodes and decodes at that rate directly
//! (its RTP clock stays 48 kHz), so no resampling sits between a browser and a room.

use media::FRAME;
use opusic_sys as ffi;

/// RTP timestamp units (48 kHz) per 20 ms frame.
pub const RTP_PER_FRAME: u32 = 960;

pub struct Encoder(*mut ffi::OpusEncoder);

/// How ringside's encoders trade quality for CPU (`[webrtc] opus_complexity`, `opus_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// 0 (cheapest) to 10.
    pub complexity: u8,
    /// CELT only (`OPUS_APPLICATION_RESTRICTED_LOWDELAY`): cheaper to encode than SILK's
    /// speech model, at some cost in quality at low bitrates.
    pub low_delay: bool,
    /// Browsers are asked for DTX (`usedtx=1` in the answer): a silent or muted microphone
    /// then sends a comfort-noise packet every 400 ms rather than a packet every 20 ms.
    pub dtx: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            complexity: 1,
            low_delay: false,
            dtx: true,
        }
    }
}
pub struct Decoder(*mut ffi::OpusDecoder);

// The handles are used by one thread at a time (the endpoint's), never shared.
unsafe impl Send for Encoder {}
unsafe impl Send for Decoder {}

impl Encoder {
    pub fn new() -> Result<Encoder, String> {
        Encoder::for_application(ffi::OPUS_APPLICATION_VOIP)
    }

    /// An encoder as `t` asks: SILK speech (VoIP) or CELT only (low delay), and complexity.
    pub fn tuned(t: Tuning) -> Result<Encoder, String> {
        let mut e = Encoder::for_application(if t.low_delay {
            ffi::OPUS_APPLICATION_RESTRICTED_LOWDELAY
        } else {
            ffi::OPUS_APPLICATION_VOIP
        })?;
        e.set_complexity(t.complexity as i32)?;
        Ok(e)
    }

    fn for_application(app: i32) -> Result<Encoder, String> {
        let mut err = 0;
        // SAFETY: valid arguments; the result is checked before use.
        let e = unsafe { ffi::opus_encoder_create(16_000, 1, app, &mut err) };
        if e.is_null() || err != ffi::OPUS_OK {
            return Err(format!("opus encoder: error {err}"));
        }
        Ok(Encoder(e))
    }

    /// Trade quality for CPU: 0 (cheapest) to 10 (libopus's default is 9 or 10).
    pub fn set_complexity(&mut self, c: i32) -> Result<(), String> {
        // SAFETY: a live encoder and a request that takes one int.
        let r = unsafe { ffi::opus_encoder_ctl(self.0, ffi::OPUS_SET_COMPLEXITY_REQUEST, c) };
        if r != ffi::OPUS_OK {
            return Err(format!("opus complexity {c}: error {r}"));
        }
        Ok(())
    }

    /// Discontinuous transmission: after a short hangover, a silent input encodes as packets
    /// of two bytes or less (not to be sent) except a comfort-noise update every 400 ms.
    pub fn set_dtx(&mut self, on: bool) -> Result<(), String> {
        // SAFETY: a live encoder and a request that takes one int.
        let r = unsafe { ffi::opus_encoder_ctl(self.0, ffi::OPUS_SET_DTX_REQUEST, on as i32) };
        if r != ffi::OPUS_OK {
            return Err(format!("opus DTX: error {r}"));
        }
        Ok(())
    }

    /// One 20 ms frame into one Opus packet.
    pub fn encode(&mut self, frame: &[i16; FRAME]) -> Result<Vec<u8>, String> {
        let mut out = vec![0u8; 400];
        // SAFETY: the frame holds FRAME samples, `out` its stated length.
        let n = unsafe {
            ffi::opus_encode(
                self.0,
                frame.as_ptr(),
                FRAME as i32,
                out.as_mut_ptr(),
                out.len() as i32,
            )
        };
        if n < 0 {
            return Err(format!("opus encode: error {n}"));
        }
        out.truncate(n as usize);
        Ok(out)
    }
}

/// How many 16 kHz samples an Opus packet holds, read from its header (no decoding); `None`
/// for a packet libopus cannot read.
pub fn packet_samples(packet: &[u8]) -> Option<usize> {
    // SAFETY: `packet` is valid for its stated length; libopus only reads it.
    let n =
        unsafe { ffi::opus_packet_get_nb_samples(packet.as_ptr(), packet.len() as i32, 16_000) };
    (n > 0).then_some(n as usize)
}

impl Decoder {
    pub fn new() -> Result<Decoder, String> {
        let mut err = 0;
        // SAFETY: valid arguments; the result is checked before use.
        let d = unsafe { ffi::opus_decoder_create(16_000, 1, &mut err) };
        if d.is_null() || err != ffi::OPUS_OK {
            return Err(format!("opus decoder: error {err}"));
        }
        Ok(Decoder(d))
    }

    /// Forget the stream so far: the next packet is decoded as a stream's first (after
    /// packets that were not decoded, rather than continue from a state they never updated).
    pub fn reset(&mut self) {
        // SAFETY: a live decoder and a request that takes no argument.
        unsafe { ffi::opus_decoder_ctl(self.0, ffi::OPUS_RESET_STATE) };
    }

    /// One packet into 16 kHz samples (up to 120 ms). A packet libopus refuses is an error,
    /// never a crash.
    pub fn decode(&mut self, packet: &[u8]) -> Result<Vec<i16>, String> {
        let mut out = vec![0i16; FRAME * 6];
        // SAFETY: `packet` and `out` are valid for their stated lengths.
        let n = unsafe {
            ffi::opus_decode(
                self.0,
                packet.as_ptr(),
                packet.len() as i32,
                out.as_mut_ptr(),
                out.len() as i32,
                0,
            )
        };
        if n < 0 {
            return Err(format!("opus decode: error {n}"));
        }
        out.truncate(n as usize);
        Ok(out)
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        // SAFETY: created by opus_encoder_create, destroyed once.
        unsafe { ffi::opus_encoder_destroy(self.0) }
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: created by opus_decoder_create, destroyed once.
        unsafe { ffi::opus_decoder_destroy(self.0) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tone_survives_an_opus_round_trip() {
        let mut enc = Encoder::new().unwrap();
        let mut dec = Decoder::new().unwrap();
        let mut energy = 0f64;
        for f in 0..25 {
            let mut frame = [0i16; FRAME];
            for (i, s) in frame.iter_mut().enumerate() {
                let t = (f * FRAME + i) as f64 / 16_000.0;
                *s = ((t * 440.0 * std::f64::consts::TAU).sin() * 8000.0) as i16;
            }
            let out = dec.decode(&enc.encode(&frame).unwrap()).unwrap();
            assert_eq!(out.len(), FRAME);
            if f > 5 {
                energy += out.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / FRAME as f64;
            }
        }
        let rms = (energy / 19.0).sqrt();
        assert!(rms > 4000.0, "the tone comes back ({rms})");
        // Whatever a browser sends, decoding answers without crashing.
        let _ = dec.decode(&[0xff, 0xff, 0xff]);
    }
}
