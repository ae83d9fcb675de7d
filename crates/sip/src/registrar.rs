//! The registrar (RFC 3261 §10.3), sans-IO: a user's contacts, each with its expiry. Several
//! contacts per user (all of them ring); a REGISTER refreshes, adds or removes them;
//! `Contact: *` with `Expires: 0` removes all; Call-ID/CSeq ordering is enforced; intervals
//! below the minimum get 423 with Min-Expires; expired contacts vanish.

use std::collections::HashMap;
use std::net::SocketAddr;

/// One registered contact of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The Contact URI, as the phone gave it.
    pub uri: String,
    /// Milliseconds since the epoch when it lapses.
    pub expires_at: u64,
    pub call_id: String,
    pub cseq: u32,
    /// Where the REGISTER came from (for phones behind NAT: where to send requests).
    pub source: Option<SocketAddr>,
}

impl Binding {
    /// Seconds left at `now`.
    pub fn remaining_s(&self, now: u64) -> u64 {
        self.expires_at.saturating_sub(now).div_ceil(1000)
    }
}

/// A Contact of a REGISTER: its URI and its own `expires` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactReq {
    pub uri: String,
    pub expires: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterError {
    /// 423 Interval Too Brief, with this Min-Expires.
    IntervalTooBrief { min: u32 },
    /// 400: `*` mixed with other contacts or with a non-zero Expires.
    BadWildcard,
    /// 500: a request older than one already seen for this Call-ID (RFC 3261 §10.3 step 7).
    OutOfOrder,
    /// 403: more contacts than a user may register.
    TooManyContacts { max: usize },
}

impl RegisterError {
    pub fn status(&self) -> u16 {
        match self {
            RegisterError::IntervalTooBrief { .. } => 423,
            RegisterError::BadWildcard => 400,
            RegisterError::OutOfOrder => 500,
            RegisterError::TooManyContacts { .. } => 403,
        }
    }
}

impl std::fmt::Display for RegisterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegisterError::IntervalTooBrief { min } => {
                write!(f, "registration interval below {min} s")
            }
            RegisterError::BadWildcard => {
                f.write_str("Contact: * must be alone and come with Expires: 0")
            }
            RegisterError::OutOfOrder => f.write_str("a newer REGISTER for this Call-ID was seen"),
            RegisterError::TooManyContacts { max } => write!(f, "at most {max} contacts per user"),
        }
    }
}

pub struct Registrar {
    users: HashMap<String, Vec<Binding>>,
    pub min_expires: u32,
    pub max_expires: u32,
    pub default_expires: u32,
    pub max_contacts: usize,
}

impl Default for Registrar {
    fn default() -> Self {
        Registrar {
            users: HashMap::new(),
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_contacts: 10,
        }
    }
}

/// What a REGISTER asked for.
pub struct Register<'a> {
    pub user: &'a str,
    /// None: `Contact: *`. Empty: a query.
    pub contacts: Option<Vec<ContactReq>>,
    pub expires: Option<u32>,
    pub call_id: &'a str,
    pub cseq: u32,
    pub source: Option<SocketAddr>,
}

impl Registrar {
    /// Apply a REGISTER; the user's bindings afterwards (what the 200 OK lists).
    pub fn register(&mut self, r: Register<'_>, now: u64) -> Result<Vec<Binding>, RegisterError> {
        self.expire_user(r.user, now);
        let Some(contacts) = r.contacts else {
            if r.expires != Some(0) {
                return Err(RegisterError::BadWildcard);
            }
            let list = self.users.entry(r.user.to_string()).or_default();
            if list
                .iter()
                .any(|b| b.call_id == r.call_id && r.cseq <= b.cseq)
            {
                return Err(RegisterError::OutOfOrder);
            }
            list.clear();
            self.users.remove(r.user);
            return Ok(vec![]);
        };
        // Check everything before changing anything.
        let mut plan = vec![];
        for c in &contacts {
            let asked = c.expires.or(r.expires).unwrap_or(self.default_expires);
            if asked != 0 && asked < self.min_expires {
                return Err(RegisterError::IntervalTooBrief {
                    min: self.min_expires,
                });
            }
            plan.push((c.uri.clone(), asked.min(self.max_expires)));
        }
        let list = self.users.entry(r.user.to_string()).or_default();
        for (uri, _) in &plan {
            if let Some(b) = list.iter().find(|b| same_uri(&b.uri, uri))
                && b.call_id == r.call_id
                && r.cseq <= b.cseq
            {
                return Err(RegisterError::OutOfOrder);
            }
        }
        let mut next = list.clone();
        for (uri, secs) in plan {
            next.retain(|b| !same_uri(&b.uri, &uri));
            if secs > 0 {
                next.push(Binding {
                    uri,
                    expires_at: now + secs as u64 * 1000,
                    call_id: r.call_id.to_string(),
                    cseq: r.cseq,
                    source: r.source,
                });
            }
        }
        if next.len() > self.max_contacts {
            return Err(RegisterError::TooManyContacts {
                max: self.max_contacts,
            });
        }
        *list = next;
        let out = list.clone();
        if out.is_empty() {
            self.users.remove(r.user);
        }
        Ok(out)
    }

    /// The user's live contacts.
    pub fn lookup(&self, user: &str, now: u64) -> Vec<Binding> {
        self.users
            .get(user)
            .map(|l| l.iter().filter(|b| b.expires_at > now).cloned().collect())
            .unwrap_or_default()
    }

    fn expire_user(&mut self, user: &str, now: u64) {
        if let Some(l) = self.users.get_mut(user) {
            l.retain(|b| b.expires_at > now);
            if l.is_empty() {
                self.users.remove(user);
            }
        }
    }

    /// Forget every lapsed contact.
    pub fn expire(&mut self, now: u64) {
        self.users.retain(|_, l| {
            l.retain(|b| b.expires_at > now);
            !l.is_empty()
        });
    }

    pub fn registered_users(&self) -> usize {
        self.users.len()
    }
}

/// RFC 3261 §19.1.4 in short: scheme and host compare case-insensitively, the rest as given.
fn same_uri(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        let s = s.trim();
        match s.split_once('@') {
            Some((user, host)) => format!("{}@{}", user, host.to_ascii_lowercase()),
            None => s.to_ascii_lowercase(),
        }
    };
    norm(a) == norm(b)
}

/// Parse the Contact header values of a REGISTER: `*`, or name-addrs / addr-specs with an
/// optional `expires` parameter. Errors say what is wrong (answered 400).
pub fn parse_contacts(values: &[&str]) -> Result<Option<Vec<ContactReq>>, String> {
    let mut out = vec![];
    let mut star = false;
    for v in values {
        for item in split_top_level(v)? {
            let item = item.trim();
            if item.is_empty() {
                return Err("an empty Contact".into());
            }
            if item == "*" {
                star = true;
                continue;
            }
            let (uri, params) = match item.find('<') {
                Some(open) => {
                    let close = item[open..]
                        .find('>')
                        .map(|c| open + c)
                        .ok_or("a Contact with '<' but no '>'")?;
                    (&item[open + 1..close], &item[close + 1..])
                }
                // addr-spec: parameters after the URI belong to the header, not the URI.
                None => match item.find(';') {
                    Some(semi) => (&item[..semi], &item[semi..]),
                    None => (item, ""),
                },
            };
            let uri = uri.trim();
            let lower = uri.to_ascii_lowercase();
            if !(lower.starts_with("sip:")
                || lower.starts_with("sips:")
                || lower.starts_with("tel:"))
                || uri.len() > 1024
            {
                return Err(format!(
                    "Contact URI '{uri}' is not a sip:, sips: or tel: URI"
                ));
            }
            let mut expires = None;
            for p in params.split(';').map(str::trim).filter(|p| !p.is_empty()) {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                if k.trim().eq_ignore_ascii_case("expires") {
                    expires = Some(v.trim().parse::<u32>().map_err(|_| {
                        format!("Contact expires '{}' is not a number of seconds", v.trim())
                    })?);
                }
            }
            out.push(ContactReq {
                uri: uri.to_string(),
                expires,
            });
        }
    }
    match (star, out.is_empty()) {
        (true, true) => Ok(None),
        (true, false) => Err("Contact: * cannot be mixed with other contacts".into()),
        (false, _) => Ok(Some(out)),
    }
}

/// Split on commas that are not inside quotes or angle brackets.
fn split_top_level(v: &str) -> Result<Vec<&str>, String> {
    let (mut parts, mut start, mut quoted, mut angle) = (vec![], 0, false, false);
    let mut escaped = false;
    for (i, c) in v.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                parts.push(&v[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return Err("an unterminated quoted display name".into());
    }
    parts.push(&v[start..]);
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg<'a>(contacts: Option<Vec<ContactReq>>, expires: Option<u32>, cseq: u32) -> Register<'a> {
        Register {
            user: "alice",
            contacts,
            expires,
            call_id: "c1",
            cseq,
            source: None,
        }
    }

    fn contact(uri: &str, expires: Option<u32>) -> ContactReq {
        ContactReq {
            uri: uri.into(),
            expires,
        }
    }

    #[test]
    fn contacts_register_refresh_expire_and_unregister() {
        let mut r = Registrar::default();
        let b = r
            .register(
                reg(
                    Some(vec![contact("sip:alice@10.0.0.5:5060", None)]),
                    Some(120),
                    1,
                ),
                0,
            )
            .unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].remaining_s(0), 120);
        // A second phone, its own Call-ID.
        let mut second = reg(
            Some(vec![contact("sip:alice@10.0.0.6", Some(300))]),
            None,
            1,
        );
        second.call_id = "c2";
        assert_eq!(
            r.register(second, 1000).unwrap().len(),
            2,
            "several contacts per user"
        );
        assert_eq!(r.lookup("alice", 121_000).len(), 1, "the first lapsed");
        // Refresh the first with a higher CSeq; then remove it with expires=0.
        r.register(
            reg(
                Some(vec![contact("sip:alice@10.0.0.5:5060", None)]),
                Some(600),
                2,
            ),
            2000,
        )
        .unwrap();
        assert_eq!(r.lookup("alice", 300_000).len(), 2);
        let b = r
            .register(
                reg(
                    Some(vec![contact("sip:alice@10.0.0.5:5060", Some(0))]),
                    None,
                    3,
                ),
                3000,
            )
            .unwrap();
        assert_eq!(b.len(), 1);
        // Query: no contacts, nothing changes.
        assert_eq!(
            r.register(reg(Some(vec![]), None, 4), 3000).unwrap().len(),
            1
        );
        // Contact: * with Expires: 0 removes all.
        assert!(r.register(reg(None, Some(0), 5), 4000).unwrap().is_empty());
        assert!(r.lookup("alice", 4000).is_empty());
        assert_eq!(r.registered_users(), 0);
    }

    #[test]
    fn bad_registers_change_nothing() {
        let mut r = Registrar::default();
        r.register(reg(Some(vec![contact("sip:a@1.2.3.4", None)]), None, 10), 0)
            .unwrap();
        let too_brief = r.register(
            reg(Some(vec![contact("sip:b@1.2.3.4", Some(5))]), None, 11),
            0,
        );
        assert_eq!(too_brief, Err(RegisterError::IntervalTooBrief { min: 60 }));
        assert_eq!(too_brief.unwrap_err().status(), 423);
        let old = r.register(reg(Some(vec![contact("sip:a@1.2.3.4", None)]), None, 9), 0);
        assert_eq!(old, Err(RegisterError::OutOfOrder));
        assert_eq!(
            r.register(reg(None, Some(60), 12), 0),
            Err(RegisterError::BadWildcard)
        );
        r.max_contacts = 1;
        let many = r.register(reg(Some(vec![contact("sip:c@1.2.3.4", None)]), None, 13), 0);
        assert_eq!(many.unwrap_err().status(), 403);
        assert_eq!(r.lookup("alice", 0).len(), 1);
        assert_eq!(r.lookup("alice", 0)[0].uri, "sip:a@1.2.3.4");
        // Expires above the maximum is capped.
        r.max_contacts = 10;
        let b = r
            .register(
                reg(Some(vec![contact("sip:d@1.2.3.4", Some(99_999))]), None, 14),
                0,
            )
            .unwrap();
        assert_eq!(b.last().unwrap().remaining_s(0), 3600);
    }

    #[test]
    fn contact_headers_parse() {
        let c = parse_contacts(&[
            r#""Alice, at home" <sip:alice@10.0.0.5:5060;transport=udp>;expires=300;+sip.instance="<urn:x>""#,
            "sip:alice@10.0.0.6;expires=0, <sips:alice@example.com>",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            c,
            vec![
                contact("sip:alice@10.0.0.5:5060;transport=udp", Some(300)),
                contact("sip:alice@10.0.0.6", Some(0)),
                contact("sips:alice@example.com", None),
            ]
        );
        assert_eq!(parse_contacts(&["*"]).unwrap(), None);
        for bad in [
            "*, sip:a@b",
            "<sip:a@b",
            "http://x",
            "sip:a@b;expires=soon",
            "\"open <sip:a@b>",
            "",
        ] {
            assert!(parse_contacts(&[bad]).is_err(), "{bad:?}");
        }
    }
}
