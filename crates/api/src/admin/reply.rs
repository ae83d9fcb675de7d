//! What admin handlers answer with: JSON bodies, audit events, and directory errors as
//! Graph error envelopes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use engine::ApiError;
use serde_json::Value;

pub type Answer = Result<Response, ApiError>;

pub fn ok(v: Value) -> Answer {
    Ok((
        StatusCode::OK,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response())
}

pub fn created(v: Value) -> Answer {
    Ok((
        StatusCode::CREATED,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response())
}

pub fn no_content() -> Answer {
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A structured audit event for every change made through the admin API.
pub fn audit(action: &str, id: &str) {
    tracing::info!(target: "audit", event = "admin_change", action, id);
}

/// A refused directory change, as the admin API reports it.
pub fn refused(e: directory::Error) -> ApiError {
    match e {
        directory::Error::NotFound(what, id) => ApiError::not_found(what, &id),
        directory::Error::Conflict(m) => ApiError::conflict(m),
        directory::Error::Invalid(m) | directory::Error::Save(m) => ApiError::bad_request(m),
    }
}
