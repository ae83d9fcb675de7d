"""Service-hosted media with msgraph-beta-sdk: prompts, recording, cancelling, DTMF both ways."""
from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from msgraph_beta.generated.communications.calls.item.cancel_media_processing.cancel_media_processing_post_request_body import (
    CancelMediaProcessingPostRequestBody,
)
from msgraph_beta.generated.communications.calls.item.play_prompt.play_prompt_post_request_body import PlayPromptPostRequestBody
from msgraph_beta.generated.communications.calls.item.record.record_post_request_body import RecordPostRequestBody
from msgraph_beta.generated.communications.calls.item.record_response.record_response_post_request_body import RecordResponsePostRequestBody
from msgraph_beta.generated.communications.calls.item.send_dtmf_tones.send_dtmf_tones_post_request_body import SendDtmfTonesPostRequestBody
from msgraph_beta.generated.communications.calls.item.subscribe_to_tone.subscribe_to_tone_post_request_body import SubscribeToTonePostRequestBody
from msgraph_beta.generated.models.cancel_media_processing_operation import CancelMediaProcessingOperation
from msgraph_beta.generated.models.o_data_errors.o_data_error import ODataError
from msgraph_beta.generated.models.operation_status import OperationStatus
from msgraph_beta.generated.models.play_prompt_completion_reason import PlayPromptCompletionReason
from msgraph_beta.generated.models.play_prompt_operation import PlayPromptOperation
from msgraph_beta.generated.models.record_completion_reason import RecordCompletionReason
from msgraph_beta.generated.models.record_operation import RecordOperation
from msgraph_beta.generated.models.send_dtmf_tones_operation import SendDtmfTonesOperation
from msgraph_beta.generated.models.subscribe_to_tone_operation import SubscribeToToneOperation
from msgraph_beta.generated.models.tone import Tone

from bot import answer_incoming, app_media, call_user, prompt, service_media
from support import ALICE, APP, GINA, wav_duration_ms


async def test_play_prompt_runs_then_completes_after_the_prompt_length(beta, hooks, callback):
    call, w = await call_user(beta, hooks, callback, ALICE)
    started = time.monotonic()
    op = await beta.communications.calls.by_call_id(call.id).play_prompt.post(
        PlayPromptPostRequestBody(prompts=[prompt(f"{hooks.url}/prompt/500.wav", "welcome")], client_context="welcome-ctx")
    )
    assert isinstance(op, PlayPromptOperation)
    assert op.status == OperationStatus.Running
    assert op.client_context == "welcome-ctx"
    assert op.id

    done = await w.until_op(op.id)
    elapsed = time.monotonic() - started
    assert done.change == "deleted"
    assert done.data["@odata.type"] == "#microsoft.graph.playPromptOperation"
    assert done.data["status"] == "completed"
    assert done.data["clientContext"] == "welcome-ctx"
    assert done.data["id"] == op.id
    assert done.data["completionReason"] == "completedSuccessfully"
    assert elapsed >= 0.45, f"a 500 ms prompt completed after {elapsed:.3f}s"

    got = await beta.communications.calls.by_call_id(call.id).operations.by_comms_operation_id(op.id).get()
    assert isinstance(got, PlayPromptOperation)
    assert got.status == OperationStatus.Completed
    assert got.completion_reason == PlayPromptCompletionReason.CompletedSuccessfully


async def test_prompts_and_recordings_share_one_fifo_queue(beta, hooks, callback):
    call, w = await call_user(beta, hooks, callback, ALICE)
    calls = beta.communications.calls.by_call_id(call.id)
    await calls.play_prompt.post(PlayPromptPostRequestBody(prompts=[prompt(f"{hooks.url}/prompt/400-a.wav")], client_context="first"))
    b = await calls.play_prompt.post(PlayPromptPostRequestBody(prompts=[prompt(f"{hooks.url}/prompt/100-b.wav")], client_context="second"))
    await w.until_op(b.id)
    ops = [n for n in w.all() if n.is_operation]
    assert [n.data["clientContext"] for n in ops] == ["first", "second"], "the short prompt waits for the long one"
    assert ops[1].at - ops[0].at >= 0.08


async def test_prompt_that_is_not_a_wav_fails(beta, hooks, callback):
    call, w = await call_user(beta, hooks, callback, ALICE)
    op = await beta.communications.calls.by_call_id(call.id).play_prompt.post(
        PlayPromptPostRequestBody(prompts=[prompt(f"{hooks.url}/notwav")], client_context="bad")
    )
    assert op.status == OperationStatus.Running
    done = await w.until_op(op.id)
    assert done.data["status"] == "failed"
    assert done.data["clientContext"] == "bad"
    assert (done.data["resultInfo"]["code"], done.data["resultInfo"]["subcode"]) == (400, 8509)


async def test_record_response_ends_on_a_stop_tone_and_the_recording_downloads(beta, hooks, callback):
    call, w = await call_user(beta, hooks, callback, ALICE, script={"dtmf": [{"atMs": 1000, "digits": "#"}]})
    op = await beta.communications.calls.by_call_id(call.id).record_response.post(
        RecordResponsePostRequestBody(
            stop_tones=["#"], max_record_duration_in_seconds=10, initial_silence_timeout_in_seconds=10, client_context="voicemail"
        )
    )
    assert isinstance(op, RecordOperation)
    assert op.status == OperationStatus.Running
    assert op.client_context == "voicemail"

    done = await w.until_op(op.id)
    d = done.data
    assert d["@odata.type"] == "#microsoft.graph.recordOperation"
    assert d["status"] == "completed"
    assert d["completionReason"] == "stopToneDetected"
    assert d["clientContext"] == "voicemail"
    assert d["recordingLocation"] and d["recordingAccessToken"]

    got = await beta.communications.calls.by_call_id(call.id).operations.by_comms_operation_id(op.id).get()
    assert isinstance(got, RecordOperation)
    assert got.completion_reason == RecordCompletionReason.StopToneDetected
    assert got.recording_location == d["recordingLocation"]

    async with httpx.AsyncClient(timeout=10) as h:
        r = await h.get(d["recordingLocation"], headers={"Authorization": f"Bearer {d['recordingAccessToken']}"})
        assert r.status_code == 200
        assert r.content[:4] == b"RIFF"
        assert 300 <= wav_duration_ms(r.content) <= 3000, wav_duration_ms(r.content)
        assert (await h.get(d["recordingLocation"])).status_code == 401
        assert (await h.get(d["recordingLocation"], headers={"Authorization": "Bearer wrong"})).status_code == 401


async def test_record_response_ends_after_the_initial_silence_timeout(beta, hooks, callback):
    call, w = await call_user(beta, hooks, callback, ALICE)
    started = time.monotonic()
    op = await beta.communications.calls.by_call_id(call.id).record_response.post(
        RecordResponsePostRequestBody(prompts=[prompt(f"{hooks.url}/prompt/200.wav")], initial_silence_timeout_in_seconds=1, play_beep=True)
    )
    done = await w.until_op(op.id)
    assert done.data["status"] == "completed"
    assert done.data["completionReason"] == "initialSilenceTimeout"
    assert time.monotonic() - started >= 1.1, "prompt, beep, then one second of silence"


async def test_cancel_media_processing_fails_the_looping_and_queued_prompts(beta, hooks, callback):
    call, w = await call_user(beta, hooks, callback, ALICE)
    calls = beta.communications.calls.by_call_id(call.id)
    looping = await calls.play_prompt.post(PlayPromptPostRequestBody(prompts=[prompt(f"{hooks.url}/prompt/200-loop.wav")], loop=True, client_context="hold-loop"))
    queued = await calls.play_prompt.post(PlayPromptPostRequestBody(prompts=[prompt(f"{hooks.url}/prompt/200-q.wav")], client_context="queued"))
    assert (looping.status, queued.status) == (OperationStatus.Running, OperationStatus.Running)
    assert [n for n in await w.quiet(0.7) if n.is_operation] == [], "a looping prompt never completes by itself"

    cancel = await calls.cancel_media_processing.post(CancelMediaProcessingPostRequestBody(client_context="stop-all"))
    assert isinstance(cancel, CancelMediaProcessingOperation)
    assert cancel.status == OperationStatus.Completed
    assert cancel.client_context == "stop-all"

    for op, ctx in ((looping, "hold-loop"), (queued, "queued")):
        n = await w.seen(lambda n, i=op.id: n.is_operation and i in n.resource, f"cancelled {ctx}")
        assert n.change == "deleted"
        assert n.data["status"] == "failed"
        assert n.data["clientContext"] == ctx
        assert (n.data["resultInfo"]["code"], n.data["resultInfo"]["subcode"]) == (400, 8508)
        assert n.data["completionReason"] == "mediaOperationCanceled"
    assert not any(n.is_operation and cancel.id in n.resource for n in w.all()), "cancelMediaProcessing itself is not notified"


async def test_subscribed_bot_hears_the_users_digits_in_order(beta, hooks, callback):
    call, w = await call_user(beta, hooks, callback, ALICE, script={"dtmf": [{"atMs": 1000, "digits": "123", "gapMs": 100}]})
    op = await beta.communications.calls.by_call_id(call.id).subscribe_to_tone.post(SubscribeToTonePostRequestBody(client_context="tones"))
    assert isinstance(op, SubscribeToToneOperation)
    assert op.status == OperationStatus.Completed
    assert op.client_context == "tones"

    await w.until(lambda n: n.is_call and (n.data.get("toneInfo") or {}).get("sequenceId") == 3, "third tone")
    tones = [n.data for n in w.all() if n.is_call and n.data.get("toneInfo")]
    assert [(t["toneInfo"]["sequenceId"], t["toneInfo"]["tone"]) for t in tones] == [(1, "tone1"), (2, "tone2"), (3, "tone3")]
    assert all(t["state"] == "established" for t in tones)
    assert not any(n.is_operation and op.id in n.resource for n in w.all()), "subscribeToTone completes synchronously"

    got = await beta.communications.calls.by_call_id(call.id).get()
    assert got.tone_info.sequence_id == 3
    assert got.tone_info.tone == Tone.Tone3


async def test_send_dtmf_tones_are_heard_by_the_user(beta, ringside, hooks, callback):
    call_id, leg_id = await ringside.place_call(GINA, APP)
    w = await answer_incoming(beta, hooks, call_id, callback)

    op = await beta.communications.calls.by_call_id(call_id).send_dtmf_tones.post(
        SendDtmfTonesPostRequestBody(tones=[Tone.Tone1, Tone.Tone2, Tone.Pound], delay_between_tones_ms=50, client_context="pin")
    )
    assert isinstance(op, SendDtmfTonesOperation)
    assert op.status == OperationStatus.Running
    assert op.client_context == "pin"

    done = await w.until_op(op.id)
    assert done.data["status"] == "completed"
    assert done.data["completionReason"] == "completedSuccessfully"
    assert done.data["clientContext"] == "pin"
    leg = await ringside.leg(leg_id)
    assert leg["tonesHeard"] == "12#", leg


async def test_service_hosted_media_actions_are_refused_on_an_app_hosted_call(beta, hooks, callback):
    call, w = await call_user(beta, hooks, callback, ALICE, media=app_media())
    calls = beta.communications.calls.by_call_id(call.id)
    for action in (
        lambda: calls.play_prompt.post(PlayPromptPostRequestBody(prompts=[prompt(f"{hooks.url}/prompt/100.wav")])),
        lambda: calls.record_response.post(RecordResponsePostRequestBody()),
        lambda: calls.subscribe_to_tone.post(SubscribeToTonePostRequestBody()),
    ):
        with pytest.raises(ODataError) as e:
            await action()
        assert e.value.response_status_code == 400
        assert e.value.error.code == "BadRequest"
        assert "serviceHostedMediaConfig" in e.value.error.message


async def test_prefetched_prompt_is_not_fetched_again(beta, ringside, hooks, callback):
    # The server answers this prompt slowly, so the playPrompt below arrives while the
    # prefetch is still downloading: it must wait for that download, not start another.
    url = f"{hooks.url}/prompt/300-slow-prefetch-{callback.rsplit('/', 1)[1][-12:]}.wav"
    call_id, _ = await ringside.place_call(ALICE, APP)
    w = await answer_incoming(beta, hooks, call_id, callback, media=service_media([url]))
    for _ in range(200):
        if url.removeprefix(hooks.url) in hooks.prompt_gets:
            break
        await asyncio.sleep(0.02)
    assert hooks.prompt_gets.count(url.removeprefix(hooks.url)) == 1, "preFetchMedia fetched the prompt once"

    op = await beta.communications.calls.by_call_id(call_id).play_prompt.post(
        PlayPromptPostRequestBody(prompts=[prompt(url, url.rsplit("/", 1)[-1])], client_context="cached")
    )
    done = await w.until_op(op.id)
    assert done.data["status"] == "completed"
    assert hooks.prompt_gets.count(url.removeprefix(hooks.url)) == 1, "played from the cache (same resourceId)"


async def test_media_prompt_loop_count_repeats_the_prompt(beta, hooks, callback):
    call, w = await call_user(beta, hooks, callback, ALICE)
    p = prompt(f"{hooks.url}/prompt/200-thrice.wav")
    p.loop = 3
    started = time.monotonic()
    op = await beta.communications.calls.by_call_id(call.id).play_prompt.post(PlayPromptPostRequestBody(prompts=[p, prompt(f"{hooks.url}/prompt/100-once.wav")]))
    done = await w.until_op(op.id)
    assert done.data["status"] == "completed"
    assert time.monotonic() - started >= 0.65, "3 x 200 ms + 100 ms"


async def test_barge_in_recording_cancels_the_playing_prompt(beta, hooks, callback):
    call, w = await call_user(beta, hooks, callback, ALICE)
    calls = beta.communications.calls.by_call_id(call.id)
    long = await calls.play_prompt.post(PlayPromptPostRequestBody(prompts=[prompt(f"{hooks.url}/prompt/5000-long.wav")], client_context="long"))
    await asyncio.sleep(0.3)
    rec = await calls.record_response.post(
        RecordResponsePostRequestBody(barge_in_allowed=True, max_record_duration_in_seconds=1, initial_silence_timeout_in_seconds=5, client_context="barge")
    )
    cancelled = await w.until_op(long.id)
    assert cancelled.data["status"] == "failed"
    assert cancelled.data["resultInfo"]["subcode"] == 8508
    done = await w.until_op(rec.id)
    assert done.data["status"] == "completed"
    assert done.data["completionReason"] == "maxRecordDurationReached"


async def test_legacy_record_action_is_record_response(beta, hooks, callback):
    call, w = await call_user(beta, hooks, callback, ALICE, script={"dtmf": [{"atMs": 900, "digits": "*"}]})
    op = await beta.communications.calls.by_call_id(call.id).record.post(
        RecordPostRequestBody(stop_tones=["*"], max_record_duration_in_seconds=10, client_context="legacy")
    )
    assert isinstance(op, RecordOperation)
    assert op.status == OperationStatus.Running
    done = await w.until_op(op.id)
    assert done.data["completionReason"] == "stopToneDetected"
    assert done.data["clientContext"] == "legacy"


async def test_media_limits_are_enforced(beta, hooks, callback):
    call, w = await call_user(beta, hooks, callback, ALICE)
    calls = beta.communications.calls.by_call_id(call.id)
    for action in (
        lambda: calls.play_prompt.post(PlayPromptPostRequestBody(prompts=[prompt(f"{hooks.url}/prompt/100.wav")] * 21)),
        lambda: calls.play_prompt.post(PlayPromptPostRequestBody(prompts=[])),
        lambda: calls.play_prompt.post(PlayPromptPostRequestBody(prompts=[prompt("ftp://example.com/a.wav")])),
        lambda: calls.play_prompt.post(PlayPromptPostRequestBody(prompts=[prompt(f"{hooks.url}/prompt/100.wav")], client_context="x" * 257)),
        lambda: calls.record_response.post(RecordResponsePostRequestBody(prompts=[prompt(f"{hooks.url}/prompt/100.wav")] * 2)),
        lambda: calls.record_response.post(RecordResponsePostRequestBody(max_record_duration_in_seconds=121)),
        lambda: calls.record_response.post(RecordResponsePostRequestBody(stop_tones=["x"])),
        lambda: calls.send_dtmf_tones.post(SendDtmfTonesPostRequestBody(tones=[])),
    ):
        with pytest.raises(ODataError) as e:
            await action()
        assert e.value.response_status_code == 400, e.value.error.message
        assert e.value.error.code == "BadRequest"
    ops = await calls.operations.get()
    assert ops.value == [], "refused actions create no operation"
