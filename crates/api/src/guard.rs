//! What a request must have before it reaches the engine: the permissions its command needs,
//! outbound URLs the policy allows, and room in its app's and tenant's request budgets.

use engine::{ApiError, Command};
use graph::MediaConfig;
use identity::permissions::{self, *};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// The permissions each engine command needs (reference §5). Each inner list is "any of";
/// every list must be satisfied.
pub fn required(cmd: &Command) -> Vec<Vec<&'static str>> {
    let media = |m: &Option<MediaConfig>| matches!(m, Some(MediaConfig::AppHosted { .. }));
    let participant_ops = vec![
        JOIN_GROUP,
        JOIN_GROUP_GUEST,
        INITIATE_GROUP,
        JOIN_GROUP_CHAT,
    ];
    match cmd {
        Command::CreateCall(req) => {
            let mut r = vec![];
            if req.meeting_info.is_some() {
                let guest = req
                    .source
                    .as_ref()
                    .is_some_and(|s| s.identity.guest.is_some());
                r.push(if guest {
                    vec![JOIN_GROUP_GUEST, JOIN_GROUP, JOIN_GROUP_CHAT]
                } else {
                    vec![JOIN_GROUP, JOIN_GROUP_CHAT]
                });
            } else if req.targets.len() > 1 {
                r.push(vec![INITIATE_GROUP]);
            } else {
                r.push(vec![INITIATE]);
            }
            if media(&req.media_config) {
                r.push(vec![ACCESS_MEDIA, ACCESS_MEDIA_CHAT]);
            }
            r
        }
        Command::Answer(req) if media(&req.media_config) => {
            vec![vec![ACCESS_MEDIA, ACCESS_MEDIA_CHAT]]
        }
        Command::Redirect(_) | Command::Transfer(_) => vec![vec![INITIATE]],
        Command::Invite(_) => vec![vec![INITIATE_GROUP]],
        Command::MuteAll(_)
        | Command::MuteParticipant(..)
        | Command::DeleteParticipant(_)
        | Command::StartHoldMusic(..)
        | Command::StopHoldMusic(..) => {
            vec![participant_ops]
        }
        Command::CreateRoutingGroup(_)
        | Command::UpdateRoutingGroup(..)
        | Command::DeleteRoutingGroup(_) => vec![vec![JOIN_GROUP, INITIATE_GROUP]],
        Command::StartRecording(_)
        | Command::StopRecording(_)
        | Command::StartTranscription(_)
        | Command::StopTranscription(_) => vec![vec![JOIN_GROUP]],
        Command::ChangeScreenSharingRole(_) => vec![vec![ACCESS_MEDIA, ACCESS_MEDIA_CHAT]],
        // The rest are checked when the call is created or answered (reference §5 note).
        _ => vec![],
    }
}

/// 403 naming the missing permission, as Graph does.
pub fn permit(roles: &[String], needed: &[Vec<&'static str>]) -> Result<(), ApiError> {
    permissions::check(roles, needed).map_err(|message| ApiError {
        status: 403,
        code: "Forbidden".into(),
        message,
    })
}

/// Every URL a command would make ringside call: checked against the outbound policy before
/// the command is accepted.
pub fn outbound_urls(cmd: &Command) -> Vec<(&'static str, String)> {
    let mut v = vec![];
    let prefetch = |m: &Option<MediaConfig>, v: &mut Vec<(&'static str, String)>| {
        if let Some(MediaConfig::ServiceHosted {
            pre_fetch_media, ..
        }) = m
        {
            v.extend(
                pre_fetch_media
                    .iter()
                    .map(|p| ("mediaConfig.preFetchMedia.uri", p.uri.clone())),
            );
        }
    };
    // A media stream's transportUrl goes where an http(s) URL to the same place may go.
    let stream = |m: &Option<MediaConfig>, v: &mut Vec<(&'static str, String)>| {
        if let Some(Ok(Some(s))) = m.as_ref().map(MediaConfig::media_streaming)
            && let Some(u) = s.transport_url
        {
            let http = match u.get(..6).map(str::to_ascii_lowercase).as_deref() {
                Some("wss://") => format!("https://{}", &u[6..]),
                _ => format!("http://{}", u.get(5..).unwrap_or("")),
            };
            v.push(("mediaConfig.mediaStreaming.transportUrl", http));
        }
    };
    match cmd {
        Command::CreateCall(r) => {
            v.extend(r.callback_uri.iter().map(|u| ("callbackUri", u.clone())));
            prefetch(&r.media_config, &mut v);
            stream(&r.media_config, &mut v);
        }
        Command::Answer(r) => {
            v.extend(r.callback_uri.iter().map(|u| ("callbackUri", u.clone())));
            prefetch(&r.media_config, &mut v);
            stream(&r.media_config, &mut v);
        }
        Command::Reject(r) => v.extend(r.callback_uri.iter().map(|u| ("callbackUri", u.clone()))),
        Command::Redirect(r) => v.extend(r.callback_uri.iter().map(|u| ("callbackUri", u.clone()))),
        Command::PlayPrompt(r) => v.extend(
            r.prompts
                .iter()
                .map(|p| ("prompts.mediaInfo.uri", p.media_info.uri.clone())),
        ),
        Command::RecordResponse(r) => v.extend(
            r.prompts
                .iter()
                .map(|p| ("prompts.mediaInfo.uri", p.media_info.uri.clone())),
        ),
        Command::StartHoldMusic(_, r) => v.extend(
            r.custom_prompt
                .iter()
                .map(|p| ("customPrompt.mediaInfo.uri", p.media_info.uri.clone())),
        ),
        _ => {}
    }
    v.retain(|(_, u)| !u.to_ascii_lowercase().starts_with("file://"));
    v
}

/// Token buckets per key: `rate` requests per second, bursts of `burst`.
pub struct Buckets {
    state: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Default for Buckets {
    fn default() -> Self {
        Buckets {
            state: Mutex::new(HashMap::new()),
        }
    }
}

impl Buckets {
    /// Take one token, or say how many seconds until one is available.
    pub fn take(&self, key: &str, rate: f64, burst: f64) -> Result<(), u64> {
        if rate <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut st = self.state.lock().expect("buckets");
        if st.len() > 100_000 {
            st.clear();
        }
        let (tokens, last) = st.entry(key.to_string()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

pub fn throttled(what: &str, retry_after: u64) -> ApiError {
    ApiError {
        status: 429,
        code: "TooManyRequests".into(),
        message: format!("Too many requests for this {what}; retry after {retry_after} s."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_at_their_rate() {
        let b = Buckets::default();
        assert!(b.take("a", 1.0, 2.0).is_ok());
        assert!(b.take("a", 1.0, 2.0).is_ok());
        assert_eq!(b.take("a", 1.0, 2.0), Err(1));
        assert!(b.take("b", 1.0, 2.0).is_ok(), "keys are independent");
    }
}
