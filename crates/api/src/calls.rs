//! The Graph calls routes: one routing table from path and method to engine command (and to
//! meetings and device quality), and carrying an engine command out through the driver.

use crate::plumbing::{
    Ctx, action_name, bad, empty_response, json_response, method_not_allowed, not_found_route,
    parse, segments, stopped,
};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use engine::{ApiError, AppCtx, Command, Reply, Version};
use graph::requests as rq;
use node::{Msg, Node};
use serde_json::Value;
use tokio::sync::oneshot;

// Built once per request and consumed at once; boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Target {
    Engine {
        call_id: Option<String>,
        cmd: Command,
        count: bool,
    },
    CreateMeeting(Value),
    GetMeeting(String),
    LogQuality(Value),
}

/// An engine command, through the driver: the reply once its effects are committed.
#[allow(clippy::too_many_arguments)]
pub async fn run_command(
    shared: &Node,
    ctx: &Ctx,
    app: AppCtx,
    ver: Version,
    prefix: &str,
    rest: &[&str],
    (call_id, cmd, count): (Option<String>, Command, bool),
) -> Result<Response, ApiError> {
    let (tx, rx) = oneshot::channel();
    shared
        .driver
        .send(Msg::Api {
            app,
            call_id,
            cmd,
            ver,
            reply: tx,
        })
        .map_err(|_| stopped())?;
    let reply: Reply = rx.await.map_err(|_| stopped())??;
    if count {
        let n = reply
            .body
            .as_ref()
            .and_then(|b| b["value"].as_array())
            .map(Vec::len)
            .unwrap_or(0);
        return Ok((
            StatusCode::OK,
            [("content-type", "text/plain")],
            n.to_string(),
        )
            .into_response());
    }
    let location = reply.location.map(|l| format!("{prefix}{l}"));
    Ok(match reply.body {
        Some(mut b) => {
            let ctx_path = context_of(rest, &b);
            if let Value::Object(m) = &mut b
                && !m.contains_key("@odata.context")
            {
                m.insert(
                    "@odata.context".into(),
                    format!("{prefix}/$metadata#{ctx_path}").into(),
                );
            }
            json_response(ctx, reply.status, &b, location)
        }
        None => empty_response(ctx, reply.status, location),
    })
}

/// `POST …/calls/logTeleconferenceDeviceQuality`: stored for the admin API.
pub async fn log_quality(
    shared: &Node,
    ctx: &Ctx,
    app: AppCtx,
    headers: &HeaderMap,
    q: Value,
) -> Result<Response, ApiError> {
    let ua = headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ok = ua.split_whitespace().next().is_some_and(|p| {
        p.split_once('/')
            .is_some_and(|(n, v)| !n.is_empty() && !v.is_empty())
    });
    if !ok {
        return Err(bad(
            "logTeleconferenceDeviceQuality requires a User-Agent header of the form ApplicationName/Version.",
        ));
    }
    let (tx, rx) = oneshot::channel();
    shared
        .driver
        .send(Msg::LogQuality {
            tenant: app.tenant_id,
            app: app.app_id,
            json: q,
            reply: tx,
        })
        .map_err(|_| stopped())?;
    rx.await.map_err(|_| stopped())?.map_err(|e| ApiError {
        status: 503,
        code: "ServiceUnavailable".into(),
        message: e,
    })?;
    Ok(empty_response(ctx, 200, None))
}

/// `@odata.context` as Graph writes it: the entity set, the navigation, or the returned type.
fn context_of(rest: &[&str], body: &Value) -> String {
    if body.get("value").is_some() {
        return match rest.get(3) {
            Some(nav) => format!(
                "communications/calls('{}')/{}",
                rest.get(2).unwrap_or(&""),
                nav
            ),
            None => "communications/calls".into(),
        };
    }
    match body.get("@odata.type").and_then(Value::as_str) {
        Some("#microsoft.graph.call") | None => "communications/calls/$entity".into(),
        Some(t) => t
            .trim_start_matches('#')
            .trim_start_matches("microsoft.graph.")
            .to_string(),
    }
}

fn p<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    parse(body)
}

/// A call placed as a resource account (`source.identity.applicationInstance`, needed to
/// call phone numbers) must name one of the calling app's own (reference §7.1).
pub fn resource_account_check(
    shared: &Node,
    app: &engine::AppCtx,
    c: &graph::requests::CreateCall,
) -> Result<(), ApiError> {
    let Some(id) = c
        .source
        .as_ref()
        .and_then(|s| s.identity.application_instance.as_ref())
        .and_then(|i| i.id.as_deref())
    else {
        return Ok(());
    };
    let config = shared.directory.read();
    match config.instance(id) {
        Some(i) if i.app.eq_ignore_ascii_case(&app.app_id) => Ok(()),
        Some(_) => Err(ApiError {
            status: 403,
            code: "Forbidden".into(),
            message: format!(
                "Application instance {id} belongs to another application than the caller's."
            ),
        }),
        None => Err(bad(format!(
            "source.identity.applicationInstance {id} is not a resource account of this application."
        ))),
    }
}

/// The routing table: Graph path and method → what carries the request out (reference §0).
pub fn route(method: &Method, rest: &[&str], path: &str, body: &[u8]) -> Result<Target, ApiError> {
    let nf = || not_found_route(method, path);
    let na = || method_not_allowed(method, path);
    let (root, tail) = match rest {
        [c, "calls", tail @ ..]
            if c.eq_ignore_ascii_case("communications") || c.eq_ignore_ascii_case("app") =>
        {
            ("calls", tail)
        }
        [c, m, tail @ ..]
            if (c.eq_ignore_ascii_case("communications") || c.eq_ignore_ascii_case("app"))
                && m.eq_ignore_ascii_case("onlineMeetings") =>
        {
            ("meetings", tail)
        }
        _ => return Err(nf()),
    };
    let get = *method == Method::GET;
    let post = *method == Method::POST;
    let del = *method == Method::DELETE;
    let patch = *method == Method::PATCH;
    let e = |call_id: Option<&str>, cmd: Command| {
        Ok(Target::Engine {
            call_id: call_id.map(str::to_string),
            cmd,
            count: false,
        })
    };
    let count = |call_id: Option<&str>, cmd: Command| {
        Ok(Target::Engine {
            call_id: call_id.map(str::to_string),
            cmd,
            count: true,
        })
    };
    if root == "meetings" {
        return match tail {
            [] if post => Ok(Target::CreateMeeting(p::<Value>(body)?)),
            [id] if get => Ok(Target::GetMeeting(id.to_string())),
            [] | [_] => Err(na()),
            _ => Err(nf()),
        };
    }
    match tail {
        [] if get => e(None, Command::ListCalls),
        [] if post => e(None, Command::CreateCall(Box::new(p(body)?))),
        [] => Err(na()),
        ["$count"] if get => count(None, Command::ListCalls),
        [a] if action_name(a) == "logteleconferencedevicequality" => {
            if !post {
                return Err(na());
            }
            let q: rq::LogTeleconferenceDeviceQuality = p(body)?;
            q.validate().map_err(bad)?;
            Ok(Target::LogQuality(q.quality.unwrap_or_default()))
        }
        [id] if get => e(Some(id), Command::GetCall),
        [id] if del => e(Some(id), Command::DeleteCall),
        [_] => Err(na()),
        [id, nav] => {
            let a = action_name(nav);
            let id = Some(*id);
            match a.as_str() {
                "participants" if get => e(id, Command::ListParticipants),
                "operations" if get => e(id, Command::ListOperations),
                "audioroutinggroups" if get => e(id, Command::ListRoutingGroups),
                "audioroutinggroups" if post => e(id, Command::CreateRoutingGroup(p(body)?)),
                "contentsharingsessions" if get => e(id, Command::ListContentSharingSessions),
                "participants" | "operations" | "audioroutinggroups" | "contentsharingsessions" => {
                    Err(na())
                }
                _ if !post => Err(na()),
                "answer" => e(id, Command::Answer(p(body)?)),
                "reject" => e(id, Command::Reject(p(body)?)),
                "redirect" => e(id, Command::Redirect(p(body)?)),
                "transfer" => e(id, Command::Transfer(Box::new(p(body)?))),
                "keepalive" => e(id, Command::KeepAlive),
                "playprompt" => e(id, Command::PlayPrompt(p(body)?)),
                "recordresponse" | "record" => e(id, Command::RecordResponse(p(body)?)),
                "cancelmediaprocessing" => e(id, Command::CancelMediaProcessing(p(body)?)),
                "subscribetotone" => e(id, Command::SubscribeToTone(p(body)?)),
                "senddtmftones" => e(id, Command::SendDtmfTones(p(body)?)),
                "mute" => e(id, Command::Mute(p(body)?)),
                "unmute" => e(id, Command::Unmute(p(body)?)),
                "changescreensharingrole" => e(id, Command::ChangeScreenSharingRole(p(body)?)),
                "updaterecordingstatus" => e(id, Command::UpdateRecordingStatus(p(body)?)),
                "startrecording" => e(id, Command::StartRecording(p(body)?)),
                "stoprecording" => e(id, Command::StopRecording(p(body)?)),
                "starttranscription" => e(id, Command::StartTranscription(p(body)?)),
                "stoptranscription" => e(id, Command::StopTranscription(p(body)?)),
                "addlargegalleryview" => e(id, Command::AddLargeGalleryView(p(body)?)),
                _ => Err(nf()),
            }
        }
        [id, nav, "$count"] if get => {
            let cmd = match action_name(nav).as_str() {
                "participants" => Command::ListParticipants,
                "operations" => Command::ListOperations,
                "audioroutinggroups" => Command::ListRoutingGroups,
                "contentsharingsessions" => Command::ListContentSharingSessions,
                _ => return Err(nf()),
            };
            count(Some(id), cmd)
        }
        [id, nav, item] => {
            let id = Some(*id);
            let item = item.to_string();
            match (action_name(nav).as_str(), action_name(&item).as_str()) {
                ("participants", "invite") if post => e(id, Command::Invite(p(body)?)),
                ("participants", "muteall") if post => e(id, Command::MuteAll(p(body)?)),
                ("participants", "invite" | "muteall") => Err(na()),
                ("participants", _) if get => e(id, Command::GetParticipant(item)),
                ("participants", _) if del => e(id, Command::DeleteParticipant(item)),
                ("operations", _) if get => e(id, Command::GetOperation(item)),
                ("audioroutinggroups", _) if get => e(id, Command::GetRoutingGroup(item)),
                ("audioroutinggroups", _) if patch => {
                    e(id, Command::UpdateRoutingGroup(item, p(body)?))
                }
                ("audioroutinggroups", _) if del => e(id, Command::DeleteRoutingGroup(item)),
                ("contentsharingsessions", _) if get => {
                    e(id, Command::GetContentSharingSession(item))
                }
                (
                    "participants" | "operations" | "audioroutinggroups" | "contentsharingsessions",
                    _,
                ) => Err(na()),
                _ => Err(nf()),
            }
        }
        [id, nav, pid, action] if action_name(nav) == "participants" => {
            if !post {
                return Err(na());
            }
            let id = Some(*id);
            let pid = pid.to_string();
            match action_name(action).as_str() {
                "mute" => e(id, Command::MuteParticipant(pid, p(body)?)),
                "startholdmusic" => e(id, Command::StartHoldMusic(pid, p(body)?)),
                "stopholdmusic" => e(id, Command::StopHoldMusic(pid, p(body)?)),
                _ => Err(nf()),
            }
        }
        _ => Err(nf()),
    }
}

/// Fuzzing entry: every request parser behind the routing table, fed arbitrary bytes.
pub fn fuzz_route(method_idx: u8, path: &str, body: &[u8]) {
    let method =
        [Method::GET, Method::POST, Method::DELETE, Method::PATCH][method_idx as usize % 4].clone();
    let segs = segments(path);
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let _ = route(&method, &s, path, body);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(method: Method, path: &str, body: &str) -> Result<Target, ApiError> {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        route(&method, &segs, path, body.as_bytes())
    }

    #[test]
    fn action_segments_are_case_insensitive_and_may_be_qualified() {
        for a in [
            "StartRecording",
            "microsoft.graph.StartRecording",
            "MICROSOFT.GRAPH.startrecording",
        ] {
            let t = r(Method::POST, &format!("communications/calls/c1/{a}"), "").unwrap();
            assert!(
                matches!(
                    t,
                    Target::Engine {
                        cmd: Command::StartRecording(_),
                        ..
                    }
                ),
                "{a}"
            );
        }
        assert!(matches!(
            r(
                Method::POST,
                "app/calls/c1/participants/invite",
                r#"{"participants":[]}"#
            )
            .unwrap(),
            Target::Engine {
                cmd: Command::Invite(_),
                ..
            }
        ));
    }

    #[test]
    fn wrong_methods_and_unknown_paths_are_named() {
        assert_eq!(
            r(Method::PUT, "communications/calls", "")
                .err()
                .unwrap()
                .status,
            405
        );
        assert_eq!(
            r(Method::POST, "communications/calls/c1/dance", "")
                .err()
                .unwrap()
                .status,
            404
        );
        assert_eq!(
            r(Method::GET, "communications/calls/c1/answer", "")
                .err()
                .unwrap()
                .status,
            405
        );
    }

    /// The same property as `fuzz/fuzz_targets/graph_request.rs`, run on every test pass:
    /// arbitrary paths and bodies never panic the routing table or the body parsers.
    #[test]
    fn random_requests_never_panic_the_parsers() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let words = [
            "communications",
            "calls",
            "app",
            "c1",
            "participants",
            "invite",
            "p1",
            "mute",
            "startHoldMusic",
            "operations",
            "audioRoutingGroups",
            "$count",
            "microsoft.graph.StartRecording",
            "playPrompt",
            "recordResponse",
            "answer",
            "redirect",
            "transfer",
            "logTeleconferenceDeviceQuality",
            "onlineMeetings",
            "%ZZ",
            "..",
            "",
        ];
        let bodies = [
            r##"{"prompts":[{"@odata.type":"#microsoft.graph.mediaPrompt","mediaInfo":{"uri":"https://x/a.wav"}}]}"##,
            r##"{"targets":[{"identity":{"user":{"id":"u"}}}],"mediaConfig":{"@odata.type":"x"},"callbackUri":"https://a/b","requestedModalities":["audio"]}"##,
            r##"{"participants":[{"identity":{}}],"clientContext":7}"##,
            r##"{"transferTarget":{"identity":{"phone":{"id":"+1"}}},"transferee":{"identity":null}}"##,
            r##"{"quality":{"mediaQualityList":[1,2]}}"##,
            r##"{"tones":["tone1",3,null],"stopTones":["#"],"status":5}"##,
        ];
        for _ in 0..20_000 {
            let n = rng.random_range(0..7);
            let mut path: Vec<&str> = (0..n)
                .map(|_| words[rng.random_range(0..words.len())])
                .collect();
            if rng.random_bool(0.8) {
                path.splice(0..0, ["communications", "calls"]);
            }
            let mut body = bodies[rng.random_range(0..bodies.len())]
                .as_bytes()
                .to_vec();
            for _ in 0..rng.random_range(0..4) {
                let i = rng.random_range(0..body.len());
                body[i] = rng.random();
            }
            if rng.random_bool(0.2) {
                body.truncate(rng.random_range(0..body.len()));
            }
            fuzz_route(rng.random(), &path.join("/"), &body);
        }
    }

    #[test]
    fn bad_bodies_name_the_field() {
        let e = r(
            Method::POST,
            "communications/calls/c1/playPrompt",
            r#"{"prompts":"x"}"#,
        )
        .err()
        .unwrap();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("prompts"), "{}", e.message);
        let e = r(Method::POST, "communications/calls", "{not json")
            .err()
            .unwrap();
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
    }
}
