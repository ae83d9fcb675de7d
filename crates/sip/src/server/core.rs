//! What the SIP endpoint's parts share: the state behind every transaction ([`Ctx`]), a
//! leg's dialog and RTP ([`SipLeg`]), the events and commands exchanged with the call
//! engine, and the directory the registrar asks for users' secrets.

use crate::digest::{Algorithm, Nonces};
use crate::registrar::Registrar;
use crate::rtp_port::{PortRange, RtpLeg};
use crate::sdp;
use media::port::PortRef;
use rsipstack::dialog::dialog::DialogStateSender;
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::Header;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// Where the directory keeps a SIP user's secrets: HA1 per algorithm, never the password.
pub trait Directory: Send + Sync + 'static {
    /// HA1 of `user` in `realm` for `alg`; None if the user has no SIP credentials.
    fn ha1(&self, user: &str, realm: &str, alg: Algorithm) -> Option<String>;
    /// A REGISTER changed `user`'s contacts here; `bindings` is what this node now holds for
    /// them (empty: none). Nodes of a cluster share them.
    fn registered(&self, _user: &str, _bindings: &[crate::registrar::Binding]) {}
    /// The node is stopping: new calls get 503 and OPTIONS probes 503, so a dispatcher in
    /// front sends new calls elsewhere while the dialogs here go on.
    fn draining(&self) -> bool {
        false
    }
}

/// A token bucket for new calls.
pub(crate) struct Admission {
    pub(crate) rate: f64,
    pub(crate) tokens: f64,
    pub(crate) last: std::time::Instant,
}

impl Admission {
    pub(crate) fn new(rate: u32) -> Admission {
        Admission {
            rate: rate.max(1) as f64,
            tokens: rate.max(1) as f64,
            last: std::time::Instant::now(),
        }
    }

    /// Take a token if there is one.
    pub(crate) fn admit(&mut self) -> bool {
        let now = std::time::Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What happens to SIP legs, for the call engine.
pub enum SipEvent {
    /// A new call. Reply with the leg's id, or the SIP status to refuse it with.
    Incoming {
        /// The Request-URI, e.g. `sip:bot@contoso.example`.
        to_uri: String,
        to_user: Option<String>,
        from_user: Option<String>,
        from_display: Option<String>,
        /// The leg's media, for its room.
        port: PortRef,
        reply: oneshot::Sender<Result<String, u16>>,
    },
    /// The phone is ringing (180/183 to ringside's INVITE).
    Ringing { leg_id: String },
    /// The leg is connected: our 200 OK went out, or the phone answered ringside's INVITE
    /// (then `port` is its media, for its room).
    Answered {
        leg_id: String,
        port: Option<PortRef>,
        /// The far end's Allow lists REFER: it can be transferred by REFER.
        refer: bool,
    },
    /// A REFER to transfer the leg did not lead to the transferee's new call: refused by the
    /// far end (`accepted` false: fall back to re-bridging), or accepted but then reported
    /// failed in a NOTIFY (`accepted` true).
    ReferFailed {
        leg_id: String,
        accepted: bool,
        status: u16,
    },
    /// ringside's call to a phone failed: every contact refused or none answered.
    Failed {
        leg_id: String,
        status: u16,
        reason: String,
    },
    /// The far end put the call on hold (a re-INVITE or UPDATE offering `sendonly` or
    /// `inactive`).
    Held { leg_id: String },
    /// The far end took the call off hold.
    Resumed { leg_id: String },
    /// No RTP arrived for the media timeout: ringside hung the leg up.
    MediaLost { leg_id: String, reason: String },
    /// BYE, CANCEL or a failure ended the leg.
    HungUp { leg_id: String },
}

/// What the call engine wants done with a SIP leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegCommand {
    /// Ring all of `targets` at once (a user's registered contacts, or a number through a
    /// trunk).
    Dial {
        leg_id: String,
        targets: Vec<Target>,
        caller: Caller,
    },
    Answer {
        leg_id: String,
    },
    Reject {
        leg_id: String,
        status: u16,
    },
    Hangup {
        leg_id: String,
    },
    /// Transfer the leg by REFER: the far end is asked to call `sip:<token>@<ringside>`,
    /// and that INVITE arrives as a [`SipEvent::Incoming`] whose `to_user` is `token`.
    Refer {
        leg_id: String,
        token: String,
    },
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) struct SipLeg {
    pub(crate) dialog: InviteDialog,
    pub(crate) answer: Vec<u8>,
    pub(crate) rtp: RtpLeg,
    /// ringside's side of the SDP (its version goes up with every new answer).
    pub(crate) local: sdp::Local,
    /// The far end holds the call.
    pub(crate) held: bool,
    pub(crate) answered: bool,
    /// Since when media is expected: the answer, or the end of a hold.
    pub(crate) media_since: std::time::Instant,
    /// The far end accepts REFER (its Allow header says so).
    pub(crate) refer: bool,
}

/// Whether the Allow headers of a message list REFER.
pub fn allows_refer<'a>(mut headers: impl Iterator<Item = &'a Header>) -> bool {
    headers.any(|h| match h {
        Header::Allow(v) => v
            .value()
            .split(',')
            .any(|m| m.trim().eq_ignore_ascii_case("REFER")),
        _ => false,
    })
}

pub(crate) struct Ctx {
    pub(crate) dialogs: Arc<DialogLayer>,
    pub(crate) state_tx: DialogStateSender,
    pub(crate) contact: rsipstack::sip::Uri,
    pub(crate) events: mpsc::UnboundedSender<SipEvent>,
    pub(crate) legs: Mutex<HashMap<String, SipLeg>>,
    /// Calls out that are still ringing: leg id → the INVITE of every branch.
    pub(crate) dialing: Mutex<HashMap<String, Vec<InviteDialog>>>,
    /// Commands for incoming legs that came before the leg was registered (the engine and
    /// the bot can be faster than the INVITE task), with when they came.
    pub(crate) early: Mutex<HashMap<String, (LegCommand, std::time::Instant)>>,
    pub(crate) admission: Mutex<Admission>,
    pub(crate) max_calls: usize,
    pub(crate) authenticate_invites: bool,
    pub(crate) trusted_sources: Vec<IpAddr>,
    /// Dialog id → leg id.
    pub(crate) by_dialog: Mutex<HashMap<String, String>>,
    pub(crate) rtp_ip: IpAddr,
    pub(crate) rtp_ports: PortRange,
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) nonces: Nonces,
    pub(crate) realm: String,
    pub(crate) directory: Arc<dyn Directory>,
    pub(crate) registrar: Arc<Mutex<Registrar>>,
}

/// Where one branch of a call goes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Target {
    /// The Request-URI: a registered Contact, or `sip:+15551234567@carrier.example`.
    pub uri: String,
    /// Send the INVITE here instead of resolving the URI (a trunk's outbound proxy,
    /// `sip:host:port[;transport=tcp]`).
    pub proxy: Option<String>,
    /// Digest credentials for a 401/407 challenge (a trunk's account).
    pub auth: Option<(String, String)>,
}

impl Target {
    pub fn contact(uri: impl Into<String>) -> Target {
        Target {
            uri: uri.into(),
            ..Default::default()
        }
    }
}

/// Who is calling, as the phone shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// User part of the From URI (characters a SIP user part allows; others are dropped).
    pub user: String,
    pub display: Option<String>,
}
