//! Configuration and directory (tenants, applications, users) from one TOML file.
//! First start with no file seeds a dev tenant, one app and three simulated users.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

fn default_listen() -> String {
    "127.0.0.1:8480".into()
}
fn default_max_body() -> usize {
    1024 * 1024
}
fn default_keepalive() -> u64 {
    45 * 60
}
fn default_answer_deadline() -> u64 {
    15
}
fn default_max_calls() -> usize {
    100
}
fn default_attempts() -> i64 {
    10
}
fn default_backoff() -> u64 {
    500
}
fn default_true() -> bool {
    true
}
fn default_prompt_bytes() -> usize {
    20 * 1024 * 1024
}
fn default_prompt_timeout() -> u64 {
    10_000
}
fn default_retention() -> u64 {
    60
}
fn default_token_lifetime() -> u64 {
    3600
}
fn default_max_calls_tenant() -> usize {
    1000
}
fn default_rate_app() -> f64 {
    5000.0
}
fn default_burst_app() -> f64 {
    10000.0
}
fn default_rate_tenant() -> f64 {
    20000.0
}
fn default_burst_tenant() -> f64 {
    40000.0
}
fn default_rotation() -> u64 {
    30
}
fn default_activation() -> u64 {
    300
}
fn default_callback_token_lifetime() -> u64 {
    600
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the HTTP API listens on (loopback by default).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// HTTPS listen address (off unless set); plain HTTP stays on `listen`.
    #[serde(default)]
    pub https_listen: Option<String>,
    /// PEM certificate chain and private key for HTTPS. Without them, dev mode generates a
    /// self-signed certificate into `<data-dir>/tls/` on first start.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// The URL bots and phones reach ringside at; used in Location headers, join URLs and
    /// recording locations. Defaults to `http://{listen}`.
    #[serde(default)]
    pub public_url: Option<String>,
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// A call with no keepAlive for this long ends with 408/8537 (Graph: 45 minutes).
    #[serde(default = "default_keepalive")]
    pub keepalive_seconds: u64,
    #[serde(default = "default_answer_deadline")]
    pub answer_deadline_seconds: u64,
    #[serde(default = "default_max_calls")]
    pub max_calls_per_app: usize,
    #[serde(default = "default_max_calls_tenant")]
    pub max_calls_per_tenant: usize,
    /// Graph requests per second per application (token bucket; 0 = unlimited) …
    #[serde(default = "default_rate_app")]
    pub rate_per_app: f64,
    /// … and the bursts it allows.
    #[serde(default = "default_burst_app")]
    pub burst_per_app: f64,
    #[serde(default = "default_rate_tenant")]
    pub rate_per_tenant: f64,
    #[serde(default = "default_burst_tenant")]
    pub burst_per_tenant: f64,
    /// Delivery attempts before a notification is dead-lettered.
    #[serde(default = "default_attempts")]
    pub notification_max_attempts: i64,
    /// First retry delay; doubles per attempt up to one minute.
    #[serde(default = "default_backoff")]
    pub notification_backoff_ms: u64,
    /// Development mode: callbacks, webhooks and prompts may use plain http to loopback, and a
    /// TLS certificate is generated when none is configured.
    #[serde(default = "default_true")]
    pub dev_mode: bool,
    /// Hosts (`bot.internal`, `*.corp.example`) and networks (`10.0.0.0/8`) ringside may call
    /// over http or on private addresses. Everything else must be public https.
    #[serde(default)]
    pub outbound_allow: Vec<String>,
    /// Dev mode only: requests from loopback without Authorization act as this app.
    #[serde(default)]
    pub loopback_anonymous_app: Option<String>,
    /// Let callbacks and prompts reach any private address (never cloud metadata addresses).
    #[serde(default)]
    pub allow_private_network: bool,
    #[serde(default = "default_prompt_bytes")]
    pub prompt_max_bytes: usize,
    #[serde(default = "default_prompt_timeout")]
    pub prompt_timeout_ms: u64,
    /// `file://` prompt URIs are served only from below this folder.
    #[serde(default)]
    pub prompt_folder: Option<PathBuf>,
    #[serde(default = "default_retention")]
    pub recording_retention_minutes: u64,
    /// Finer-grained retention, overriding the minutes when set (tests, short-lived demos).
    #[serde(default)]
    pub recording_retention_seconds: Option<u64>,
    /// Media threads (0: one per core).
    #[serde(default)]
    pub media_threads: usize,
    /// Call recordings also keep one track per participant.
    #[serde(default)]
    pub record_participant_tracks: bool,
    #[serde(default = "default_token_lifetime")]
    pub token_lifetime_seconds: u64,
    /// The token signing key is replaced after this many days; the previous key stays in the
    /// JWKS (and valid) until the next rotation.
    #[serde(default = "default_rotation")]
    pub signing_key_rotation_days: u64,
    /// A new signing key is published this long before ringside signs with it, so bots that
    /// cache the JWKS know it in time.
    #[serde(default = "default_activation")]
    pub signing_key_activation_seconds: u64,
    /// Lifetime of the token on each notification POST.
    #[serde(default = "default_callback_token_lifetime")]
    pub callback_token_lifetime_seconds: u64,
    /// fsync every commit (survives power loss, not only process crashes).
    #[serde(default)]
    pub fsync: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    pub id: String,
    pub tenant: String,
    #[serde(default)]
    pub name: Option<String>,
    /// A client secret in clear: accepted in a hand-written file, replaced by `secret_hash`
    /// the first time ringside starts with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// `sha256$<salt>$<digest>` of the client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_hash: Option<String>,
    /// PEM certificates whose keys may sign client assertions (certificate credentials).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<String>,
    #[serde(default = "default_permissions")]
    pub permissions: Vec<String>,
    /// The calling webhook: incoming calls are notified here.
    #[serde(default)]
    pub webhook: Option<String>,
    /// Extra addresses (SIP URIs, phone numbers) that route calls to this app.
    #[serde(default)]
    pub addresses: Vec<String>,
}

pub fn default_permissions() -> Vec<String> {
    [
        "Calls.Initiate.All",
        "Calls.InitiateGroupCall.All",
        "Calls.JoinGroupCall.All",
        "Calls.JoinGroupCallAsGuest.All",
        "Calls.AccessMedia.All",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

/// Scripted behaviour of a simulated endpoint; set in config per user, or per call through a
/// target's `ringside` property (same keys, camelCase).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Behaviour {
    /// answer (default), busy, decline, noAnswer, unavailable
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default, alias = "answer_after_ms")]
    pub answer_after_ms: Option<u64>,
    #[serde(default, alias = "hangup_after_ms")]
    pub hangup_after_ms: Option<u64>,
    #[serde(default, alias = "hold_at_ms")]
    pub hold_at_ms: Option<u64>,
    #[serde(default, alias = "resume_at_ms")]
    pub resume_at_ms: Option<u64>,
    /// Start sharing the screen (a contentSharingSession) this long after connect.
    #[serde(default, alias = "share_screen_at_ms")]
    pub share_screen_at_ms: Option<u64>,
    #[serde(default, alias = "stop_sharing_at_ms")]
    pub stop_sharing_at_ms: Option<u64>,
    /// Digits pressed after the call is connected, as in-band DTMF in the user's audio.
    #[serde(default)]
    pub dtmf: Vec<DtmfPress>,
    /// WAV files the user speaks after the call is connected.
    #[serde(default)]
    pub speak: Vec<Speech>,
    /// How much of what the user hears is kept for `ringside heard` (default 300 s, 0: none).
    #[serde(default, alias = "record_heard_seconds")]
    pub record_heard_seconds: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Speech {
    /// https URL, or file:// below `server.prompt_folder` — the same rules as prompts.
    pub uri: String,
    #[serde(default, alias = "at_ms")]
    pub at_ms: u64,
    #[serde(default, rename = "loop")]
    pub looped: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DtmfPress {
    #[serde(alias = "at_ms")]
    pub at_ms: u64,
    pub digits: String,
    #[serde(default, alias = "gap_ms")]
    pub gap_ms: Option<u64>,
    /// How long each key is held (default 100 ms).
    #[serde(default, alias = "tone_ms")]
    pub tone_ms: Option<u64>,
}

impl Behaviour {
    /// Per-call script overrides the configured behaviour key by key.
    pub fn merged(&self, over: &Behaviour) -> Behaviour {
        Behaviour {
            action: over.action.clone().or(self.action.clone()),
            answer_after_ms: over.answer_after_ms.or(self.answer_after_ms),
            hangup_after_ms: over.hangup_after_ms.or(self.hangup_after_ms),
            hold_at_ms: over.hold_at_ms.or(self.hold_at_ms),
            resume_at_ms: over.resume_at_ms.or(self.resume_at_ms),
            share_screen_at_ms: over.share_screen_at_ms.or(self.share_screen_at_ms),
            stop_sharing_at_ms: over.stop_sharing_at_ms.or(self.stop_sharing_at_ms),
            dtmf: if over.dtmf.is_empty() {
                self.dtmf.clone()
            } else {
                over.dtmf.clone()
            },
            speak: if over.speak.is_empty() {
                self.speak.clone()
            } else {
                over.speak.clone()
            },
            record_heard_seconds: over.record_heard_seconds.or(self.record_heard_seconds),
        }
    }
    pub fn validate(&self) -> Result<(), String> {
        if let Some(a) = &self.action
            && !["answer", "busy", "decline", "noanswer", "unavailable"]
                .contains(&a.to_ascii_lowercase().as_str())
        {
            return Err(format!(
                "action '{a}' must be answer, busy, decline, noAnswer or unavailable"
            ));
        }
        for d in &self.dtmf {
            if let Some(c) = d
                .digits
                .chars()
                .find(|c| graph::Tone::from_char(*c).is_none())
            {
                return Err(format!(
                    "dtmf digit '{c}' is not a DTMF key (0-9, *, #, A-D)"
                ));
            }
            if d.tone_ms.is_some_and(|t| !(40..=2000).contains(&t)) {
                return Err("dtmf toneMs must be between 40 and 2000".into());
            }
        }
        for s in &self.speak {
            let lower = s.uri.to_ascii_lowercase();
            if !(lower.starts_with("https://")
                || lower.starts_with("http://")
                || lower.starts_with("file://"))
            {
                return Err(format!(
                    "speak uri '{}' must be an http(s) or file:// URL",
                    s.uri
                ));
            }
        }
        if self.record_heard_seconds.is_some_and(|s| s > 3600) {
            return Err("recordHeardSeconds must be at most 3600".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub id: String,
    pub tenant: String,
    #[serde(default)]
    pub display_name: Option<String>,
    /// `simulated` (scripted, in-process) or `sip` (calls ring the phones registered as
    /// `sip_user`); WebRTC arrives with a later issue.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    #[serde(default)]
    pub behaviour: Behaviour,
    /// SIP username (the user part of its address of record); defaults to the id.
    #[serde(default)]
    pub sip_user: Option<String>,
    /// SIP password: replaced by `sip_ha1` (digest hashes) when ringside starts.
    #[serde(default)]
    pub sip_password: Option<String>,
    #[serde(default)]
    pub sip_ha1: Option<SipHa1>,
}

/// A SIP user's digest secrets for one realm (RFC 8760): HA1 = H(user:realm:password).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SipHa1 {
    pub realm: String,
    pub md5: String,
    pub sha256: String,
}

impl User {
    pub fn sip_username(&self) -> &str {
        self.sip_user.as_deref().unwrap_or(&self.id)
    }
}

/// Where SIP listens (UDP and TCP) when `[sip]` names no address at all: loopback.
pub const DEFAULT_SIP_LISTEN: &str = "127.0.0.1:5060";

/// `[sip]`: SIP transports and the registrar. Absent: no SIP.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipConfig {
    #[serde(default)]
    pub udp: Vec<String>,
    /// SIP over TLS (`sips:`), with the server's certificate (`tls_cert`/`tls_key`, or the
    /// generated one in dev mode).
    #[serde(default)]
    pub tls: Vec<String>,
    #[serde(default)]
    pub tcp: Vec<String>,
    #[serde(default = "default_realm")]
    pub realm: String,
    #[serde(default = "default_min_expires")]
    pub min_expires: u32,
    #[serde(default = "default_max_expires")]
    pub max_expires: u32,
    /// Digest algorithms to challenge with, most preferred first (default SHA-256, MD5).
    #[serde(default)]
    pub digest: Vec<String>,
    /// Address RTP binds to and puts in SDP (default 127.0.0.1), and its port range.
    #[serde(default)]
    pub rtp_ip: Option<String>,
    #[serde(default = "default_rtp_ports")]
    pub rtp_ports: (u16, u16),
    /// A connected phone that sends no RTP (nor RTCP) for this long is hung up and its call
    /// ends with 410/301005; 0 turns the check off. Not applied while the phone holds.
    #[serde(default = "default_media_timeout")]
    pub media_timeout_seconds: u64,
    /// Overload protection: new SIP calls admitted per second (bursts of one second's
    /// worth); more get 503 with Retry-After.
    #[serde(default = "default_new_calls_per_second")]
    pub max_new_calls_per_second: u32,
    /// SIP calls at once (in and out); more get 503. 0: no limit.
    #[serde(default = "default_max_sip_calls")]
    pub max_calls: usize,
    /// INVITEs must carry digest credentials of a directory SIP user (407 challenge, 403 when
    /// wrong): turn on when the SIP port is reachable by more than your own phones.
    #[serde(default)]
    pub authenticate_invites: bool,
    /// SIP trunks: where calls to phone numbers go.
    #[serde(default)]
    pub trunks: Vec<Trunk>,
}

impl SipConfig {
    /// The UDP and TCP addresses to listen on: as configured, or loopback port 5060 for both
    /// when no transport names an address.
    pub fn udp_and_tcp(&self) -> (Vec<String>, Vec<String>) {
        if self.udp.is_empty() && self.tcp.is_empty() && self.tls.is_empty() {
            let here = vec![DEFAULT_SIP_LISTEN.to_string()];
            (here.clone(), here)
        } else {
            (self.udp.clone(), self.tcp.clone())
        }
    }
}

/// `[[sip.trunks]]`: a carrier or PBX that reaches phone numbers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Trunk {
    pub name: String,
    /// Where INVITEs go: `sip:host:port`, `;transport=tcp` for TCP.
    pub proxy: String,
    /// Host of the Request-URI (`sip:+15551234567@domain`); default: the proxy's host.
    #[serde(default)]
    pub domain: Option<String>,
    /// Digest account for the carrier's 401/407 challenges (kept in clear: ringside must
    /// answer challenges with it).
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// E.164 prefixes this trunk carries (`"+1"`); empty: every number. The longest
    /// matching prefix of all trunks wins.
    #[serde(default)]
    pub routes: Vec<String>,
    /// The From number when the calling app has no resource account with a number.
    #[serde(default)]
    pub caller_id: Option<String>,
    /// The carrier's addresses: INVITEs from them need no authentication even with
    /// `authenticate_invites` (a carrier does not answer ringside's challenges).
    #[serde(default)]
    pub accept_from: Vec<String>,
}

impl Trunk {
    /// How well this trunk matches `number`: the length of its longest matching prefix
    /// (0 for a catch-all trunk), or None.
    pub fn matches(&self, number: &str) -> Option<usize> {
        if self.routes.is_empty() {
            return Some(0);
        }
        let n = normalize_number(number)?;
        self.routes
            .iter()
            .filter_map(|r| normalize_number(r))
            .filter(|r| n.starts_with(r.as_str()))
            .map(|r| r.len())
            .max()
    }

    pub fn request_uri(&self, number: &str) -> String {
        let host = self.domain.clone().unwrap_or_else(|| {
            let p = self.proxy.trim();
            let p = p
                .strip_prefix("sips:")
                .or_else(|| p.strip_prefix("sip:"))
                .unwrap_or(p);
            p.split(';').next().unwrap_or(p).to_string()
        });
        format!("sip:{number}@{host}")
    }
}

/// A phone number in a comparable form: `+` and digits only (visual separators and `tel:`
/// dropped); None if it is not a number.
pub fn normalize_number(s: &str) -> Option<String> {
    let s = s.trim();
    let s = s.strip_prefix("tel:").unwrap_or(s);
    let plus = s.starts_with('+');
    let mut out = String::new();
    for c in s.trim_start_matches('+').chars() {
        match c {
            '0'..='9' => out.push(c),
            '-' | '.' | ' ' | '(' | ')' => {}
            _ => return None,
        }
    }
    if out.is_empty() {
        return None;
    }
    Some(if plus { format!("+{out}") } else { out })
}

/// `[[application_instances]]`: an app's resource account, which owns a phone number. Calls
/// to the number reach the app with this identity as the target; the app calls phone numbers
/// with it as `source.identity.applicationInstance`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ApplicationInstance {
    pub id: String,
    pub app: String,
    #[serde(default)]
    pub display_name: Option<String>,
    /// E.164, e.g. `+15550100`.
    pub phone: String,
}

fn default_media_timeout() -> u64 {
    30
}

fn default_new_calls_per_second() -> u32 {
    1000
}

fn default_max_sip_calls() -> usize {
    10_000
}

fn default_rtp_ports() -> (u16, u16) {
    (30000, 31000)
}

fn default_realm() -> String {
    "ringside".into()
}
fn default_min_expires() -> u32 {
    60
}
fn default_max_expires() -> u32 {
    3600
}

fn default_endpoint() -> String {
    "simulated".into()
}

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

    pub fn save(&self, path: &Path) -> Result<(), String> {
        let text = toml::to_string_pretty(self).map_err(|e| e.to_string())?;
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, text).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))
    }

    /// Replace clear-text secrets by their hashes; true when something changed.
    pub fn hash_secrets(&mut self) -> bool {
        let mut changed = false;
        for a in &mut self.apps {
            if let Some(s) = a.secret.take() {
                a.secret_hash = Some(crate::auth::hash_secret(&s));
                changed = true;
            }
        }
        let realm = self
            .sip
            .as_ref()
            .map(|s| s.realm.clone())
            .unwrap_or_else(default_realm);
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

    pub fn outbound_policy(&self) -> crate::netpolicy::Policy {
        crate::netpolicy::Policy {
            dev_mode: self.server.dev_mode,
            allow: self.server.outbound_allow.clone(),
            allow_private_network: self.server.allow_private_network,
        }
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
        let secret: String = {
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
        };
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
            sip: Some(SipConfig {
                udp: vec!["127.0.0.1:5060".into()],
                tcp: vec!["127.0.0.1:5060".into()],
                tls: vec![],
                realm: default_realm(),
                min_expires: default_min_expires(),
                max_expires: default_max_expires(),
                digest: vec![],
                rtp_ip: None,
                rtp_ports: default_rtp_ports(),
                media_timeout_seconds: default_media_timeout(),
                max_new_calls_per_second: default_new_calls_per_second(),
                max_calls: default_max_sip_calls(),
                authenticate_invites: false,
                trunks: vec![],
            }),
            application_instances: vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(crate::auth::verify_secret(
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
