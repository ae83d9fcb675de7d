//! The directory's entries: tenants, applications, users and resource accounts.

use crate::behaviour::Behaviour;
use serde::{Deserialize, Serialize};

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

fn default_endpoint() -> String {
    "simulated".into()
}
