//! Operations (reference §9.2): creating them, their replies and deadlines, finishing them
//! with exactly one notification; and the call-state checks actions make first.

use crate::core::Engine;
use crate::model::*;
use crate::render;
use crate::types::*;
use graph::*;

type R = Result<Reply, ApiError>;

pub(crate) fn new_op(
    e: &mut Engine,
    call_id: &str,
    kind: OpKind,
    cc: Option<String>,
    status: OperationStatus,
) -> String {
    let id = e.id();
    let op = Operation {
        id: id.clone(),
        kind,
        status,
        client_context: cc,
        result_info: None,
        completion_reason: None,
        recording_location: None,
        recording_access_token: None,
        participants: None,
        media: None,
        due: None,
        pending: vec![],
        failures: vec![],
    };
    e.calls
        .get_mut(call_id)
        .expect("call exists")
        .operations
        .insert(id.clone(), op);
    e.touch_call(call_id);
    id
}

pub(crate) fn set_op_due(e: &mut Engine, call_id: &str, op: &str, due: Ms) {
    if let Some(o) = e
        .calls
        .get_mut(call_id)
        .and_then(|c| c.operations.get_mut(op))
    {
        o.due = Some(due);
    }
    e.touch_call(call_id);
}

pub(crate) fn op_reply(e: &Engine, call_id: &str, op: &str, status: u16) -> R {
    let o = &e.calls[call_id].operations[op];
    Ok(Reply {
        status,
        body: Some(render::operation(o)),
        location: Some(format!("/communications/calls/{call_id}/operations/{op}")),
    })
}

/// Move a running operation to its final status and send its one `deleted` notification.
pub(crate) fn finish_op(
    e: &mut Engine,
    call_id: &str,
    op: &str,
    status: OperationStatus,
    result: Option<ResultInfo>,
    reason: Option<&str>,
) {
    let Some(o) = e
        .calls
        .get_mut(call_id)
        .and_then(|c| c.operations.get_mut(op))
    else {
        return;
    };
    if o.is_final() {
        return;
    }
    o.status = status;
    o.result_info = result.or_else(|| {
        (status == OperationStatus::Completed).then(|| ResultInfo::new(200, 0, "Success"))
    });
    o.due = None;
    if let Some(r) = reason {
        o.completion_reason = Some(r.to_string());
    }
    if o.kind == OpKind::Record && status == OperationStatus::Failed {
        o.recording_location.get_or_insert_with(String::new);
        o.recording_access_token.get_or_insert_with(String::new);
    }
    // A finished prompt keeps what it was, not the audio it played: a long call's operations
    // would otherwise hold every prompt's samples (the prompt cache keeps what is reused).
    if matches!(o.kind, OpKind::PlayPrompt | OpKind::Record)
        && let Some(m) = o.media.as_mut()
    {
        m.audio = Vec::new();
    }
    let data = render::operation(o);
    let suppress =
        o.media.as_ref().is_some_and(|m| m.loop_forever) && status == OperationStatus::Completed;
    e.touch_call(call_id);
    if let Some(c) = e.calls.get_mut(call_id) {
        c.media_queue.retain(|x| x != op);
    }
    if !suppress {
        e.notify(
            call_id,
            ChangeType::Deleted,
            &format!("/operations/{op}"),
            data,
        );
    }
}

pub(crate) fn require_group(e: &Engine, id: &str, action: &str) -> Result<(), ApiError> {
    if e.calls[id].kind == CallKind::PeerToPeer {
        return Err(ApiError::bad_request(format!(
            "{action} is only supported in group calls and meetings, not in a peer-to-peer call."
        )));
    }
    Ok(())
}

pub(crate) fn require_established(e: &Engine, id: &str, action: &str) -> Result<(), ApiError> {
    let s = e.calls[id].state;
    if !matches!(s, CallState::Established | CallState::Hold) {
        return Err(ApiError::wrong_state(action, s));
    }
    Ok(())
}

pub(crate) fn require_not_ended(e: &Engine, id: &str, action: &str) -> Result<(), ApiError> {
    let s = e.calls[id].state;
    if matches!(
        s,
        CallState::Terminating | CallState::Terminated | CallState::Incoming
    ) {
        return Err(ApiError::wrong_state(action, s));
    }
    Ok(())
}

pub(crate) fn require_service_hosted(e: &Engine, id: &str, action: &str) -> Result<(), ApiError> {
    if !e.calls[id]
        .media_config
        .as_ref()
        .is_some_and(MediaConfig::is_service_hosted)
    {
        return Err(ApiError::bad_request(format!(
            "{action} is only supported for calls with serviceHostedMediaConfig."
        )));
    }
    Ok(())
}
