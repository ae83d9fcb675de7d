//! The config file: one TOML holding the server settings and the directory. First start
//! with no file seeds a dev tenant, one app and three simulated users.

use crate::behaviour::Behaviour;
use crate::entries::{App, ApplicationInstance, SipHa1, Tenant, User, default_permissions};
use crate::settings::{AdminConfig, ServerConfig};
use crate::telephony::{SipConfig, Trunk, WebRtcConfig, normalize_number};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    pub admin: Option<AdminConfig>,
    #[serde(default)]
    pub tenants: Vec<Tenant>,
    #[serde(default)]
    pub apps: Vec<App>,
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub sip: Option<SipConfig>,
    /// Browsers (WebRTC legs), when present.
    #[serde(default)]
    pub webrtc: Option<WebRtcConfig>,
    /// Several nodes sharing one PostgreSQL store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<crate::settings::ClusterConfig>,
    /// The store (SQLite by default, or PostgreSQL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<crate::settings::StoreConfig>,
    /// Speech-to-text for startTranscription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcription: Option<crate::settings::TranscriptionConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub application_instances: Vec<ApplicationInstance>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let c: Config = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        c.validate()?;
        Ok(c)
    }

    /// Write the whole config (a freshly seeded one).
    pub fn save(&self, path: &Path) -> Result<(), String> {
        write_atomically(
            path,
            &toml::to_string_pretty(self).map_err(|e| e.to_string())?,
        )
    }

    /// Write the directory (tenants, apps, users, resource accounts) back into the file at
    /// `path`, keeping every other section exactly as the file has it: what the user set
    /// stays as they set it, and what they left to its default stays unwritten.
    pub fn save_directory(&self, path: &Path) -> Result<(), String> {
        let Ok(text) = std::fs::read_to_string(path) else {
            return self.save(path);
        };
        let mut doc: toml::Table =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mine = toml::Table::try_from(self).map_err(|e| e.to_string())?;
        for key in ["tenants", "apps", "users", "application_instances"] {
            match mine.get(key) {
                Some(v) => doc.insert(key.to_string(), v.clone()),
                None => doc.remove(key),
            };
        }
        write_atomically(
            path,
            &toml::to_string_pretty(&doc).map_err(|e| e.to_string())?,
        )
    }

    /// Replace clear-text secrets by their hashes; true when something changed.
    pub fn hash_secrets(&mut self) -> bool {
        let mut changed = false;
        for a in &mut self.apps {
            if let Some(s) = a.secret.take() {
                a.secret_hash = Some(identity::hash_secret(&s));
                changed = true;
            }
        }
        let realm = self
            .sip
            .as_ref()
            .map(|s| s.realm.clone())
            .unwrap_or_else(|| SipConfig::dev().realm);
        for u in &mut self.users {
            if let Some(p) = u.sip_password.take() {
                use sip::digest::{Algorithm, ha1};
                let name = u.sip_username().to_string();
                u.sip_ha1 = Some(SipHa1 {
                    md5: ha1(Algorithm::Md5, &name, &realm, &p),
                    sha256: ha1(Algorithm::Sha256, &name, &realm, &p),
                    realm: realm.clone(),
                });
                changed = true;
            }
        }
        changed
    }

    /// The user with this SIP username.
    pub fn sip_user(&self, name: &str) -> Option<&User> {
        self.users
            .iter()
            .find(|u| u.sip_username().eq_ignore_ascii_case(name))
    }

    /// The resource account with this id.
    pub fn instance(&self, id: &str) -> Option<&ApplicationInstance> {
        self.application_instances
            .iter()
            .find(|i| i.id.eq_ignore_ascii_case(id))
    }

    /// The resource account that owns this number.
    pub fn instance_for_number(&self, number: &str) -> Option<&ApplicationInstance> {
        let n = normalize_number(number)?;
        let bare = n.trim_start_matches('+');
        self.application_instances
            .iter()
            .find(|i| normalize_number(&i.phone).is_some_and(|p| p.trim_start_matches('+') == bare))
    }

    /// The trunk for a number: the longest matching route.
    pub fn trunk_for(&self, number: &str) -> Option<&Trunk> {
        let trunks = &self.sip.as_ref()?.trunks;
        trunks
            .iter()
            .filter_map(|t| t.matches(number).map(|l| (l, t)))
            .max_by_key(|(l, _)| *l)
            .map(|(_, t)| t)
    }

    pub fn validate(&self) -> Result<(), String> {
        if let Some(c) = &self.cluster {
            let pg = self
                .store
                .as_ref()
                .and_then(|s| s.url.as_deref())
                .is_some_and(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"));
            if !pg {
                return Err(
                    "[cluster] needs the nodes' shared store: [store] url = \"postgres://…\""
                        .into(),
                );
            }
            let ok = |ch: char| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_';
            if c.node_id.is_empty() || c.node_id.len() > 64 || !c.node_id.chars().all(ok) {
                return Err(format!(
                    "[cluster] node_id \"{}\" must be 1-64 letters, digits, '-' or '_' (it names a NATS subject)",
                    c.node_id
                ));
            }
            if c.lease_ms < 1000 {
                return Err("[cluster] lease_ms must be at least 1000".into());
            }
        }
        for i in &self.application_instances {
            if self.app(&i.app).is_none() {
                return Err(format!(
                    "application instance {} names unknown app {}",
                    i.id, i.app
                ));
            }
            if !normalize_number(&i.phone).is_some_and(|p| p.starts_with('+')) {
                return Err(format!(
                    "application instance {}: phone \"{}\" is not an E.164 number (+ and digits)",
                    i.id, i.phone
                ));
            }
        }
        if let Some(sip) = &self.sip {
            for t in &sip.trunks {
                if !t.proxy.trim().starts_with("sip:") && !t.proxy.trim().starts_with("sips:") {
                    return Err(format!(
                        "trunk {}: proxy \"{}\" must be a sip: URI (sip:host:port)",
                        t.name, t.proxy
                    ));
                }
                if let Some(a) = t
                    .accept_from
                    .iter()
                    .find(|a| a.parse::<std::net::IpAddr>().is_err())
                {
                    return Err(format!(
                        "trunk {}: accept_from \"{a}\" is not an IP address",
                        t.name
                    ));
                }
                if t.username.is_some() != t.password.is_some() {
                    return Err(format!(
                        "trunk {}: username and password go together",
                        t.name
                    ));
                }
            }
        }
        for a in &self.apps {
            if a.secret.is_none() && a.secret_hash.is_none() && a.certificates.is_empty() {
                return Err(format!(
                    "app {} has no secret, secret_hash or certificate",
                    a.id
                ));
            }
            if !self.tenants.iter().any(|t| t.id == a.tenant) {
                return Err(format!("app {} names unknown tenant {}", a.id, a.tenant));
            }
        }
        for u in &self.users {
            if !self.tenants.iter().any(|t| t.id == u.tenant) {
                return Err(format!("user {} names unknown tenant {}", u.id, u.tenant));
            }
            u.behaviour
                .validate()
                .map_err(|e| format!("user {}: {e}", u.id))?;
            match u.endpoint.as_str() {
                "simulated" => {}
                "sip" if u.sip_password.is_some() || u.sip_ha1.is_some() => {}
                "sip" => {
                    return Err(format!(
                        "user {} has endpoint \"sip\" but no sip_password to register with",
                        u.id
                    ));
                }
                other => {
                    return Err(format!(
                        "user {}: endpoint \"{other}\" is not one of \"simulated\", \"sip\"",
                        u.id
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn public_url(&self) -> String {
        self.server
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.server.listen))
            .trim_end_matches('/')
            .to_string()
    }

    pub fn app(&self, id: &str) -> Option<&App> {
        self.apps.iter().find(|a| a.id.eq_ignore_ascii_case(id))
    }

    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.iter().find(|u| u.id.eq_ignore_ascii_case(id))
    }

    /// The app an address (app id, `sip:` URI or phone number) routes to.
    pub fn app_for_address(&self, addr: &str) -> Option<&App> {
        self.app(addr).or_else(|| {
            self.apps
                .iter()
                .find(|a| a.addresses.iter().any(|x| x.eq_ignore_ascii_case(addr)))
        })
    }

    /// A fresh development directory: one tenant, one app, three simulated users.
    pub fn seed_dev() -> Config {
        let id = || uuid::Uuid::new_v4().to_string();
        let tenant = id();
        let secret = identity::new_secret();
        let admin: String = {
            use rand::Rng;
            let mut r = rand::rng();
            (0..32)
                .map(|_| format!("{:x}", r.random_range(0..16)))
                .collect()
        };
        let users = [("Alice", 1000), ("Bob", 2000), ("Carol", 3000)]
            .into_iter()
            .map(|(n, ms)| User {
                id: id(),
                tenant: tenant.clone(),
                display_name: Some(n.to_string()),
                endpoint: "simulated".into(),
                behaviour: Behaviour {
                    action: Some("answer".into()),
                    answer_after_ms: Some(ms),
                    ..Default::default()
                },
                sip_user: Some(n.to_ascii_lowercase()),
                sip_password: Some(id()[..12].to_string()),
                sip_ha1: None,
            })
            .collect();
        Config {
            server: ServerConfig::default(),
            admin: Some(AdminConfig { token: admin }),
            tenants: vec![Tenant {
                id: tenant.clone(),
                name: Some("Dev tenant".into()),
            }],
            apps: vec![App {
                id: id(),
                tenant,
                name: Some("Dev bot".into()),
                secret: Some(secret),
                secret_hash: None,
                certificates: vec![],
                permissions: default_permissions(),
                webhook: Some("http://127.0.0.1:9000/callback".into()),
                addresses: vec![],
            }],
            users,
            sip: Some(SipConfig::dev()),
            webrtc: Some(WebRtcConfig::default()),
            transcription: None,
            store: None,
            cluster: None,
            application_instances: vec![],
        }
    }
}

/// Replace `path` with `text` through a temporary file, so a crash leaves one or the other.
fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DtmfPress;

    #[test]
    fn seeded_dev_config_round_trips_through_toml() {
        let c = Config::seed_dev();
        let text = toml::to_string_pretty(&c).unwrap();
        let back: Config = toml::from_str(&text).unwrap();
        back.validate().unwrap();
        assert_eq!(back.users.len(), 3);
        assert_eq!(back.apps[0].secret, c.apps[0].secret);
        let mut hashed = back.clone();
        assert!(hashed.hash_secrets());
        assert!(hashed.apps[0].secret.is_none());
        assert!(identity::verify_secret(
            hashed.apps[0].secret_hash.as_ref().unwrap(),
            c.apps[0].secret.as_ref().unwrap()
        ));
        assert!(
            !toml::to_string(&hashed)
                .unwrap()
                .contains(c.apps[0].secret.as_ref().unwrap().as_str())
        );
    }

    #[test]
    fn unknown_keys_and_bad_scripts_are_refused() {
        assert!(toml::from_str::<Config>("[server]\nlisten_on = \"x\"").is_err());
        let b = Behaviour {
            dtmf: vec![DtmfPress {
                at_ms: 0,
                digits: "12x".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(b.validate().unwrap_err().contains("'x'"));
    }

    #[test]
    fn user_endpoints_are_simulated_or_sip_with_credentials() {
        let mut c = Config::seed_dev();
        c.users[0].endpoint = "sip".into();
        c.users[0].sip_password = None;
        c.users[0].sip_ha1 = None;
        assert!(c.validate().unwrap_err().contains("no sip_password"));
        c.users[0].sip_password = Some("pw".into());
        c.validate().unwrap();
        c.users[0].endpoint = "webrtc".into();
        assert!(
            c.validate()
                .unwrap_err()
                .contains("\"webrtc\" is not one of")
        );
    }

    #[test]
    fn numbers_route_to_the_trunk_with_the_longest_prefix() {
        let trunk = |name: &str, routes: &[&str]| Trunk {
            name: name.into(),
            proxy: "sip:192.0.2.10:5060".into(),
            domain: None,
            username: None,
            password: None,
            routes: routes.iter().map(|r| r.to_string()).collect(),
            caller_id: None,
            accept_from: vec![],
        };
        let mut c = Config::seed_dev();
        c.sip.as_mut().unwrap().trunks = vec![
            trunk("any", &[]),
            trunk("us", &["+1"]),
            trunk("nyc", &["+1 212", "+1646"]),
        ];
        let name = |n: &str| c.trunk_for(n).map(|t| t.name.clone());
        assert_eq!(name("+12125550100").as_deref(), Some("nyc"));
        assert_eq!(name("+1 (646) 555-0100").as_deref(), Some("nyc"));
        assert_eq!(name("+14155550100").as_deref(), Some("us"));
        assert_eq!(name("+442071234567").as_deref(), Some("any"));
        assert_eq!(
            c.trunk_for("+14155550100")
                .unwrap()
                .request_uri("+14155550100"),
            "sip:+14155550100@192.0.2.10:5060"
        );
        assert_eq!(
            normalize_number("tel:+1-415-555-0100").as_deref(),
            Some("+14155550100")
        );
        assert_eq!(normalize_number("alice"), None);
    }

    #[test]
    fn application_instances_need_a_known_app_and_an_e164_number() {
        let mut c = Config::seed_dev();
        let app = c.apps[0].id.clone();
        c.application_instances.push(ApplicationInstance {
            id: "inst-1".into(),
            app: app.clone(),
            display_name: Some("IVR line".into()),
            phone: "+15550100".into(),
        });
        c.validate().unwrap();
        assert_eq!(c.instance_for_number("15550100").unwrap().id, "inst-1");
        assert_eq!(c.instance_for_number("+1 555 0100").unwrap().id, "inst-1");
        c.application_instances[0].phone = "5550100".into();
        assert!(c.validate().unwrap_err().contains("E.164"));
        c.application_instances[0].phone = "+15550100".into();
        c.application_instances[0].app = "nope".into();
        assert!(c.validate().unwrap_err().contains("unknown app"));
    }
}
