//! WAV in and out. Prompts arrive as WAV files of any PCM rate and channel count; they are
//! turned into the internal format (16 kHz mono PCM16) once, when fetched: channels are
//! averaged, other rates are resampled with rubato's FFT resampler (fixed ratio,
//! anti-aliased), and samples are scaled to 16 bits. Compressed or exotic encodings are
//! refused with a message that says what the file holds.

use crate::{Audio, RATE};
use std::io::Cursor;

/// The longest prompt accepted, after conversion (10 minutes).
pub const MAX_PROMPT_SECONDS: u64 = 600;

/// Decode a WAV file to 16 kHz mono PCM16.
pub fn decode(bytes: &[u8]) -> Result<Audio, String> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err("the file is not a WAV file (no RIFF/WAVE header)".into());
    }
    let mut r = hound::WavReader::new(Cursor::new(bytes)).map_err(|e| match e {
        hound::Error::Unsupported => {
            "unsupported WAV encoding (only PCM and 32-bit float are played)".to_string()
        }
        e => format!("the WAV file cannot be read: {e}"),
    })?;
    let spec = r.spec();
    if !(8000..=192_000).contains(&spec.sample_rate) || spec.channels == 0 || spec.channels > 8 {
        return Err(format!(
            "unsupported WAV format: {} Hz, {} channels",
            spec.sample_rate, spec.channels
        ));
    }
    let frames = r.duration() as u64;
    if frames == 0 {
        return Err("the WAV file holds no audio".into());
    }
    if frames / spec.sample_rate as u64 > MAX_PROMPT_SECONDS {
        return Err(format!(
            "the prompt is longer than {MAX_PROMPT_SECONDS} seconds"
        ));
    }
    let samples: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, 8 | 16 | 24 | 32) => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            r.samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
        }
        // Float samples may be out of range or not numbers at all: clamp, and NaN is silence
        // (the resampler's FFT cannot take NaN).
        (hound::SampleFormat::Float, 32) => r
            .samples::<f32>()
            .map(|s| {
                s.map(|v| {
                    if v.is_finite() {
                        v.clamp(-1.0, 1.0)
                    } else {
                        0.0
                    }
                })
            })
            .collect::<Result<_, _>>(),
        (f, b) => {
            return Err(format!(
                "unsupported WAV encoding: {b}-bit {f:?}; use 16-bit PCM"
            ));
        }
    }
    .map_err(|e| format!("the WAV file is truncated or corrupt: {e}"))?;
    let ch = spec.channels as usize;
    let mono: Vec<f32> = samples
        .chunks(ch)
        .map(|c| c.iter().sum::<f32>() / ch as f32)
        .collect();
    let mono = if spec.sample_rate == RATE {
        mono
    } else {
        resample(&mono, spec.sample_rate, RATE)?
    };
    if mono.is_empty() {
        return Err("the WAV file is too short to hold a single 16 kHz sample".into());
    }
    Ok(mono
        .iter()
        .map(|&x| (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect::<Vec<_>>()
        .into())
}

/// Resample mono audio from `from` Hz to `to` Hz; the output has the same duration.
pub fn resample(input: &[f32], from: u32, to: u32) -> Result<Vec<f32>, String> {
    use rubato::Resampler;
    const CHUNK: usize = 1024;
    let mut r = rubato::FftFixedIn::<f32>::new(from as usize, to as usize, CHUNK, 2, 1)
        .map_err(|e| format!("cannot resample {from} Hz to {to} Hz: {e}"))?;
    let want = (input.len() as u64 * to as u64 / from as u64) as usize;
    let delay = r.output_delay();
    let mut out = Vec::with_capacity(want + delay + CHUNK);
    let mut pos = 0;
    while pos + CHUNK <= input.len() {
        let o = r
            .process(&[&input[pos..pos + CHUNK]], None)
            .map_err(|e| e.to_string())?;
        out.extend_from_slice(&o[0]);
        pos += CHUNK;
    }
    if pos < input.len() {
        let o = r
            .process_partial(Some(&[&input[pos..]]), None)
            .map_err(|e| e.to_string())?;
        out.extend_from_slice(&o[0]);
    }
    // Flush the filter until the delayed tail is out.
    while out.len() < want + delay {
        let o = r
            .process_partial::<&[f32]>(None, None)
            .map_err(|e| e.to_string())?;
        if o[0].is_empty() {
            break;
        }
        out.extend_from_slice(&o[0]);
    }
    let end = (delay + want).min(out.len());
    Ok(out[delay.min(end)..end].to_vec())
}

/// A 16 kHz mono PCM16 WAV file holding `samples`.
pub fn encode(samples: &[i16]) -> Vec<u8> {
    let mut buf = Cursor::new(Vec::with_capacity(44 + samples.len() * 2));
    {
        let mut w = hound::WavWriter::new(&mut buf, spec()).expect("in-memory writer");
        let mut w16 = w.get_i16_writer(samples.len() as u32);
        for &s in samples {
            w16.write_sample(s);
        }
        w16.flush().expect("in-memory writer");
        w.finalize().expect("in-memory writer");
    }
    buf.into_inner()
}

/// The internal format as a WAV spec.
pub fn spec() -> hound::WavSpec {
    hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    }
}

/// Milliseconds of audio in `samples` at the internal rate.
pub fn duration_ms(samples: usize) -> u64 {
    samples as u64 * 1000 / RATE as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav_of(
        rate: u32,
        channels: u16,
        bits: u16,
        frames: usize,
        f: impl Fn(f32) -> f32,
    ) -> Vec<u8> {
        let mut buf = Cursor::new(Vec::new());
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::new(&mut buf, spec).unwrap();
        let full = (1i64 << (bits - 1)) as f32 - 1.0;
        for i in 0..frames {
            let t = i as f32 / rate as f32;
            for _ in 0..channels {
                w.write_sample((f(t) * full) as i32).unwrap();
            }
        }
        w.finalize().unwrap();
        buf.into_inner()
    }

    fn sine(freq: f32) -> impl Fn(f32) -> f32 {
        move |t| 0.5 * (2.0 * std::f32::consts::PI * freq * t).sin()
    }

    /// Dominant frequency by zero crossings.
    fn freq_of(s: &[i16]) -> f32 {
        let crossings = s.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        crossings as f32 / 2.0 / (s.len() as f32 / RATE as f32)
    }

    #[test]
    fn a_16k_mono_prompt_is_taken_as_is() {
        let a = decode(&wav_of(16_000, 1, 16, 16_000, sine(440.0))).unwrap();
        assert_eq!(a.len(), 16_000);
        assert!((freq_of(&a) - 440.0).abs() < 5.0);
    }

    #[test]
    fn other_rates_and_channels_are_resampled_keeping_pitch_and_length() {
        for (rate, ch, bits) in [
            (8_000, 1, 16),
            (44_100, 2, 16),
            (48_000, 2, 24),
            (22_050, 1, 8),
        ] {
            let a = decode(&wav_of(rate, ch, bits, rate as usize * 2, sine(440.0))).unwrap();
            let len_ms = duration_ms(a.len());
            assert!((1990..=2010).contains(&len_ms), "{rate} Hz: {len_ms} ms");
            let f = freq_of(&a[1600..a.len() - 1600]);
            assert!((f - 440.0).abs() < 8.0, "{rate} Hz x{ch}: {f} Hz");
            let peak = a.iter().map(|s| s.unsigned_abs()).max().unwrap();
            assert!(
                (14_000..=18_000).contains(&peak),
                "{rate} Hz: level kept ({peak})"
            );
        }
    }

    #[test]
    fn resampling_removes_what_the_new_rate_cannot_carry() {
        // A 12 kHz tone at 48 kHz has no place below 8 kHz Nyquist: it must not alias.
        let a = decode(&wav_of(48_000, 1, 16, 48_000, sine(12_000.0))).unwrap();
        let peak = a[1600..a.len() - 1600]
            .iter()
            .map(|s| s.unsigned_abs())
            .max()
            .unwrap();
        assert!(peak < 200, "aliased energy {peak}");
    }

    #[test]
    fn what_is_not_pcm_wav_is_refused_with_a_reason() {
        assert!(
            decode(b"<html>404</html>")
                .unwrap_err()
                .contains("not a WAV")
        );
        assert!(
            decode(&wav_of(16_000, 1, 16, 0, sine(1.0)))
                .unwrap_err()
                .contains("no audio")
        );
        let mut mulaw = wav_of(16_000, 1, 16, 100, sine(440.0));
        mulaw[20] = 7; // format tag 7 = mu-law
        assert!(decode(&mulaw).unwrap_err().contains("unsupported"));
        // Two frames at 44.1 kHz are no sample at 16 kHz (found by the fuzzer).
        assert!(decode(&wav_of(44_100, 2, 16, 2, sine(440.0))).is_err());
        let mut cut = wav_of(16_000, 1, 16, 1000, sine(440.0));
        cut.truncate(30);
        assert!(decode(&cut).is_err());
    }

    #[test]
    fn float_samples_that_are_not_numbers_become_silence() {
        let mut buf = Cursor::new(Vec::new());
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 44_100,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut w = hound::WavWriter::new(&mut buf, spec).unwrap();
        for i in 0..4410 {
            w.write_sample([f32::NAN, f32::INFINITY, 7.5, 0.25][i % 4])
                .unwrap();
        }
        w.finalize().unwrap();
        let a = decode(&buf.into_inner()).expect("decodes (found by the fuzzer: it used to panic)");
        assert_eq!(duration_ms(a.len()), 100);
    }

    #[test]
    fn encode_round_trips() {
        let s: Vec<i16> = (0..1000).map(|i| (i * 7 % 2000 - 1000) as i16).collect();
        assert_eq!(&decode(&encode(&s)).unwrap()[..], &s[..]);
    }
}
