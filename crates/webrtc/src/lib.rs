//! Browser legs: WebRTC through str0m (sans-IO) on one UDP socket, ICE-lite, DTLS-SRTP and
//! Opus at the rooms' 16 kHz. A leg's audio meets its room through a port, like a SIP leg's.

pub mod client;
pub mod endpoint;
pub mod opus;
pub mod port;

pub use endpoint::{LegEvent, WebRtc};
