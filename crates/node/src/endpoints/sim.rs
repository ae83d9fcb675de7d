//! Simulated users: scripted phones for bot developers' tests (answer after N ms, busy,
//! decline, never answer, hang up, hold/resume, share the screen). They are real audio
//! endpoints: each has a media port that speaks WAV files and presses keys as in-band DTMF
//! on a timeline from the moment it joins the call, and records what it hears
//! (`ringside heard`).

use super::legs::{Cx, End, Leg, Legs};
use crate::inputs::Control;
use directory::{Behaviour, User};
use engine::LegEvent;
use graph::ParticipantInfo;
use media::port::SimPort;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

pub struct SimLeg {
    behaviour: Behaviour,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for SimLeg {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Leg for SimLeg {
    fn answer(&mut self, leg: &str, cx: &Cx) {
        cx.log(leg, None, "connected");
        cx.event(leg, LegEvent::Answered);
        self.start_script(leg, cx);
    }

    fn end(self: Box<Self>, _leg: &str, _how: End, _cx: &Cx) -> Option<String> {
        None
    }
}

/// How a scheduled event reads in the leg's log.
fn describe(event: &LegEvent) -> String {
    match event {
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
    }
}

/// `event` on `leg` after `after_ms`, logged when it happens.
fn later(cx: &Cx, leg: &str, after_ms: u64, event: LegEvent) -> JoinHandle<()> {
    let cx = cx.clone();
    let leg = leg.to_string();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(after_ms)).await;
        cx.log(&leg, None, describe(&event));
        let gone = matches!(event, LegEvent::HungUp | LegEvent::Failed { .. });
        cx.event(&leg, event);
        if gone {
            // The engine sends nothing back to a leg that left by itself: let go of it here
            // (its scripted tasks and its audio port), or every such leg stays for good.
            let _ = cx.node.endpoints.send(Control::Forget { leg });
        }
    })
}

impl SimLeg {
    /// After connect: hang up, hold, resume and screen sharing at their scripted times.
    fn start_script(&mut self, leg: &str, cx: &Cx) {
        let b = &self.behaviour;
        let scripted = [
            (b.hold_at_ms, LegEvent::Held),
            (b.resume_at_ms, LegEvent::Resumed),
            (b.share_screen_at_ms, LegEvent::SharingStarted),
            (b.stop_sharing_at_ms, LegEvent::SharingStopped),
            (b.hangup_after_ms, LegEvent::HungUp),
        ];
        for (at, event) in scripted {
            if let Some(t) = at {
                self.tasks.push(later(cx, leg, t, event));
            }
        }
    }
}

/// Give a simulated user's leg its audio: keys and speech on a timeline from joining.
fn attach_audio(cx: &Cx, leg: &str, b: &Behaviour) {
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
        let node = cx.node.clone();
        let port = port.clone();
        let leg = leg.to_string();
        tokio::spawn(async move {
            let client = node.prompt_client();
            match node.load_prompt(&client, &s.uri, None).await {
                Ok(audio) => port.lock().expect("port").say(s.at_ms, audio, s.looped),
                Err(e) => node
                    .registry
                    .log(&leg, None, format!("cannot speak {}: {e}", s.uri)),
            }
        });
    }
    cx.node.media.ports.insert(leg, port.clone());
    cx.node.registry.keep_port(leg, port);
}

/// A simulated user calling an app (or joining a meeting): its leg, with its audio.
pub fn caller(cx: &Cx, leg: &str, user_id: &str, behaviour: Behaviour) -> SimLeg {
    cx.log(leg, Some(user_id), "calling");
    attach_audio(cx, leg, &behaviour);
    SimLeg {
        behaviour,
        tasks: vec![],
    }
}

/// A simulated user who joined a meeting on its own: connected, its script running.
pub fn joined(cx: &Cx, leg: &str, user_id: &str, behaviour: Behaviour) -> SimLeg {
    let mut l = caller(cx, leg, user_id, behaviour);
    cx.log(leg, Some(user_id), "connected");
    l.start_script(leg, cx);
    l
}

/// The user's script for this call: its own, with the call's `script` over it.
fn script_for(leg: &str, user: &User, script: Option<serde_json::Value>) -> Behaviour {
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
    user.behaviour.merged(&over)
}

/// Ring a simulated user: it rings, then answers, is busy, declines or never answers as
/// its script says.
pub fn ring(
    legs: &mut Legs,
    leg: &str,
    user: &User,
    from: &ParticipantInfo,
    script: Option<serde_json::Value>,
) {
    let cx = legs.cx.clone();
    let b = script_for(leg, user, script);
    cx.log(
        leg,
        Some(&user.id),
        format!(
            "ringing (from {})",
            from.identity.display_name().unwrap_or("unknown")
        ),
    );
    cx.event(leg, LegEvent::Ringing);
    let after = b.answer_after_ms.unwrap_or(500);
    let action = b
        .action
        .clone()
        .unwrap_or_else(|| "answer".into())
        .to_ascii_lowercase();
    let failed = |sip_code: u16, reason: &str| LegEvent::Failed {
        sip_code,
        reason: reason.into(),
    };
    let outcome = match action.as_str() {
        "busy" => Some((after, failed(486, "busy"))),
        "decline" => Some((after, failed(603, "declined"))),
        "unavailable" => Some((0, failed(480, "unavailable"))),
        "noanswer" => None,
        _ => Some((after, LegEvent::Answered)),
    };
    let tasks = outcome
        .map(|(t, ev)| later(&cx, leg, t, ev))
        .into_iter()
        .collect();
    attach_audio(&cx, leg, &b);
    let mut l = SimLeg {
        behaviour: b,
        tasks,
    };
    if action == "answer" {
        // The script runs from the moment of answer.
        let shift = |t: &mut Option<u64>| *t = t.map(|t| t + after);
        let s = &mut l.behaviour;
        shift(&mut s.hold_at_ms);
        shift(&mut s.resume_at_ms);
        shift(&mut s.hangup_after_ms);
        shift(&mut s.share_screen_at_ms);
        shift(&mut s.stop_sharing_at_ms);
        l.start_script(leg, &cx);
    }
    legs.insert(leg, Box::new(l));
}
