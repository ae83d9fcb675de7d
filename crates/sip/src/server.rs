//! The SIP endpoint: rsipstack's transports and transactions, with ringside's registrar and
//! digest authentication on top. Only this module touches rsipstack.
//!
//! It registers users (REGISTER with digest, MD5 and SHA-256) and takes calls: an INVITE
//! becomes a leg — its SDP answered, its RTP on a port of the configured range — that the call
//! engine learns of through [`SipEvent::Incoming`] and drives with [`LegCommand`]s.

mod core;
mod dial;
mod in_dialog;

use self::core::{Admission, Ctx, SipLeg, now_ms};
pub use self::core::{Caller, Directory, LegCommand, SipEvent, Target, allows_refer};
pub use dial::best_failure;
pub use in_dialog::{info_key, sipfrag_status};

use crate::digest::{self, Algorithm, NonceCheck, Nonces};
use crate::registrar::{self, Binding, Register, Registrar};
use crate::rtp_port::{PortRange, RtpLeg};
use crate::sdp::{self, SdpError};
use crate::session::RtpSession;
use rsipstack::EndpointBuilder;
use rsipstack::dialog::dialog::{Dialog, DialogState};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::{Header, Method, Request, StatusCode};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::{TcpListenerConnection, TransportLayer, udp::UdpConnection};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct Config {
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
    /// SIP over TLS listeners, and the certificate chain and key (PEM) they present.
    pub tls: Vec<SocketAddr>,
    pub tls_pem: Option<(Vec<u8>, Vec<u8>)>,
    pub realm: String,
    /// Key for stateless nonces (random per process is fine: a restart only makes phones
    /// authenticate again).
    pub nonce_secret: [u8; 32],
    pub nonce_lifetime_s: u64,
    pub min_expires: u32,
    pub max_expires: u32,
    /// Challenge with these, most preferred first (RFC 8760 §2.4). Some clients (SIPp 3.6,
    /// older phones) only look at the first challenge and need MD5 there.
    pub algorithms: Vec<Algorithm>,
    /// Address RTP is bound to and advertised in SDP, and the port range.
    pub rtp_ip: IpAddr,
    pub rtp_ports: (u16, u16),
    /// Hang up a connected leg that has sent no RTP or RTCP for this long (0: never).
    pub media_timeout_s: u64,
    /// Overload protection: new calls (INVITEs outside a dialog) admitted per second, with
    /// bursts of up to one second's worth; beyond it they get 503 with Retry-After.
    pub max_new_calls_per_second: u32,
    /// At most this many SIP calls at once (incoming and outgoing); beyond it, 503.
    pub max_calls: usize,
    /// Phones must prove who they are to place calls: INVITEs are challenged (407) and
    /// checked against the directory's SIP credentials, like REGISTER.
    pub authenticate_invites: bool,
    /// Addresses whose INVITEs need no authentication: the trunks' carriers.
    pub trusted_sources: Vec<IpAddr>,
}

/// RTP counters over connected legs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtpTotals {
    pub legs: usize,
    /// SIP dialogs the stack holds (incoming and outgoing, until they end).
    pub dialogs: usize,
    pub packets_in: u64,
    pub packets_out: u64,
    /// Expected by sequence number and received, of the far ends' streams.
    pub expected: u64,
    pub received: u64,
    /// Arrived too late for their playout time.
    pub late: u64,
    /// 20 ms frames concealed because their packet never came.
    pub concealed: u64,
    /// Not RTP, wrong payload type, or from the wrong source.
    pub dropped: u64,
}

/// A running SIP endpoint.
pub struct Sip {
    pub registrar: Arc<Mutex<Registrar>>,
    /// SIP responses sent, by status code (`/metrics`).
    pub responses: Arc<ResponseCounts>,
    ctx: Arc<Ctx>,
    commands: mpsc::UnboundedSender<LegCommand>,
    /// The addresses actually bound (port 0 resolved).
    pub addrs: Vec<(String, SocketAddr)>,
    cancel: CancellationToken,
}

/// Responses sent, by status code (100-699), counted as they leave.
pub struct ResponseCounts([std::sync::atomic::AtomicU64; 600]);

impl Default for ResponseCounts {
    fn default() -> Self {
        ResponseCounts(std::array::from_fn(|_| Default::default()))
    }
}

impl ResponseCounts {
    /// (code, count) for every code sent at least once.
    pub fn counts(&self) -> Vec<(u16, u64)> {
        self.0
            .iter()
            .enumerate()
            .map(|(i, n)| (i as u16 + 100, n.load(std::sync::atomic::Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    fn note(&self, msg: &rsipstack::sip::SipMessage) {
        if let rsipstack::sip::SipMessage::Response(r) = msg
            && let Some(n) = (r.status_code.code() as usize)
                .checked_sub(100)
                .and_then(|i| self.0.get(i))
        {
            n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// The inspector the endpoint owns, counting into the shared [`ResponseCounts`].
struct ForwardCounts(Arc<ResponseCounts>);

impl rsipstack::transaction::endpoint::MessageInspector for ForwardCounts {
    fn before_send(
        &self,
        msg: rsipstack::sip::SipMessage,
        _dest: Option<&rsipstack::transport::SipAddr>,
    ) -> rsipstack::sip::SipMessage {
        self.0.note(&msg);
        msg
    }
    fn after_received(
        &self,
        msg: rsipstack::sip::SipMessage,
        _from: Option<&rsipstack::transport::SipAddr>,
    ) -> rsipstack::sip::SipMessage {
        msg
    }
}

impl Drop for Sip {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The configured UDP, TCP and TLS listeners.
async fn bind_transports(
    cfg: &Config,
    cancel: &CancellationToken,
) -> Result<TransportLayer, String> {
    let transports = TransportLayer::new(cancel.clone());
    for a in &cfg.udp {
        let c = UdpConnection::create_connection(*a, None, Some(cancel.child_token()))
            .await
            .map_err(|e| format!("SIP UDP {a}: {e}"))?;
        transports.add_transport(c.into());
    }
    for a in &cfg.tcp {
        let c = TcpListenerConnection::new(*a, None)
            .await
            .map_err(|e| format!("SIP TCP {a}: {e}"))?;
        transports.add_transport(c.into());
    }
    if !cfg.tls.is_empty() {
        let (cert, key) = cfg
            .tls_pem
            .clone()
            .ok_or("SIP TLS needs a certificate and key")?;
        // rsipstack builds its rustls configs with the process-wide provider; ringside's
        // is aws-lc-rs (installing it twice is harmless).
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        for a in &cfg.tls {
            let c = rsipstack::transport::TlsListenerConnection::new(
                *a,
                None,
                rsipstack::transport::tls::TlsConfig {
                    cert: Some(cert.clone()),
                    key: Some(key.clone()),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| format!("SIP TLS {a}: {e}"))?;
            transports.add_transport(c.into());
        }
    }
    Ok(transports)
}

impl Sip {
    /// Bind the configured transports and start answering.
    pub async fn start(
        cfg: Config,
        directory: Arc<dyn Directory>,
        events: mpsc::UnboundedSender<SipEvent>,
    ) -> Result<Sip, String> {
        let cancel = CancellationToken::new();
        let transports = bind_transports(&cfg, &cancel).await?;
        let responses = Arc::new(ResponseCounts::default());
        let endpoint = EndpointBuilder::new()
            .with_cancel_token(cancel.clone())
            .with_transport_layer(transports)
            .with_user_agent("ringside")
            .with_inspector(Box::new(ForwardCounts(responses.clone())))
            .build();
        let addrs = endpoint
            .get_addrs()
            .into_iter()
            .filter_map(|a| {
                let t = a
                    .r#type
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "UDP".into());
                a.addr
                    .to_string()
                    .parse::<SocketAddr>()
                    .ok()
                    .map(|s| (t, s))
            })
            .collect();
        let mut incoming = endpoint
            .incoming_transactions()
            .map_err(|e| format!("SIP endpoint: {e}"))?;
        let mut r = Registrar::default();
        r.min_expires = cfg.min_expires;
        r.max_expires = cfg.max_expires;
        let registrar = Arc::new(Mutex::new(r));
        let dialogs = Arc::new(DialogLayer::new(endpoint.inner.clone()));
        let (state_tx, mut state_rx) = dialogs.new_dialog_state_channel();
        let contact = endpoint
            .get_addrs()
            .first()
            .map(|a| rsipstack::sip::Uri {
                scheme: Some(rsipstack::sip::Scheme::Sip),
                auth: None,
                host_with_port: a.addr.clone(),
                params: vec![],
                headers: vec![],
            })
            .ok_or("SIP: no transport bound")?;
        let ctx = Arc::new(Ctx {
            dialogs,
            state_tx,
            contact,
            events,
            legs: Mutex::new(HashMap::new()),
            dialing: Mutex::new(HashMap::new()),
            early: Mutex::new(HashMap::new()),
            admission: Mutex::new(Admission::new(cfg.max_new_calls_per_second)),
            authenticate_invites: cfg.authenticate_invites,
            trusted_sources: cfg.trusted_sources.clone(),
            max_calls: if cfg.max_calls == 0 {
                usize::MAX
            } else {
                cfg.max_calls
            },
            by_dialog: Mutex::new(HashMap::new()),
            rtp_ip: cfg.rtp_ip,
            rtp_ports: PortRange::new(cfg.rtp_ports.0, cfg.rtp_ports.1),
            nonces: Nonces::new(cfg.nonce_secret, cfg.nonce_lifetime_s),
            realm: cfg.realm.clone(),
            directory,
            registrar: registrar.clone(),
            algorithms: if cfg.algorithms.is_empty() {
                vec![Algorithm::Sha256, Algorithm::Md5]
            } else {
                cfg.algorithms.clone()
            },
        });
        tokio::spawn(async move { endpoint.serve().await });
        {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                while let Some(st) = state_rx.recv().await {
                    ctx.dialog_state(st);
                }
            });
        }
        let (commands, mut command_rx) = mpsc::unbounded_channel::<LegCommand>();
        {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                while let Some(c) = command_rx.recv().await {
                    match c {
                        LegCommand::Dial {
                            leg_id,
                            targets,
                            caller,
                        } => {
                            tokio::spawn(ctx.clone().dial(leg_id, targets, caller));
                        }
                        LegCommand::Refer { leg_id, token } => ctx.refer(leg_id, token),
                        c => ctx.command(c),
                    }
                }
            });
        }
        if cfg.media_timeout_s > 0 {
            let ctx = ctx.clone();
            let token = cancel.clone();
            let limit = std::time::Duration::from_secs(cfg.media_timeout_s);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
                loop {
                    tokio::select! {
                        _ = token.cancelled() => return,
                        _ = tick.tick() => ctx.media_watchdog(limit),
                    }
                }
            });
        }
        let keep = ctx.clone();
        let token = cancel.clone();
        tokio::spawn(async move {
            loop {
                let tx = tokio::select! {
                    _ = token.cancelled() => return,
                    tx = incoming.recv() => match tx {
                        Some(tx) => tx,
                        None => return,
                    },
                };
                let ctx = ctx.clone();
                tokio::spawn(ctx.handle(tx));
            }
        });
        Ok(Sip {
            registrar,
            responses,
            ctx: keep,
            commands,
            addrs,
            cancel,
        })
    }

    /// Answer, reject or hang up a leg.
    pub fn command(&self, c: LegCommand) {
        let _ = self.commands.send(c);
    }

    /// RTP counters summed over the connected legs (for benchmarks and monitoring).
    pub fn rtp_totals(&self) -> RtpTotals {
        let legs = self.ctx.legs.lock().expect("legs");
        let mut t = RtpTotals {
            dialogs: self.ctx.dialogs.len(),
            ..RtpTotals::default()
        };
        for l in legs.values() {
            let s = l.rtp.session.lock().expect("rtp");
            let st = s.stats();
            let (expected, received) = s.reception_totals();
            t.legs += 1;
            t.packets_in += st.packets_in;
            t.packets_out += st.packets_out;
            t.expected += expected;
            t.received += received;
            t.late += st.jitter.late;
            t.concealed += st.jitter.lost;
            t.dropped += st.dropped;
        }
        t
    }

    /// The user's registered contacts.
    pub fn contacts(&self, user: &str) -> Vec<Binding> {
        self.registrar
            .lock()
            .expect("registrar")
            .lookup(user, now_ms())
    }
}

/// The raw values of one kind of header.
fn values<'a>(req: &'a Request, pick: impl Fn(&'a Header) -> Option<&'a str>) -> Vec<&'a str> {
    req.headers.iter().filter_map(pick).collect()
}

/// What the registrar reads from a REGISTER.
#[derive(Debug)]
pub struct RegisterFields {
    pub user: String,
    /// Digest credentials that parse (others are ignored).
    pub credentials: Vec<digest::Credentials>,
    pub contacts: Option<Vec<registrar::ContactReq>>,
    pub expires: Option<u32>,
    pub call_id: String,
    pub cseq: u32,
}

/// Read a REGISTER's fields; an error says what is malformed (answered 400).
pub fn read_register(req: &Request) -> Result<RegisterFields, String> {
    let to = values(req, |h| match h {
        Header::To(v) => Some(v.value()),
        _ => None,
    });
    let user = to
        .first()
        .and_then(|v| uri_user(v))
        .ok_or("the To header has no sip: user")?;
    let credentials = values(req, |h| match h {
        Header::Authorization(v) => Some(v.value()),
        _ => None,
    })
    .iter()
    .filter_map(|a| digest::parse_authorization(a).ok())
    .collect();
    let contacts = registrar::parse_contacts(&values(req, |h| match h {
        Header::Contact(v) => Some(v.value()),
        _ => None,
    }))?;
    let expires = match values(req, |h| match h {
        Header::Expires(v) => Some(v.value()),
        _ => None,
    })
    .first()
    {
        None => None,
        Some(v) => Some(
            v.trim()
                .parse::<u32>()
                .map_err(|_| format!("Expires '{}' is not a number of seconds", v.trim()))?,
        ),
    };
    let call_id = values(req, |h| match h {
        Header::CallId(v) => Some(v.value()),
        _ => None,
    })
    .first()
    .map(|s| s.trim().to_string())
    .filter(|s| !s.is_empty())
    .ok_or("no Call-ID")?;
    let cseq = values(req, |h| match h {
        Header::CSeq(v) => Some(v.value()),
        _ => None,
    })
    .first()
    .and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok())
    .ok_or("no valid CSeq")?;
    Ok(RegisterFields {
        user,
        credentials,
        contacts,
        expires,
        call_id,
        cseq,
    })
}

/// Parse a datagram as a SIP request (rsipstack's parser): for diagnostics and fuzzing.
pub fn parse_request(data: &[u8]) -> Result<Request, String> {
    match rsipstack::sip::SipMessage::try_from(data).map_err(|e| e.to_string())? {
        rsipstack::sip::SipMessage::Request(r) => Ok(r),
        rsipstack::sip::SipMessage::Response(_) => Err("a response, not a request".into()),
    }
}

/// The methods ringside handles.
const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, REFER, NOTIFY, UPDATE, PRACK";

fn status_code(code: u16) -> StatusCode {
    match code {
        403 => StatusCode::Forbidden,
        404 => StatusCode::NotFound,
        408 => StatusCode::RequestTimeout,
        480 => StatusCode::TemporarilyUnavailable,
        486 => StatusCode::BusyHere,
        488 => StatusCode::NotAcceptableHere,
        503 => StatusCode::ServiceUnavailable,
        _ => StatusCode::Decline,
    }
}

/// Where a request came from: the top Via's `received` (set when the sender is not where it
/// said), else its sent-by host.
pub fn source_ip(req: &Request) -> Option<IpAddr> {
    let via = values(req, |h| match h {
        Header::Via(v) => Some(v.value()),
        _ => None,
    })
    .first()
    .copied()?;
    let via = via.split(',').next()?;
    let mut parts = via.split(';');
    let sent_by = parts.next()?.split_whitespace().nth(1)?;
    if let Some(r) = parts.find_map(|p| p.trim().strip_prefix("received=")) {
        return r.trim().parse().ok();
    }
    let host = if let Some(rest) = sent_by.strip_prefix('[') {
        rest.split(']').next()?
    } else {
        sent_by.split(':').next()?
    };
    host.parse().ok()
}

/// The user part of the URI in a From/To value (`"Name" <sip:user@host>;tag=x`).
fn uri_user(value: &str) -> Option<String> {
    let uri = match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => &value[a + 1..b],
        _ => value.split(';').next()?,
    };
    let rest = uri
        .trim()
        .strip_prefix("sip:")
        .or_else(|| uri.trim().strip_prefix("sips:"))?;
    let (user, _) = rest.split_once('@')?;
    let user = user.split(';').next()?;
    (!user.is_empty()).then(|| user.to_string())
}

/// The SDP answer to an INVITE's offer and what it settles.
///
/// A late offer (RFC 3261 §13.2.1: INVITE without SDP): ringside offers in its 200 and
/// the answer comes in the ACK, which rsipstack does not show its dialog users. The
/// leg learns the rest from the media itself: symmetric RTP latches the address and
/// the first packet's payload type (0 or 8) picks the codec.
fn negotiate(body: &[u8], local: &sdp::Local) -> Result<(Vec<u8>, sdp::Negotiated), SdpError> {
    if body.is_empty() {
        Ok((
            sdp::offer(local, sdp::Direction::SendRecv),
            sdp::Negotiated {
                remote: SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0),
                codec: sdp::Codec::Pcmu,
                payload_type: 0,
                dtmf_payload_type: Some(sdp::DTMF_PT),
                remote_direction: sdp::Direction::SendRecv,
                ptime_ms: 20,
            },
        ))
    } else {
        sdp::answer(body, local)
    }
}

/// The RTP session an answered offer settles (a late offer learns its codec from the media).
fn session_for(n: &sdp::Negotiated, late_offer: bool) -> RtpSession {
    let law = match n.codec {
        sdp::Codec::Pcmu => media::g711::Law::Mu,
        sdp::Codec::Pcma => media::g711::Law::A,
    };
    let seed = now_ms() as u32;
    let session = RtpSession::new(
        law,
        n.payload_type,
        n.dtmf_payload_type,
        n.remote,
        seed ^ 0x5EED_1234,
        (seed >> 3) as u16,
        seed.rotate_left(7),
    );
    if late_offer {
        session.learning_codec()
    } else {
        session
    }
}

impl Ctx {
    async fn handle(self: Arc<Self>, mut tx: Transaction) {
        // In-dialog requests (ACK, BYE, CANCEL, re-INVITE, INFO) go to their dialog.
        if let Some(Dialog::Invite(mut d)) = self.dialogs.match_dialog(&tx) {
            if let Err(e) = d.handle(&mut tx).await {
                tracing::debug!(error = %e, "in-dialog request");
            }
            return;
        }
        // Only SIP/2.0 is spoken here (505, RFC 3261 §21.5.7).
        if tx.original.version != rsipstack::sip::Version::V2 {
            if let Err(e) = tx.reply(StatusCode::VersionNotSupported).await {
                tracing::debug!(error = %e, "SIP response not sent");
            }
            return;
        }
        let result = match tx.original.method {
            Method::Register => self.register(&mut tx).await,
            Method::Options if self.directory.draining() => {
                tx.reply_with(
                    StatusCode::ServiceUnavailable,
                    vec![Header::RetryAfter("30".into())],
                    None,
                )
                .await
            }
            Method::Options => tx.reply(StatusCode::OK).await,
            Method::Invite => self.clone().invite(tx).await,
            Method::Ack => Ok(()),
            Method::Bye | Method::Cancel => tx.reply(StatusCode::CallTransactionDoesNotExist).await,
            // SUBSCRIBE, MESSAGE, PUBLISH… outside a dialog: not something ringside does;
            // Allow says what it does (RFC 3261 §20.5).
            _ => {
                tx.reply_with(
                    StatusCode::NotImplemented,
                    vec![Header::Allow(ALLOW.into())],
                    None,
                )
                .await
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "SIP response not sent");
        }
    }

    /// Why a new call must be refused now: too many calls, or too many new ones per second.
    fn overload(&self) -> Option<String> {
        if self.directory.draining() {
            return Some("this node is stopping; call another".into());
        }
        let busy =
            self.legs.lock().expect("legs").len() + self.dialing.lock().expect("dialing").len();
        if busy >= self.max_calls {
            Some(format!(
                "{busy} calls in progress, the limit is {}",
                self.max_calls
            ))
        } else if !self.admission.lock().expect("admission").admit() {
            Some("too many new calls per second".to_string())
        } else {
            None
        }
    }

    /// A new call: answer its SDP, bind its RTP, and ask the engine whom it is for.
    async fn invite(self: Arc<Self>, mut tx: Transaction) -> rsipstack::Result<()> {
        // Overload: refuse quickly and cheaply, before any port or dialog is taken, and say
        // when to come back (RFC 3261 §21.5.4).
        let why = self.overload();
        if let Some(why) = why {
            tracing::warn!(target: "audit", event = "sip_overload", reason = %why);
            return tx
                .reply_with(
                    StatusCode::ServiceUnavailable,
                    vec![
                        Header::RetryAfter("1".into()),
                        Header::Warning(format!("399 ringside \"{why}\"").into()),
                    ],
                    None,
                )
                .await;
        }
        if self.authenticate_invites
            && !source_ip(&tx.original).is_some_and(|ip| self.trusted_sources.contains(&ip))
            && !self.invite_authenticated(&mut tx).await?
        {
            return Ok(());
        }
        let sock = match self.rtp_ports.bind(self.rtp_ip) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "no RTP port free");
                return tx
                    .reply_with(
                        StatusCode::ServiceUnavailable,
                        vec![Header::RetryAfter("5".into())],
                        None,
                    )
                    .await;
            }
        };
        let local = sdp::Local {
            addr: self.rtp_ip,
            rtp_port: sock.local_addr().map(|a| a.port()).unwrap_or(0),
            session_id: now_ms(),
            version: 1,
        };
        let late_offer = tx.original.body.is_empty();
        let parsed = negotiate(&tx.original.body, &local);
        let (answer, n) = match parsed {
            Ok(x) => x,
            Err(e) => {
                let code = match e {
                    SdpError::Malformed(_) => StatusCode::BadRequest,
                    SdpError::NotAcceptable(_) => StatusCode::NotAcceptableHere,
                };
                return tx
                    .reply_with(
                        code,
                        vec![Header::Warning(format!("399 ringside \"{e}\"").into())],
                        None,
                    )
                    .await;
            }
        };
        let session = session_for(&n, late_offer);
        let rtp = match RtpLeg::start(sock, session) {
            Ok(r) => r,
            Err(_) => return tx.reply(StatusCode::ServerInternalError).await,
        };
        let dialog = match self.dialogs.get_or_create_server_invite(
            &tx,
            self.state_tx.clone(),
            None,
            Some(self.contact.clone()),
        ) {
            Ok(d) => d,
            Err(_) => return tx.reply(StatusCode::ServerInternalError).await,
        };
        let to_uri = tx.original.uri.to_string();
        let from = values(&tx.original, |h| match h {
            Header::From(v) => Some(v.value()),
            _ => None,
        })
        .first()
        .map(|s| s.to_string())
        .unwrap_or_default();
        let from_display = from
            .split_once('"')
            .and_then(|(_, r)| r.split_once('"'))
            .map(|(d, _)| d.to_string());
        let refer = allows_refer(tx.original.headers.iter());
        let (reply, answer_rx) = oneshot::channel();
        let _ = self.events.send(SipEvent::Incoming {
            to_user: uri_user(&to_uri),
            to_uri,
            from_user: uri_user(&from),
            from_display,
            port: rtp.port.clone(),
            reply,
        });
        // The dialog drives the INVITE transaction (100 Trying, our final response, ACK,
        // CANCEL) until it ends.
        let mut d = dialog.clone();
        tokio::spawn(async move {
            if let Err(e) = d.handle(&mut tx).await {
                tracing::debug!(error = %e, "INVITE transaction");
            }
        });
        match answer_rx.await {
            Ok(Ok(leg_id)) => {
                let id = dialog.id().to_string();
                let _ = dialog.ringing(None, None);
                self.legs.lock().expect("legs").insert(
                    leg_id.clone(),
                    SipLeg {
                        dialog: dialog.clone(),
                        answer,
                        rtp,
                        local,
                        held: false,
                        answered: false,
                        media_since: std::time::Instant::now(),
                        refer,
                    },
                );
                self.by_dialog
                    .lock()
                    .expect("legs")
                    .insert(id.clone(), leg_id.clone());
                // The caller may have given up (CANCEL) while the engine took the call: its
                // dialog then ended before the leg was known here, and nothing else would end
                // the leg. Whichever of this and `dialog_state` comes second finds nothing.
                if matches!(dialog.state(), DialogState::Terminated(..)) {
                    self.dialog_ended(&id, "the caller left before the call was taken");
                }
                // The bot may have answered (or rejected) before the leg got here.
                let early = self.early.lock().expect("legs").remove(&leg_id);
                if let Some((c, _)) = early {
                    self.command(c);
                }
            }
            Ok(Err(status)) => {
                let _ = dialog.reject(Some(status_code(status)), None);
            }
            Err(_) => {
                let _ = dialog.reject(Some(StatusCode::ServiceUnavailable), None);
            }
        }
        Ok(())
    }

    fn dialog_state(self: &Arc<Self>, st: DialogState) {
        if !matches!(st, DialogState::Terminated(..)) {
            let leg = self
                .by_dialog
                .lock()
                .expect("legs")
                .get(&st.id().to_string())
                .cloned();
            if let Some(leg_id) = leg {
                let ctx = self.clone();
                tokio::spawn(async move { ctx.in_dialog(&leg_id, st).await });
            }
            return;
        }
        if let DialogState::Terminated(id, reason) = st {
            // The dialog layer keeps every dialog (and its INVITE transaction's channels)
            // until told to forget it: without this each call to ringside stayed in memory.
            self.dialogs.remove_dialog(&id);
            self.dialog_ended(&id.to_string(), &format!("{reason:?}"));
        }
    }

    /// A dialog ended: its leg, if it has one still, is gone, and the engine hears so.
    fn dialog_ended(&self, dialog_id: &str, reason: &str) {
        let leg = self.by_dialog.lock().expect("legs").remove(dialog_id);
        if let Some(leg_id) = leg {
            tracing::info!(leg = %leg_id, reason, "SIP leg ended");
            self.legs.lock().expect("legs").remove(&leg_id);
            let _ = self.events.send(SipEvent::HungUp { leg_id });
        }
    }

    fn command(&self, c: LegCommand) {
        match c {
            LegCommand::Dial { .. } => {}
            LegCommand::Answer { leg_id } => {
                let mut legs = self.legs.lock().expect("legs");
                let Some(l) = legs.get_mut(&leg_id) else {
                    drop(legs);
                    self.keep_early(LegCommand::Answer { leg_id });
                    return;
                };
                let r = l.dialog.accept(
                    Some(vec![Header::ContentType("application/sdp".into())]),
                    Some(l.answer.clone()),
                );
                if let Err(e) = &r {
                    tracing::warn!(leg = %leg_id, error = %e, "SIP answer not sent");
                }
                let ok = r.is_ok();
                l.answered = ok;
                l.media_since = std::time::Instant::now();
                let refer = l.refer;
                drop(legs);
                if ok {
                    let _ = self.events.send(SipEvent::Answered {
                        leg_id,
                        port: None,
                        refer,
                    });
                }
            }
            LegCommand::Reject { leg_id, status } => {
                let leg = self.legs.lock().expect("legs").remove(&leg_id);
                match leg {
                    Some(l) => {
                        let _ = l.dialog.reject(Some(status_code(status)), None);
                    }
                    None => self.keep_early(LegCommand::Reject { leg_id, status }),
                }
            }
            LegCommand::Refer { .. } => {}
            LegCommand::Hangup { leg_id } => {
                if self.cancel_dialing(&leg_id) {
                    return;
                }
                let leg = self.legs.lock().expect("legs").remove(&leg_id);
                if leg.is_none() {
                    self.keep_early(LegCommand::Hangup {
                        leg_id: leg_id.clone(),
                    });
                }
                if let Some(l) = leg {
                    if l.answered {
                        // Its own task: a phone that never answers the BYE keeps it for up to
                        // 64*T1 (Timer F), and the commands of every other call come after.
                        tokio::spawn(async move {
                            let _ = l.dialog.bye().await;
                        });
                    } else {
                        let _ = l
                            .dialog
                            .reject(Some(StatusCode::TemporarilyUnavailable), None);
                    }
                }
            }
        }
    }

    /// Send a REFER in the leg's dialog; a refusal (or no answer) is reported so the call
    /// can be re-bridged instead.
    fn refer(self: &Arc<Self>, leg_id: String, token: String) {
        let dialog = self
            .legs
            .lock()
            .expect("legs")
            .get(&leg_id)
            .filter(|l| l.answered)
            .map(|l| l.dialog.clone());
        let Some(dialog) = dialog else {
            let _ = self.events.send(SipEvent::ReferFailed {
                leg_id,
                accepted: false,
                status: 481,
            });
            return;
        };
        let mut to = self.contact.clone();
        to.auth = Some(rsipstack::sip::Auth {
            user: token,
            password: None,
        });
        let ctx = self.clone();
        tokio::spawn(async move {
            let status = match dialog.refer(to, None, None).await {
                Ok(Some(resp)) => u16::from(resp.status_code.clone()),
                Ok(None) => 481,
                Err(e) => {
                    tracing::info!(leg = %leg_id, error = %e, "REFER not answered");
                    408
                }
            };
            tracing::info!(leg = %leg_id, status, "REFER answered");
            if !(200..300).contains(&status) {
                let _ = ctx.events.send(SipEvent::ReferFailed {
                    leg_id,
                    accepted: false,
                    status,
                });
            }
        });
    }

    /// Keep a command for a leg that is not registered yet. Commands for legs that never come
    /// (they ended first) are dropped after a minute.
    fn keep_early(&self, c: LegCommand) {
        let leg_id = match &c {
            LegCommand::Answer { leg_id }
            | LegCommand::Reject { leg_id, .. }
            | LegCommand::Hangup { leg_id }
            | LegCommand::Refer { leg_id, .. } => leg_id.clone(),
            LegCommand::Dial { .. } => return,
        };
        let mut early = self.early.lock().expect("legs");
        early.retain(|_, (_, at)| at.elapsed() < std::time::Duration::from_secs(60));
        early.insert(leg_id, (c, std::time::Instant::now()));
    }

    /// Hang up connected legs whose media stopped (none while the far end holds the call).
    fn media_watchdog(&self, limit: std::time::Duration) {
        let lost: Vec<(String, InviteDialog)> = {
            let mut legs = self.legs.lock().expect("legs");
            let ids: Vec<String> = legs
                .iter()
                .filter(|(_, l)| {
                    l.answered
                        && !l.held
                        && l.media_since.elapsed() > limit
                        && l.rtp.silent_for_ms() > limit.as_millis() as u64
                })
                .map(|(id, _)| id.clone())
                .collect();
            ids.into_iter()
                .filter_map(|id| legs.remove(&id).map(|l| (id, l.dialog)))
                .collect()
        };
        for (leg_id, dialog) in lost {
            let reason = format!("no RTP from the phone for {} s", limit.as_secs());
            tracing::info!(leg = %leg_id, %reason, "SIP media timeout");
            let _ = self.events.send(SipEvent::MediaLost { leg_id, reason });
            tokio::spawn(async move {
                let _ = dialog
                    .bye_with_headers(Some(vec![Header::Other(
                        "Reason".into(),
                        "SIP;cause=408;text=\"media timeout\"".into(),
                    )]))
                    .await;
            });
        }
    }

    /// Check an INVITE's Proxy-Authorization against the caller's SIP credentials (the From
    /// user must be the one authenticating). Answers 407 (challenge) or 403 itself and returns
    /// false when the call may not go on.
    async fn invite_authenticated(&self, tx: &mut Transaction) -> rsipstack::Result<bool> {
        let creds: Vec<digest::Credentials> = values(&tx.original, |h| match h {
            Header::ProxyAuthorization(v) => Some(v.value()),
            _ => None,
        })
        .iter()
        .filter_map(|a| digest::parse_authorization(a).ok())
        .collect();
        let Some(c) = creds
            .iter()
            .find(|c| c.realm == self.realm && self.algorithms.contains(&c.algorithm))
        else {
            self.proxy_challenge(tx, false).await?;
            return Ok(false);
        };
        match self.nonces.check(&c.nonce, now_ms() / 1000) {
            NonceCheck::Valid => {}
            NonceCheck::Stale => {
                self.proxy_challenge(tx, true).await?;
                return Ok(false);
            }
            NonceCheck::Invalid => {
                self.proxy_challenge(tx, false).await?;
                return Ok(false);
            }
        }
        let from = values(&tx.original, |h| match h {
            Header::From(v) => Some(v.value()),
            _ => None,
        })
        .first()
        .and_then(|f| uri_user(f));
        let ha1 = self.directory.ha1(&c.username, &self.realm, c.algorithm);
        let ok = from.is_some_and(|f| f.eq_ignore_ascii_case(&c.username))
            && ha1.is_some_and(|h| digest::verify(c, "INVITE", &h));
        if !ok {
            tracing::info!(target: "audit", event = "sip_auth_failure", user = %c.username, method = "INVITE");
            tx.reply(StatusCode::Forbidden).await?;
            return Ok(false);
        }
        Ok(true)
    }

    async fn proxy_challenge(&self, tx: &mut Transaction, stale: bool) -> rsipstack::Result<()> {
        let nonce = self.nonces.issue(now_ms() / 1000);
        let headers = self
            .algorithms
            .iter()
            .map(|&a| {
                Header::ProxyAuthenticate(digest::challenge(&self.realm, &nonce, a, stale).into())
            })
            .collect();
        tx.reply_with(StatusCode::ProxyAuthenticationRequired, headers, None)
            .await
    }

    async fn challenge(&self, tx: &mut Transaction, stale: bool) -> rsipstack::Result<()> {
        let nonce = self.nonces.issue(now_ms() / 1000);
        // RFC 8760: the preferred algorithm first.
        let headers = self
            .algorithms
            .iter()
            .map(|&a| {
                Header::WwwAuthenticate(digest::challenge(&self.realm, &nonce, a, stale).into())
            })
            .collect();
        tx.reply_with(StatusCode::Unauthorized, headers, None).await
    }

    async fn register(&self, tx: &mut Transaction) -> rsipstack::Result<()> {
        let r = match read_register(&tx.original) {
            Ok(r) => r,
            Err(why) => {
                return tx
                    .reply_with(
                        StatusCode::BadRequest,
                        vec![Header::Warning(format!("399 ringside \"{why}\"").into())],
                        None,
                    )
                    .await;
            }
        };
        let Some(creds) = r
            .credentials
            .iter()
            .find(|c| c.realm == self.realm && self.algorithms.contains(&c.algorithm))
        else {
            return self.challenge(tx, false).await;
        };
        match self.nonces.check(&creds.nonce, now_ms() / 1000) {
            NonceCheck::Valid => {}
            NonceCheck::Stale => return self.challenge(tx, true).await,
            NonceCheck::Invalid => return self.challenge(tx, false).await,
        }
        let ha1 = self
            .directory
            .ha1(&creds.username, &self.realm, creds.algorithm);
        let ok = creds.username.eq_ignore_ascii_case(&r.user)
            && ha1.is_some_and(|h| digest::verify(creds, "REGISTER", &h));
        if !ok {
            tracing::info!(target: "audit", event = "sip_auth_failure", user = %creds.username);
            return tx.reply(StatusCode::Forbidden).await;
        }
        let (user, contacts, expires, call_id, cseq) =
            (r.user, r.contacts, r.expires, r.call_id, r.cseq);
        let now = now_ms();
        let result = self.registrar.lock().expect("registrar").register(
            Register {
                user: &user,
                contacts,
                expires,
                call_id: &call_id,
                cseq,
                source: None,
            },
            now,
        );
        match result {
            Ok(bindings) => {
                self.directory.registered(&user, &bindings);
                let headers = bindings
                    .iter()
                    .map(|b| {
                        Header::Contact(
                            format!("<{}>;expires={}", b.uri, b.remaining_s(now)).into(),
                        )
                    })
                    .collect();
                tracing::info!(user = %user, contacts = bindings.len(), "SIP registration");
                tx.reply_with(StatusCode::OK, headers, None).await
            }
            Err(registrar::RegisterError::IntervalTooBrief { min }) => {
                tx.reply_with(
                    StatusCode::IntervalTooBrief,
                    vec![Header::MinExpires(min.to_string().into())],
                    None,
                )
                .await
            }
            Err(e) => {
                let code = match e.status() {
                    400 => StatusCode::BadRequest,
                    403 => StatusCode::Forbidden,
                    _ => StatusCode::ServerInternalError,
                };
                tx.reply_with(
                    code,
                    vec![Header::Warning(format!("399 ringside \"{e}\"").into())],
                    None,
                )
                .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_come_from_to_uris() {
        assert_eq!(
            uri_user("\"Alice\" <sip:alice@ringside>;tag=1").as_deref(),
            Some("alice")
        );
        assert_eq!(
            uri_user("sip:bob@10.0.0.1:5060;tag=x").as_deref(),
            Some("bob")
        );
        assert_eq!(uri_user("<sips:carol;x=y@h>").as_deref(), Some("carol"));
        assert_eq!(uri_user("<sip:ringside>"), None);
        assert_eq!(uri_user("<tel:+1555>"), None);
    }

    #[test]
    fn the_source_is_the_received_address_else_the_sent_by_host() {
        let req = |via: &str| {
            parse_request(
                format!(
                    "OPTIONS sip:x@h SIP/2.0\r\nVia: {via}\r\nFrom: <sip:a@h>;tag=1\r\n\
                     To: <sip:x@h>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                )
                .as_bytes(),
            )
            .unwrap()
        };
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(
            source_ip(&req("SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bK1")),
            ip("203.0.113.5")
        );
        assert_eq!(
            source_ip(&req(
                "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK1;received=198.51.100.7;rport=5060"
            )),
            ip("198.51.100.7")
        );
        assert_eq!(
            source_ip(&req("SIP/2.0/TCP [2001:db8::1]:5060;branch=z9hG4bK1")),
            ip("2001:db8::1")
        );
        assert_eq!(
            source_ip(&req("SIP/2.0/UDP carrier.example;branch=z9hG4bK1")),
            None
        );
    }
}
