//! Recordings: a call's recordings under the Graph routes (a ringside extension), and the
//! recordResponse recordings at `recordingLocation`.

use crate::plumbing::{bearer, json_ok, stopped};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use engine::{ApiError, AppCtx, Version};
use identity::permissions;
use node::{Msg, Node, now_ms};
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// Call recordings (startRecording), a ringside extension under the Graph routes and their
/// auth rules: `GET …/communications/calls/{id}/recordings`, `…/recordings/{rid}` and
/// `…/recordings/{rid}/content` (the WAV). They outlive the call for the retention period.
pub async fn call_recordings(
    shared: &Node,
    app: &AppCtx,
    roles: &[String],
    method: &Method,
    rest: &[&str],
    ver: Version,
    base: &str,
) -> Option<Result<Response, ApiError>> {
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    let (call_id, rec_id, content) = match rest {
        [c, k, id, r] if eq(c, "communications") && eq(k, "calls") && eq(r, "recordings") => {
            (*id, None, false)
        }
        [c, k, id, r, rid] if eq(c, "communications") && eq(k, "calls") && eq(r, "recordings") => {
            (*id, Some(*rid), false)
        }
        [c, k, id, r, rid, x]
            if eq(c, "communications")
                && eq(k, "calls")
                && eq(r, "recordings")
                && eq(x, "content") =>
        {
            (*id, Some(*rid), true)
        }
        _ => return None,
    };
    Some(
        async {
            if method != Method::GET {
                return Err(ApiError {
                    status: 405,
                    code: "MethodNotAllowed".into(),
                    message: "Call recordings are read-only (GET).".into(),
                });
            }
            crate::guard::permit(roles, &[vec![permissions::ACCESS_MEDIA]])?;
            let (tx, rx) = oneshot::channel();
            let _ = shared.driver.send(Msg::CallRecordings {
                call_id: call_id.to_string(),
                reply: tx,
            });
            let all = rx.await.map_err(|_| stopped())?;
            if all
                .iter()
                .any(|r| !r.tenant_id.eq_ignore_ascii_case(&app.tenant_id))
            {
                return Err(ApiError {
                    status: 403,
                    code: "Forbidden".into(),
                    message: "request authorization tenant mismatch".into(),
                });
            }
            let mine: Vec<_> = all
                .into_iter()
                .filter(|r| r.app_id.eq_ignore_ascii_case(&app.app_id))
                .filter(|r| r.expires_ms > now_ms() as i64)
                .collect();
            let prefix = format!(
                "{}/{}/communications/calls/{call_id}/recordings",
                base,
                if ver == Version::Beta { "beta" } else { "v1.0" }
            );
            let render = |r: &store::Recording| {
                let mut v = json!({
                    "@odata.type": "#microsoft.graph.callRecording",
                    "id": r.id,
                    "callId": r.call_id,
                    "createdDateTime": engine::render::iso(r.created_ms as u64),
                    "status": if r.duration_ms.is_some() { "available" } else { "recording" },
                    "durationInMilliseconds": r.duration_ms,
                    "recordingContentUrl": format!("{prefix}/{}/content", r.id),
                });
                if let Some(p) = &r.participant_id {
                    v["participantId"] = json!(p);
                }
                let tracks: Vec<Value> = mine
                    .iter()
                    .filter(|t| t.parent_id.as_deref() == Some(r.id.as_str()))
                    .map(|t| {
                        json!({
                            "id": t.id,
                            "participantId": t.participant_id,
                            "durationInMilliseconds": t.duration_ms,
                            "recordingContentUrl": format!("{prefix}/{}/content", t.id),
                        })
                    })
                    .collect();
                if !tracks.is_empty() {
                    v["tracks"] = json!(tracks);
                }
                v
            };
            let Some(rid) = rec_id else {
                let v: Vec<Value> = mine
                    .iter()
                    .filter(|r| r.kind == "call")
                    .map(render)
                    .collect();
                return Ok(json_ok(&json!({ "@odata.context": prefix, "value": v })));
            };
            let Some(r) = mine.iter().find(|r| r.id.eq_ignore_ascii_case(rid)) else {
                return Err(ApiError::not_found("Recording", rid));
            };
            if !content {
                return Ok(json_ok(&render(r)));
            }
            if r.duration_ms.is_none() {
                return Err(ApiError {
                    status: 409,
                    code: "RecordingInProgress".into(),
                    message: "The call is still being recorded; stop the recording first.".into(),
                });
            }
            let bytes = tokio::fs::read(&r.path)
                .await
                .map_err(|_| ApiError::not_found("Recording", rid))?;
            Ok((StatusCode::OK, [("content-type", "audio/wav")], bytes).into_response())
        }
        .await,
    )
}

pub async fn recording(shared: &Node, id: &str, headers: &HeaderMap) -> Result<Response, ApiError> {
    let token = bearer(headers);
    let (tx, rx) = oneshot::channel();
    let _ = shared.driver.send(Msg::GetRecording {
        id: id.to_string(),
        reply: tx,
    });
    let found = rx.await.unwrap_or(None);
    let denied = || ApiError {
        status: 401,
        code: "InvalidAuthenticationToken".into(),
        message: "The recordingAccessToken is missing or wrong.".into(),
    };
    let Some(rec) = found.filter(|r| r.kind == "response") else {
        return Err(ApiError::not_found("Recording", id));
    };
    if token.is_empty() || !identity::constant_time_eq(rec.token.as_bytes(), token.as_bytes()) {
        return Err(denied());
    }
    if rec.expires_ms <= now_ms() as i64 {
        return Err(ApiError {
            status: 404,
            code: "ItemNotFound".into(),
            message: "The recording has expired.".into(),
        });
    }
    let path = rec.path;
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|_| ApiError::not_found("Recording", id))?;
    Ok((
        StatusCode::OK,
        [("content-type", "application/octet-stream")],
        bytes,
    )
        .into_response())
}
