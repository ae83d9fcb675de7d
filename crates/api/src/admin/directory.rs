//! `/admin/directory`, `/admin/tenants`, `/admin/apps`, `/admin/users`: the directory, viewed
//! and changed through [`directory::Directory`].

use super::reply::{Answer, audit, created, no_content, ok, refused};
use crate::plumbing::{bad, parse};
use directory::App;
use directory::directory::{AppPatch, NewApp, NewTenant, NewUser, UserPatch};
use node::Node;
use serde_json::{Value, json};

fn app_view(a: &App) -> Value {
    json!({"id": a.id, "tenant": a.tenant, "name": a.name, "permissions": a.permissions, "webhook": a.webhook, "addresses": a.addresses})
}

/// A webhook must be a URL ringside may call.
fn check_webhook(node: &Node, webhook: Option<&String>) -> Result<(), engine::ApiError> {
    match webhook {
        Some(w) => node
            .outbound
            .check(w)
            .map(|_| ())
            .map_err(|e| bad(format!("webhook is not allowed: {e}"))),
        None => Ok(()),
    }
}

pub fn show(node: &Node) -> Answer {
    let c = node.directory.read();
    ok(
        json!({"tenants": c.tenants, "apps": c.apps.iter().map(app_view).collect::<Vec<_>>(), "users": c.users}),
    )
}

pub fn add_tenant(node: &Node, b: &[u8]) -> Answer {
    let t = node
        .directory
        .add_tenant(parse::<NewTenant>(b)?)
        .map_err(refused)?;
    audit("tenant_created", &t.id);
    created(json!({"id": t.id, "name": t.name}))
}

pub fn delete_tenant(node: &Node, id: &str) -> Answer {
    node.directory.delete_tenant(id).map_err(refused)?;
    audit("tenant_deleted", id);
    no_content()
}

pub fn add_app(node: &Node, b: &[u8]) -> Answer {
    let a: NewApp = parse(b)?;
    check_webhook(node, a.webhook.as_ref())?;
    let (app, plain) = node.directory.add_app(a).map_err(refused)?;
    audit("app_created", &app.id);
    // The only time the secret is shown: ringside keeps its hash.
    let mut v = app_view(&app);
    v["secret"] = plain.into();
    created(v)
}

pub fn update_app(node: &Node, id: &str, b: &[u8]) -> Answer {
    let p: AppPatch = parse(b)?;
    check_webhook(node, p.webhook.as_ref())?;
    let app = node.directory.update_app(id, p).map_err(refused)?;
    audit("app_updated", id);
    ok(app_view(&app))
}

/// A new random secret, returned once.
pub fn reset_secret(node: &Node, id: &str) -> Answer {
    let plain = node.directory.reset_secret(id).map_err(refused)?;
    audit("app_secret_reset", id);
    created(json!({ "id": id, "secret": plain }))
}

pub fn delete_app(node: &Node, id: &str) -> Answer {
    node.directory.delete_app(id).map_err(refused)?;
    audit("app_deleted", id);
    no_content()
}

pub fn add_user(node: &Node, b: &[u8]) -> Answer {
    let user = node
        .directory
        .add_user(parse::<NewUser>(b)?)
        .map_err(refused)?;
    audit("user_created", &user.id);
    created(serde_json::to_value(&user).unwrap_or_default())
}

pub fn update_user(node: &Node, id: &str, b: &[u8]) -> Answer {
    let user = node
        .directory
        .update_user(id, parse::<UserPatch>(b)?)
        .map_err(refused)?;
    audit("user_updated", id);
    ok(serde_json::to_value(&user).unwrap_or_default())
}

pub fn delete_user(node: &Node, id: &str) -> Answer {
    node.directory.delete_user(id).map_err(refused)?;
    audit("user_deleted", id);
    no_content()
}
