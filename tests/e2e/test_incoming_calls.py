"""Calls a simulated user places to the bot (answer, reject, redirect) and transfers."""
from __future__ import annotations

import pytest
from msgraph_beta.generated.communications.calls.item.redirect.redirect_post_request_body import RedirectPostRequestBody
from msgraph_beta.generated.communications.calls.item.reject.reject_post_request_body import RejectPostRequestBody
from msgraph_beta.generated.communications.calls.item.transfer.transfer_post_request_body import TransferPostRequestBody
from msgraph_beta.generated.models.call_direction import CallDirection
from msgraph_beta.generated.models.call_state import CallState
from msgraph_beta.generated.models.o_data_errors.o_data_error import ODataError
from msgraph_beta.generated.models.reject_reason import RejectReason

from bot import answer_incoming, call_user, service_media, user_target
from msgraph_beta.generated.communications.calls.item.answer.answer_post_request_body import AnswerPostRequestBody
from msgraph_beta.generated.models.modality import Modality
from support import ALICE, APP, BOB_BUSY, CAROL_NO_ANSWER, GINA, HANK, TENANT, states


async def test_incoming_call_is_notified_at_the_app_webhook_and_answered(beta, ringside, hooks, callback):
    call_id, leg_id = await ringside.place_call(ALICE, APP)

    n = await hooks.incoming(call_id)
    assert n.path == "/incoming", "incoming calls go to the app's calling webhook"
    assert n.change == "created"
    assert n.resource == f"/communications/calls/{call_id}"
    assert n.data["@odata.type"] == "#microsoft.graph.call"
    assert n.data["state"] == "incoming"
    assert n.data["direction"] == "incoming"
    assert n.data["source"]["identity"]["user"]["id"] == ALICE
    assert n.data["targets"][0]["identity"]["application"]["id"] == APP
    assert n.data["tenantId"] == TENANT
    assert n.data["myParticipantId"]

    before = await beta.communications.calls.by_call_id(call_id).get()
    assert before.state == CallState.Incoming
    assert before.direction == CallDirection.Incoming

    answer = AnswerPostRequestBody(callback_uri=callback, accepted_modalities=[Modality.Audio], media_config=service_media())
    assert await beta.communications.calls.by_call_id(call_id).answer.post(answer) is None
    w = hooks.watch(call_id)
    w.cursor = 1
    notes = await w.until_state("established")
    assert states(notes) == ["establishing", "established"]
    assert all(n.path.startswith("/callback/") for n in notes), "after answer, notifications go to the new callbackUri"
    assert notes[-1].data["mediaState"]["audio"] == "active"

    got = await beta.communications.calls.by_call_id(call_id).get()
    assert got.state == CallState.Established
    assert got.callback_uri == callback

    with pytest.raises(ODataError) as e:
        await beta.communications.calls.by_call_id(call_id).answer.post(answer)
    assert e.value.response_status_code == 400
    assert e.value.error.code == "InvalidCallState"

    leg = await ringside.leg(leg_id)
    assert leg["state"] == "connected"

    await beta.communications.calls.by_call_id(call_id).delete()
    await w.until_state("terminated")
    leg = await ringside.leg(leg_id)
    assert leg["state"] == "ended", leg


async def test_incoming_call_routed_by_address_is_rejected_busy(beta, ringside, hooks, callback):
    call_id, leg_id = await ringside.place_call(ALICE, "sip:bot@contoso.example")
    await hooks.incoming(call_id)

    body = RejectPostRequestBody(reason=RejectReason.Busy, callback_uri=callback)
    assert await beta.communications.calls.by_call_id(call_id).reject.post(body) is None

    notes = await hooks.watch(call_id).until_state("terminated")
    last = notes[-1]
    assert last.change == "deleted"
    assert last.path.startswith("/callback/"), "reject's callbackUri receives the final notification"
    leg = await ringside.leg(leg_id)
    assert any(e["event"] == "rejected 486" for e in leg["events"]), leg
    assert leg["state"] == "ended"

    with pytest.raises(ODataError) as e:
        await beta.communications.calls.by_call_id(call_id).reject.post(RejectPostRequestBody())
    assert e.value.response_status_code == 404


async def test_incoming_call_is_redirected_to_the_first_target_that_answers(beta, ringside, hooks, callback):
    call_id, leg_id = await ringside.place_call(GINA, APP)
    await hooks.incoming(call_id)

    body = RedirectPostRequestBody(targets=[user_target(CAROL_NO_ANSWER, "Carol"), user_target(ALICE, "Alice")], timeout=20, callback_uri=callback)
    assert await beta.communications.calls.by_call_id(call_id).redirect.post(body) is None

    w = hooks.watch(call_id)
    w.cursor = 1
    notes = await w.until_state("terminated")
    assert states(notes) == ["redirecting", "terminated"]
    assert all(n.path.startswith("/callback/") for n in notes), "redirect's callbackUri receives the rest"
    last = notes[-1]
    assert last.change == "deleted"
    assert last.data["answeredBy"]["identity"]["user"]["id"] == ALICE
    caller = await ringside.leg(leg_id)
    assert caller["state"] == "connected", "the caller now talks to Alice"


async def test_blind_transfer_hands_the_user_to_the_target(beta, ringside, hooks, callback):
    call, w = await call_user(beta, hooks, callback, GINA)

    body = TransferPostRequestBody(transfer_target=user_target(HANK, "Hank"))
    assert await beta.communications.calls.by_call_id(call.id).transfer.post(body) is None

    notes = await w.until_state("terminated")
    assert states(notes) == ["transferring", "transferAccepted", "terminated"]
    last = notes[-1]
    assert last.change == "deleted"
    assert last.data["resultInfo"]["subcode"] == 7015
    assert last.data["resultInfo"]["message"] == "GracefulTransferCompleted"
    hank = await ringside.latest_leg_of(HANK)
    assert hank["state"] == "connected", hank


async def test_failed_transfer_keeps_the_call_established(beta, hooks, callback):
    call, w = await call_user(beta, hooks, callback, GINA)

    body = TransferPostRequestBody(transfer_target=user_target(BOB_BUSY, "Bob"))
    await beta.communications.calls.by_call_id(call.id).transfer.post(body)

    notes = await w.until(lambda n: n.is_call and "resultInfo" in n.data, "transfer failure")
    assert states(notes) == ["transferring", "established"]
    assert notes[-1].change == "updated"
    assert notes[-1].data["resultInfo"]["code"] == 500
    got = await beta.communications.calls.by_call_id(call.id).get()
    assert got.state == CallState.Established


async def test_answer_without_a_callback_uri_keeps_notifying_the_app_webhook(beta, ringside, hooks):
    call_id, _ = await ringside.place_call(ALICE, APP)
    w = hooks.watch(call_id)
    await w.until(lambda n: n.change == "created", "incoming call")
    await beta.communications.calls.by_call_id(call_id).answer.post(
        AnswerPostRequestBody(accepted_modalities=[Modality.Audio], media_config=service_media())
    )
    notes = await w.until_state("established")
    assert [n.path for n in notes] == ["/incoming", "/incoming"]


async def test_caller_hanging_up_ends_the_answered_call(beta, ringside, hooks, callback):
    call_id, leg_id = await ringside.place_call(ALICE, APP, script={"hangupAfterMs": 400})
    w = await answer_incoming(beta, hooks, call_id, callback)
    notes = await w.until_state("terminated")
    assert states(notes) == ["terminated"]
    assert notes[-1].change == "deleted"
    assert notes[-1].data["resultInfo"]["subcode"] == 4521
