//! Digest authentication for the registrar and incoming calls (RFC 3261 §22.4, RFC 2617
//! `qop=auth`, RFC 8760 algorithms MD5 and SHA-256).
//!
//! Passwords are never kept: the directory stores HA1 = H(user:realm:password) per algorithm.
//! Nonces are stateless — a timestamp and a keyed hash of it — so they need no table, survive
//! nothing they should not, and expire: an expired one is answered with `stale=true`, and the
//! phone retries without asking its user. Responses are compared in constant time.

use md5::Md5;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    pub fn parse(s: &str) -> Option<Algorithm> {
        match s.trim().to_ascii_uppercase().as_str() {
            "MD5" => Some(Algorithm::Md5),
            // RFC 8760 spells it SHA-256; some stacks write SHA256.
            "SHA-256" | "SHA256" => Some(Algorithm::Sha256),
            _ => None,
        }
    }

    fn hash(self, data: &str) -> String {
        match self {
            Algorithm::Md5 => hex(&Md5::digest(data.as_bytes())),
            Algorithm::Sha256 => hex(&Sha256::digest(data.as_bytes())),
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// HA1 = H(username ":" realm ":" password), as the directory stores it.
pub fn ha1(alg: Algorithm, username: &str, realm: &str, password: &str) -> String {
    alg.hash(&format!("{username}:{realm}:{password}"))
}

/// Issues and checks stateless nonces.
pub struct Nonces {
    secret: [u8; 32],
    lifetime_s: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    Valid,
    /// Ours, but expired: challenge again with `stale=true`.
    Stale,
    Invalid,
}

impl Nonces {
    pub fn new(secret: [u8; 32], lifetime_s: u64) -> Nonces {
        Nonces { secret, lifetime_s }
    }

    fn tag(&self, ts: u64) -> String {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(ts.to_be_bytes());
        hex(&h.finalize()[..16])
    }

    pub fn issue(&self, now_s: u64) -> String {
        format!("{now_s:016x}{}", self.tag(now_s))
    }

    pub fn check(&self, nonce: &str, now_s: u64) -> NonceCheck {
        if nonce.len() != 48 || !nonce.is_ascii() {
            return NonceCheck::Invalid;
        }
        let Ok(ts) = u64::from_str_radix(&nonce[..16], 16) else {
            return NonceCheck::Invalid;
        };
        if !constant_time_eq(&nonce.as_bytes()[16..], self.tag(ts).as_bytes()) {
            return NonceCheck::Invalid;
        }
        if ts > now_s + 5 || now_s - ts.min(now_s) > self.lifetime_s {
            return NonceCheck::Stale;
        }
        NonceCheck::Valid
    }
}

/// A `WWW-Authenticate` / `Proxy-Authenticate` value.
pub fn challenge(realm: &str, nonce: &str, alg: Algorithm, stale: bool) -> String {
    format!(
        "Digest realm=\"{}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{}",
        realm.replace(['"', '\\'], ""),
        alg.name(),
        if stale { ", stale=true" } else { "" }
    )
}

/// An `Authorization` / `Proxy-Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: Algorithm,
    pub qop: Option<String>,
    pub cnonce: Option<String>,
    pub nc: Option<String>,
}

/// Headers longer than this are not credentials.
const MAX_LEN: usize = 4096;

/// Parse a `Digest …` credentials value.
pub fn parse_authorization(value: &str) -> Result<Credentials, String> {
    if value.len() > MAX_LEN {
        return Err("credentials longer than 4096 bytes".into());
    }
    let v = value.trim_start();
    let scheme_end = v.find(|c: char| c.is_ascii_whitespace()).unwrap_or(v.len());
    if !v[..scheme_end].eq_ignore_ascii_case("digest") {
        return Err("not Digest credentials".into());
    }
    let mut params: Vec<(String, String)> = vec![];
    let mut rest = v[scheme_end..].trim_start();
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or("a parameter without '='")?;
        let name = rest[..eq].trim().to_ascii_lowercase();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(format!("bad parameter name '{name}'"));
        }
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(q) = rest.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, e)) => out.push(e),
                        None => break,
                    },
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => out.push(c),
                }
            }
            let end = end.ok_or("an unterminated quoted string")?;
            value = out;
            rest = &q[end + 1..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        params.push((name, value));
        rest = rest.trim_start();
        match rest.strip_prefix(',') {
            Some(r) => rest = r.trim_start(),
            None if rest.is_empty() => {}
            None => return Err("parameters must be separated by ','".into()),
        }
    }
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let need = |k: &str| get(k).ok_or_else(|| format!("missing {k}"));
    let algorithm = match get("algorithm") {
        None => Algorithm::Md5,
        Some(a) => Algorithm::parse(&a).ok_or_else(|| format!("unsupported algorithm '{a}'"))?,
    };
    let qop = get("qop");
    if qop
        .as_deref()
        .is_some_and(|q| !q.eq_ignore_ascii_case("auth"))
    {
        return Err("only qop=auth is supported".into());
    }
    let c = Credentials {
        username: need("username")?,
        realm: need("realm")?,
        nonce: need("nonce")?,
        uri: need("uri")?,
        response: need("response")?.to_ascii_lowercase(),
        algorithm,
        cnonce: get("cnonce"),
        nc: get("nc"),
        qop,
    };
    if c.qop.is_some() && (c.cnonce.is_none() || c.nc.is_none()) {
        return Err("qop=auth needs cnonce and nc".into());
    }
    Ok(c)
}

/// The response a client with this HA1 should have sent.
pub fn expected_response(c: &Credentials, method: &str, ha1: &str) -> String {
    let ha2 = c.algorithm.hash(&format!("{method}:{}", c.uri));
    match (&c.qop, &c.cnonce, &c.nc) {
        (Some(q), Some(cn), Some(nc)) => c.algorithm.hash(&format!(
            "{ha1}:{}:{nc}:{cn}:{}:{ha2}",
            c.nonce,
            q.to_ascii_lowercase()
        )),
        _ => c.algorithm.hash(&format!("{ha1}:{}:{ha2}", c.nonce)),
    }
}

/// Whether the credentials prove knowledge of the password behind `ha1`.
pub fn verify(c: &Credentials, method: &str, ha1: &str) -> bool {
    constant_time_eq(
        expected_response(c, method, ha1).as_bytes(),
        c.response.as_bytes(),
    )
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_2617_example_response() {
        // RFC 2617 §3.5 (HTTP, MD5, qop=auth): the canonical worked example.
        let c = parse_authorization(
            r#"Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .unwrap();
        let h = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        assert!(verify(&c, "GET", &h));
        assert!(!verify(&c, "POST", &h));
        assert!(!verify(
            &c,
            "GET",
            &ha1(Algorithm::Md5, "Mufasa", "testrealm@host.com", "wrong")
        ));
    }

    #[test]
    fn sha_256_and_no_qop_work_too() {
        let h = ha1(Algorithm::Sha256, "alice", "ringside", "secret");
        let mut c = Credentials {
            username: "alice".into(),
            realm: "ringside".into(),
            nonce: "abc".into(),
            uri: "sip:ringside".into(),
            response: String::new(),
            algorithm: Algorithm::Sha256,
            qop: Some("auth".into()),
            cnonce: Some("xyz".into()),
            nc: Some("00000001".into()),
        };
        c.response = expected_response(&c, "REGISTER", &h);
        assert_eq!(c.response.len(), 64);
        assert!(verify(&c, "REGISTER", &h));
        let header = format!(
            "Digest username=\"alice\",realm=\"ringside\",nonce=\"abc\",uri=\"sip:ringside\",response=\"{}\",algorithm=SHA-256,qop=auth,cnonce=\"xyz\",nc=00000001",
            c.response
        );
        assert_eq!(parse_authorization(&header).unwrap(), c);
        c.qop = None;
        c.response = expected_response(&c, "INVITE", &h);
        assert!(verify(&c, "INVITE", &h));
    }

    #[test]
    fn nonces_expire_and_cannot_be_forged() {
        let n = Nonces::new([7; 32], 300);
        let nonce = n.issue(1000);
        assert_eq!(n.check(&nonce, 1100), NonceCheck::Valid);
        assert_eq!(n.check(&nonce, 1400), NonceCheck::Stale);
        let mut forged = nonce.clone();
        forged.replace_range(0..16, &format!("{:016x}", 1300u64));
        assert_eq!(n.check(&forged, 1350), NonceCheck::Invalid);
        assert_eq!(
            Nonces::new([8; 32], 300).check(&nonce, 1100),
            NonceCheck::Invalid
        );
        assert_eq!(n.check("short", 1100), NonceCheck::Invalid);
        assert!(challenge("ringside", &nonce, Algorithm::Sha256, true).ends_with("stale=true"));
    }

    #[test]
    fn malformed_credentials_are_errors() {
        for bad in [
            "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
            "Digest",
            "Digest username=\"a\"",
            "Digest username=\"a, realm=\"r\"",
            "Digest username=\"a\" realm=\"r\"",
            "Digest username=\"a\",realm=\"r\",nonce=\"n\",uri=\"u\",response=\"x\",algorithm=SHA-512",
            "Digest username=\"a\",realm=\"r\",nonce=\"n\",uri=\"u\",response=\"x\",qop=auth",
            "Digest =x",
        ] {
            assert!(parse_authorization(bad).is_err(), "{bad}");
        }
        assert!(parse_authorization(&format!("Digest username=\"{}\"", "a".repeat(5000))).is_err());
    }
}
