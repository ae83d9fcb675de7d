//! The SIP endpoint: rsipstack's transports and transactions, with ringside's registrar and
//! digest authentication on top. Only this module touches rsipstack.
//!
//! So far it registers users (REGISTER with digest, MD5 and SHA-256) and refuses calls with
//! 480 until SIP legs are wired to the engine.

use crate::digest::{self, Algorithm, NonceCheck, Nonces};
use crate::registrar::{self, Binding, Register, Registrar};
use rsipstack::EndpointBuilder;
use rsipstack::sip::{Header, Method, Request, StatusCode};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::{TcpListenerConnection, TransportLayer, udp::UdpConnection};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// Where the directory keeps a SIP user's secrets: HA1 per algorithm, never the password.
pub trait Directory: Send + Sync + 'static {
    /// HA1 of `user` in `realm` for `alg`; None if the user has no SIP credentials.
    fn ha1(&self, user: &str, realm: &str, alg: Algorithm) -> Option<String>;
}

#[derive(Debug, Clone)]
pub struct Config {
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
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
}

/// A running SIP endpoint.
pub struct Sip {
    pub registrar: Arc<Mutex<Registrar>>,
    /// The addresses actually bound (port 0 resolved).
    pub addrs: Vec<(String, SocketAddr)>,
    cancel: CancellationToken,
}

impl Drop for Sip {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Sip {
    /// Bind the configured transports and start answering.
    pub async fn start(cfg: Config, directory: Arc<dyn Directory>) -> Result<Sip, String> {
        let cancel = CancellationToken::new();
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
        let endpoint = EndpointBuilder::new()
            .with_cancel_token(cancel.clone())
            .with_transport_layer(transports)
            .with_user_agent("ringside")
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
        let ctx = Arc::new(Ctx {
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
                tokio::spawn(async move { ctx.handle(tx).await });
            }
        });
        Ok(Sip {
            registrar,
            addrs,
            cancel,
        })
    }

    /// The user's registered contacts.
    pub fn contacts(&self, user: &str) -> Vec<Binding> {
        self.registrar
            .lock()
            .expect("registrar")
            .lookup(user, now_ms())
    }
}

struct Ctx {
    algorithms: Vec<Algorithm>,
    nonces: Nonces,
    realm: String,
    directory: Arc<dyn Directory>,
    registrar: Arc<Mutex<Registrar>>,
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

impl Ctx {
    async fn handle(&self, mut tx: Transaction) {
        let result = match tx.original.method {
            Method::Register => self.register(&mut tx).await,
            Method::Options => tx.reply(StatusCode::OK).await,
            Method::Invite => {
                tx.reply_with(
                    StatusCode::TemporarilyUnavailable,
                    vec![Header::Other(
                        "Reason".into(),
                        "SIP;cause=480;text=\"calls are not routed yet\"".into(),
                    )],
                    None,
                )
                .await
            }
            Method::Ack => Ok(()),
            _ => tx.reply(StatusCode::NotImplemented).await,
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "SIP response not sent");
        }
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
}
