"""Peer-to-peer calls placed by a bot with msgraph-beta-sdk: lifecycle, results, listing."""
from __future__ import annotations

import pytest
from msgraph_beta.generated.models.call import Call
from msgraph_beta.generated.models.call_direction import CallDirection
from msgraph_beta.generated.models.call_state import CallState
from msgraph_beta.generated.models.media_state import MediaState
from msgraph_beta.generated.models.modality import Modality
from msgraph_beta.generated.models.o_data_errors.o_data_error import ODataError
from msgraph_beta.generated.models.service_hosted_media_config import ServiceHostedMediaConfig

from bot import call_user, p2p_call
from support import ALICE, APP, BOB_BUSY, CAROL_NO_ANSWER, DAVE_DECLINE, TENANT, states


async def test_bot_calls_a_user_who_answers_then_the_bot_hangs_up(beta, hooks, callback):
    call = await beta.communications.calls.post(p2p_call(callback, ALICE, name="Alice"))

    assert isinstance(call, Call)
    assert call.state == CallState.Establishing
    assert call.direction == CallDirection.Outgoing
    assert call.id and call.my_participant_id and call.call_chain_id
    assert isinstance(call.media_config, ServiceHostedMediaConfig)
    assert call.source.identity.application.id == APP
    assert call.tenant_id == TENANT
    assert call.targets[0].identity.user.id == ALICE

    w = hooks.watch(call.id)
    notes = await w.until_state("established")
    assert states(notes) == ["establishing", "ringing", "established"]
    assert all(n.change == "updated" and n.path == f"/callback/{callback.rsplit('/', 1)[1]}" for n in notes)
    assert notes[-1].data["mediaState"]["audio"] == "active"
    assert all(n.resource == f"/communications/calls/{call.id}" for n in notes)

    got = await beta.communications.calls.by_call_id(call.id).get()
    assert got.id == call.id
    assert got.state == CallState.Established
    assert got.media_state.audio == MediaState.Active
    assert got.active_modalities == [Modality.Audio]

    assert await beta.communications.calls.by_call_id(call.id).keep_alive.post() is None

    assert await beta.communications.calls.by_call_id(call.id).delete() is None
    notes = await w.until_state("terminated")
    assert states(notes) == ["terminating", "terminated"]
    last = notes[-1]
    assert last.change == "deleted"
    assert (last.data["resultInfo"]["code"], last.data["resultInfo"]["subcode"]) == (200, 5001)

    with pytest.raises(ODataError) as e:
        await beta.communications.calls.by_call_id(call.id).get()
    assert e.value.response_status_code == 404
    assert e.value.error.code == "8522"
    with pytest.raises(ODataError) as e:
        await beta.communications.calls.by_call_id(call.id).keep_alive.post()
    assert e.value.response_status_code == 404
    assert await w.quiet(0.2) == [], "nothing follows the terminated notification"


@pytest.mark.parametrize(
    "user, code",
    [(BOB_BUSY, 486), (DAVE_DECLINE, 603), ("0000dead-0000-0000-0000-000000000000", 480)],
    ids=["busy", "declined", "unknown-user"],
)
async def test_calls_that_cannot_connect_end_with_the_callee_result(beta, hooks, callback, user, code):
    call = await beta.communications.calls.post(p2p_call(callback, user))
    notes = await hooks.watch(call.id).until_state("terminated")
    assert "established" not in states(notes)
    last = notes[-1]
    assert last.change == "deleted"
    assert last.data["resultInfo"]["code"] == code, last.data


async def test_unanswered_call_ends_after_the_ringing_timeout(beta, hooks, callback):
    body = p2p_call(callback, CAROL_NO_ANSWER)
    body.ringing_timeout_in_seconds = 1
    call = await beta.communications.calls.post(body)
    assert call.ringing_timeout_in_seconds == 1
    notes = await hooks.watch(call.id).until_state("terminated", timeout=5)
    assert states(notes) == ["establishing", "ringing", "terminated"]
    assert notes[-1].data["resultInfo"]["code"] == 408


async def test_user_hanging_up_ends_the_call(beta, hooks, callback):
    call, w = await call_user(beta, hooks, callback, ALICE, script={"hangupAfterMs": 300})
    notes = await w.until_state("terminated")
    assert states(notes) == ["terminated"]
    assert notes[-1].change == "deleted"
    assert notes[-1].data["resultInfo"]["subcode"] == 4521


async def test_user_putting_the_call_on_hold_and_resuming(beta, hooks, callback):
    call, w = await call_user(beta, hooks, callback, ALICE, script={"holdAtMs": 200, "resumeAtMs": 600})
    await w.until_state("hold")
    got = await beta.communications.calls.by_call_id(call.id).get()
    assert got.state == CallState.Hold
    notes = await w.until_state("established")
    assert states(notes) == ["established"]


async def test_calls_are_listed_and_counted(beta, hooks, callback):
    a, _ = await call_user(beta, hooks, callback, ALICE)
    b = await beta.communications.calls.post(p2p_call(callback, CAROL_NO_ANSWER))

    listed = await beta.communications.calls.get()
    ids = [c.id for c in listed.value]
    assert ids == [a.id, b.id], "oldest first, only this app's calls"
    assert all(isinstance(c, Call) for c in listed.value)
    assert {c.id: c.state for c in listed.value} == {a.id: CallState.Established, b.id: CallState.Ringing}

    assert await beta.communications.calls.count.get() == 2
