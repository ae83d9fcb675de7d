//! SIP settings: listeners, registrar limits, RTP, trunks and phone numbers.

use serde::{Deserialize, Serialize};

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
    /// The dev seed's SIP: UDP and TCP on loopback port 5060, defaults elsewhere.
    pub fn dev() -> SipConfig {
        SipConfig {
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
        }
    }

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

/// `[webrtc]`: where browsers send their media (one UDP socket for every browser leg). The
/// address must be one browsers can reach: its IP goes into every SDP answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WebRtcConfig {
    #[serde(default = "default_webrtc_udp")]
    pub udp: String,
    /// Opus encoder complexity for what browsers hear, 0 (cheapest) to 10. Every browser leg
    /// has its own encoder; at 16 kHz speech, 1 costs a sixth of libopus's default 9 and
    /// sounds much the same (docs/webrtc.md).
    #[serde(default = "default_opus_complexity")]
    pub opus_complexity: u8,
    /// `voice` (SILK's speech model, the default) or `low-delay` (CELT only: about a third
    /// less CPU per browser leg, at some cost in quality at low bitrates).
    #[serde(default = "default_opus_mode")]
    pub opus_mode: String,
    /// Threads for browser legs' sessions and codecs (0: one per core).
    #[serde(default)]
    pub threads: usize,
    /// Ask browsers for Opus DTX (`usedtx=1`): while a microphone is silent or muted, the
    /// browser sends a comfort-noise packet every 400 ms instead of 50 packets a second.
    #[serde(default = "crate::settings::default_true")]
    pub opus_dtx: bool,
}

fn default_opus_complexity() -> u8 {
    1
}

fn default_opus_mode() -> String {
    "voice".into()
}

fn default_webrtc_udp() -> String {
    "127.0.0.1:0".into()
}

impl Default for WebRtcConfig {
    fn default() -> Self {
        WebRtcConfig {
            udp: default_webrtc_udp(),
            opus_complexity: default_opus_complexity(),
            opus_mode: default_opus_mode(),
            threads: 0,
            opus_dtx: true,
        }
    }
}
