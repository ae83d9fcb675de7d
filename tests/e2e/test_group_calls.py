"""Group calls and escalation with msgraph-beta-sdk: ad-hoc groups, P2P escalation by invite,
replacesCallId, failed and cancelled invitations, delta rosters, rejoining, group transfer."""
from __future__ import annotations

import pytest
from msgraph_beta.generated.communications.calls.item.participants.invite.invite_post_request_body import InvitePostRequestBody
from msgraph_beta.generated.communications.calls.item.transfer.transfer_post_request_body import TransferPostRequestBody
from msgraph_beta.generated.models.call import Call
from msgraph_beta.generated.models.call_state import CallState
from msgraph_beta.generated.models.modality import Modality
from msgraph_beta.generated.models.o_data_errors.o_data_error import ODataError
from msgraph_beta.generated.models.operation_status import OperationStatus
from msgraph_beta.generated.models.outgoing_call_options import OutgoingCallOptions
from msgraph_beta.generated.models.participant_info import ParticipantInfo

from bot import call_user, create_meeting, join_body, join_meeting, meeting_with_user, service_media, user_identity, user_target
from support import ALICE, BOB_BUSY, CAROL_NO_ANSWER, GINA, HANK, TENANT, member, states, user_in


async def invite(beta, call_id: str, *targets, ctx: str = "invite"):
    return await beta.communications.calls.by_call_id(call_id).participants.invite.post(
        InvitePostRequestBody(participants=list(targets), client_context=ctx)
    )


async def test_ad_hoc_group_call_grows_and_ends_when_everyone_else_left(beta, hooks, callback):
    body = Call(
        callback_uri=callback,
        targets=[user_target(ALICE, "Alice", {"hangupAfterMs": 400}), user_target(GINA, "Gina", {"hangupAfterMs": 600})],
        requested_modalities=[Modality.Audio],
        media_config=service_media(),
        subject="Ad-hoc group",
        tenant_id=TENANT,
    )
    call = await beta.communications.calls.post(body)
    assert call.subject == "Ad-hoc group"
    w = hooks.watch(call.id)
    notes = await w.until_state("established")
    assert "ringing" not in states(notes), "a group call does not ring as a whole"

    roster = await w.until_roster(lambda r: user_in(r, ALICE) and user_in(r, GINA), "both users joined")
    assert member(roster, call.my_participant_id) is not None
    await w.until_roster(lambda r: user_in(r, ALICE) is None and user_in(r, GINA) is not None, "Alice left")
    notes = await w.until_state("terminated")
    last = notes[-1]
    assert last.change == "deleted"
    assert (last.data["resultInfo"]["code"], last.data["resultInfo"]["subcode"]) == (200, 5002)


async def test_inviting_into_a_p2p_call_escalates_it_to_a_group_call(beta, hooks, callback):
    call, w = await call_user(beta, hooks, callback, ALICE)
    assert not any(n.is_roster for n in w.all()), "a P2P call has no roster notifications"

    op = await invite(beta, call.id, user_target(GINA, "Gina"), ctx="escalate")
    assert op.status == OperationStatus.Running
    done = await w.seen(lambda n: n.is_operation and op.id in n.resource, "invite completed")
    assert done.data["status"] == "completed"
    roster = (await w.seen(lambda n: n.is_roster and user_in(n.data, ALICE) and user_in(n.data, GINA), "three in the roster")).data
    assert member(roster, call.my_participant_id) is not None
    assert len(roster) == 3

    parts = await beta.communications.calls.by_call_id(call.id).participants.get()
    assert len(parts.value) == 3


async def test_invite_with_replaces_call_id_moves_the_user_into_the_meeting(beta, ringside, hooks, callback):
    p2p, wp = await call_user(beta, hooks, callback + "-p2p", HANK)
    meeting = await create_meeting(beta, "Escalation")
    mcall, wm = await join_meeting(beta, hooks, callback, meeting)

    target = user_target(HANK, "Hank")
    target.replaces_call_id = p2p.id
    op = await invite(beta, mcall.id, target, ctx="move-hank")
    assert op.status == OperationStatus.Running
    assert op.participants[0].replaces_call_id == p2p.id

    done = await wm.seen(lambda n: n.is_operation and op.id in n.resource, "invite completed")
    assert done.data["status"] == "completed"
    await wm.seen(lambda n: n.is_roster and user_in(n.data, HANK) is not None, "Hank in the meeting roster")
    notes = await wp.until_state("terminated")
    assert notes[-1].change == "deleted"
    assert notes[-1].data["resultInfo"]["subcode"] == 5000

    leg = await ringside.latest_leg_of(HANK)
    assert leg["state"] == "connected", "Hank's leg moved; it was not hung up"
    with pytest.raises(ODataError) as e:
        await beta.communications.calls.by_call_id(p2p.id).get()
    assert e.value.response_status_code == 404


async def test_invitation_that_is_refused_fails_the_operation(beta, hooks, callback):
    meeting = await create_meeting(beta, "Busy invitee")
    call, w = await join_meeting(beta, hooks, callback, meeting)
    op = await invite(beta, call.id, user_target(BOB_BUSY, "Bob"), ctx="invite-bob")
    done = await w.until_op(op.id, timeout=3)
    assert done.data["status"] == "failed"
    assert done.data["clientContext"] == "invite-bob"
    assert done.data["resultInfo"]["code"] == 412
    rosters = [n.data for n in w.all() if n.is_roster]
    assert all(user_in(r, BOB_BUSY) is None for r in rosters)


async def test_deleting_an_invited_participant_before_they_answer_cancels_the_invitation(beta, ringside, hooks, callback):
    meeting = await create_meeting(beta, "Cancelled invite")
    call, w = await join_meeting(beta, hooks, callback, meeting)
    op = await invite(beta, call.id, user_target(CAROL_NO_ANSWER, "Carol"), ctx="invite-carol")
    pid = op.participants[0].participant_id
    assert pid
    assert await beta.communications.calls.by_call_id(call.id).participants.by_participant_id(pid).delete() is None

    done = await w.until_op(op.id)
    assert done.data["status"] == "failed"
    leg = await ringside.latest_leg_of(CAROL_NO_ANSWER)
    assert leg["state"] == "ended"
    assert any(e["event"] == "cancelled" for e in leg["events"]), leg


async def test_delta_roster_sends_only_what_changed(beta, hooks, callback):
    meeting = await create_meeting(beta, "Delta roster")
    body = join_body(callback, meeting)
    body.call_options = OutgoingCallOptions(is_delta_roster_enabled=True)
    call = await beta.communications.calls.post(body)
    assert call.call_options.is_delta_roster_enabled is True
    w = hooks.watch(call.id)
    await w.until_state("established")
    first = await w.until_roster(lambda r: True, "first roster")
    assert [p["id"] for p in first] == [call.my_participant_id]

    op = await invite(beta, call.id, user_target(ALICE, "Alice"))
    alice_pid = op.participants[0].participant_id
    delta = (await w.seen(lambda n: n.is_roster and user_in(n.data, ALICE) is not None, "Alice joined")).data
    assert [p["id"] for p in delta] == [alice_pid], "only the participant that changed"
    assert "removedState" not in delta[0]

    await beta.communications.calls.by_call_id(call.id).participants.by_participant_id(alice_pid).delete()
    delta = (await w.seen(lambda n: n.is_roster and (member(n.data, alice_pid) or {}).get("removedState"), "Alice removed")).data
    assert [p["id"] for p in delta] == [alice_pid]
    assert member(delta, alice_pid)["removedState"]["reason"]
    seqs = [p["rosterSequenceNumber"] for n in w.all() if n.is_roster for p in n.data]
    assert seqs == sorted(seqs), "roster sequence numbers only grow"


async def test_rejoining_a_meeting_with_the_same_identity_replaces_the_old_call(beta, hooks, callback):
    meeting = await create_meeting(beta, "Rejoin")
    old, w_old = await join_meeting(beta, hooks, callback + "-old", meeting)
    new, w_new = await join_meeting(beta, hooks, callback, meeting)
    notes = await w_old.until_state("terminated")
    assert notes[-1].data["resultInfo"]["subcode"] == 5000
    roster = await w_new.until_roster(lambda r: member(r, new.my_participant_id) is not None, "new bot")
    assert member(roster, old.my_participant_id) is None


async def test_transfer_from_a_group_call_names_the_transferee(beta, ringside, hooks, callback):
    call, w, alice = await meeting_with_user(beta, hooks, callback, ALICE)
    transferee = ParticipantInfo(identity=user_identity(ALICE, "Alice"), participant_id=alice)
    body = TransferPostRequestBody(transfer_target=user_target(HANK, "Hank"), transferee=transferee)
    assert await beta.communications.calls.by_call_id(call.id).transfer.post(body) is None

    notes = await w.until(lambda n: n.is_call and n.state == "established", "back to established")
    assert states(notes) == ["transferring", "transferAccepted", "established"]
    await w.seen(lambda n: n.is_roster and user_in(n.data, ALICE) is None, "Alice left the meeting")
    got = await beta.communications.calls.by_call_id(call.id).get()
    assert got.state == CallState.Established
    hank = await ringside.latest_leg_of(HANK)
    assert hank["state"] == "connected"

    with pytest.raises(ODataError) as e:
        await beta.communications.calls.by_call_id(call.id).transfer.post(TransferPostRequestBody(transfer_target=user_target(HANK)))
    assert e.value.response_status_code == 400, "a group transfer needs a transferee"


async def test_consultative_transfer_joins_the_two_other_parties(beta, ringside, hooks, callback):
    a, wa = await call_user(beta, hooks, callback + "-a", GINA)
    b, wb = await call_user(beta, hooks, callback + "-b", HANK)
    target = user_target(HANK, "Hank")
    target.replaces_call_id = b.id
    assert await beta.communications.calls.by_call_id(a.id).transfer.post(TransferPostRequestBody(transfer_target=target)) is None

    na = await wa.until_state("terminated")
    assert states(na) == ["transferring", "transferAccepted", "terminated"]
    nb = await wb.until_state("terminated")
    assert nb[-1].data["terminationReason"] == "AppTransferred"
    gina = await ringside.latest_leg_of(GINA)
    hank = await ringside.latest_leg_of(HANK)
    assert (gina["state"], hank["state"]) == ("connected", "connected"), "Gina and Hank now talk to each other"
