//! OAuth2 client-credentials tokens (`POST /{tenant}/oauth2/v2.0/token`) and their validation.
//! Tokens are JWTs signed with a key kept in the data folder, carrying `tid`, `appid`/`azp`,
//! `roles` and `exp`, so a restart keeps issued tokens valid.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub tid: String,
    pub appid: String,
    pub azp: String,
    pub roles: Vec<String>,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub idtyp: String,
}

pub struct TokenKeys {
    enc: EncodingKey,
    dec: DecodingKey,
}

impl TokenKeys {
    /// Load the signing key from `dir/signing.key`, creating it on first start.
    pub fn load_or_create(dir: &Path) -> std::io::Result<TokenKeys> {
        let path = dir.join("signing.key");
        let key = match std::fs::read(&path) {
            Ok(k) if k.len() >= 32 => k,
            _ => {
                use rand::RngCore;
                let mut k = vec![0u8; 64];
                rand::rng().fill_bytes(&mut k);
                std::fs::write(&path, &k)?;
                k
            }
        };
        Ok(TokenKeys::from_secret(&key))
    }

    pub fn from_secret(key: &[u8]) -> TokenKeys {
        TokenKeys {
            enc: EncodingKey::from_secret(key),
            dec: DecodingKey::from_secret(key),
        }
    }

    pub fn issue(&self, claims: &Claims) -> String {
        encode(&Header::new(Algorithm::HS256), claims, &self.enc)
            .expect("HS256 signing cannot fail")
    }

    /// Validate signature, `exp` and `nbf`; the caller checks tenant and app.
    pub fn validate(&self, token: &str) -> Result<Claims, String> {
        let mut v = Validation::new(Algorithm::HS256);
        v.validate_aud = false;
        v.validate_nbf = true;
        v.leeway = 30;
        v.set_required_spec_claims(&["exp", "nbf", "iss"]);
        decode::<Claims>(token, &self.dec, &v)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    "The access token has expired.".to_string()
                }
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => {
                    "The access token is not yet valid.".to_string()
                }
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    "The access token signature is invalid.".to_string()
                }
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
                    "The access token uses an unsupported algorithm.".to_string()
                }
                _ => format!("The access token is malformed: {e}"),
            })
    }
}

/// The audience of a token requested for `scope` (`https://graph.microsoft.com/.default`).
pub fn audience_of_scope(scope: Option<&str>) -> String {
    let s = scope
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or("https://graph.microsoft.com/.default");
    s.trim_end_matches("/.default")
        .trim_end_matches(".default")
        .trim_end_matches('/')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            iss: "i".into(),
            aud: "a".into(),
            tid: "t".into(),
            appid: "x".into(),
            azp: "x".into(),
            roles: vec![],
            iat: 0,
            nbf: 0,
            exp,
            idtyp: "app".into(),
        }
    }

    #[test]
    fn tokens_validate_only_with_the_same_key_and_before_expiry() {
        let k = TokenKeys::from_secret(b"0123456789abcdef0123456789abcdef");
        let far = 4_000_000_000;
        let t = k.issue(&claims(far));
        assert_eq!(k.validate(&t).unwrap().tid, "t");
        let other = TokenKeys::from_secret(b"ffffffffffffffffffffffffffffffff");
        assert!(other.validate(&t).unwrap_err().contains("signature"));
        assert!(
            k.validate(&k.issue(&claims(1)))
                .unwrap_err()
                .contains("expired")
        );
        assert!(k.validate("not.a.jwt").is_err());
        // alg: none is refused.
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJ0aWQiOiJ0In0.";
        assert!(k.validate(none).is_err());
    }

    #[test]
    fn scope_becomes_audience() {
        assert_eq!(
            audience_of_scope(Some("https://graph.microsoft.com/.default")),
            "https://graph.microsoft.com"
        );
        assert_eq!(audience_of_scope(None), "https://graph.microsoft.com");
    }
}
