"""Notification delivery as a bot's webhook sees it (envelope, retries, order, 307 pinning,
concurrency) and two SDK bots calling each other."""
from __future__ import annotations

import asyncio

import pytest
from msgraph_beta.generated.communications.calls.item.answer.answer_post_request_body import AnswerPostRequestBody
from msgraph_beta.generated.communications.calls.item.redirect.redirect_post_request_body import RedirectPostRequestBody
from msgraph_beta.generated.communications.calls.item.send_dtmf_tones.send_dtmf_tones_post_request_body import SendDtmfTonesPostRequestBody
from msgraph_beta.generated.communications.calls.item.subscribe_to_tone.subscribe_to_tone_post_request_body import SubscribeToTonePostRequestBody
from msgraph_beta.generated.communications.calls.item.transfer.transfer_post_request_body import TransferPostRequestBody
from msgraph_beta.generated.models.call import Call
from msgraph_beta.generated.models.call_state import CallState
from msgraph_beta.generated.models.identity import Identity
from msgraph_beta.generated.models.identity_set import IdentitySet
from msgraph_beta.generated.models.invitation_participant_info import InvitationParticipantInfo
from msgraph_beta.generated.models.modality import Modality
from msgraph_beta.generated.models.tone import Tone

from bot import call_user, p2p_call, service_media
from support import ALICE, APP, APP2, GINA, TENANT, states


async def test_notifications_are_graph_comms_notifications(beta, hooks, callback):
    call, w = await call_user(beta, hooks, callback, ALICE)
    path = callback.removeprefix(hooks.url)
    posts = [(h, b) for p, h, b in list(hooks.envelopes) if p == path]
    assert posts, "the bot's callback received POSTs"
    for headers, body in posts:
        assert headers["content-type"].startswith("application/json")
        assert body["@odata.type"] == "#microsoft.graph.commsNotifications"
        for item in body["value"]:
            assert item["@odata.type"] == "#microsoft.graph.commsNotification"
            assert item["changeType"] in ("created", "updated", "deleted")
            assert item["resourceUrl"].startswith(f"/communications/calls/{call.id}")
            assert item["resource"] == item["resourceUrl"].replace("/communications/calls/", "/app/calls/")
            assert item["callbackUri"] == callback
            assert item["resourceData"]["@odata.type"] == "#microsoft.graph.call"
            assert item["resourceData"]["id"] == call.id


async def test_failed_deliveries_are_retried_without_breaking_the_order(beta, hooks, callback):
    path = callback.removeprefix(hooks.url)
    hooks.fail_next[path] = 2  # the bot's webhook answers 500 twice, then recovers
    call = await beta.communications.calls.post(p2p_call(callback, ALICE))
    notes = await hooks.watch(call.id).until_state("established")
    assert states(notes) == ["establishing", "ringing", "established"]
    assert hooks.attempts[path] >= 5


async def test_incoming_call_notification_follows_a_307_from_the_bot(beta2, ringside, hooks):
    hooks.redirects["/incoming2"] = "/incoming2-pinned"
    try:
        call_id, _ = await ringside.place_call(GINA, APP2)
        n = await hooks.incoming(call_id)
    finally:
        hooks.redirects.pop("/incoming2", None)
    assert n.path == "/incoming2-pinned", "the created notification is re-delivered where the bot pointed"
    assert n.data["state"] == "incoming"


async def test_concurrent_calls_each_get_their_own_ordered_notifications(beta, hooks, callback):
    calls = await asyncio.gather(*(beta.communications.calls.post(p2p_call(f"{callback}-{i}", ALICE)) for i in range(8)))
    assert len({c.id for c in calls}) == 8
    for c in calls:
        notes = await hooks.watch(c.id).until_state("established")
        assert states(notes) == ["establishing", "ringing", "established"], c.id
    await asyncio.gather(*(beta.communications.calls.by_call_id(c.id).delete() for c in calls))
    for c in calls:
        w = hooks.watch(c.id)
        w.cursor = 3
        notes = await w.until_state("terminated")
        assert states(notes) == ["terminating", "terminated"], c.id


async def test_two_sdk_bots_call_each_other_and_exchange_dtmf(beta, beta2, hooks, callback):
    target = InvitationParticipantInfo(identity=IdentitySet(application=Identity(id=APP2, display_name="Second bot")))
    since = len(hooks.snapshot())
    a = await beta.communications.calls.post(
        Call(callback_uri=callback + "-a", targets=[target], requested_modalities=[Modality.Audio], media_config=service_media(), tenant_id=TENANT)
    )
    incoming = next(n for n in await _created_at(hooks, "/incoming2", since=since) if n.data["source"]["identity"]["application"]["id"] == APP)
    b_id = incoming.data["id"]
    assert incoming.data["direction"] == "incoming"

    await beta2.communications.calls.by_call_id(b_id).answer.post(
        AnswerPostRequestBody(callback_uri=callback + "-b", accepted_modalities=[Modality.Audio], media_config=service_media())
    )
    wa, wb = hooks.watch(a.id), hooks.watch(b_id)
    await wa.until_state("established")
    await wb.until_state("established")

    await beta2.communications.calls.by_call_id(b_id).subscribe_to_tone.post(SubscribeToTonePostRequestBody())
    op = await beta.communications.calls.by_call_id(a.id).send_dtmf_tones.post(
        SendDtmfTonesPostRequestBody(tones=[Tone.Tone4, Tone.Star, Tone.Pound], delay_between_tones_ms=30)
    )
    await wb.until(lambda n: n.is_call and (n.data.get("toneInfo") or {}).get("sequenceId") == 3, "third tone at bot 2")
    heard = [n.data["toneInfo"]["tone"] for n in wb.all() if n.is_call and n.data.get("toneInfo")]
    assert heard == ["tone4", "star", "pound"]
    done = await wa.until_op(op.id)
    assert done.data["status"] == "completed"

    await beta.communications.calls.by_call_id(a.id).delete()
    await wb.until_state("terminated")
    got = await beta2.communications.calls.get()
    assert b_id not in [c.id for c in got.value]


async def _created_at(hooks, path: str, timeout: float = 10, since: int = 0) -> list:
    for _ in range(int(timeout / 0.02)):
        found = [n for n in hooks.snapshot()[since:] if n.path == path and n.change == "created"]
        if found:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"no incoming call at {path}")


async def _bot2_answers_call_from(hooks, beta2, user: str, callback: str, since: int):
    """Bot 2 answers the incoming call (notified after `since`) whose caller is `user`, and
    subscribes to its tones."""
    incoming = next(
        n for n in await _created_at(hooks, "/incoming2", since=since) if (n.data["source"]["identity"].get("user") or {}).get("id") == user
    )
    b_id = incoming.data["id"]
    await beta2.communications.calls.by_call_id(b_id).answer.post(
        AnswerPostRequestBody(callback_uri=callback, accepted_modalities=[Modality.Audio], media_config=service_media())
    )
    wb = hooks.watch(b_id)
    await wb.until_state("established")
    await beta2.communications.calls.by_call_id(b_id).subscribe_to_tone.post(SubscribeToTonePostRequestBody())
    return b_id, wb


def _bot2() -> InvitationParticipantInfo:
    return InvitationParticipantInfo(identity=IdentitySet(application=Identity(id=APP2, display_name="Second bot")))


async def test_bot_transfers_a_user_to_another_bot(beta, beta2, ringside, hooks, callback):
    call, wa = await call_user(beta, hooks, callback + "-a", GINA)
    since = len(hooks.snapshot())
    await beta.communications.calls.by_call_id(call.id).transfer.post(TransferPostRequestBody(transfer_target=_bot2()))
    b_id, wb = await _bot2_answers_call_from(hooks, beta2, GINA, callback + "-b", since)

    notes = await wa.until_state("terminated")
    assert states(notes) == ["transferring", "transferAccepted", "terminated"]
    assert notes[-1].data["resultInfo"]["subcode"] == 7015
    got = await beta2.communications.calls.by_call_id(b_id).get()
    assert got.state == CallState.Established
    assert got.source.identity.user.id == GINA, "bot 2 sees the transferred user as its caller"


async def test_bot_redirects_a_caller_to_another_bot(beta, beta2, ringside, hooks, callback):
    call_id, leg_id = await ringside.place_call(GINA, APP)
    await hooks.incoming(call_id)
    since = len(hooks.snapshot())
    await beta.communications.calls.by_call_id(call_id).redirect.post(RedirectPostRequestBody(targets=[_bot2()], callback_uri=callback + "-a"))
    b_id, wb = await _bot2_answers_call_from(hooks, beta2, GINA, callback + "-b", since)
    notes = await hooks.watch(call_id).until_state("terminated")
    assert notes[-1].data["answeredBy"]["identity"]["application"]["id"] == APP2
    assert (await ringside.leg(leg_id))["state"] == "connected"



async def test_dtmf_flows_between_a_user_and_the_bot_they_were_transferred_to(beta, beta2, ringside, hooks, callback):
    call, wa = await call_user(beta, hooks, callback + "-a", GINA, script={"dtmf": [{"atMs": 1500, "digits": "9"}]})
    since = len(hooks.snapshot())
    await beta.communications.calls.by_call_id(call.id).transfer.post(TransferPostRequestBody(transfer_target=_bot2()))
    b_id, wb = await _bot2_answers_call_from(hooks, beta2, GINA, callback + "-b", since)
    await wa.until_state("terminated")

    op = await beta2.communications.calls.by_call_id(b_id).send_dtmf_tones.post(SendDtmfTonesPostRequestBody(tones=[Tone.Tone1]))
    await wb.until_op(op.id)
    gina = await ringside.latest_leg_of(GINA)
    assert gina["tonesHeard"] == "1", gina
    await wb.seen(lambda n: n.is_call and (n.data.get("toneInfo") or {}).get("tone") == "tone9", "Gina's key at bot 2", timeout=4)


async def test_dtmf_flows_between_a_caller_and_the_bot_they_were_redirected_to(beta, beta2, ringside, hooks, callback):
    call_id, leg_id = await ringside.place_call(GINA, APP, script={"dtmf": [{"atMs": 1500, "digits": "8"}]})
    await hooks.incoming(call_id)
    since = len(hooks.snapshot())
    await beta.communications.calls.by_call_id(call_id).redirect.post(RedirectPostRequestBody(targets=[_bot2()]))
    b_id, wb = await _bot2_answers_call_from(hooks, beta2, GINA, callback + "-b", since)

    await wb.seen(lambda n: n.is_call and (n.data.get("toneInfo") or {}).get("tone") == "tone8", "the caller's key at bot 2", timeout=4)
    op = await beta2.communications.calls.by_call_id(b_id).send_dtmf_tones.post(SendDtmfTonesPostRequestBody(tones=[Tone.Tone2]))
    await wb.until_op(op.id)
    assert (await ringside.leg(leg_id))["tonesHeard"] == "2"
