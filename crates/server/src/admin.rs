//! The admin API (`/admin/...`), guarded by the admin token from the config, separate from
//! app tokens. Directory changes are written back to the config file; every change is
//! logged as a structured audit event.

use crate::api::{Ctx, bad, read_body};
use crate::config::{App, Behaviour, Tenant, User, default_permissions};
use crate::driver::Msg;
use crate::endpoints::Control;
use crate::state::Shared;
use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use engine::{ApiError, AppCtx};
use graph::{IdentitySet, ParticipantInfo};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn ok(v: Value) -> Result<Response, ApiError> {
    Ok((
        StatusCode::OK,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response())
}

fn created(v: Value) -> Result<Response, ApiError> {
    Ok((
        StatusCode::CREATED,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response())
}

fn nf(what: &str, id: &str) -> ApiError {
    ApiError::not_found(what, id)
}

fn conflict(m: String) -> ApiError {
    ApiError::conflict(m)
}

fn parse<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, ApiError> {
    graph::requests::parse(b).map_err(bad)
}

fn app_view(a: &App) -> Value {
    json!({"id": a.id, "tenant": a.tenant, "name": a.name, "permissions": a.permissions, "webhook": a.webhook, "addresses": a.addresses})
}

fn audit(action: &str, id: &str) {
    tracing::info!(target: "audit", event = "admin_change", action, id);
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewTenant {
    id: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewApp {
    id: Option<String>,
    #[serde(default)]
    certificates: Vec<String>,
    tenant: String,
    name: Option<String>,
    secret: Option<String>,
    permissions: Option<Vec<String>>,
    webhook: Option<String>,
    #[serde(default)]
    addresses: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AppPatch {
    name: Option<String>,
    secret: Option<String>,
    permissions: Option<Vec<String>>,
    webhook: Option<String>,
    addresses: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewUser {
    id: Option<String>,
    tenant: String,
    display_name: Option<String>,
    #[serde(default)]
    behaviour: Behaviour,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UserPatch {
    display_name: Option<String>,
    behaviour: Option<Behaviour>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct JoinMeeting {
    join_web_url: Option<String>,
    thread_id: Option<String>,
    join_meeting_id: Option<String>,
    passcode: Option<String>,
    #[serde(default)]
    script: Behaviour,
}

/// `…/l/meetup-join/19%3Ameeting_…%40thread.v2/0?context=…` → `19:meeting_…@thread.v2`.
pub fn thread_of_join_url(url: &str) -> Option<String> {
    let rest = url.split("/l/meetup-join/").nth(1)?;
    let enc = rest.split('/').next()?;
    let t = percent_encoding::percent_decode_str(enc)
        .decode_utf8()
        .ok()?
        .into_owned();
    t.starts_with("19:").then_some(t)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PlaceCall {
    /// App id or an address routed to an app.
    target: String,
    #[serde(default)]
    script: Behaviour,
}

pub fn new_secret() -> String {
    use rand::Rng;
    let mut r = rand::rng();
    (0..40)
        .map(|_| {
            char::from(
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                    [r.random_range(0..62)],
            )
        })
        .collect()
}

pub async fn handle(
    shared: &Shared,
    _ctx: &Ctx,
    method: &Method,
    rest: &[&str],
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let want = shared
        .config
        .read()
        .expect("config")
        .admin
        .as_ref()
        .map(|a| a.token.clone());
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("")
        .trim()
        .to_string();
    match want {
        Some(w) if !given.is_empty() && constant_time_eq(w.as_bytes(), given.as_bytes()) => {}
        _ => {
            tracing::info!(target: "audit", event = "admin_auth_failure");
            return Err(ApiError {
                status: 401,
                code: "InvalidAuthenticationToken".into(),
                message: "The admin token is missing or wrong.".into(),
            });
        }
    }
    let b = read_body(shared, body).await?;
    let m = method.clone();
    match (m, rest) {
        (Method::GET, ["directory"]) => {
            let c = shared.config.read().expect("config");
            ok(
                json!({"tenants": c.tenants, "apps": c.apps.iter().map(app_view).collect::<Vec<_>>(), "users": c.users}),
            )
        }
        (Method::POST, ["tenants"]) => {
            let t: NewTenant = parse(&b)?;
            let id = t.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            {
                let mut c = shared.config.write().expect("config");
                if c.tenants.iter().any(|x| x.id.eq_ignore_ascii_case(&id)) {
                    return Err(conflict(format!("Tenant {id} exists.")));
                }
                c.tenants.push(Tenant {
                    id: id.clone(),
                    name: t.name.clone(),
                });
            }
            shared.save_config().map_err(bad)?;
            audit("tenant_created", &id);
            created(json!({"id": id, "name": t.name}))
        }
        (Method::DELETE, ["tenants", id]) => {
            {
                let mut c = shared.config.write().expect("config");
                if !c.tenants.iter().any(|x| x.id.eq_ignore_ascii_case(id)) {
                    return Err(nf("Tenant", id));
                }
                if c.apps.iter().any(|a| a.tenant.eq_ignore_ascii_case(id))
                    || c.users.iter().any(|u| u.tenant.eq_ignore_ascii_case(id))
                {
                    return Err(conflict(format!(
                        "Tenant {id} still has apps or users; delete them first."
                    )));
                }
                c.tenants.retain(|x| !x.id.eq_ignore_ascii_case(id));
            }
            shared.save_config().map_err(bad)?;
            audit("tenant_deleted", id);
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (Method::POST, ["apps"]) => {
            let a: NewApp = parse(&b)?;
            if let Some(w) = &a.webhook {
                shared
                    .check_outbound(w)
                    .map_err(|e| bad(format!("webhook is not allowed: {e}")))?;
            }
            let plain = a.secret.clone().unwrap_or_else(new_secret);
            let app = App {
                id: a.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                tenant: a.tenant,
                name: a.name,
                secret: None,
                secret_hash: Some(crate::auth::hash_secret(&plain)),
                certificates: a.certificates.clone(),
                permissions: a.permissions.unwrap_or_else(default_permissions),
                webhook: a.webhook,
                addresses: a.addresses,
            };
            {
                let mut c = shared.config.write().expect("config");
                if !c
                    .tenants
                    .iter()
                    .any(|t| t.id.eq_ignore_ascii_case(&app.tenant))
                {
                    return Err(bad(format!("Tenant {} does not exist.", app.tenant)));
                }
                if c.app(&app.id).is_some() {
                    return Err(conflict(format!("App {} exists.", app.id)));
                }
                c.apps.push(app.clone());
            }
            shared.save_config().map_err(bad)?;
            audit("app_created", &app.id);
            // The only time the secret is shown: ringside keeps its hash.
            let mut v = app_view(&app);
            v["secret"] = plain.into();
            created(v)
        }
        (Method::PATCH, ["apps", id]) => {
            let p: AppPatch = parse(&b)?;
            if let Some(w) = &p.webhook {
                shared
                    .check_outbound(w)
                    .map_err(|e| bad(format!("webhook is not allowed: {e}")))?;
            }
            let view = {
                let mut c = shared.config.write().expect("config");
                let Some(a) = c.apps.iter_mut().find(|a| a.id.eq_ignore_ascii_case(id)) else {
                    return Err(nf("App", id));
                };
                if let Some(v) = p.name {
                    a.name = Some(v);
                }
                if let Some(v) = p.secret {
                    a.secret_hash = Some(crate::auth::hash_secret(&v));
                    a.secret = None;
                }
                if let Some(v) = p.permissions {
                    a.permissions = v;
                }
                if let Some(v) = p.webhook {
                    a.webhook = Some(v);
                }
                if let Some(v) = p.addresses {
                    a.addresses = v;
                }
                app_view(a)
            };
            shared.save_config().map_err(bad)?;
            audit("app_updated", id);
            ok(view)
        }
        (Method::POST, ["apps", id, "secret"]) => {
            // A new random secret, returned once.
            let plain = new_secret();
            {
                let mut c = shared.config.write().expect("config");
                let Some(a) = c.apps.iter_mut().find(|a| a.id.eq_ignore_ascii_case(id)) else {
                    return Err(nf("App", id));
                };
                a.secret_hash = Some(crate::auth::hash_secret(&plain));
                a.secret = None;
            }
            shared.save_config().map_err(bad)?;
            audit("app_secret_reset", id);
            created(json!({ "id": id, "secret": plain }))
        }
        (Method::POST, ["signing-keys", "rotate"]) => {
            let kid = shared.keys.rotate(crate::driver::now_ms()).map_err(bad)?;
            created(json!({ "kid": kid }))
        }
        (Method::DELETE, ["apps", id]) => {
            {
                let mut c = shared.config.write().expect("config");
                let before = c.apps.len();
                c.apps.retain(|a| !a.id.eq_ignore_ascii_case(id));
                if c.apps.len() == before {
                    return Err(nf("App", id));
                }
            }
            shared.save_config().map_err(bad)?;
            audit("app_deleted", id);
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (Method::POST, ["users"]) => {
            let u: NewUser = parse(&b)?;
            u.behaviour.validate().map_err(bad)?;
            let user = User {
                id: u.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                tenant: u.tenant,
                display_name: u.display_name,
                endpoint: "simulated".into(),
                behaviour: u.behaviour,
                sip_user: None,
                sip_password: None,
                sip_ha1: None,
            };
            {
                let mut c = shared.config.write().expect("config");
                if !c
                    .tenants
                    .iter()
                    .any(|t| t.id.eq_ignore_ascii_case(&user.tenant))
                {
                    return Err(bad(format!("Tenant {} does not exist.", user.tenant)));
                }
                if c.user(&user.id).is_some() {
                    return Err(conflict(format!("User {} exists.", user.id)));
                }
                c.users.push(user.clone());
            }
            shared.save_config().map_err(bad)?;
            audit("user_created", &user.id);
            created(serde_json::to_value(&user).unwrap_or_default())
        }
        (Method::PATCH, ["users", id]) => {
            let p: UserPatch = parse(&b)?;
            if let Some(bh) = &p.behaviour {
                bh.validate().map_err(bad)?;
            }
            let v = {
                let mut c = shared.config.write().expect("config");
                let Some(u) = c.users.iter_mut().find(|u| u.id.eq_ignore_ascii_case(id)) else {
                    return Err(nf("User", id));
                };
                if let Some(n) = p.display_name {
                    u.display_name = Some(n);
                }
                if let Some(bh) = p.behaviour {
                    u.behaviour = bh;
                }
                serde_json::to_value(&*u).unwrap_or_default()
            };
            shared.save_config().map_err(bad)?;
            audit("user_updated", id);
            ok(v)
        }
        (Method::DELETE, ["users", id]) => {
            {
                let mut c = shared.config.write().expect("config");
                let before = c.users.len();
                c.users.retain(|u| !u.id.eq_ignore_ascii_case(id));
                if c.users.len() == before {
                    return Err(nf("User", id));
                }
            }
            shared.save_config().map_err(bad)?;
            audit("user_deleted", id);
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (Method::POST, ["users", id, "call"]) => {
            let req: PlaceCall = parse(&b)?;
            req.script.validate().map_err(bad)?;
            let (user, app) = {
                let c = shared.config.read().expect("config");
                let Some(user) = c.user(id).cloned() else {
                    return Err(nf("User", id));
                };
                let Some(app) = c.app_for_address(&req.target).cloned() else {
                    return Err(nf("Application or address", &req.target));
                };
                (user, app)
            };
            let Some(webhook) = app.webhook.clone() else {
                return Err(bad(format!(
                    "App {} has no calling webhook configured.",
                    app.id
                )));
            };
            let caller = ParticipantInfo {
                identity: IdentitySet::user(&user.id, user.display_name.as_deref()),
                ..Default::default()
            };
            let mut caller = caller;
            if let Some(u) = &mut caller.identity.user {
                u.extra
                    .insert("tenantId".into(), user.tenant.clone().into());
            }
            let ctx = AppCtx {
                tenant_id: app.tenant.clone(),
                app_id: app.id.clone(),
                app_name: app.name.clone(),
            };
            let (tx, rx) = oneshot::channel();
            shared
                .driver
                .send(Msg::Incoming {
                    app: ctx,
                    webhook,
                    caller,
                    script: None,
                    target: None,
                    sip: false,
                    reply: tx,
                })
                .map_err(|_| bad("ringside is stopping"))?;
            let (call_id, leg_id) = rx.await.map_err(|_| bad("ringside is stopping"))?;
            let behaviour = user.behaviour.merged(&req.script);
            let _ = shared.endpoints.send(Control::AddCaller {
                leg: leg_id.clone(),
                user_id: user.id.clone(),
                behaviour,
            });
            created(json!({"callId": call_id, "legId": leg_id, "appId": app.id}))
        }
        (Method::POST, ["users", id, "join"]) => {
            let req: JoinMeeting = parse(&b)?;
            req.script.validate().map_err(bad)?;
            let Some(user) = shared.config.read().expect("config").user(id).cloned() else {
                return Err(nf("User", id));
            };
            let meeting = match (&req.join_web_url, &req.thread_id, &req.join_meeting_id) {
                (Some(u), _, _) => engine::MeetingRef::Thread(
                    thread_of_join_url(u)
                        .ok_or_else(|| bad("joinWebUrl is not a meeting join URL"))?,
                ),
                (_, Some(t), _) => engine::MeetingRef::Thread(t.clone()),
                (_, _, Some(j)) => engine::MeetingRef::JoinMeetingId {
                    id: j.clone(),
                    passcode: req.passcode.clone(),
                },
                _ => {
                    return Err(bad(
                        "One of joinWebUrl, threadId or joinMeetingId is required.",
                    ));
                }
            };
            let mut who = ParticipantInfo {
                identity: IdentitySet::user(&user.id, user.display_name.as_deref()),
                ..Default::default()
            };
            if let Some(u) = &mut who.identity.user {
                u.extra
                    .insert("tenantId".into(), user.tenant.clone().into());
            }
            let (tx, rx) = oneshot::channel();
            shared
                .driver
                .send(Msg::JoinMeeting {
                    tenant: user.tenant.clone(),
                    who,
                    meeting,
                    reply: tx,
                })
                .map_err(|_| bad("ringside is stopping"))?;
            let reply = rx.await.map_err(|_| bad("ringside is stopping"))??;
            let body = reply.body.unwrap_or_default();
            let leg = body["legId"].as_str().unwrap_or_default().to_string();
            let behaviour = user.behaviour.merged(&req.script);
            let _ = shared.endpoints.send(Control::Joined {
                leg: leg.clone(),
                user_id: user.id.clone(),
                behaviour,
            });
            created(json!({ "legId": leg }))
        }
        (Method::GET, ["legs"]) => {
            let v = shared.registry.legs();
            let filter = query
                .and_then(|q| q.strip_prefix("user="))
                .map(str::to_ascii_lowercase);
            let v: Vec<_> = v
                .into_iter()
                .filter(|l| {
                    filter.as_ref().is_none_or(|f| {
                        l.user_id
                            .as_deref()
                            .is_some_and(|u| u.eq_ignore_ascii_case(f))
                    })
                })
                .collect();
            ok(json!({ "value": v }))
        }
        (Method::GET, ["legs", id]) => shared
            .registry
            .legs()
            .into_iter()
            .find(|l| l.leg_id == *id)
            .map(|l| ok(serde_json::to_value(l).unwrap_or_default()))
            .unwrap_or_else(|| Err(nf("Leg", id))),
        (Method::GET, ["legs", id, "heard"]) => {
            let Some(port) = shared.registry.port(id) else {
                return Err(nf("Leg audio", id));
            };
            let wav = media::wav::encode(port.lock().expect("port").heard());
            Ok((StatusCode::OK, [("content-type", "audio/wav")], wav).into_response())
        }
        (Method::GET, ["media"]) => {
            // The media threads' timing (ticks that started late are audio sent late) and
            // the RTP counters of connected SIP legs.
            let m = shared.media.stats.snapshot();
            let rtp = shared.sip.get().map(|s| {
                let t = s.rtp_totals();
                json!({
                    "legs": t.legs, "packetsIn": t.packets_in, "packetsOut": t.packets_out,
                    "expected": t.expected, "received": t.received, "late": t.late,
                    "concealed": t.concealed, "dropped": t.dropped,
                })
            });
            ok(json!({
                "ticks": m.ticks, "ticksLate5ms": m.late_5ms, "maxLateMs": m.max_late_us as f64 / 1000.0,
                "resyncs": m.resyncs, "skippedFrames": m.skipped_frames, "busyMs": m.busy_us / 1000, "rooms": m.rooms, "members": m.members,
                "rtp": rtp,
            }))
        }
        (Method::GET, ["driver"]) => ok(shared.driver_stats.to_json()),
        (Method::GET, ["sip", "registrations", user]) => {
            let Some(sip) = shared.sip.get() else {
                return Err(nf("SIP endpoint", "(no [sip] section)"));
            };
            let now = crate::driver::now_ms();
            let v: Vec<Value> = sip
                .contacts(user)
                .iter()
                .map(|b| json!({"contact": b.uri, "expiresInSeconds": b.remaining_s(now)}))
                .collect();
            ok(json!({ "user": user, "contacts": v }))
        }
        (Method::GET, ["calls"]) => {
            let (tx, rx) = oneshot::channel();
            let _ = shared.driver.send(Msg::Snapshot { reply: tx });
            ok(rx.await.unwrap_or(Value::Null))
        }
        (Method::GET, ["dead-letters"]) => {
            let (tx, rx) = oneshot::channel();
            let _ = shared.driver.send(Msg::DeadLetters { reply: tx });
            let dead = rx.await.unwrap_or_default();
            let v: Vec<Value> = dead
                .into_iter()
                .map(|d| json!({"seq": d.seq, "callId": d.row.call_id, "appId": d.row.app_id, "url": d.row.url, "attempts": d.row.attempts, "lastError": d.row.last_error, "diedMs": d.died_ms, "body": serde_json::from_str::<Value>(&d.row.body).unwrap_or(Value::Null)}))
                .collect();
            ok(json!({ "value": v }))
        }
        (Method::POST, ["dead-letters", seq, "redeliver"]) => {
            let seq: i64 = seq
                .parse()
                .map_err(|_| bad(format!("'{seq}' is not a dead-letter sequence number")))?;
            let (tx, rx) = oneshot::channel();
            let _ = shared.driver.send(Msg::Redeliver { seq, reply: tx });
            match rx.await.unwrap_or(None) {
                Some(_) => {
                    audit("dead_letter_redelivered", &seq.to_string());
                    Ok(StatusCode::ACCEPTED.into_response())
                }
                None => Err(nf("Dead letter", &seq.to_string())),
            }
        }
        (Method::GET, ["device-quality"]) => {
            let tenant = query
                .and_then(|q| q.strip_prefix("tenant="))
                .map(str::to_string)
                .ok_or_else(|| bad("?tenant=<id> is required"))?;
            let (tx, rx) = oneshot::channel();
            let _ = shared.driver.send(Msg::ListQuality { tenant, reply: tx });
            let v: Vec<Value> = rx.await.unwrap_or_default().into_iter().map(|(id, app, at, q)| json!({"id": id, "appId": app, "receivedMs": at, "quality": q})).collect();
            ok(json!({ "value": v }))
        }
        _ => Err(ApiError {
            status: 404,
            code: "UnknownResource".into(),
            message: format!(
                "No admin resource matches {method} /admin/{}.",
                rest.join("/")
            ),
        }),
    }
}
