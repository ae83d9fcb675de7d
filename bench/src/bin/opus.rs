//! Opus cost per 20 ms frame at the rooms' 16 kHz, by mode and complexity: what a browser
//! leg's encoder and decoder cost ringside (`[webrtc] opus_mode`, `opus_complexity`).
//!
//!   cargo run --release -p ringside-bench --bin opus

use media::FRAME;
use std::time::Instant;
use webrtc::opus::{Decoder, Encoder, Tuning};

const FRAMES: usize = 1000;

fn main() {
    // Two tones, so the encoder has something to model.
    let frames: Vec<[i16; FRAME]> = (0..FRAMES)
        .map(|f| {
            let mut frame = [0i16; FRAME];
            for (i, s) in frame.iter_mut().enumerate() {
                let t = (f * FRAME + i) as f64 / 16_000.0;
                *s = ((t * 440.0 * std::f64::consts::TAU).sin() * 6000.0
                    + (t * 1234.0 * std::f64::consts::TAU).sin() * 3000.0)
                    as i16;
            }
            frame
        })
        .collect();
    println!("| mode | complexity | encode µs/frame | decode µs/frame |");
    println!("|---|---|---|---|");
    let voice = [10, 9, 7, 5, 3, 1, 0].map(|c| (false, c));
    let low = [5, 1, 0].map(|c| (true, c));
    for (low_delay, complexity) in voice.into_iter().chain(low) {
        let mut enc = Encoder::tuned(Tuning {
            complexity,
            low_delay,
            ..Default::default()
        })
        .expect("opus encoder");
        let mut dec = Decoder::new().expect("opus decoder");
        let t = Instant::now();
        let packets: Vec<Vec<u8>> = frames.iter().map(|f| enc.encode(f).unwrap()).collect();
        let e = t.elapsed().as_secs_f64() * 1e6 / FRAMES as f64;
        let t = Instant::now();
        for p in &packets {
            dec.decode(p).unwrap();
        }
        let d = t.elapsed().as_secs_f64() * 1e6 / FRAMES as f64;
        let mode = if low_delay { "low-delay" } else { "voice" };
        println!("| {mode} | {complexity} | {e:.1} | {d:.1} |");
    }
}
