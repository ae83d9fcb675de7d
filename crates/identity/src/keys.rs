//! Tokens shaped like Entra's: RS256 JWTs signed by a key ring kept in the data folder.
//! The JWKS lists the current and the previous key, so tokens and callback signatures made
//! before a rotation stay valid until they expire. The same ring signs the tokens ringside
//! puts on its callbacks (reference §8.3), so a bot validates both with one OIDC document.

use crate::claims::Claims;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

struct SigningKey {
    kid: String,
    created_ms: u64,
    pkcs8: Vec<u8>,
    enc: EncodingKey,
    dec: DecodingKey,
    n: String,
    e: String,
    /// A self-signed certificate for the key (DER), published as `x5c` with its SHA-1
    /// thumbprint `x5t`, as Entra publishes its keys.
    cert: Vec<u8>,
    x5t: String,
}

/// A self-signed certificate carrying the key, for clients that look keys up by `x5t`.
fn certificate_for(pkcs8: &[u8]) -> Result<Vec<u8>, String> {
    let key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &rustls::pki_types::PrivatePkcs8KeyDer::from(pkcs8.to_vec()),
        &rcgen::PKCS_RSA_SHA256,
    )
    .map_err(|e| format!("signing key certificate: {e}"))?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|e| format!("signing key certificate: {e}"))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ringside token signing");
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("signing key certificate: {e}"))?;
    Ok(cert.der().to_vec())
}

impl SigningKey {
    fn generate(now_ms: u64) -> Result<SigningKey, String> {
        let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .map_err(|_| "RSA key generation failed".to_string())?;
        let der = kp
            .as_der()
            .map_err(|_| "RSA key export failed".to_string())?;
        SigningKey::from_pkcs8(der.as_ref(), now_ms, None)
    }

    /// The key from its PKCS#8 DER, with its stored certificate or a new one.
    fn from_pkcs8(
        der: &[u8],
        created_ms: u64,
        cert: Option<Vec<u8>>,
    ) -> Result<SigningKey, String> {
        let kp = aws_lc_rs::rsa::KeyPair::from_pkcs8(der)
            .map_err(|e| format!("bad signing key: {e}"))?;
        let public = kp.public_key();
        let n_raw = public.modulus().big_endian_without_leading_zero().to_vec();
        let e_raw = public.exponent().big_endian_without_leading_zero().to_vec();
        let n = URL_SAFE_NO_PAD.encode(&n_raw);
        let e = URL_SAFE_NO_PAD.encode(&e_raw);
        let thumb = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &n_raw);
        let kid = URL_SAFE_NO_PAD.encode(&thumb.as_ref()[..12]);
        let body = STANDARD.encode(der);
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for chunk in body.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        let enc = EncodingKey::from_rsa_pem(pem.as_bytes())
            .map_err(|e| format!("bad signing key: {e}"))?;
        let dec = DecodingKey::from_rsa_components(&n, &e)
            .map_err(|e| format!("bad signing key: {e}"))?;
        let cert = match cert {
            Some(c) => c,
            None => certificate_for(der)?,
        };
        let x5t = URL_SAFE_NO_PAD.encode(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &cert).as_ref(),
        );
        Ok(SigningKey {
            kid,
            created_ms,
            pkcs8: der.to_vec(),
            enc,
            dec,
            n,
            e,
            cert,
            x5t,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct StoredKey {
    created_ms: u64,
    pkcs8: String,
    /// The key's certificate, base64 DER (keys saved before it existed get one on load).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cert: Option<String>,
}

/// The signing keys, newest first: keys not yet in use, the current key, the previous key.
///
/// A new key is published in the JWKS `activation_ms` before ringside signs with it, so bots
/// that cache the key set (PyJWKClient refreshes at most every 30 s; many cache 5 minutes)
/// already know it when the first token signed with it arrives.
pub struct KeyRing {
    keys: RwLock<Vec<SigningKey>>,
    path: Option<PathBuf>,
    activation_ms: std::sync::atomic::AtomicU64,
    /// Tokens whose signature was already verified: clients reuse a token for its whole
    /// lifetime, so each is verified once; expiry is still checked on every use, and a
    /// rotation empties the cache.
    verified: std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<Claims>>>,
}

const VERIFIED_CACHE: usize = 10_000;

impl KeyRing {
    /// Load `dir/signing-keys.json`, creating a first key if there is none.
    pub fn load_or_create(dir: &Path, now_ms: u64, activation_ms: u64) -> Result<KeyRing, String> {
        let path = dir.join("signing-keys.json");
        let mut keys = vec![];
        let mut certified = false;
        if let Ok(text) = std::fs::read_to_string(&path) {
            let stored: Vec<StoredKey> =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            for k in stored {
                let bad = |e: base64::DecodeError| format!("{}: {e}", path.display());
                let der = STANDARD.decode(k.pkcs8).map_err(bad)?;
                let cert = k
                    .cert
                    .map(|c| STANDARD.decode(c))
                    .transpose()
                    .map_err(bad)?;
                certified |= cert.is_none();
                keys.push(SigningKey::from_pkcs8(&der, k.created_ms, cert)?);
            }
        }
        let ring = KeyRing {
            keys: RwLock::new(keys),
            path: Some(path),
            activation_ms: std::sync::atomic::AtomicU64::new(activation_ms),
            verified: Default::default(),
        };
        if ring.keys.read().expect("keys").is_empty() {
            ring.rotate(now_ms)?;
        } else if certified {
            // Keep the certificates made now, so x5t stays the same across restarts.
            ring.save()?;
        }
        Ok(ring)
    }

    /// A ring that lives only in memory (tests, fuzzing).
    pub fn ephemeral() -> KeyRing {
        let k = SigningKey::generate(0).expect("RSA key generation");
        KeyRing {
            keys: RwLock::new(vec![k]),
            path: None,
            activation_ms: std::sync::atomic::AtomicU64::new(0),
            verified: Default::default(),
        }
    }

    /// Index of the key in use at `now`: the newest one published for `activation_ms`, or,
    /// when none has been yet, the oldest.
    fn active_index(&self, keys: &[SigningKey], now_ms: u64) -> usize {
        let act = self
            .activation_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        keys.iter()
            .position(|k| now_ms.saturating_sub(k.created_ms) >= act)
            .unwrap_or(keys.len().saturating_sub(1))
    }

    /// Keep pending keys, the key in use and one previous key; drop the rest.
    fn prune(&self, keys: &mut Vec<SigningKey>, now_ms: u64) {
        let active = self.active_index(keys, now_ms);
        keys.truncate(active + 2);
    }

    /// Add a new key. It is published at once and used once `activation_ms` has passed;
    /// the key it replaces stays valid until the next rotation.
    pub fn rotate(&self, now_ms: u64) -> Result<String, String> {
        let k = SigningKey::generate(now_ms)?;
        let kid = k.kid.clone();
        {
            let mut keys = self.keys.write().expect("keys");
            keys.insert(0, k);
            self.prune(&mut keys, now_ms);
        }
        self.verified.lock().expect("cache").clear();
        self.save()?;
        tracing::info!(target: "audit", event = "signing_key_rotated", kid = %kid);
        Ok(kid)
    }

    /// Rotate when the current key is older than `max_age_ms`.
    pub fn rotate_if_older(&self, now_ms: u64, max_age_ms: u64) -> Result<bool, String> {
        let due = self
            .keys
            .read()
            .expect("keys")
            .first()
            .is_none_or(|k| now_ms.saturating_sub(k.created_ms) >= max_age_ms);
        if due {
            self.rotate(now_ms)?;
        } else {
            let mut keys = self.keys.write().expect("keys");
            let before = keys.len();
            self.prune(&mut keys, now_ms);
            if keys.len() != before {
                drop(keys);
                self.verified.lock().expect("cache").clear();
                self.save()?;
            }
        }
        Ok(due)
    }

    /// The keys as they are saved (private keys included): what nodes of a cluster share.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.stored()).expect("keys serialize")
    }

    /// Take the keys another node published (see [`KeyRing::to_json`]); false when they are
    /// the ones in use already.
    pub fn replace_from_json(&self, text: &str) -> Result<bool, String> {
        if text == self.to_json() {
            return Ok(false);
        }
        let stored: Vec<StoredKey> =
            serde_json::from_str(text).map_err(|e| format!("shared signing keys: {e}"))?;
        let mut keys = vec![];
        for k in stored {
            let bad = |e: base64::DecodeError| format!("shared signing keys: {e}");
            let der = STANDARD.decode(k.pkcs8).map_err(bad)?;
            let cert = k
                .cert
                .map(|c| STANDARD.decode(c))
                .transpose()
                .map_err(bad)?;
            keys.push(SigningKey::from_pkcs8(&der, k.created_ms, cert)?);
        }
        if keys.is_empty() {
            return Err("shared signing keys: the list is empty".into());
        }
        *self.keys.write().expect("keys") = keys;
        self.verified.lock().expect("cache").clear();
        self.save()?;
        Ok(true)
    }

    fn stored(&self) -> Vec<StoredKey> {
        self.keys
            .read()
            .expect("keys")
            .iter()
            .map(|k| StoredKey {
                created_ms: k.created_ms,
                pkcs8: STANDARD.encode(&k.pkcs8),
                cert: Some(STANDARD.encode(&k.cert)),
            })
            .collect()
    }

    fn save(&self) -> Result<(), String> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let stored = self.stored();
        let tmp = path.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(&stored).expect("keys serialize"),
        )
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
        restrict(&tmp);
        std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn now_ms() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    /// The kid tokens are signed with now.
    pub fn current_kid(&self) -> String {
        let keys = self.keys.read().expect("keys");
        keys[self.active_index(&keys, Self::now_ms())].kid.clone()
    }

    pub fn sign<T: Serialize>(&self, claims: &T) -> String {
        let keys = self.keys.read().expect("keys");
        let k = &keys[self.active_index(&keys, Self::now_ms())];
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(k.kid.clone());
        encode(&h, claims, &k.enc).expect("RS256 signing with a valid key cannot fail")
    }

    /// Validate signature (by `kid`, current or previous key), `alg`, `exp` and `nbf`.
    pub fn validate(&self, token: &str) -> Result<std::sync::Arc<Claims>, String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        // Keyed by the whole token: a tampered header or payload never hits the cache.
        if let Some(c) = self.verified.lock().expect("cache").get(token) {
            if c.exp + 30 < now {
                return Err("The access token has expired.".into());
            }
            return Ok(std::sync::Arc::clone(c));
        }
        let c = std::sync::Arc::new(self.validate_as::<Claims>(token)?);
        let mut cache = self.verified.lock().expect("cache");
        if cache.len() >= VERIFIED_CACHE {
            cache.clear();
        }
        cache.insert(token.to_string(), std::sync::Arc::clone(&c));
        Ok(c)
    }

    pub fn validate_as<T: serde::de::DeserializeOwned>(&self, token: &str) -> Result<T, String> {
        let header =
            decode_header(token).map_err(|e| format!("The access token is malformed: {e}"))?;
        if header.alg != Algorithm::RS256 {
            return Err("The access token uses an unsupported algorithm.".into());
        }
        let keys = self.keys.read().expect("keys");
        let key = match &header.kid {
            Some(kid) => keys
                .iter()
                .find(|k| &k.kid == kid)
                .ok_or("The access token was signed by an unknown key.")?,
            None => return Err("The access token has no key id.".into()),
        };
        let mut v = Validation::new(Algorithm::RS256);
        v.validate_aud = false;
        v.validate_nbf = true;
        v.leeway = 30;
        v.set_required_spec_claims(&["exp", "nbf", "iss"]);
        decode::<T>(token, &key.dec, &v)
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
                _ => format!("The access token is malformed: {e}"),
            })
    }

    /// The JSON Web Key Set: current and previous public keys.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .keys
            .read()
            .expect("keys")
            .iter()
            .map(|k| json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": k.kid, "x5t": k.x5t, "n": k.n, "e": k.e, "x5c": [STANDARD.encode(&k.cert)]}))
            .collect();
        json!({ "keys": keys })
    }
}

#[cfg(unix)]
fn restrict(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

#[cfg(not(unix))]
fn restrict(_: &Path) {}

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
    fn tokens_validate_with_the_ring_that_signed_them_until_they_expire() {
        let ring = KeyRing::ephemeral();
        let far = 4_000_000_000;
        let t = ring.sign(&claims(far));
        assert_eq!(ring.validate(&t).unwrap().tid, "t");
        let other = KeyRing::ephemeral();
        assert!(other.validate(&t).unwrap_err().contains("unknown key"));
        assert!(
            ring.validate(&ring.sign(&claims(1)))
                .unwrap_err()
                .contains("expired")
        );
        assert!(ring.validate("not.a.jwt").is_err());
    }

    #[test]
    fn a_node_that_takes_another_nodes_keys_accepts_its_tokens() {
        let (a, b) = (KeyRing::ephemeral(), KeyRing::ephemeral());
        let t = a.sign(&claims(4_000_000_000));
        assert!(b.validate(&t).is_err());
        assert_eq!(b.replace_from_json(&a.to_json()), Ok(true));
        assert_eq!(b.validate(&t).unwrap().tid, "t");
        assert_eq!(b.current_kid(), a.current_kid());
        assert_eq!(b.replace_from_json(&a.to_json()), Ok(false), "nothing new");
        assert!(b.replace_from_json("[]").unwrap_err().contains("empty"));
        assert!(b.replace_from_json("{").is_err());
        assert_eq!(
            b.validate(&t).unwrap().tid,
            "t",
            "a bad list changes nothing"
        );
    }

    #[test]
    fn forged_algorithms_and_tampered_tokens_are_refused() {
        let ring = KeyRing::ephemeral();
        let kid = ring.current_kid();
        // alg: none, and HS256 "signed" with the public modulus as the secret.
        let none_header =
            URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","typ":"JWT","kid":"{kid}"}}"#));
        let body = URL_SAFE_NO_PAD.encode(r#"{"tid":"t","exp":4000000000,"nbf":0,"iss":"x"}"#);
        assert!(ring.validate(&format!("{none_header}.{body}.")).is_err());
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(kid);
        let hs = encode(
            &h,
            &claims(4_000_000_000),
            &EncodingKey::from_secret(b"guess"),
        )
        .unwrap();
        assert!(ring.validate(&hs).unwrap_err().contains("algorithm"));
        let good = ring.sign(&claims(4_000_000_000));
        let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(r#"{"iss":"i","aud":"a","tid":"evil","appid":"x","azp":"x","roles":[],"iat":0,"nbf":0,"exp":4000000000,"idtyp":"app"}"#);
        assert!(
            ring.validate(&parts.join("."))
                .unwrap_err()
                .contains("signature")
        );
    }

    #[test]
    fn rotation_keeps_the_previous_key_in_the_jwks_and_valid() {
        let dir = std::env::temp_dir().join(format!("ringside-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ring = KeyRing::load_or_create(&dir, 1, 0).unwrap();
        let before = ring.sign(&claims(4_000_000_000));
        let old_kid = ring.current_kid();
        assert!(!ring.rotate_if_older(2, 1000).unwrap());
        assert!(ring.rotate_if_older(5000, 1000).unwrap());
        assert_ne!(ring.current_kid(), old_kid);
        let jwks = ring.jwks();
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids.len(), 2);
        assert!(kids.contains(&old_kid.as_str()));
        assert!(
            ring.validate(&before).is_ok(),
            "tokens from before the rotation stay valid"
        );
        // The ring survives a restart.
        let again = KeyRing::load_or_create(&dir, 6000, 0).unwrap();
        assert!(again.validate(&before).is_ok());
        assert_eq!(again.current_kid(), ring.current_kid());
        ring.rotate(7000).unwrap();
        let third = KeyRing::load_or_create(&dir, 8000, 0).unwrap();
        assert!(
            third.validate(&before).is_err(),
            "two rotations retire a key"
        );
    }

    #[test]
    fn a_new_key_is_published_before_it_signs() {
        let dir = std::env::temp_dir().join(format!("ringside-keys-act-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let now = KeyRing::now_ms();
        let ring = KeyRing::load_or_create(&dir, now, 3_600_000).unwrap();
        let first = ring.current_kid();
        let next = ring.rotate(now).unwrap();
        assert_eq!(
            ring.current_kid(),
            first,
            "the new key waits for its activation time"
        );
        let kids: Vec<String> = ring.jwks()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect();
        assert!(
            kids.contains(&next) && kids.contains(&first),
            "both published: {kids:?}"
        );
        let t = ring.sign(&claims(4_000_000_000));
        assert_eq!(decode_header(&t).unwrap().kid.unwrap(), first);
        ring.rotate(now).unwrap();
        assert_eq!(
            ring.current_kid(),
            first,
            "a key in use is never dropped by a rotation"
        );
        assert_eq!(ring.jwks()["keys"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn published_keys_carry_a_certificate_and_its_thumbprint_which_survive_a_restart() {
        let dir = std::env::temp_dir().join(format!("ringside-x5t-{}", KeyRing::now_ms()));
        std::fs::create_dir_all(&dir).unwrap();
        let ring = KeyRing::load_or_create(&dir, 1, 0).unwrap();
        let jwks = ring.jwks();
        let k = &jwks["keys"][0];
        let der = STANDARD.decode(k["x5c"][0].as_str().unwrap()).unwrap();
        let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &der);
        assert_eq!(k["x5t"], URL_SAFE_NO_PAD.encode(sha1.as_ref()));
        let again = KeyRing::load_or_create(&dir, 2, 0).unwrap();
        assert_eq!(
            again.jwks()["keys"][0]["x5t"],
            k["x5t"],
            "the same certificate after a restart"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
