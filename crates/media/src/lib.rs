//! ringside's media engine (issue #3), sans-IO: pure functions and state machines over
//! 16 kHz mono PCM16, the internal format (Graph prompts are 16 kHz mono PCM16). The thread
//! runtime that drives rooms on a 20 ms clock builds on these pieces.

pub mod dtmf;
pub mod mixer;
pub mod vad;

/// Internal sample rate.
pub const RATE: u32 = 16_000;
/// Samples in one 20 ms tick.
pub const FRAME: usize = 320;
