//! The mel filterbank Whisper was trained with: librosa's Slaney-style filters for 16 kHz,
//! a 400-point FFT and 80 bands (80 × 201 weights, row-major).

pub const BANDS: usize = 80;
pub const BINS: usize = 201;

fn hz_to_mel(f: f64) -> f64 {
    let (f_sp, min_log_hz) = (200.0 / 3.0, 1000.0);
    let min_log_mel = min_log_hz / f_sp;
    let log_step = 6.4f64.ln() / 27.0;
    if f >= min_log_hz {
        min_log_mel + (f / min_log_hz).ln() / log_step
    } else {
        f / f_sp
    }
}

fn mel_to_hz(m: f64) -> f64 {
    let (f_sp, min_log_hz) = (200.0 / 3.0, 1000.0);
    let min_log_mel = min_log_hz / f_sp;
    let log_step = 6.4f64.ln() / 27.0;
    if m >= min_log_mel {
        min_log_hz * (log_step * (m - min_log_mel)).exp()
    } else {
        f_sp * m
    }
}

pub fn filters() -> Vec<f32> {
    let (rate, n_fft) = (16_000.0f64, 400usize);
    let fft_hz: Vec<f64> = (0..BINS).map(|k| k as f64 * rate / n_fft as f64).collect();
    let top = hz_to_mel(rate / 2.0);
    let mel_hz: Vec<f64> = (0..BANDS + 2)
        .map(|i| mel_to_hz(top * i as f64 / (BANDS + 1) as f64))
        .collect();
    let mut w = vec![0f32; BANDS * BINS];
    for b in 0..BANDS {
        let (lo, mid, hi) = (mel_hz[b], mel_hz[b + 1], mel_hz[b + 2]);
        let norm = 2.0 / (hi - lo);
        for (k, &f) in fft_hz.iter().enumerate() {
            let up = (f - lo) / (mid - lo);
            let down = (hi - f) / (hi - mid);
            w[b * BINS + k] = (up.min(down).max(0.0) * norm) as f32;
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filterbank_matches_librosa_at_known_points() {
        let w = filters();
        assert_eq!(w.len(), BANDS * BINS);
        // librosa.filters.mel(sr=16000, n_fft=400, n_mels=80) at [0][1] and [79][197].
        let near = |a: f32, b: f32| (a - b).abs() < 1e-6;
        assert!(near(w[1], 0.024_862_594), "{}", w[1]);
        assert!(
            near(w[79 * BINS + 197], 0.001_346_277),
            "{}",
            w[79 * BINS + 197]
        );
        assert_eq!(w[10 * BINS + 12], 0.0, "outside band 10's triangle");
        // Every band has some weight; nothing above Nyquist.
        for b in 0..BANDS {
            assert!(
                w[b * BINS..(b + 1) * BINS].iter().any(|&x| x > 0.0),
                "band {b}"
            );
        }
    }
}
