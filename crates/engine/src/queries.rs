//! Commands that only read: a call, its participants, operations, routing groups and
//! content sharing sessions, and the app's calls.

use crate::core::Engine;
use crate::model::*;
use crate::render::{self, Version};
use crate::roster::roster_for;
use crate::types::*;
use serde_json::{Value, json};

type R = Result<Reply, ApiError>;

pub(crate) fn list_calls(e: &Engine, app: &AppCtx, ver: Version) -> R {
    let mut calls: Vec<&Call> = e
        .calls
        .values()
        .filter(|c| c.app_id == app.app_id && c.tenant_id == app.tenant_id)
        .collect();
    calls.sort_by_key(|c| (c.created_at, c.id.clone()));
    let value: Vec<Value> = calls.into_iter().map(|c| render::call(c, ver)).collect();
    Ok(Reply::json(200, json!({ "value": value })))
}

pub(crate) fn get_call(e: &Engine, id: &str, ver: Version) -> R {
    Ok(Reply::json(200, render::call(&e.calls[id], ver)))
}

pub(crate) fn list_participants(e: &Engine, id: &str) -> R {
    let c = &e.calls[id];
    let conf = &e.confs[&c.conf_id];
    let value: Vec<Value> = roster_for(c, conf)
        .into_iter()
        .map(|m| render::participant(m, None))
        .collect();
    Ok(Reply::json(200, json!({ "value": value })))
}

pub(crate) fn get_participant(e: &Engine, id: &str, pid: &str) -> R {
    let c = &e.calls[id];
    let conf = &e.confs[&c.conf_id];
    roster_for(c, conf)
        .into_iter()
        .find(|m| m.id.eq_ignore_ascii_case(pid))
        .map(|m| Reply::json(200, render::participant(m, None)))
        .ok_or_else(|| ApiError::not_found("Participant", pid))
}

pub(crate) fn list_routing_groups(e: &Engine, id: &str) -> R {
    let value: Vec<Value> = e.calls[id]
        .routing_groups
        .iter()
        .map(render::routing_group)
        .collect();
    Ok(Reply::json(200, json!({ "value": value })))
}

pub(crate) fn get_routing_group(e: &Engine, id: &str, gid: &str) -> R {
    e.calls[id]
        .routing_groups
        .iter()
        .find(|g| g.id.as_deref() == Some(gid))
        .map(|g| Reply::json(200, render::routing_group(g)))
        .ok_or_else(|| ApiError::not_found("Audio routing group", gid))
}

pub(crate) fn list_operations(e: &Engine, id: &str) -> R {
    let value: Vec<Value> = e.calls[id]
        .operations
        .values()
        .map(render::operation)
        .collect();
    Ok(Reply::json(200, json!({ "value": value })))
}

pub(crate) fn get_operation(e: &Engine, id: &str, op: &str) -> R {
    e.calls[id]
        .operations
        .get(&op.to_ascii_lowercase())
        .map(|o| Reply::json(200, render::operation(o)))
        .ok_or_else(|| ApiError::not_found("Operation", op))
}

pub(crate) fn list_content_sharing(e: &Engine, id: &str) -> R {
    let conf = &e.confs[&e.calls[id].conf_id];
    let value: Vec<Value> = conf.sharing.iter().map(render::content_sharing).collect();
    Ok(Reply::json(200, json!({ "value": value })))
}

pub(crate) fn get_content_sharing(e: &Engine, id: &str, sid: &str) -> R {
    e.confs[&e.calls[id].conf_id]
        .sharing
        .iter()
        .find(|s| s.id.eq_ignore_ascii_case(sid))
        .map(|s| Reply::json(200, render::content_sharing(s)))
        .ok_or_else(|| ApiError::not_found("Content sharing session", sid))
}

/// A call as the console draws it: the call, its roster and its operations, Graph-shaped.
pub(crate) fn console_view(e: &Engine, id: &str) -> Option<Value> {
    let c = e.calls.get(id)?;
    let participants: Vec<Value> = e
        .confs
        .get(&c.conf_id)
        .map(|conf| {
            roster_for(c, conf)
                .into_iter()
                .map(|m| render::participant(m, None))
                .collect()
        })
        .unwrap_or_default();
    let operations: Vec<Value> = c.operations.values().map(render::operation).collect();
    Some(json!({
        "call": render::call(c, Version::V1),
        "participants": participants,
        "operations": operations,
        "createdMs": c.created_at,
    }))
}
