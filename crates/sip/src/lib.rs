//! ringside's SIP side (issue #4): real phones and trunks as call participants.
//!
//! Sans-IO pieces, each with unit tests and a fuzz target:
//! * [`sdp`]: RFC 3264 offer/answer for audio — PCMU, PCMA and telephone-event at 20 ms, hold
//!   by direction attributes, 488 when nothing matches;
//! * [`rtp`]: RTP packets (RFC 3550) and RFC 4733 telephone-events;
//! * [`registrar`]: users' contacts with expiry, RFC 3261 §10.3 rules, Contact parsing;
//! * [`session`]: one leg's RTP media — jitter buffer, G.711, 8↔16 kHz, symmetric RTP,
//!   RFC 4733 keys both ways;
//! * [`digest`]: HTTP digest authentication for the registrar (RFC 3261 §22, RFC 8760:
//!   MD5 and SHA-256), with stateless, expiring nonces.
//!
//! Transports, transactions and dialogs come from rsipstack behind ringside's leg interface
//! (see docs/sip.md), so the engine never sees a SIP type.

pub mod digest;
pub mod registrar;
pub mod rtcp;
pub mod rtp;
pub mod rtp_port;
pub mod sdp;
pub mod server;
pub mod session;
