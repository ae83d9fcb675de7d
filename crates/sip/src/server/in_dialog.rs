//! Requests inside an established call, from either side's dialog (a phone that called an
//! app, or a phone an app called):
//! * re-INVITE and UPDATE with an offer: answered per RFC 3264 (a `sendonly` offer is answered
//!   `recvonly`, and ringside stops sending); a change into or out of hold is reported as
//!   [`SipEvent::Held`] / [`SipEvent::Resumed`]. An offer with nothing usable gets 488 and
//!   changes nothing. A re-INVITE without an offer gets ringside's current SDP as the offer;
//! * INFO carrying DTMF (`application/dtmf-relay`, `application/dtmf`): the key joins the
//!   leg's DTMF path beside RFC 4733 events and in-band tones;
//! * NOTIFY of a REFER ringside sent (RFC 3515 `message/sipfrag` progress): 200; a final
//!   failure is reported as [`SipEvent::ReferFailed`] (success shows itself: the
//!   transferee's new INVITE reaches ringside);
//! * REFER from the far end: 403. Transfers are the application's to make (`/transfer`),
//!   not the phone's;
//! * OPTIONS: 200. Anything else (MESSAGE...) is answered 501 by the dialog layer.

use super::core::{Ctx, SipEvent};
use crate::sdp::{self, Direction, SdpError};
use rsipstack::dialog::dialog::{DialogState, TransactionHandle};
use rsipstack::sip::{Header, Method, Request, StatusCode};

/// The key in an INFO body: `Signal=5` (application/dtmf-relay) or just `5`
/// (application/dtmf). Event codes 10 and 11 are `*` and `#`.
pub fn info_key(content_type: &str, body: &[u8]) -> Option<char> {
    let body = std::str::from_utf8(body).ok()?;
    let ct = content_type.trim().to_ascii_lowercase();
    let raw = if ct.starts_with("application/dtmf-relay") {
        body.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            k.trim().eq_ignore_ascii_case("signal").then(|| v.trim())
        })?
    } else if ct.starts_with("application/dtmf") {
        body.trim()
    } else {
        return None;
    };
    let key = match raw {
        "10" => '*',
        "11" => '#',
        s if s.len() == 1 => s.chars().next()?.to_ascii_uppercase(),
        _ => return None,
    };
    matches!(key, '0'..='9' | '*' | '#' | 'A'..='D').then_some(key)
}

/// The status of a `message/sipfrag` body (`SIP/2.0 200 OK`), as REFER progress reports it.
pub fn sipfrag_status(body: &[u8]) -> Option<u16> {
    let body = std::str::from_utf8(body).ok()?;
    let line = body.lines().next()?.trim();
    let rest = line.strip_prefix("SIP/2.0")?;
    let code = rest.split_whitespace().next()?;
    let code: u16 = code.parse().ok()?;
    (100..700).contains(&code).then_some(code)
}

fn event_package(req: &Request) -> String {
    req.headers
        .iter()
        .find_map(|h| match h {
            Header::Event(v) => Some(v.value().to_string()),
            Header::Other(n, v) if n.eq_ignore_ascii_case("event") || n == "o" => {
                Some(v.to_string())
            }
            _ => None,
        })
        .unwrap_or_default()
}

fn content_type(req: &Request) -> String {
    req.headers
        .iter()
        .find_map(|h| match h {
            Header::ContentType(v) => Some(v.value().to_string()),
            _ => None,
        })
        .unwrap_or_default()
}

enum Reoffer {
    Answer(Vec<u8>, Option<bool>),
    Refused(StatusCode, String),
    Gone,
}

impl Ctx {
    /// A request inside `leg_id`'s dialog, as the dialog layer reports it.
    pub(super) async fn in_dialog(&self, leg_id: &str, st: DialogState) {
        match st {
            DialogState::Updated(_, req, handle) => self.reoffer(leg_id, &req, handle).await,
            DialogState::Info(_, req, handle) => self.info(leg_id, &req, handle).await,
            DialogState::Options(_, _, handle) => {
                let _ = handle.reply(StatusCode::OK).await;
            }
            DialogState::Notify(_, req, handle) => self.notify(leg_id, &req, handle).await,
            DialogState::Refer(_, _, handle) => {
                let _ = handle
                    .respond(
                        StatusCode::Forbidden,
                        Some(vec![Header::Warning(
                            "399 ringside \"transfers are made by the application\"".into(),
                        )]),
                        None,
                    )
                    .await;
            }
            // Dropping a handle answers 501 (the dialog layer's default).
            _ => {}
        }
    }

    async fn reoffer(&self, leg_id: &str, req: &Request, handle: TransactionHandle) {
        let outcome = {
            let mut legs = self.legs.lock().expect("legs");
            match legs.get_mut(leg_id) {
                None => Reoffer::Gone,
                Some(l) if req.body.is_empty() => {
                    // No offer (RFC 3261 §14.2): ringside offers what it has; the answer
                    // comes in the ACK and, for G.711 on one port, changes nothing.
                    if req.method == Method::Update {
                        Reoffer::Answer(vec![], None)
                    } else {
                        l.local.version += 1;
                        Reoffer::Answer(sdp::offer(&l.local, Direction::SendRecv), None)
                    }
                }
                Some(l) => {
                    let mut next = l.local.clone();
                    next.version += 1;
                    match sdp::answer(&req.body, &next) {
                        Ok((answer, n)) => {
                            l.local = next;
                            l.rtp.session.lock().expect("rtp").renegotiate(&n);
                            let hold = n.remote_direction.is_hold();
                            let change = (hold != l.held).then_some(hold);
                            l.held = hold;
                            if !hold {
                                l.media_since = std::time::Instant::now();
                            }
                            Reoffer::Answer(answer, change)
                        }
                        Err(e @ SdpError::Malformed(_)) => {
                            Reoffer::Refused(StatusCode::BadRequest, e.to_string())
                        }
                        Err(e @ SdpError::NotAcceptable(_)) => {
                            Reoffer::Refused(StatusCode::NotAcceptableHere, e.to_string())
                        }
                    }
                }
            }
        };
        match outcome {
            Reoffer::Gone => {
                let _ = handle.reply(StatusCode::CallTransactionDoesNotExist).await;
            }
            Reoffer::Refused(code, why) => {
                tracing::info!(leg = %leg_id, %why, "re-offer refused");
                let _ = handle
                    .respond(
                        code,
                        Some(vec![Header::Warning(
                            format!("399 ringside \"{why}\"").into(),
                        )]),
                        None,
                    )
                    .await;
            }
            Reoffer::Answer(body, change) => {
                let headers =
                    (!body.is_empty()).then(|| vec![Header::ContentType("application/sdp".into())]);
                let body = (!body.is_empty()).then_some(body);
                let _ = handle.respond(StatusCode::OK, headers, body).await;
                let leg_id = leg_id.to_string();
                match change {
                    Some(true) => {
                        tracing::info!(leg = %leg_id, "SIP leg held by the far end");
                        let _ = self.events.send(SipEvent::Held { leg_id });
                    }
                    Some(false) => {
                        tracing::info!(leg = %leg_id, "SIP leg resumed by the far end");
                        let _ = self.events.send(SipEvent::Resumed { leg_id });
                    }
                    None => {}
                }
            }
        }
    }

    /// Progress of a REFER ringside sent on this leg.
    async fn notify(&self, leg_id: &str, req: &Request, handle: TransactionHandle) {
        let event = event_package(req);
        let package = event.split(';').next().unwrap_or("").trim();
        if !package.eq_ignore_ascii_case("refer") {
            let _ = handle.reply(StatusCode::BadEvent).await;
            return;
        }
        let Some(status) = sipfrag_status(&req.body) else {
            let _ = handle
                .respond(
                    StatusCode::BadRequest,
                    Some(vec![Header::Warning(
                        "399 ringside \"the body is not a message/sipfrag status line\"".into(),
                    )]),
                    None,
                )
                .await;
            return;
        };
        let _ = handle.reply(StatusCode::OK).await;
        tracing::info!(leg = %leg_id, status, "REFER progress");
        if status >= 300 {
            let _ = self.events.send(SipEvent::ReferFailed {
                leg_id: leg_id.to_string(),
                accepted: true,
                status,
            });
        }
    }

    async fn info(&self, leg_id: &str, req: &Request, handle: TransactionHandle) {
        if req.body.is_empty() {
            // An empty INFO is a keep-alive probe.
            let _ = handle.reply(StatusCode::OK).await;
            return;
        }
        let ct = content_type(req);
        let Some(key) = info_key(&ct, &req.body) else {
            let _ = handle
                .respond(
                    StatusCode::UnsupportedMediaType,
                    Some(vec![Header::Accept(
                        "application/dtmf-relay, application/dtmf".into(),
                    )]),
                    None,
                )
                .await;
            return;
        };
        let found = {
            let legs = self.legs.lock().expect("legs");
            legs.get(leg_id)
                .map(|l| l.rtp.session.lock().expect("rtp").key_from_signalling(key))
        };
        let status = if found.is_some() {
            StatusCode::OK
        } else {
            StatusCode::CallTransactionDoesNotExist
        };
        let _ = handle.reply(status).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sipfrag_bodies_carry_a_status() {
        assert_eq!(sipfrag_status(b"SIP/2.0 100 Trying\r\n"), Some(100));
        assert_eq!(sipfrag_status(b"SIP/2.0 200 OK"), Some(200));
        assert_eq!(
            sipfrag_status(b"SIP/2.0 486 Busy Here\r\nContent-Length: 0\r\n"),
            Some(486)
        );
        assert_eq!(sipfrag_status(b"SIP/2.0 99 Low"), None);
        assert_eq!(sipfrag_status(b"SIP/2.0 OK"), None);
        assert_eq!(sipfrag_status(b"HTTP/1.1 200 OK"), None);
        assert_eq!(sipfrag_status(b""), None);
        assert_eq!(sipfrag_status(&[0xff, 0x20]), None);
    }

    #[test]
    fn info_bodies_carry_keys() {
        assert_eq!(
            info_key("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n"),
            Some('5')
        );
        assert_eq!(
            info_key("application/dtmf-relay", b"Signal= 11\r\nDuration=100"),
            Some('#')
        );
        assert_eq!(
            info_key("Application/DTMF-Relay", b"signal=*\nduration=100"),
            Some('*')
        );
        assert_eq!(info_key("application/dtmf", b"7"), Some('7'));
        assert_eq!(info_key("application/dtmf", b"10"), Some('*'));
        assert_eq!(info_key("application/dtmf-relay", b"Signal=x"), None);
        assert_eq!(info_key("application/dtmf-relay", b"Duration=100"), None);
        assert_eq!(info_key("text/plain", b"Signal=5"), None);
        assert_eq!(info_key("application/dtmf", &[0xff, 0xfe]), None);
    }
}
