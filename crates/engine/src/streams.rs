//! App-hosted media over a WebSocket (docs/media-streaming.md): a call made or answered with
//! an `appHostedMediaConfig` that asks for `mediaStreaming` gets a stream when it is
//! established — the node connects out to the app's `transportUrl`, or admits the app at a
//! per-call URL — and loses it when the call ends. The room hears and speaks for the bot
//! through the stream's port.

use crate::core::Engine;
use crate::model::Stream;
use crate::types::*;

/// The call is established: open its stream, if it asked for one.
pub(crate) fn open(e: &mut Engine, call_id: &str) {
    let Some(c) = e.calls.get(call_id) else {
        return;
    };
    if c.stream.is_some() {
        return;
    }
    let Some(spec) = c
        .media_config
        .as_ref()
        .and_then(|m| m.media_streaming().ok().flatten())
    else {
        return;
    };
    let token = format!("{}{}", e.id().replace('-', ""), e.id().replace('-', ""));
    let url = spec.transport_url.is_none().then(|| {
        let base = e.cfg.public_url.trim_end_matches('/');
        let ws = match base.strip_prefix("https://") {
            Some(rest) => format!("wss://{rest}"),
            None => format!("ws://{}", base.trim_start_matches("http://")),
        };
        format!("{ws}/media/streams/{call_id}?token={token}")
    });
    let stream = Stream { spec, token, url };
    let c = e.calls.get_mut(call_id).expect("exists");
    c.stream = Some(stream.clone());
    let (tenant_id, app_id) = (c.tenant_id.clone(), c.app_id.clone());
    e.touch_call(call_id);
    e.effect(Effect::Stream(StreamAction::Open {
        call_id: call_id.to_string(),
        tenant_id,
        app_id,
        stream,
    }));
}

/// The call is over: its stream closes.
pub(crate) fn close(e: &mut Engine, call_id: &str) {
    let Some(c) = e.calls.get_mut(call_id) else {
        return;
    };
    if c.stream.take().is_none() {
        return;
    }
    e.touch_call(call_id);
    e.effect(Effect::Stream(StreamAction::Close {
        call_id: call_id.to_string(),
    }));
}

/// After a restart: the node opens the streams of calls that had one again.
pub(crate) fn resume(e: &mut Engine, call_id: &str) {
    let c = &e.calls[call_id];
    if let Some(stream) = &c.stream {
        let action = StreamAction::Open {
            call_id: call_id.to_string(),
            tenant_id: c.tenant_id.clone(),
            app_id: c.app_id.clone(),
            stream: stream.clone(),
        };
        e.effect(Effect::Stream(action));
    }
}

/// How the room should feed the bot's stream, if it has one.
pub(crate) fn mix_of(e: &Engine, call_id: &str) -> Option<::media::Mix> {
    let s = e.calls.get(call_id)?.stream.as_ref()?;
    Some(if s.spec.mixed {
        ::media::Mix::Mixed
    } else {
        ::media::Mix::Unmixed
    })
}
