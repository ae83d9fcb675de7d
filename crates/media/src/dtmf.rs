//! In-band DTMF: a generator, and a detector built on a Goertzel filter bank with the checks
//! that keep speech and music from producing digits (ITU-T Q.24 style):
//! * level: both tones above an absolute floor;
//! * dominance: each tone clearly the strongest of its group;
//! * twist: column vs row energy within +4 / −8 dB;
//! * purity: the two tones carry most of the frame's energy, and their second harmonics
//!   little (speech has harmonics, DTMF does not);
//! * duration: a digit counts after two consecutive 20 ms blocks agree (≥ 40 ms, the Q.24
//!   minimum), and a new press needs a gap first.
//!
//! Works on 16 kHz mono PCM16 in blocks of 320 samples (20 ms: 50 Hz resolution, enough to
//! tell 697 from 770 Hz); feed any chunking. Because blocks do not overlap, presses of 60 ms
//! or more are always heard (phones send 70–100 ms); 40–60 ms ones depend on alignment —
//! overlapping blocks would close that gap.

use crate::RATE;

const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
const COLS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYS: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];
const BLOCK: usize = 320;

/// Row and column frequency of a key.
pub fn frequencies(key: char) -> Option<(f32, f32)> {
    let key = key.to_ascii_uppercase();
    for (r, row) in KEYS.iter().enumerate() {
        for (c, k) in row.iter().enumerate() {
            if *k == key {
                return Some((ROWS[r], COLS[c]));
            }
        }
    }
    None
}

/// PCM16 samples of `key` for `ms` milliseconds, each tone at `dbfs` (e.g. −10.0).
pub fn tone(key: char, ms: u32, dbfs: f32) -> Option<Vec<i16>> {
    let (lo, hi) = frequencies(key)?;
    let amp = 32767.0 * 10f32.powf(dbfs / 20.0);
    let n = (RATE * ms / 1000) as usize;
    Some(
        (0..n)
            .map(|i| {
                let t = i as f32 / RATE as f32;
                let v = amp
                    * ((2.0 * std::f32::consts::PI * lo * t).sin()
                        + (2.0 * std::f32::consts::PI * hi * t).sin());
                v.clamp(-32768.0, 32767.0) as i16
            })
            .collect(),
    )
}

/// Energy of one frequency over a block (Goertzel; normalised by the block length).
fn goertzel(block: &[f32], freq: f32) -> f32 {
    let w = 2.0 * std::f32::consts::PI * freq / RATE as f32;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    for &x in block {
        let s = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    power / (block.len() as f32 * block.len() as f32)
}

/// Goertzel coefficients (2·cos ω) of the eight DTMF frequencies, rows then columns.
fn bank_coefficients() -> &'static [f32; 8] {
    static C: std::sync::OnceLock<[f32; 8]> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        let mut c = [0f32; 8];
        for (i, f) in ROWS.iter().chain(COLS.iter()).enumerate() {
            c[i] = 2.0 * (2.0 * std::f32::consts::PI * f / RATE as f32).cos();
        }
        c
    })
}

/// The eight Goertzel filters in one pass over the block: the lanes are independent, so
/// the compiler turns the inner loop into vector instructions.
fn bank(block: &[f32]) -> [f32; 8] {
    let coeff = bank_coefficients();
    let (mut s1, mut s2) = ([0f32; 8], [0f32; 8]);
    for &x in block {
        for k in 0..8 {
            let s = x + coeff[k] * s1[k] - s2[k];
            s2[k] = s1[k];
            s1[k] = s;
        }
    }
    let n2 = (block.len() * block.len()) as f32;
    let mut p = [0f32; 8];
    for k in 0..8 {
        p[k] = (s1[k] * s1[k] + s2[k] * s2[k] - coeff[k] * s1[k] * s2[k]) / n2;
    }
    p
}

#[derive(Debug, Clone)]
pub struct DetectorConfig {
    /// Minimum level of each tone, dBFS.
    pub min_level_dbfs: f32,
    /// Maximum column-above-row ("reverse") and row-above-column ("normal") twist, dB.
    pub max_reverse_twist_db: f32,
    pub max_normal_twist_db: f32,
    /// How much stronger than the others in its group each tone must be, dB.
    pub dominance_db: f32,
    /// Share of the block's energy the two tones must hold.
    pub min_purity: f32,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            min_level_dbfs: -36.0,
            max_reverse_twist_db: 4.0,
            max_normal_twist_db: 8.0,
            dominance_db: 8.0,
            min_purity: 0.6,
        }
    }
}

/// Streaming detector: `push` audio, get the digits whose presses began in it.
pub struct DtmfDetector {
    cfg: DetectorConfig,
    pending: Vec<f32>,
    /// What the last block showed, and whether the current press was already reported.
    last: Option<char>,
    reported: bool,
}

impl Default for DtmfDetector {
    fn default() -> Self {
        DtmfDetector::new(DetectorConfig::default())
    }
}

impl DtmfDetector {
    pub fn new(cfg: DetectorConfig) -> DtmfDetector {
        DtmfDetector {
            cfg,
            pending: Vec::with_capacity(BLOCK),
            last: None,
            reported: false,
        }
    }

    pub fn push(&mut self, samples: &[i16]) -> Vec<char> {
        let mut out = vec![];
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (BLOCK - self.pending.len()).min(rest.len());
            self.pending
                .extend(rest[..take].iter().map(|&s| s as f32 / 32768.0));
            rest = &rest[take..];
            if self.pending.len() < BLOCK {
                break;
            }
            let seen = self.classify(&self.pending);
            self.pending.clear();
            match (seen, self.last) {
                // Two blocks agree: a press, reported once.
                (Some(k), Some(prev)) if k == prev && !self.reported => {
                    out.push(k);
                    self.reported = true;
                }
                (Some(k), Some(prev)) if k == prev => {}
                _ => self.reported = false,
            }
            self.last = seen;
        }
        out
    }

    /// The key one 20 ms block holds, if it passes every check.
    fn classify(&self, block: &[f32]) -> Option<char> {
        // A sine of amplitude A gives a Goertzel power of A²/4 with this normalisation.
        let floor = 10f32.powf(self.cfg.min_level_dbfs / 10.0) / 4.0;
        // Energy gate: two tones at the floor hold a mean square of 4 × floor; anything much
        // quieter (silence, most of a call) skips the filter bank.
        let total: f32 = block.iter().map(|x| x * x).sum::<f32>() / block.len() as f32;
        if total < 2.0 * floor {
            return None;
        }
        let powers = bank(block);
        let (rows, cols) = powers.split_at(4);
        let (r, &row) = rows.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1))?;
        let (c, &col) = cols.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1))?;
        if row < floor || col < floor {
            return None;
        }
        let dom = 10f32.powf(self.cfg.dominance_db / 10.0);
        if rows
            .iter()
            .enumerate()
            .any(|(i, &e)| i != r && e * dom > row)
            || cols
                .iter()
                .enumerate()
                .any(|(i, &e)| i != c && e * dom > col)
        {
            return None;
        }
        let twist_db = 10.0 * (col / row).log10();
        if twist_db > self.cfg.max_reverse_twist_db || -twist_db > self.cfg.max_normal_twist_db {
            return None;
        }
        // Purity: the block's energy (mean square) is mostly the two tones (A²/2 each = 2 × power).
        if 2.0 * (row + col) < self.cfg.min_purity * total {
            return None;
        }
        // Harmonics: speech and music carry energy at twice their fundamentals.
        let h = goertzel(block, 2.0 * ROWS[r]) + goertzel(block, 2.0 * COLS[c]);
        if h * 10.0 > row + col {
            return None;
        }
        Some(KEYS[r][c])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic noise (xorshift), uniform in ±amp.
    fn noise(n: usize, amp: f32, seed: u64) -> Vec<i16> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ((x % 20001) as f32 / 10000.0 - 1.0) * amp
            })
            .map(|v| v as i16)
            .collect()
    }

    fn silence(ms: u32) -> Vec<i16> {
        vec![0; (RATE * ms / 1000) as usize]
    }

    fn press_all(keys: &str, dbfs: f32, on_ms: u32, off_ms: u32) -> Vec<i16> {
        let mut s = silence(30);
        for k in keys.chars() {
            s.extend(tone(k, on_ms, dbfs).unwrap());
            s.extend(silence(off_ms));
        }
        s
    }

    fn detect(samples: &[i16], chunk: usize) -> String {
        let mut d = DtmfDetector::default();
        samples.chunks(chunk).flat_map(|c| d.push(c)).collect()
    }

    #[test]
    fn every_key_is_heard_once_at_several_levels() {
        let keys = "123A456B789C*0#D";
        // −7 dBFS per tone is the loudest pair that does not clip.
        for dbfs in [-7.0, -10.0, -20.0, -30.0] {
            let audio = press_all(keys, dbfs, 80, 60);
            assert_eq!(detect(&audio, 320), keys, "at {dbfs} dBFS");
        }
    }

    #[test]
    fn chunking_does_not_matter() {
        let audio = press_all("159#", -12.0, 60, 50);
        for chunk in [1, 7, 160, 320, 333, 4000] {
            assert_eq!(detect(&audio, chunk), "159#", "chunks of {chunk}");
        }
    }

    #[test]
    fn keys_survive_noise_at_15_db_snr() {
        // Each tone at −16 dBFS; uniform noise ±0.045 ≈ −31 dBFS RMS.
        let clean = press_all("8675309", -16.0, 80, 60);
        let n = noise(clean.len(), 0.045 * 32768.0, 7);
        let noisy: Vec<i16> = clean
            .iter()
            .zip(&n)
            .map(|(a, b)| a.saturating_add(*b))
            .collect();
        assert_eq!(detect(&noisy, 320), "8675309");
    }

    #[test]
    fn too_short_too_quiet_or_too_twisted_is_not_a_key() {
        assert_eq!(
            detect(&press_all("5", -10.0, 12, 50), 320),
            "",
            "12 ms is not a press"
        );
        assert_eq!(
            detect(&press_all("5", -45.0, 80, 50), 320),
            "",
            "below the level floor"
        );
        // Column 12 dB above row: too much reverse twist.
        let (lo, hi) = frequencies('5').unwrap();
        let twisted: Vec<i16> = (0..1600)
            .map(|i| {
                let t = i as f32 / RATE as f32;
                (32767.0
                    * (0.05 * (2.0 * std::f32::consts::PI * lo * t).sin()
                        + 0.2 * (2.0 * std::f32::consts::PI * hi * t).sin())) as i16
            })
            .collect();
        assert_eq!(detect(&twisted, 320), "");
        // One tone alone is not a key.
        let single: Vec<i16> = (0..1600)
            .map(|i| {
                (8000.0 * (2.0 * std::f32::consts::PI * 770.0 * i as f32 / RATE as f32).sin())
                    as i16
            })
            .collect();
        assert_eq!(detect(&single, 320), "");
    }

    #[test]
    fn a_long_press_is_one_key_and_a_gap_separates_repeats() {
        let mut audio = press_all("7", -10.0, 600, 60);
        audio.extend(press_all("77", -10.0, 70, 50));
        assert_eq!(detect(&audio, 320), "777");
    }

    #[test]
    fn speech_like_and_music_like_sound_gives_no_digits() {
        let mut audio = vec![];
        // Voiced "speech": a gliding fundamental with harmonics (like vowels), syllable-gated.
        for syllable in 0..40 {
            let f0 = 110.0 + 15.0 * (syllable % 7) as f32;
            for i in 0..(RATE as usize / 5) {
                let t = i as f32 / RATE as f32;
                let f = f0 * (1.0 + 0.05 * (6.0 * t).sin());
                let mut v = 0.0;
                for h in 1..=12 {
                    v += (1.0 / h as f32) * (2.0 * std::f32::consts::PI * f * h as f32 * t).sin();
                }
                audio.push((v * 4000.0) as i16);
            }
        }
        // "Music": chords of three notes with overtones, changing every 250 ms.
        let chords = [
            [261.6, 329.6, 392.0],
            [293.7, 370.0, 440.0],
            [349.2, 440.0, 523.3],
            [392.0, 493.9, 587.3],
            [698.5, 880.0, 1046.5],
            [783.99, 987.8, 1174.7],
        ];
        for round in 0..8 {
            for chord in chords {
                for i in 0..(RATE as usize / 4) {
                    let t = i as f32 / RATE as f32;
                    let mut v = 0.0;
                    for f in chord {
                        v += (2.0 * std::f32::consts::PI * f * t).sin()
                            + 0.4 * (2.0 * std::f32::consts::PI * 2.0 * f * t).sin();
                    }
                    audio.push((v * 3000.0 * (1.0 + 0.1 * round as f32)) as i16);
                }
            }
        }
        audio.extend(noise(RATE as usize * 3, 9000.0, 99));
        assert_eq!(detect(&audio, 320), "", "no false digits");
    }
}
