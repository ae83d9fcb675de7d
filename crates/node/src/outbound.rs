//! Where ringside may send requests: callback URIs, webhooks and prompt URLs must be https
//! and must not reach private, link-local or metadata addresses — unless the host is on the
//! configured allow-list, or it is loopback in dev mode. Names are checked again when the
//! connection is made (a resolver that drops forbidden addresses), so DNS rebinding cannot
//! turn an approved name into an internal address, and redirects obey the same rules.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, RwLock};

#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub dev_mode: bool,
    /// Host names (exact, case-insensitive, or `*.suffix`) and IP networks (`10.0.0.0/8`,
    /// `127.0.0.1`) that may be reached over http and on private addresses.
    pub allow: Vec<String>,
    pub allow_private_network: bool,
}

fn parse_net(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, len) = match s.split_once('/') {
        Some((ip, len)) => (ip.parse::<IpAddr>().ok()?, len.parse::<u8>().ok()?),
        None => {
            let ip = s.parse::<IpAddr>().ok()?;
            (ip, if ip.is_ipv4() { 32 } else { 128 })
        }
    };
    Some((ip, len))
}

fn in_net(ip: IpAddr, (net, len): (IpAddr, u8)) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let len = len.min(32) as u32;
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let len = len.min(128) as u32;
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// Why an address is not on the public internet, if it is not.
pub fn special(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return special_v4(v4);
            }
            let seg = v6.segments();
            if v6.is_loopback() {
                Some("a loopback address")
            } else if v6.is_unspecified() {
                Some("an unspecified address")
            } else if seg[0] & 0xfe00 == 0xfc00 {
                if v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
                    Some("a cloud metadata address")
                } else {
                    Some("a private address")
                }
            } else if seg[0] & 0xffc0 == 0xfe80 {
                Some("a link-local address")
            } else if seg[0] & 0xff00 == 0xff00 {
                Some("a multicast address")
            } else {
                None
            }
        }
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(100, 100, 100, 200) {
        Some("a cloud metadata address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_private() {
        Some("a private address")
    } else if ip.is_link_local() {
        Some("a link-local address")
    } else if o[0] == 100 && (64..128).contains(&o[1]) {
        Some("a carrier-grade NAT address")
    } else if ip.is_unspecified() || o[0] == 0 {
        Some("an unspecified address")
    } else if ip.is_multicast() || ip.is_broadcast() || o[0] >= 240 {
        Some("a reserved address")
    } else {
        None
    }
}

impl Policy {
    fn host_allowed(&self, host: &str) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let ip = host.parse::<IpAddr>().ok();
        self.allow.iter().any(|a| {
            let a = a.to_ascii_lowercase();
            if let (Some(ip), Some(net)) = (ip, parse_net(&a)) {
                return in_net(ip, net);
            }
            match a.strip_prefix("*.") {
                Some(suffix) => host.ends_with(&format!(".{suffix}")),
                None => host == a,
            }
        })
    }

    /// May ringside connect to `ip` for a URL whose host is `host`?
    pub fn ip_allowed(&self, host: &str, ip: IpAddr) -> Result<(), String> {
        let Some(why) = special(ip) else {
            return Ok(());
        };
        if self.host_allowed(host)
            || self
                .allow
                .iter()
                .filter_map(|a| parse_net(a))
                .any(|n| in_net(ip, n))
        {
            return Ok(());
        }
        if why == "a loopback address" && self.dev_mode {
            return Ok(());
        }
        if self.allow_private_network && why != "a cloud metadata address" {
            return Ok(());
        }
        Err(format!(
            "{host} is {why} ({ip}); add it to server.outbound_allow to reach it"
        ))
    }

    /// Check a URL before it is accepted (callbackUri, webhook, prompt) or followed (redirect).
    pub fn check_url(&self, url: &str) -> Result<reqwest::Url, String> {
        let u = reqwest::Url::parse(url).map_err(|e| format!("'{url}' is not a URL: {e}"))?;
        let host = u
            .host_str()
            .ok_or_else(|| format!("'{url}' has no host"))?
            .to_string();
        match u.scheme() {
            "https" => {}
            "http" => {
                let loopback = host.eq_ignore_ascii_case("localhost")
                    || host
                        .trim_matches(['[', ']'])
                        .parse::<IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback());
                if !(self.host_allowed(&host) || (self.dev_mode && loopback)) {
                    return Err(format!(
                        "'{url}' must use https (plain http is allowed only for hosts in server.outbound_allow, or loopback in dev mode)"
                    ));
                }
            }
            other => return Err(format!("'{url}': scheme {other} is not allowed; use https")),
        }
        if !u.username().is_empty() || u.password().is_some() {
            return Err(format!("'{url}' must not carry credentials"));
        }
        if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
            self.ip_allowed(&host, ip)?;
        } else if host.eq_ignore_ascii_case("localhost") {
            self.ip_allowed(&host, IpAddr::V4(Ipv4Addr::LOCALHOST))?;
        }
        Ok(u)
    }
}

/// The policy for settings: dev mode, the allow-list, private networks.
impl Policy {
    pub fn of(s: &directory::ServerConfig) -> Policy {
        Policy {
            dev_mode: s.dev_mode,
            allow: s.outbound_allow.clone(),
            allow_private_network: s.allow_private_network,
        }
    }
}

/// Outbound requests under the policy, and never back at ringside itself.
pub struct Outbound {
    pub policy: Arc<RwLock<Policy>>,
    /// `host:port` forms ringside itself answers on: callbacks may not point back at it.
    pub own_authorities: Vec<String>,
}

impl Outbound {
    /// An HTTP client for outbound requests under the policy: forbidden addresses are dropped
    /// at resolution time, and redirects are followed only to allowed URLs (at most 5).
    pub fn client(&self, timeout: std::time::Duration, follow_redirects: bool) -> reqwest::Client {
        let resolver = GuardedResolver {
            policy: self.policy.clone(),
        };
        let policy = self.policy.clone();
        let redirect = if follow_redirects {
            reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 5 {
                    return attempt.error("too many redirects");
                }
                let p = policy.read().expect("policy").clone();
                match p.check_url(attempt.url().as_str()) {
                    Ok(_) => attempt.follow(),
                    Err(e) => attempt.error(format!("redirect refused: {e}")),
                }
            })
        } else {
            reqwest::redirect::Policy::none()
        };
        reqwest::Client::builder()
            .dns_resolver(Arc::new(resolver))
            .redirect(redirect)
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(64)
            .build()
            .expect("http client")
    }

    /// May a request go to `url`? (callbackUri, webhook, prompt, checked when accepted.)
    pub fn check(&self, url: &str) -> Result<reqwest::Url, String> {
        let u = self.policy.read().expect("policy").check_url(url)?;
        let authority = format!(
            "{}:{}",
            u.host_str().unwrap_or_default().trim_matches(['[', ']']),
            u.port_or_known_default().unwrap_or(0)
        )
        .to_ascii_lowercase();
        if self.own_authorities.contains(&authority) {
            return Err(format!("'{url}' points at ringside itself"));
        }
        Ok(u)
    }

    /// The policy as it is now.
    pub fn policy(&self) -> Policy {
        self.policy.read().expect("policy").clone()
    }
}

/// A resolver for reqwest that drops addresses the policy forbids, at connect time.
pub struct GuardedResolver {
    pub policy: Arc<std::sync::RwLock<Policy>>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let p = policy.read().expect("policy").clone();
            let mut refused = None;
            let ok: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| match p.ip_allowed(&host, a.ip()) {
                    Ok(()) => true,
                    Err(e) => {
                        refused = Some(e);
                        false
                    }
                })
                .collect();
            if ok.is_empty() {
                let why = refused.unwrap_or_else(|| format!("{host} did not resolve"));
                tracing::warn!(target: "audit", event = "outbound_refused", host = %host, reason = %why);
                return Err(why.into());
            }
            let it: reqwest::dns::Addrs = Box::new(ok.into_iter());
            Ok(it)
        })
    }
}

/// An error with its causes, as one line (reqwest hides the interesting part in sources).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prod() -> Policy {
        Policy {
            dev_mode: false,
            allow: vec![],
            allow_private_network: false,
        }
    }

    #[test]
    fn production_refuses_http_loopback_private_and_metadata() {
        let p = prod();
        assert!(p.check_url("https://bot.example.com/cb").is_ok());
        for bad in [
            "http://bot.example.com/cb",
            "https://127.0.0.1/cb",
            "https://localhost:8443/cb",
            "https://10.1.2.3/cb",
            "https://192.168.0.5/cb",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/cb",
            "https://[fe80::1]/cb",
            "https://[::ffff:10.0.0.1]/cb",
            "https://100.64.0.1/cb",
            "ftp://bot.example.com/cb",
            "https://user:pw@bot.example.com/cb",
        ] {
            assert!(p.check_url(bad).is_err(), "{bad} should be refused");
        }
        let e = p.check_url("https://169.254.169.254/x").unwrap_err();
        assert!(e.contains("metadata"), "{e}");
    }

    #[tokio::test]
    async fn names_resolving_to_forbidden_addresses_are_dropped_at_connect_time() {
        use reqwest::dns::Resolve;
        use std::str::FromStr;
        let r = GuardedResolver {
            policy: Arc::new(std::sync::RwLock::new(prod())),
        };
        let e = r
            .resolve(reqwest::dns::Name::from_str("localhost").unwrap())
            .await
            .err()
            .expect("refused");
        assert!(e.to_string().contains("loopback"), "{e}");
        let dev = GuardedResolver {
            policy: Arc::new(std::sync::RwLock::new(Policy {
                dev_mode: true,
                ..prod()
            })),
        };
        assert!(
            dev.resolve(reqwest::dns::Name::from_str("localhost").unwrap())
                .await
                .is_ok()
        );
    }

    #[test]
    fn dev_mode_allows_loopback_and_the_allow_list_opens_hosts_and_networks() {
        let dev = Policy {
            dev_mode: true,
            ..prod()
        };
        assert!(dev.check_url("http://127.0.0.1:9000/cb").is_ok());
        assert!(dev.check_url("http://localhost:9000/cb").is_ok());
        assert!(
            dev.check_url("https://10.0.0.1/cb").is_err(),
            "dev mode is not a private-network pass"
        );
        let allow = Policy {
            allow: vec![
                "bot.internal".into(),
                "10.0.0.0/8".into(),
                "*.corp.example".into(),
            ],
            ..prod()
        };
        assert!(allow.check_url("http://bot.internal/cb").is_ok());
        assert!(allow.check_url("https://10.9.9.9/cb").is_ok());
        assert!(
            allow
                .ip_allowed("api.corp.example", "192.168.1.1".parse().unwrap())
                .is_ok()
        );
        assert!(
            allow
                .ip_allowed("evil.example", "192.168.1.1".parse().unwrap())
                .is_err(),
            "a name that resolves to a private address"
        );
        let private = Policy {
            allow_private_network: true,
            ..prod()
        };
        assert!(private.ip_allowed("x", "10.0.0.1".parse().unwrap()).is_ok());
        assert!(
            private
                .ip_allowed("x", "169.254.169.254".parse().unwrap())
                .is_err(),
            "metadata stays closed"
        );
    }
}
