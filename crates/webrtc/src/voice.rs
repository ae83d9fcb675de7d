//! The codecs a browser leg speaks, all to and from the rooms' 16 kHz: Opus (libopus works
//! at 16 kHz directly) and G.711 µ-law and A-law (8 kHz, resampled with the media crate's
//! half-band filters).

use crate::opus::{Decoder, Encoder};
use media::FRAME;
use media::g711::Law;
use media::rate::{Downsampler, Upsampler};
use str0m::format::{Codec, PayloadParams};
use str0m::media::Frequency;

pub enum Voice {
    Opus {
        enc: Encoder,
        dec: Decoder,
        /// Packets went by undecoded: the decoder starts afresh at the next one.
        stale: bool,
    },
    G711 {
        law: Law,
        up: Upsampler,
        down: Downsampler,
    },
}

impl Voice {
    /// A voice for a negotiated payload type, when it is one ringside speaks.
    pub fn for_params(p: &PayloadParams) -> Option<Voice> {
        Voice::tuned(p, None)
    }

    /// As [`Voice::for_params`], with ringside's own encoder tuning.
    pub fn tuned(p: &PayloadParams, tuning: Option<crate::opus::Tuning>) -> Option<Voice> {
        match p.spec().codec {
            Codec::Opus => Some(Voice::Opus {
                enc: match tuning {
                    Some(t) => Encoder::tuned(t).ok()?,
                    None => Encoder::new().ok()?,
                },
                dec: Decoder::new().ok()?,
                stale: false,
            }),
            Codec::PCMU => Some(Voice::g711(Law::Mu)),
            Codec::PCMA => Some(Voice::g711(Law::A)),
            _ => None,
        }
    }

    fn g711(law: Law) -> Voice {
        Voice::G711 {
            law,
            up: Upsampler::default(),
            down: Downsampler::default(),
        }
    }

    /// Which of the negotiated payload types to send with: Opus, else µ-law, else A-law.
    pub fn choose<'a>(params: impl Iterator<Item = &'a PayloadParams>) -> Option<PayloadParams> {
        params
            .filter_map(|p| Voice::rank(p).map(|r| (r, *p)))
            .min_by_key(|(r, _)| *r)
            .map(|(_, p)| p)
    }

    fn rank(p: &PayloadParams) -> Option<u8> {
        match p.spec().codec {
            Codec::Opus => Some(0),
            Codec::PCMU => Some(1),
            Codec::PCMA => Some(2),
            _ => None,
        }
    }

    /// The RTP clock and the RTP time of one 20 ms frame.
    pub fn clock(&self) -> (Frequency, u64) {
        match self {
            Voice::Opus { .. } => (Frequency::FORTY_EIGHT_KHZ, 960),
            Voice::G711 { .. } => (Frequency::EIGHT_KHZ, 160),
        }
    }

    /// For an Opus payload the sender marked digital silence (RFC 6464 level -127 dBov): the
    /// silence it holds, without decoding it (the next payload decoded starts the decoder
    /// afresh). `None` for other codecs, or a payload whose length cannot be read.
    pub fn skip_silence(&mut self, payload: &[u8]) -> Option<Vec<i16>> {
        match self {
            Voice::Opus { stale, .. } => {
                let n = crate::opus::packet_samples(payload)?;
                *stale = true;
                Some(vec![0; n])
            }
            Voice::G711 { .. } => None,
        }
    }

    /// A received payload as 16 kHz samples.
    pub fn decode(&mut self, payload: &[u8]) -> Result<Vec<i16>, String> {
        match self {
            Voice::Opus { dec, stale, .. } => {
                if std::mem::take(stale) {
                    // Resetting costs about as much as decoding: once, not per skipped packet.
                    dec.reset();
                }
                dec.decode(payload)
            }
            Voice::G711 { law, up, .. } => {
                let mut narrow = Vec::with_capacity(payload.len());
                law.decode(payload, &mut narrow);
                let mut wide = Vec::with_capacity(narrow.len() * 2);
                up.process(&narrow, &mut wide);
                Ok(wide)
            }
        }
    }

    /// One 20 ms frame as a payload.
    pub fn encode(&mut self, frame: &[i16; FRAME]) -> Result<Vec<u8>, String> {
        match self {
            Voice::Opus { enc, .. } => enc.encode(frame),
            Voice::G711 { law, down, .. } => {
                let mut narrow = Vec::with_capacity(FRAME / 2);
                down.process(frame, &mut narrow);
                let mut out = Vec::with_capacity(narrow.len());
                law.encode(&narrow, &mut out);
                Ok(out)
            }
        }
    }
}
