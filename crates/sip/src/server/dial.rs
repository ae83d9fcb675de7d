//! Calls out to phones: every registered contact of a user rings at once (RFC 3261 §16.7
//! parallel forking, done as a B2BUA: one client INVITE per contact, each with its own offer
//! and RTP port). The first 2xx wins and the other branches are cancelled; a 2xx that
//! arrives after that is ended with a BYE. Once every branch has failed, the call fails with
//! the best of their responses.

use super::core::{Caller, Ctx, SipEvent, SipLeg, Target, allows_refer, now_ms};
use crate::rtp_port::RtpLeg;
use crate::sdp::{self, Direction};
use crate::session::RtpSession;
use rsipstack::dialog::DialogId;
use rsipstack::dialog::dialog::DialogState;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::{Response, StatusCodeKind};
use std::net::UdpSocket;

/// The branches' events, and when the cancelled ones must have answered by.
type BranchEvents<'a> = (
    &'a mut mpsc::UnboundedReceiver<(usize, Ev)>,
    &'a mut Option<tokio::time::Instant>,
);

/// How long a cancelled branch may take to send its final response: RFC 3261's 64*T1.
const CANCELLED_WAIT: std::time::Duration = std::time::Duration::from_secs(32);
use std::sync::Arc;
use tokio::sync::mpsc;

enum Ev {
    State(DialogState),
    Final(Result<(DialogId, Option<Response>), String>),
}

/// A branch's INVITE task's outcome, its errors as text.
fn final_of<T, E: std::fmt::Display, J: std::fmt::Display>(
    r: Result<Result<T, E>, J>,
) -> Result<T, String> {
    match r {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

struct Branch {
    dialog: InviteDialog,
    /// The dialog's id as sent, before the phone's tag: the stack's key for it until a 2xx.
    sent_id: DialogId,
    contact: String,
    local: sdp::Local,
    socket: Option<UdpSocket>,
    /// The final status, once known.
    done: Option<u16>,
    /// The stack's INVITE task and the one forwarding its states: stopped when a cancelled
    /// branch is forgotten, since a phone that never answers would keep them waiting forever.
    tasks: [tokio::task::AbortHandle; 2],
}

/// The response that speaks for a forked call whose branches all failed (RFC 3261 §16.7
/// step 6, simplified): a 6xx ends the search, then busy, then any other answer, and only
/// then the timeouts and cancellations of branches that never answered.
pub fn best_failure(codes: &[u16]) -> u16 {
    if let Some(c) = codes.iter().find(|c| (600..700).contains(*c)) {
        return *c;
    }
    if codes.contains(&486) {
        return 486;
    }
    if let Some(c) = codes.iter().find(|c| !matches!(**c, 408 | 480 | 487 | 503)) {
        return *c;
    }
    for c in [480, 408, 503, 487] {
        if codes.contains(&c) {
            return c;
        }
    }
    480
}

fn reason_text(code: u16) -> &'static str {
    match code {
        404 => "not found",
        408 => "no answer",
        480 => "temporarily unavailable",
        486 => "busy",
        487 => "cancelled",
        488 => "no common codec",
        503 => "service unavailable",
        600 => "busy everywhere",
        603 => "declined",
        604 => "does not exist anywhere",
        _ => "failed",
    }
}

fn user_part(s: &str) -> String {
    let u: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.!~*'+".contains(*c))
        .collect();
    if u.is_empty() { "ringside".into() } else { u }
}

/// The RTP of a branch that answered, from the SDP answer in its 200.
fn answered_media(b: &mut Branch, i: usize, body: &[u8]) -> Result<RtpLeg, String> {
    let n = sdp::accept_answer(body).map_err(|e| e.to_string())?;
    let socket = b.socket.take().ok_or("no RTP socket")?;
    let law = match n.codec {
        sdp::Codec::Pcmu => media::g711::Law::Mu,
        sdp::Codec::Pcma => media::g711::Law::A,
    };
    let seed = now_ms() as u32 ^ (i as u32).wrapping_mul(0x9E37_79B9);
    let session = RtpSession::new(
        law,
        n.payload_type,
        n.dtmf_payload_type,
        n.remote,
        seed ^ 0x0D1A_1000,
        (seed >> 5) as u16,
        seed.rotate_left(11),
    );
    RtpLeg::start(socket, session).map_err(|e| e.to_string())
}

impl Ctx {
    /// Send one INVITE to `contact`; its dialog states and final response go to `ev`.
    fn branch(
        &self,
        i: usize,
        target: &Target,
        caller: &Caller,
        ev: &mpsc::UnboundedSender<(usize, Ev)>,
    ) -> Result<Branch, String> {
        let contact = target.uri.as_str();
        let callee = rsipstack::sip::Uri::try_from(contact)
            .map_err(|e| format!("contact {contact} is not a SIP URI: {e}"))?;
        let destination = match &target.proxy {
            None => None,
            Some(p) => {
                let uri = rsipstack::sip::Uri::try_from(p.as_str())
                    .map_err(|e| format!("proxy {p} is not a SIP URI: {e}"))?;
                Some(
                    rsipstack::transport::SipAddr::try_from(&uri)
                        .map_err(|e| format!("proxy {p}: {e}"))?,
                )
            }
        };
        let credential = target.auth.as_ref().map(|(user, password)| {
            rsipstack::dialog::authenticate::Credential {
                username: user.clone(),
                password: password.clone(),
                ..Default::default()
            }
        });
        let socket = self
            .rtp_ports
            .bind(self.rtp_ip)
            .map_err(|e| format!("no RTP port free: {e}"))?;
        let local = sdp::Local {
            addr: self.rtp_ip,
            rtp_port: socket.local_addr().map(|a| a.port()).unwrap_or(0),
            session_id: now_ms(),
            version: 1,
        };
        let host = self.contact.host_with_port.to_string();
        let from = format!("sip:{}@{host}", user_part(&caller.user));
        let opt = InviteOption {
            caller_display_name: caller.display.clone(),
            caller: rsipstack::sip::Uri::try_from(from.as_str())
                .map_err(|e| format!("caller URI {from}: {e}"))?,
            callee,
            contact: self.contact.clone(),
            content_type: Some("application/sdp".into()),
            offer: Some(sdp::offer(&local, Direction::SendRecv)),
            destination,
            credential,
            ..Default::default()
        };
        let (state_tx, mut state_rx) = self.dialogs.new_dialog_state_channel();
        let (dialog, handle) = self
            .dialogs
            .do_invite_async(opt, state_tx)
            .map_err(|e| format!("INVITE to {contact}: {e}"))?;
        // The branch's dialog states and its final response, from one task and states
        // first: a phone that sends 180 and 200 a millisecond apart (auto-answer) is seen
        // ringing before it is seen answering.
        let ev = ev.clone();
        let invite = handle.abort_handle();
        let forward = tokio::spawn(async move {
            let mut handle = handle;
            let mut finished = false;
            loop {
                tokio::select! {
                    biased;
                    s = state_rx.recv() => match s {
                        Some(s) => {
                            if ev.send((i, Ev::State(s))).is_err() {
                                return;
                            }
                        }
                        None if finished => return,
                        None => {
                            let r = handle.await;
                            let _ = ev.send((i, Ev::Final(final_of(r))));
                            return;
                        }
                    },
                    r = &mut handle, if !finished => {
                        finished = true;
                        if ev.send((i, Ev::Final(final_of(r)))).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(Branch {
            sent_id: dialog.id(),
            dialog,
            contact: contact.to_string(),
            local,
            socket: Some(socket),
            done: None,
            tasks: [invite, forward.abort_handle()],
        })
    }

    fn is_dialing(&self, leg_id: &str) -> bool {
        self.dialing.lock().expect("dialing").contains_key(leg_id)
    }

    /// Ring `targets` for `leg_id` and see the call through: ringing, answer or failure,
    /// then (if answered) until either side hangs up.
    pub(super) async fn dial(
        self: Arc<Self>,
        leg_id: String,
        targets: Vec<Target>,
        caller: Caller,
    ) {
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<(usize, Ev)>();
        let mut branches = vec![];
        let mut errors = vec![];
        for t in &targets {
            match self.branch(branches.len(), t, &caller, &ev_tx) {
                Ok(b) => branches.push(b),
                Err(e) => errors.push(e),
            }
        }
        drop(ev_tx);
        if branches.is_empty() {
            let reason = if errors.is_empty() {
                "no registered contact".to_string()
            } else {
                errors.join("; ")
            };
            tracing::info!(leg = %leg_id, %reason, "SIP call could not start");
            let _ = self.events.send(SipEvent::Failed {
                leg_id,
                status: 480,
                reason,
            });
            return;
        }
        self.dialing.lock().expect("dialing").insert(
            leg_id.clone(),
            branches.iter().map(|b| b.dialog.clone()).collect(),
        );
        // Given up before the branches were out (a hang-up that came first): cancel them.
        if self.early.lock().expect("legs").remove(&leg_id).is_some() {
            self.cancel_dialing(&leg_id);
        }
        let mut rang = false;
        let mut winner: Option<usize> = None;
        // The answered call ended (with other branches' answers possibly still on their way).
        let mut ended = false;
        let mut cancelled = None;
        let mut b = (&mut ev_rx, &mut cancelled);
        while let Some((i, ev)) = self
            .next_branch_event(&mut b, &mut branches, &leg_id, winner, ended)
            .await
        {
            match ev {
                Ev::State(DialogState::Early(..)) => {
                    if !rang && winner.is_none() && self.is_dialing(&leg_id) {
                        rang = true;
                        let _ = self.events.send(SipEvent::Ringing {
                            leg_id: leg_id.clone(),
                        });
                    }
                }
                Ev::State(DialogState::Terminated(id, reason)) if winner == Some(i) => {
                    tracing::info!(leg = %leg_id, ?reason, "SIP leg ended");
                    self.dialogs.remove_dialog(&id);
                    self.legs.lock().expect("legs").remove(&leg_id);
                    let _ = self.events.send(SipEvent::HungUp {
                        leg_id: leg_id.clone(),
                    });
                    // A 2xx that crossed its CANCEL is still to come, BYE'd and forgotten.
                    ended = true;
                }
                Ev::State(st) if winner == Some(i) => {
                    let ctx = self.clone();
                    let leg = leg_id.clone();
                    tokio::spawn(async move { ctx.in_dialog(&leg, st).await });
                }
                Ev::State(_) => {}
                Ev::Final(r) => {
                    let resp = match r {
                        Ok((_, Some(resp))) => resp,
                        Ok((_, None)) => {
                            branches[i].done = Some(408);
                            self.maybe_failed(&leg_id, &branches, winner);
                            continue;
                        }
                        Err(e) => {
                            tracing::info!(leg = %leg_id, contact = %branches[i].contact, error = %e, "SIP branch failed");
                            branches[i].done = Some(503);
                            self.maybe_failed(&leg_id, &branches, winner);
                            continue;
                        }
                    };
                    let code = u16::from(resp.status_code.clone());
                    if resp.status_code.kind() != StatusCodeKind::Successful {
                        branches[i].done = Some(code);
                        self.maybe_failed(&leg_id, &branches, winner);
                        continue;
                    }
                    branches[i].done = Some(code);
                    let dialog = branches[i].dialog.clone();
                    // Answered after another branch won, or after the call was given up:
                    // this one only gets a BYE.
                    if winner.is_some() || !self.is_dialing(&leg_id) {
                        self.bye_and_forget(dialog);
                        continue;
                    }
                    let started = answered_media(&mut branches[i], i, &resp.body);
                    let rtp = match started {
                        Ok(rtp) => rtp,
                        Err(e) => {
                            tracing::info!(leg = %leg_id, contact = %branches[i].contact, error = %e, "SIP answer unusable");
                            branches[i].done = Some(488);
                            self.bye_and_forget(dialog);
                            self.maybe_failed(&leg_id, &branches, winner);
                            continue;
                        }
                    };
                    winner = Some(i);
                    self.dialing.lock().expect("dialing").remove(&leg_id);
                    for (j, b) in branches.iter().enumerate() {
                        if j != i && b.done.is_none() {
                            let d = b.dialog.clone();
                            tokio::spawn(async move {
                                let _ = d.cancel().await;
                            });
                        }
                    }
                    let port = rtp.port.clone();
                    let refer = allows_refer(resp.headers.iter());
                    self.legs.lock().expect("legs").insert(
                        leg_id.clone(),
                        SipLeg {
                            dialog,
                            answer: vec![],
                            rtp,
                            local: branches[i].local.clone(),
                            held: false,
                            answered: true,
                            media_since: std::time::Instant::now(),
                            refer,
                        },
                    );
                    tracing::info!(leg = %leg_id, contact = %branches[i].contact, "SIP call answered");
                    let _ = self.events.send(SipEvent::Answered {
                        leg_id: leg_id.clone(),
                        port: Some(port),
                        refer,
                    });
                }
            }
        }
        // Every branch is done and none is connected.
        self.dialing.lock().expect("dialing").remove(&leg_id);
    }

    /// The next event of the branches. Once the call stops ringing (answered or given up) the
    /// other branches are cancelled, and one whose phone sends no final response within
    /// RFC 3261's 64*T1 (32 s) is forgotten (the stack would keep its INVITE and dialog
    /// forever): it is done then, with 408. `None` once the answered call has `ended` and
    /// every branch is done, or when the branches' events have ended.
    async fn next_branch_event(
        &self,
        (rx, cancelled): &mut BranchEvents<'_>,
        branches: &mut [Branch],
        leg_id: &str,
        winner: Option<usize>,
        ended: bool,
    ) -> Option<(usize, Ev)> {
        loop {
            if ended && branches.iter().all(|b| b.done.is_some()) {
                return None;
            }
            if cancelled.is_none() && (winner.is_some() || !self.is_dialing(leg_id)) {
                **cancelled = Some(tokio::time::Instant::now() + CANCELLED_WAIT);
            }
            let Some(deadline) = **cancelled else {
                return rx.recv().await;
            };
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(ev) => return ev,
                Err(_) => {
                    for b in branches.iter_mut().filter(|b| b.done.is_none()) {
                        tracing::info!(leg = %leg_id, contact = %b.contact, "a cancelled SIP branch never answered: forgotten");
                        self.dialogs.remove_dialog(&b.sent_id);
                        self.dialogs.remove_dialog(&b.dialog.id());
                        b.tasks.iter().for_each(|t| t.abort());
                        b.done = Some(408);
                    }
                    **cancelled = Some(tokio::time::Instant::now() + CANCELLED_WAIT);
                }
            }
        }
    }

    /// End an answered branch ringside does not keep. The dialog layer registered it when its
    /// 2xx came and keeps it until told (rsipstack leaves that to the caller), so once the BYE
    /// is done it is forgotten.
    fn bye_and_forget(&self, dialog: InviteDialog) {
        let dialogs = self.dialogs.clone();
        tokio::spawn(async move {
            let _ = dialog.bye().await;
            dialogs.remove_dialog(&dialog.id());
        });
    }

    /// Once every branch has failed, the call has failed (unless it was given up already).
    fn maybe_failed(&self, leg_id: &str, branches: &[Branch], winner: Option<usize>) {
        if winner.is_some() || branches.iter().any(|b| b.done.is_none()) {
            return;
        }
        let live = self
            .dialing
            .lock()
            .expect("dialing")
            .remove(leg_id)
            .is_some();
        if !live {
            return;
        }
        let codes: Vec<u16> = branches.iter().filter_map(|b| b.done).collect();
        let status = best_failure(&codes);
        let reason = format!("{status} {}", reason_text(status));
        tracing::info!(leg = %leg_id, %reason, "SIP call failed");
        let _ = self.events.send(SipEvent::Failed {
            leg_id: leg_id.to_string(),
            status,
            reason,
        });
    }

    /// The engine gave up on a call that is still ringing: cancel every branch.
    pub(super) fn cancel_dialing(&self, leg_id: &str) -> bool {
        let Some(forks) = self.dialing.lock().expect("dialing").remove(leg_id) else {
            return false;
        };
        for d in forks {
            tokio::spawn(async move {
                let _ = d.cancel().await;
            });
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_failure_speaks_for_the_call() {
        assert_eq!(best_failure(&[486, 603]), 603);
        assert_eq!(best_failure(&[408, 486]), 486);
        assert_eq!(best_failure(&[408, 404]), 404);
        assert_eq!(best_failure(&[487, 408]), 408);
        assert_eq!(best_failure(&[503, 480]), 480);
        assert_eq!(best_failure(&[]), 480);
    }

    #[test]
    fn caller_user_parts_are_sanitised() {
        assert_eq!(user_part("bot-1"), "bot-1");
        assert_eq!(user_part("a b@c"), "abc");
        assert_eq!(user_part("<>"), "ringside");
    }
}
