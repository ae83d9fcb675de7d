//! Browser legs: WebRTC through str0m (sans-IO) on one UDP socket, ICE-lite, DTLS-SRTP and
//! Opus or G.711 at the rooms' 16 kHz. A leg's audio meets its room through a port, like a SIP leg's.

pub mod client;
pub mod endpoint;
pub mod opus;
pub mod port;
pub mod voice;

pub use endpoint::{LegEvent, WebRtc};
