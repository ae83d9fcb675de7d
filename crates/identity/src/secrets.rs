//! Application secrets: generated, stored salted and hashed, compared in constant time.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Application secrets are stored as `sha256$<salt>$<digest>`; they are random and long, so a
/// salted SHA-256 is enough (no password stretching needed).
pub fn hash_secret(secret: &str) -> String {
    use aws_lc_rs::rand::SecureRandom;
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut salt)
        .expect("system randomness");
    let salt = URL_SAFE_NO_PAD.encode(salt);
    format!("sha256${salt}${}", digest_secret(&salt, secret))
}

fn digest_secret(salt: &str, secret: &str) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(salt.as_bytes());
    ctx.update(b"$");
    ctx.update(secret.as_bytes());
    URL_SAFE_NO_PAD.encode(ctx.finish().as_ref())
}

pub fn verify_secret(stored: &str, given: &str) -> bool {
    let mut parts = stored.splitn(3, '$');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("sha256"), Some(salt), Some(digest)) => {
            constant_time_eq(digest_secret(salt, given).as_bytes(), digest.as_bytes())
        }
        _ => false,
    }
}

/// Compare secrets without leaking where they differ through timing.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A new random application secret (40 letters and digits).
pub fn new_secret() -> String {
    use rand::Rng;
    let mut r = rand::rng();
    (0..40)
        .map(|_| {
            char::from(
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                    [r.random_range(0..62)],
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_stored_salted_and_hashed() {
        let h = hash_secret("s3cret");
        assert!(h.starts_with("sha256$"));
        assert!(!h.contains("s3cret"));
        assert!(verify_secret(&h, "s3cret"));
        assert!(!verify_secret(&h, "s3cres"));
        assert_ne!(hash_secret("s3cret"), h, "salted");
        assert!(
            !verify_secret("s3cret", "s3cret"),
            "a plain value is not a hash"
        );
    }
}
