//! Endpoints behind the leg interface. Two live here:
//! * simulated users: scripted phones for bot developers' tests (answer after N ms, busy,
//!   decline, never answer, hang up, hold/resume). They are real audio endpoints: each has a
//!   media port that speaks WAV files and presses keys as in-band DTMF on a timeline from the
//!   moment it joins the call, and records what it hears (`ringside heard`);
//! * applications: a leg rung towards an app becomes that app's incoming call, so bots can
//!   call, redirect to and transfer to each other; the two legs' ports are bridged, so the
//!   two calls hear each other.
//!
//! SIP and WebRTC endpoints will implement the same `LegAction` → `LegEvent` contract.

use crate::config::Behaviour;
use crate::driver::{Msg, now_ms};
use crate::state::Shared;
use engine::{AppCtx, LegAction, LegEvent};
use graph::{ParticipantInfo, Party};
use media::port::SimPort;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// What a simulated user experienced on one leg: shown by the admin API and the CLI.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LegLog {
    pub leg_id: String,
    pub user_id: Option<String>,
    pub state: String,
    pub events: Vec<LogEntry>,
    /// DTMF keys the user heard (detected in its audio).
    pub tones_heard: String,
    /// Milliseconds of audio it has been in the call for.
    pub media_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    pub at_ms: u64,
    pub event: String,
}

/// Simulated users' ports kept for `heard` after their legs end (the most recent ones).
const KEPT_PORTS: usize = 500;

type KeptPorts = (HashMap<String, Arc<Mutex<SimPort>>>, VecDeque<String>);

#[derive(Default)]
pub struct Registry {
    pub logs: Mutex<HashMap<String, LegLog>>,
    ports: Mutex<KeptPorts>,
}

impl Registry {
    pub fn log(&self, leg: &str, user: Option<&str>, event: impl Into<String>) {
        let mut logs = self.logs.lock().expect("registry");
        if logs.len() > 10_000 {
            // Bounded: drop finished legs first.
            logs.retain(|_, l| l.state != "ended");
        }
        let l = logs.entry(leg.to_string()).or_insert_with(|| LegLog {
            leg_id: leg.to_string(),
            user_id: user.map(str::to_string),
            state: "ringing".into(),
            ..Default::default()
        });
        let event = event.into();
        match event.as_str() {
            "answered" | "connected" => l.state = "connected".into(),
            e if e.starts_with("ended")
                || e.starts_with("cancelled")
                || e.starts_with("rejected")
                || e.starts_with("hung up")
                || e.starts_with("failed") =>
            {
                l.state = "ended".into()
            }
            _ => {}
        }
        l.events.push(LogEntry {
            at_ms: now_ms(),
            event,
        });
    }

    fn keep_port(&self, leg: &str, port: Arc<Mutex<SimPort>>) {
        let mut p = self.ports.lock().expect("registry");
        if p.0.insert(leg.to_string(), port).is_none() {
            p.1.push_back(leg.to_string());
        }
        while p.1.len() > KEPT_PORTS {
            if let Some(old) = p.1.pop_front() {
                p.0.remove(&old);
            }
        }
    }

    /// A simulated user's audio port, while kept.
    pub fn port(&self, leg: &str) -> Option<Arc<Mutex<SimPort>>> {
        self.ports.lock().expect("registry").0.get(leg).cloned()
    }

    /// What simulated users experienced, with what their ports heard.
    pub fn legs(&self) -> Vec<LegLog> {
        let mut v: Vec<LegLog> = self
            .logs
            .lock()
            .expect("registry")
            .values()
            .cloned()
            .collect();
        for l in &mut v {
            if let Some(p) = self.port(&l.leg_id) {
                let p = p.lock().expect("port");
                l.tones_heard = p.tones_heard().to_string();
                l.media_ms = p.elapsed_ms();
            }
        }
        v.sort_by_key(|l| l.events.first().map(|e| e.at_ms).unwrap_or(0));
        v
    }
}

struct SimLeg {
    behaviour: Behaviour,
    tasks: Vec<JoinHandle<()>>,
}

enum Kind {
    Sim(SimLeg),
    /// A SIP phone or trunk (crates/sip drives the dialog and its RTP).
    Sip,
    /// A leg rung towards an app, paired with the caller leg of that app's incoming call.
    AppSide {
        peer: String,
    },
}

pub struct Endpoints {
    shared: Arc<Shared>,
    legs: HashMap<String, Kind>,
}

impl Endpoints {
    pub fn new(shared: Arc<Shared>) -> Endpoints {
        Endpoints {
            shared,
            legs: HashMap::new(),
        }
    }

    fn event(&self, leg: &str, event: LegEvent) {
        let _ = self.shared.driver.send(Msg::Leg {
            leg_id: leg.to_string(),
            event,
        });
    }

    fn later(&self, leg: &str, after_ms: u64, event: LegEvent) -> JoinHandle<()> {
        let driver = self.shared.driver.clone();
        let reg = self.shared.registry.clone();
        let leg = leg.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(after_ms)).await;
            let text = match &event {
                LegEvent::Answered => "answered".to_string(),
                LegEvent::Failed { sip_code, reason } => format!("failed {sip_code} {reason}"),
                LegEvent::HungUp => "hung up".to_string(),
                LegEvent::MediaLost { reason } => format!("media lost: {reason}"),
                LegEvent::Held => "put the call on hold".to_string(),
                LegEvent::Resumed => "resumed the call".to_string(),
                LegEvent::Ringing => "ringing".to_string(),
                LegEvent::SharingStarted => "started sharing the screen".to_string(),
                LegEvent::SharingStopped => "stopped sharing the screen".to_string(),
                LegEvent::ReferSupported => "can be transferred by REFER".to_string(),
                LegEvent::ReferFailed { sip_code, .. } => format!("REFER failed {sip_code}"),
            };
            reg.log(&leg, None, text);
            let _ = driver.send(Msg::Leg { leg_id: leg, event });
        })
    }

    /// Give a simulated user's leg its audio: keys and speech on a timeline from joining.
    fn attach_audio(&mut self, leg: &str, b: &Behaviour) {
        let cap = media::samples(b.record_heard_seconds.unwrap_or(300) * 1000);
        let port = Arc::new(Mutex::new(SimPort::new(cap)));
        {
            let mut p = port.lock().expect("port");
            for press in &b.dtmf {
                let gap = press.gap_ms.unwrap_or(250);
                let hold = press.tone_ms.unwrap_or(100) as u32;
                for (i, c) in press.digits.chars().enumerate() {
                    p.press(press.at_ms + i as u64 * gap, c, hold);
                }
            }
        }
        for s in b.speak.clone() {
            let shared = self.shared.clone();
            let port = port.clone();
            let leg = leg.to_string();
            tokio::spawn(async move {
                let client = crate::fetch::client(&shared);
                match crate::fetch::load(&shared, &client, &s.uri, None).await {
                    Ok(audio) => port.lock().expect("port").say(s.at_ms, audio, s.looped),
                    Err(e) => {
                        shared
                            .registry
                            .log(&leg, None, format!("cannot speak {}: {e}", s.uri))
                    }
                }
            });
        }
        self.shared.media.ports.insert(leg, port.clone());
        self.shared.registry.keep_port(leg, port);
    }

    fn sip(&self, c: sip::server::LegCommand) {
        if let Some(s) = self.shared.sip.get() {
            s.command(c);
        }
    }

    /// Ring every registered contact of a SIP user (crates/sip forks the call).
    fn dial_sip(&mut self, leg: &str, user: &crate::config::User, from: &ParticipantInfo) {
        let reg = self.shared.registry.clone();
        let Some(sip) = self.shared.sip.get() else {
            self.event(
                leg,
                LegEvent::Failed {
                    sip_code: 480,
                    reason: format!("user {} is a SIP user but SIP is not enabled", user.id),
                },
            );
            return;
        };
        let contacts: Vec<String> = sip
            .contacts(user.sip_username())
            .into_iter()
            .map(|b| b.uri)
            .collect();
        if contacts.is_empty() {
            reg.log(leg, Some(&user.id), "failed 480 not registered");
            self.event(
                leg,
                LegEvent::Failed {
                    sip_code: 480,
                    reason: format!("user {} has no registered SIP phone", user.id),
                },
            );
            return;
        }
        let caller = sip::server::Caller {
            user: match from.identity.party() {
                Some(
                    Party::User(id)
                    | Party::Application(id)
                    | Party::ApplicationInstance(id)
                    | Party::Phone(id)
                    | Party::Guest(id),
                ) => id,
                None => "ringside".into(),
            },
            display: from.identity.display_name().map(str::to_string),
        };
        reg.log(
            leg,
            Some(&user.id),
            format!("dialling {} SIP contact(s)", contacts.len()),
        );
        self.legs.insert(leg.to_string(), Kind::Sip);
        sip.command(sip::server::LegCommand::Dial {
            leg_id: leg.to_string(),
            targets: contacts
                .into_iter()
                .map(sip::server::Target::contact)
                .collect(),
            caller,
        });
    }

    /// Call a phone number through the trunk whose routes match it best.
    fn dial_number(&mut self, leg: &str, number: &str, from: &ParticipantInfo) {
        let fail = |this: &Self, reason: String| {
            this.shared
                .registry
                .log(leg, None, format!("failed 480 {reason}"));
            this.event(
                leg,
                LegEvent::Failed {
                    sip_code: 480,
                    reason,
                },
            );
        };
        let (trunk, caller_number) = {
            let c = self.shared.config.read().expect("config");
            let Some(trunk) = c.trunk_for(number).cloned() else {
                drop(c);
                return fail(
                    self,
                    format!("no SIP trunk is configured to reach {number}"),
                );
            };
            // The From number: the calling resource account's, else any of the app's, else
            // the trunk's default.
            let instance = from
                .identity
                .application_instance
                .as_ref()
                .and_then(|i| i.id.as_deref())
                .and_then(|id| c.instance(id))
                .or_else(|| {
                    let app = from.identity.application.as_ref()?.id.as_deref()?;
                    c.application_instances
                        .iter()
                        .find(|i| i.app.eq_ignore_ascii_case(app))
                });
            let caller_number = instance
                .map(|i| i.phone.clone())
                .or(trunk.caller_id.clone());
            (trunk, caller_number)
        };
        let Some(sip) = self.shared.sip.get() else {
            return fail(self, format!("SIP is not enabled to reach {number}"));
        };
        let caller = sip::server::Caller {
            user: caller_number.unwrap_or_else(|| "anonymous".into()),
            display: from.identity.display_name().map(str::to_string),
        };
        let target = sip::server::Target {
            uri: trunk.request_uri(number),
            proxy: Some(trunk.proxy.clone()),
            auth: trunk.username.clone().zip(trunk.password.clone()),
        };
        self.shared.registry.log(
            leg,
            None,
            format!("dialling {number} through trunk {}", trunk.name),
        );
        self.legs.insert(leg.to_string(), Kind::Sip);
        sip.command(sip::server::LegCommand::Dial {
            leg_id: leg.to_string(),
            targets: vec![target],
            caller,
        });
    }

    /// Register a simulated caller leg (a simulated user calling an app).
    pub fn add_caller(&mut self, leg: &str, user_id: &str, behaviour: Behaviour) {
        self.shared.registry.log(leg, Some(user_id), "calling");
        self.attach_audio(leg, &behaviour);
        self.legs.insert(
            leg.to_string(),
            Kind::Sim(SimLeg {
                behaviour,
                tasks: vec![],
            }),
        );
    }

    /// After connect: hang up, hold, resume and key presses at their scripted times.
    fn start_script(&mut self, leg: &str) {
        let Some(Kind::Sim(s)) = self.legs.get(leg) else {
            return;
        };
        let b = s.behaviour.clone();
        let mut tasks = vec![];
        if let Some(t) = b.hold_at_ms {
            tasks.push(self.later(leg, t, LegEvent::Held));
        }
        if let Some(t) = b.resume_at_ms {
            tasks.push(self.later(leg, t, LegEvent::Resumed));
        }
        if let Some(t) = b.share_screen_at_ms {
            tasks.push(self.later(leg, t, LegEvent::SharingStarted));
        }
        if let Some(t) = b.stop_sharing_at_ms {
            tasks.push(self.later(leg, t, LegEvent::SharingStopped));
        }
        if let Some(t) = b.hangup_after_ms {
            tasks.push(self.later(leg, t, LegEvent::HungUp));
        }
        if let Some(Kind::Sim(s)) = self.legs.get_mut(leg) {
            s.tasks.extend(tasks);
        }
    }

    fn stop(&mut self, leg: &str) {
        self.shared.media.ports.remove(leg);
        if let Some(Kind::Sim(s)) = self.legs.remove(leg) {
            for t in s.tasks {
                t.abort();
            }
        }
    }

    pub async fn handle(&mut self, action: LegAction) {
        let reg = self.shared.registry.clone();
        match action {
            LegAction::Ring {
                leg_id,
                to,
                from,
                script,
            } => self.ring(&leg_id, to, *from, script).await,
            LegAction::Answer { leg_id } => match self.legs.get(&leg_id) {
                Some(Kind::Sim(_)) => {
                    reg.log(&leg_id, None, "connected");
                    self.event(&leg_id, LegEvent::Answered);
                    self.start_script(&leg_id);
                }
                Some(Kind::AppSide { peer }) => {
                    let peer = peer.clone();
                    self.event(&leg_id, LegEvent::Answered);
                    self.event(&peer, LegEvent::Answered);
                }
                // The phone is connected when the 200 OK goes out (SipEvent::Answered).
                Some(Kind::Sip) => self.sip(sip::server::LegCommand::Answer { leg_id }),
                None => self.event(&leg_id, LegEvent::Answered),
            },
            LegAction::Reject { leg_id, sip_code } => {
                reg.log(&leg_id, None, format!("rejected {sip_code}"));
                if let Some(Kind::Sip) = self.legs.get(&leg_id) {
                    self.sip(sip::server::LegCommand::Reject {
                        leg_id: leg_id.clone(),
                        status: sip_code,
                    });
                }
                if let Some(Kind::AppSide { peer }) = self.legs.remove(&leg_id) {
                    self.legs.remove(&peer);
                    self.shared.media.ports.remove(&peer);
                    self.event(
                        &peer,
                        LegEvent::Failed {
                            sip_code,
                            reason: "the application rejected the call".into(),
                        },
                    );
                }
                self.stop(&leg_id);
            }
            LegAction::Cancel { leg_id } => {
                reg.log(&leg_id, None, "cancelled");
                if let Some(Kind::Sip) = self.legs.get(&leg_id) {
                    self.sip(sip::server::LegCommand::Hangup {
                        leg_id: leg_id.clone(),
                    });
                }
                if let Some(Kind::AppSide { peer }) = self.legs.remove(&leg_id) {
                    self.legs.remove(&peer);
                    self.shared.media.ports.remove(&peer);
                    self.event(&peer, LegEvent::HungUp);
                }
                self.stop(&leg_id);
            }
            LegAction::Refer { leg_id, token } => {
                reg.log(&leg_id, None, "transfer by REFER");
                match self.legs.get(&leg_id) {
                    Some(Kind::Sip) => self.sip(sip::server::LegCommand::Refer { leg_id, token }),
                    _ => self.event(
                        &leg_id,
                        LegEvent::ReferFailed {
                            accepted: false,
                            sip_code: 501,
                        },
                    ),
                }
            }
            LegAction::Hangup { leg_id, reason } => {
                reg.log(&leg_id, None, format!("ended: {reason}"));
                if let Some(Kind::Sip) = self.legs.get(&leg_id) {
                    self.sip(sip::server::LegCommand::Hangup {
                        leg_id: leg_id.clone(),
                    });
                }
                if let Some(Kind::AppSide { peer }) = self.legs.remove(&leg_id) {
                    self.legs.remove(&peer);
                    self.shared.media.ports.remove(&peer);
                    self.event(&peer, LegEvent::HungUp);
                }
                self.stop(&leg_id);
            }
        }
    }

    async fn ring(
        &mut self,
        leg: &str,
        to: Party,
        from: ParticipantInfo,
        script: Option<serde_json::Value>,
    ) {
        let reg = self.shared.registry.clone();
        match to {
            Party::User(uid) => {
                let user = self
                    .shared
                    .config
                    .read()
                    .expect("config")
                    .user(&uid)
                    .cloned();
                let Some(user) = user else {
                    reg.log(leg, None, format!("failed 404 no user {uid}"));
                    self.event(
                        leg,
                        LegEvent::Failed {
                            sip_code: 404,
                            reason: format!("user {uid} does not exist"),
                        },
                    );
                    return;
                };
                if user.endpoint == "sip" {
                    self.dial_sip(leg, &user, &from);
                    return;
                }
                if user.endpoint != "simulated" {
                    self.event(
                        leg,
                        LegEvent::Failed {
                            sip_code: 480,
                            reason: format!(
                                "user {uid} has no reachable endpoint ({})",
                                user.endpoint
                            ),
                        },
                    );
                    return;
                }
                let over: Behaviour = match script.map(serde_json::from_value::<Behaviour>) {
                    None => Behaviour::default(),
                    Some(Ok(b)) if b.validate().is_ok() => b,
                    Some(Ok(b)) => {
                        tracing::warn!(leg, error = %b.validate().unwrap_err(), "ignoring invalid per-call script");
                        Behaviour::default()
                    }
                    Some(Err(e)) => {
                        tracing::warn!(leg, error = %e, "ignoring invalid per-call script");
                        Behaviour::default()
                    }
                };
                let b = user.behaviour.merged(&over);
                reg.log(
                    leg,
                    Some(&user.id),
                    format!(
                        "ringing (from {})",
                        from.identity.display_name().unwrap_or("unknown")
                    ),
                );
                self.event(leg, LegEvent::Ringing);
                let after = b.answer_after_ms.unwrap_or(500);
                let action = b
                    .action
                    .clone()
                    .unwrap_or_else(|| "answer".into())
                    .to_ascii_lowercase();
                let mut tasks = vec![];
                match action.as_str() {
                    "busy" => tasks.push(self.later(
                        leg,
                        after,
                        LegEvent::Failed {
                            sip_code: 486,
                            reason: "busy".into(),
                        },
                    )),
                    "decline" => tasks.push(self.later(
                        leg,
                        after,
                        LegEvent::Failed {
                            sip_code: 603,
                            reason: "declined".into(),
                        },
                    )),
                    "unavailable" => tasks.push(self.later(
                        leg,
                        0,
                        LegEvent::Failed {
                            sip_code: 480,
                            reason: "unavailable".into(),
                        },
                    )),
                    "noanswer" => {}
                    _ => tasks.push(self.later(leg, after, LegEvent::Answered)),
                }
                self.attach_audio(leg, &b);
                self.legs.insert(
                    leg.to_string(),
                    Kind::Sim(SimLeg {
                        behaviour: b.clone(),
                        tasks,
                    }),
                );
                if action == "answer" {
                    // The script runs from the moment of answer.
                    let shift = after;
                    let mut shifted = b;
                    shifted.hold_at_ms = shifted.hold_at_ms.map(|t| t + shift);
                    shifted.resume_at_ms = shifted.resume_at_ms.map(|t| t + shift);
                    shifted.hangup_after_ms = shifted.hangup_after_ms.map(|t| t + shift);
                    shifted.share_screen_at_ms = shifted.share_screen_at_ms.map(|t| t + shift);
                    shifted.stop_sharing_at_ms = shifted.stop_sharing_at_ms.map(|t| t + shift);
                    if let Some(Kind::Sim(s)) = self.legs.get_mut(leg) {
                        s.behaviour = shifted;
                    }
                    self.start_script(leg);
                }
            }
            Party::Application(id) | Party::ApplicationInstance(id) => {
                let app = self.shared.config.read().expect("config").app(&id).cloned();
                let Some(app) = app else {
                    self.event(
                        leg,
                        LegEvent::Failed {
                            sip_code: 404,
                            reason: format!("application {id} does not exist"),
                        },
                    );
                    return;
                };
                let Some(webhook) = app.webhook.clone() else {
                    self.event(
                        leg,
                        LegEvent::Failed {
                            sip_code: 480,
                            reason: format!("application {id} has no calling webhook"),
                        },
                    );
                    return;
                };
                let ctx = AppCtx {
                    tenant_id: app.tenant.clone(),
                    app_id: app.id.clone(),
                    app_name: app.name.clone(),
                };
                let (tx, rx) = oneshot::channel();
                let _ = self.shared.driver.send(Msg::Incoming {
                    app: ctx,
                    webhook,
                    caller: from,
                    script: None,
                    target: None,
                    sip: false,
                    reply: tx,
                });
                let Ok((_call, b_leg)) = rx.await else { return };
                let (a_port, b_port) = media::port::bridge();
                self.shared.media.ports.insert(leg, a_port);
                self.shared.media.ports.insert(&b_leg, b_port);
                self.legs.insert(
                    leg.to_string(),
                    Kind::AppSide {
                        peer: b_leg.clone(),
                    },
                );
                self.legs.insert(
                    b_leg,
                    Kind::AppSide {
                        peer: leg.to_string(),
                    },
                );
                self.event(leg, LegEvent::Ringing);
            }
            Party::Phone(n) => self.dial_number(leg, &n, &from),
            Party::Guest(g) => {
                self.event(
                    leg,
                    LegEvent::Failed {
                        sip_code: 404,
                        reason: format!("guest {g} cannot be called"),
                    },
                );
            }
        }
    }
}

pub enum Control {
    Action(LegAction),
    /// A SIP phone called an app: its leg is driven through crates/sip.
    AddSip {
        leg: String,
    },
    /// The far end ended the leg on its own (a phone's BYE): nothing left to drive.
    Forget {
        leg: String,
    },
    AddCaller {
        leg: String,
        user_id: String,
        behaviour: Behaviour,
    },
    /// A simulated user joined a meeting on its own: its script starts now.
    Joined {
        leg: String,
        user_id: String,
        behaviour: Behaviour,
    },
}

pub async fn run(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Control>) {
    let mut eps = Endpoints::new(shared);
    while let Some(c) = rx.recv().await {
        match c {
            Control::Action(a) => eps.handle(a).await,
            Control::AddSip { leg } => {
                eps.legs.insert(leg, Kind::Sip);
            }
            Control::Forget { leg } => eps.stop(&leg),
            Control::AddCaller {
                leg,
                user_id,
                behaviour,
            } => eps.add_caller(&leg, &user_id, behaviour),
            Control::Joined {
                leg,
                user_id,
                behaviour,
            } => {
                eps.add_caller(&leg, &user_id, behaviour);
                eps.shared.registry.log(&leg, Some(&user_id), "connected");
                eps.start_script(&leg);
            }
        }
    }
}

/// What SIP reports: a new call to an app becomes its incoming call; answers and hang-ups
/// become leg events.
pub async fn sip_events(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<sip::server::SipEvent>,
) {
    use sip::server::SipEvent;
    while let Some(ev) = rx.recv().await {
        match ev {
            SipEvent::Incoming {
                to_uri,
                to_user,
                from_user,
                from_display,
                port,
                reply,
            } => {
                // The new call of a phone ringside asked to transfer (REFER).
                if let Some(token) = to_user.as_deref().filter(|u| u.starts_with("xfer-")) {
                    let (tx, rx) = oneshot::channel();
                    let _ = shared.driver.send(Msg::Referred {
                        token: token.to_string(),
                        reply: tx,
                    });
                    let r = rx.await.unwrap_or(Err(503));
                    if let Ok(leg) = &r {
                        shared.media.ports.insert(leg, port);
                    }
                    let _ = reply.send(r);
                    continue;
                }
                let found = {
                    let c = shared.config.read().expect("config");
                    let app = c.apps.iter().find(|a| {
                        a.addresses.iter().any(|addr| {
                            let addr = addr.trim().to_ascii_lowercase();
                            addr == to_uri.to_ascii_lowercase()
                                || to_user.as_deref().is_some_and(|u| {
                                    let u = u.to_ascii_lowercase();
                                    addr == u
                                        || addr
                                            .strip_prefix("sip:")
                                            .and_then(|a| a.split('@').next())
                                            == Some(u.as_str())
                                })
                        })
                    });
                    // A number owned by a resource account reaches its app, addressed to
                    // the resource account (reference §7.5).
                    let (app, target) = match app {
                        Some(a) => (Some(a), None),
                        None => match to_user.as_deref().and_then(|u| c.instance_for_number(u)) {
                            Some(i) => {
                                let mut id = graph::Identity::new(&i.id, i.display_name.as_deref());
                                if let Some(a) = c.app(&i.app) {
                                    id.extra.insert("tenantId".into(), a.tenant.clone().into());
                                }
                                let target = graph::IdentitySet {
                                    application_instance: Some(id),
                                    ..Default::default()
                                };
                                (c.app(&i.app), Some(Box::new(target)))
                            }
                            None => (None, None),
                        },
                    };
                    app.map(|a| {
                        let caller_user = from_user.as_deref().and_then(|f| c.sip_user(f)).cloned();
                        (
                            AppCtx {
                                tenant_id: a.tenant.clone(),
                                app_id: a.id.clone(),
                                app_name: a.name.clone(),
                            },
                            a.webhook.clone(),
                            caller_user,
                            target,
                        )
                    })
                };
                let Some((app, Some(webhook), caller_user, target)) = found else {
                    let _ = reply.send(Err(404));
                    continue;
                };
                let from_number = from_user
                    .as_deref()
                    .filter(|u| u.len() >= 3)
                    .and_then(crate::config::normalize_number);
                let identity = match (&caller_user, from_number) {
                    (Some(u), _) => graph::IdentitySet::user(
                        &u.id,
                        u.display_name.clone().or(from_display.clone()).as_deref(),
                    ),
                    // A caller from the phone network (a trunk) is a phone identity.
                    (None, Some(n)) => graph::IdentitySet {
                        phone: Some(graph::Identity::new(&n, from_display.as_deref())),
                        ..Default::default()
                    },
                    (None, None) => graph::IdentitySet::user(
                        from_user.as_deref().unwrap_or("anonymous"),
                        from_display.as_deref(),
                    ),
                };
                let caller = ParticipantInfo {
                    identity,
                    ..Default::default()
                };
                let (tx, rx) = oneshot::channel();
                let _ = shared.driver.send(Msg::Incoming {
                    app,
                    webhook,
                    caller,
                    script: None,
                    target,
                    sip: true,
                    reply: tx,
                });
                match rx.await {
                    Ok((_call, leg)) => {
                        shared.media.ports.insert(&leg, port);
                        let _ = reply.send(Ok(leg));
                    }
                    Err(_) => {
                        let _ = reply.send(Err(503));
                    }
                }
            }
            SipEvent::Ringing { leg_id } => {
                let _ = shared.driver.send(Msg::Leg {
                    leg_id,
                    event: LegEvent::Ringing,
                });
            }
            SipEvent::Answered {
                leg_id,
                port,
                refer,
            } => {
                if let Some(p) = port {
                    shared.media.ports.insert(&leg_id, p);
                }
                let _ = shared.driver.send(Msg::Leg {
                    leg_id: leg_id.clone(),
                    event: LegEvent::Answered,
                });
                if refer {
                    let _ = shared.driver.send(Msg::Leg {
                        leg_id,
                        event: LegEvent::ReferSupported,
                    });
                }
            }
            SipEvent::ReferFailed {
                leg_id,
                accepted,
                status,
            } => {
                shared.registry.log(
                    &leg_id,
                    None,
                    format!("REFER failed {status} (accepted: {accepted})"),
                );
                let _ = shared.driver.send(Msg::Leg {
                    leg_id,
                    event: LegEvent::ReferFailed {
                        accepted,
                        sip_code: status,
                    },
                });
            }
            SipEvent::MediaLost { leg_id, reason } => {
                shared.media.ports.remove(&leg_id);
                let _ = shared.endpoints.send(Control::Forget {
                    leg: leg_id.clone(),
                });
                let _ = shared.driver.send(Msg::Leg {
                    leg_id,
                    event: LegEvent::MediaLost { reason },
                });
            }
            SipEvent::Held { leg_id } => {
                let _ = shared.driver.send(Msg::Leg {
                    leg_id,
                    event: LegEvent::Held,
                });
            }
            SipEvent::Resumed { leg_id } => {
                let _ = shared.driver.send(Msg::Leg {
                    leg_id,
                    event: LegEvent::Resumed,
                });
            }
            SipEvent::Failed {
                leg_id,
                status,
                reason,
            } => {
                shared
                    .registry
                    .log(&leg_id, None, format!("failed {reason}"));
                let _ = shared.endpoints.send(Control::Forget {
                    leg: leg_id.clone(),
                });
                let _ = shared.driver.send(Msg::Leg {
                    leg_id,
                    event: LegEvent::Failed {
                        sip_code: status,
                        reason,
                    },
                });
            }
            SipEvent::HungUp { leg_id } => {
                shared.media.ports.remove(&leg_id);
                let _ = shared.endpoints.send(Control::Forget {
                    leg: leg_id.clone(),
                });
                let _ = shared.driver.send(Msg::Leg {
                    leg_id,
                    event: LegEvent::HungUp,
                });
            }
        }
    }
}
