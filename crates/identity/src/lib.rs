//! Identity: who a caller is and what it may do, with no knowledge of HTTP.
//!
//! * [`keys`] — the RS256 signing key ring (rotation, JWKS), signing and validating tokens;
//! * [`claims`] — what access tokens and callback tokens say;
//! * [`assertion`] — certificate credentials (RFC 7523 client assertions);
//! * [`secrets`] — application secrets, hashed and compared in constant time;
//! * [`permissions`] — the roles each engine command needs (reference §5).

pub mod assertion;
pub mod claims;
pub mod keys;
pub mod permissions;
pub mod secrets;

pub use assertion::verify_client_assertion;
pub use claims::{CallbackClaims, Claims, UserClaims, UserTyp, audience_of_scope};
pub use keys::KeyRing;
pub use secrets::{constant_time_eq, hash_secret, new_secret, verify_secret};
