//! The fuzz targets on stable, in every test run: each committed corpus input (fuzz/corpus/<target>)
//! and then a fixed budget of inputs made from them by a seeded mutator (bit flips, byte
//! changes, insertions, deletions, copies, splices) or drawn at random, through the same entry
//! points cargo-fuzz runs. A failing input is written to target/fuzz-failures/ and named.
//!
//! `RINGSIDE_FUZZ_INPUTS` sets the budget per target (default 50 000), `RINGSIDE_FUZZ_SEED` the
//! seed (default fixed, so a run is repeatable).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn byte(&mut self) -> u8 {
        const INTERESTING: [u8; 10] = [0, 1, 0x7f, 0x80, 0xff, b'\r', b'\n', b':', b' ', b'"'];
        if self.below(4) == 0 {
            INTERESTING[self.below(INTERESTING.len())]
        } else {
            self.next() as u8
        }
    }
}

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = root().join("fuzz/corpus").join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().is_file())
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read(e.path()).expect("corpus file"),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn mutate(rng: &mut Rng, seeds: &[(String, Vec<u8>)]) -> Vec<u8> {
    if seeds.is_empty() || rng.below(5) == 0 {
        let most = if rng.below(8) == 0 { 4096 } else { 256 };
        let len = rng.below(most);
        return (0..len).map(|_| rng.byte()).collect();
    }
    let mut d = seeds[rng.below(seeds.len())].1.clone();
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(d.len() + 1);
        match rng.below(7) {
            0 if !d.is_empty() => {
                let i = rng.below(d.len());
                d[i] ^= 1 << rng.below(8);
            }
            1 if !d.is_empty() => {
                let i = rng.below(d.len());
                d[i] = rng.byte();
            }
            2 => {
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
                d.splice(at..at, bytes);
            }
            3 if !d.is_empty() => {
                let end = (at + 1 + rng.below(32)).min(d.len());
                d.drain(at.min(end)..end);
            }
            4 if !d.is_empty() => {
                let from = rng.below(d.len());
                let end = (from + 1 + rng.below(64)).min(d.len());
                let copy = d[from..end].to_vec();
                d.splice(at..at, copy);
            }
            5 => {
                let other = &seeds[rng.below(seeds.len())].1;
                let from = rng.below(other.len());
                d.truncate(at);
                d.extend_from_slice(&other[from..]);
            }
            _ => d.truncate(at),
        }
    }
    d
}

fn check(target: &str, f: fn(&[u8]), input: &[u8], what: &str) {
    if catch_unwind(AssertUnwindSafe(|| f(input))).is_err() {
        let dir = root().join("target/fuzz-failures");
        std::fs::create_dir_all(&dir).expect("failure folder");
        let path = dir.join(format!(
            "{target}-{:016x}",
            input
                .iter()
                .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ *b as u64)
                    .wrapping_mul(0x100_0000_01b3))
        ));
        std::fs::write(&path, input).expect("failure file");
        panic!(
            "fuzz target {target} panicked on {what}; input saved to {} (replay: cargo fuzz run {target} {})",
            path.display(),
            path.display()
        );
    }
}

fn replay(target: &str) {
    let f = fuzzing::TARGETS
        .iter()
        .find(|(n, _)| *n == target)
        .expect("a target of that name")
        .1;
    let budget: usize = std::env::var("RINGSIDE_FUZZ_INPUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let seed: u64 = std::env::var("RINGSIDE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_f022);
    let seeds = corpus(target);
    for (name, input) in &seeds {
        check(target, f, input, &format!("corpus input {name}"));
    }
    let mut rng = Rng(seed
        ^ target
            .bytes()
            .fold(0u64, |h, b| h.rotate_left(5) ^ b as u64)
        | 1);
    for i in 0..budget {
        let input = mutate(&mut rng, &seeds);
        check(
            target,
            f,
            &input,
            &format!("generated input #{i} (seed {seed})"),
        );
    }
}

macro_rules! replayed {
    ($($t:ident),* $(,)?) => {
        $(#[test] fn $t() { replay(stringify!($t)); })*
        const REPLAYED: &[&str] = &[$(stringify!($t)),*];
    };
}

replayed!(
    graph_request,
    token,
    wav,
    sdp,
    rtp,
    rtcp,
    digest,
    contact,
    sip_message,
    dialog_bodies,
    webrtc_offer,
    stun_username,
    ct2_model,
    stream_message,
);

#[test]
fn every_cargo_fuzz_target_is_replayed_here() {
    let manifest =
        std::fs::read_to_string(root().join("fuzz/Cargo.toml")).expect("fuzz/Cargo.toml");
    let bins: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|n| *n != "ringside-fuzz")
        .collect();
    let known: Vec<&str> = fuzzing::TARGETS.iter().map(|(n, _)| *n).collect();
    for b in &bins {
        assert!(
            known.contains(b),
            "fuzz/Cargo.toml has a target {b} that fuzzing::TARGETS lacks"
        );
        assert!(REPLAYED.contains(b), "{b} is not replayed by this suite");
    }
    assert_eq!(
        bins.len(),
        known.len(),
        "fuzz/Cargo.toml {bins:?} vs fuzzing::TARGETS {known:?}"
    );
}
