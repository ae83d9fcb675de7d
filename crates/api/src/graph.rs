//! A Graph request (`/v1.0/…`, `/beta/…`) from arrival to response: who is calling and
//! whether they have budget left, the route, the checks every command passes (outbound
//! URLs, resource accounts, permissions), then the part that carries it out.

use crate::caller::{authenticate, loopback_anonymous, throttle};
use crate::calls::{self, Target};
use crate::guard::{self, permit};
use crate::plumbing::{Ctx, Via, bad, read_body};
use crate::state::Api;
use crate::{meetings, recordings, transcripts};
use axum::body::Body;
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use engine::{ApiError, AppCtx, Command, Version};
use identity::permissions;

/// What one Graph request is: its version, method, path after the version, and where from.
pub struct Request<'a> {
    pub ver: Version,
    pub method: &'a Method,
    pub rest: &'a [&'a str],
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    pub via: Via,
    /// The base URL responses name (`plumbing::public_base`).
    pub base: &'a str,
}

/// Every check a routed request passes before it is carried out.
fn vet(api: &Api, app: &AppCtx, roles: &[String], target: &Target) -> Result<(), ApiError> {
    let shared = &api.node;
    if let Target::Engine { cmd, .. } = target {
        for (field, url) in guard::outbound_urls(cmd) {
            if let Err(why) = shared.outbound.check(&url) {
                tracing::warn!(target: "audit", event = "outbound_refused", app = %app.app_id, field, reason = %why);
                return Err(bad(format!("{field} is not allowed: {why}")));
            }
        }
    }
    if let Target::Engine {
        cmd: Command::CreateCall(c),
        ..
    } = target
    {
        calls::resource_account_check(shared, app, c)?;
    }
    match target {
        Target::Engine { cmd, .. } => permit(roles, &guard::required(cmd)),
        Target::LogQuality(_) => permit(
            roles,
            &[vec![
                permissions::ACCESS_MEDIA,
                permissions::ACCESS_MEDIA_CHAT,
            ]],
        ),
        Target::CreateMeeting(_) => permit(
            roles,
            &[vec![permissions::JOIN_GROUP, permissions::INITIATE_GROUP]],
        ),
        Target::GetMeeting(_) => Ok(()),
    }
}

pub async fn handle(
    api: &Api,
    ctx: &Ctx,
    r: Request<'_>,
    body: Body,
) -> Result<Response, ApiError> {
    let shared = &api.node;
    let (app, roles) = match loopback_anonymous(shared, r.headers, r.via) {
        Some(a) => a,
        None => authenticate(shared, r.headers)?,
    };
    let _ = ctx.app.set(app.app_id.clone());
    throttle(api, &app)?;
    if let Some(res) =
        recordings::call_recordings(shared, &app, &roles, r.method, r.rest, r.ver, r.base).await
    {
        return res;
    }
    if let Some(res) =
        transcripts::handle(shared, &app, &roles, r.method, r.rest, r.ver, r.base).await
    {
        return res;
    }
    let bytes = read_body(shared, body).await?;
    let target = calls::route(r.method, r.rest, r.path, &bytes)?;
    vet(api, &app, &roles, &target)?;
    let prefix = format!(
        "{}/{}",
        r.base,
        if r.ver == Version::Beta {
            "beta"
        } else {
            "v1.0"
        }
    );
    match target {
        Target::Engine {
            call_id,
            cmd,
            count,
        } => {
            let command = (call_id, cmd, count);
            calls::run_command(shared, ctx, app, r.ver, &prefix, r.rest, command).await
        }
        Target::CreateMeeting(v) => meetings::create(shared, ctx, app, &prefix, v).await,
        Target::GetMeeting(id) => meetings::get(shared, ctx, app, id).await,
        Target::LogQuality(q) => calls::log_quality(shared, ctx, app, r.headers, q).await,
    }
}
