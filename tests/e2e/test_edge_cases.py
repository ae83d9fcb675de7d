"""Edges a production bot runs into: hanging up mid-prompt, cancelling a recording, hanging
up an unanswered call, kicking in a P2P call, routing-group rules, hidden invitees, masked
redirects, custom hold music, token meeting joins."""
from __future__ import annotations

import httpx
import pytest
from msgraph_beta.generated.communications.calls.item.cancel_media_processing.cancel_media_processing_post_request_body import (
    CancelMediaProcessingPostRequestBody,
)
from msgraph_beta.generated.communications.calls.item.participants.invite.invite_post_request_body import InvitePostRequestBody
from msgraph_beta.generated.communications.calls.item.participants.item.start_hold_music.start_hold_music_post_request_body import (
    StartHoldMusicPostRequestBody,
)
from msgraph_beta.generated.communications.calls.item.participants.mute_all.mute_all_post_request_body import MuteAllPostRequestBody
from msgraph_beta.generated.communications.calls.item.play_prompt.play_prompt_post_request_body import PlayPromptPostRequestBody
from msgraph_beta.generated.communications.calls.item.record_response.record_response_post_request_body import RecordResponsePostRequestBody
from msgraph_beta.generated.communications.calls.item.redirect.redirect_post_request_body import RedirectPostRequestBody
from msgraph_beta.generated.communications.calls.item.reject.reject_post_request_body import RejectPostRequestBody
from msgraph_beta.generated.communications.calls.item.transfer.transfer_post_request_body import TransferPostRequestBody
from msgraph_beta.generated.models.audio_routing_group import AudioRoutingGroup
from msgraph_beta.generated.models.call import Call
from msgraph_beta.generated.models.join_meeting_id_meeting_info import JoinMeetingIdMeetingInfo
from msgraph_beta.generated.models.modality import Modality
from msgraph_beta.generated.models.o_data_errors.o_data_error import ODataError
from msgraph_beta.generated.models.operation_status import OperationStatus
from msgraph_beta.generated.models.organizer_meeting_info import OrganizerMeetingInfo
from msgraph_beta.generated.models.reject_reason import RejectReason
from msgraph_beta.generated.models.routing_mode import RoutingMode
from msgraph_beta.generated.models.token_meeting_info import TokenMeetingInfo

from bot import answer_incoming, call_user, create_meeting, join_meeting, meeting_with_user, p2p_call, prompt, service_media, user_target
from support import ALICE, APP, BOB_BUSY, CAROL_NO_ANSWER, ERIN_DTMF, GINA, HANK, TENANT, member, states, user_in


async def test_hanging_up_during_a_prompt_fails_it_before_the_call_ends(beta, hooks, callback):
    call, w = await call_user(beta, hooks, callback, ALICE)
    op = await beta.communications.calls.by_call_id(call.id).play_prompt.post(
        PlayPromptPostRequestBody(prompts=[prompt(f"{hooks.url}/prompt/5000-hangup.wav")], client_context="interrupted")
    )
    await beta.communications.calls.by_call_id(call.id).delete()
    notes = await w.until_state("terminated")
    ops = [n for n in notes if n.is_operation]
    assert len(ops) == 1 and op.id in ops[0].resource
    assert ops[0].data["status"] == "failed"
    assert ops[0].data["clientContext"] == "interrupted"
    assert notes.index(ops[0]) < len(notes) - 1, "the operation is failed before the call's final notification"


async def test_cancelling_a_recording_fails_it_with_an_empty_location(beta, hooks, callback):
    call, w = await call_user(beta, hooks, callback, ALICE)
    calls = beta.communications.calls.by_call_id(call.id)
    rec = await calls.record_response.post(RecordResponsePostRequestBody(max_record_duration_in_seconds=30, initial_silence_timeout_in_seconds=30, client_context="rec"))
    cancel = await calls.cancel_media_processing.post(CancelMediaProcessingPostRequestBody())
    assert cancel.status == OperationStatus.Completed
    done = await w.until_op(rec.id)
    d = done.data
    assert d["@odata.type"] == "#microsoft.graph.recordOperation"
    assert d["status"] == "failed"
    assert (d["resultInfo"]["code"], d["resultInfo"]["subcode"]) == (400, 8508)
    assert d["completionReason"] == "operationCanceled"
    assert d["recordingLocation"] == "" and d["recordingAccessToken"] == ""


async def test_recording_can_be_downloaded_after_the_call_ended(beta, hooks, callback):
    call, w = await call_user(beta, hooks, callback, ALICE, script={"dtmf": [{"atMs": 900, "digits": "#"}]})
    rec = await beta.communications.calls.by_call_id(call.id).record_response.post(RecordResponsePostRequestBody(stop_tones=["#"]))
    d = (await w.until_op(rec.id)).data
    await beta.communications.calls.by_call_id(call.id).delete()
    await w.until_state("terminated")
    async with httpx.AsyncClient() as h:
        r = await h.get(d["recordingLocation"], headers={"Authorization": f"Bearer {d['recordingAccessToken']}"})
    assert r.status_code == 200
    assert r.content[:4] == b"RIFF"


async def test_hanging_up_an_unanswered_incoming_call_declines_it(beta, ringside, hooks):
    call_id, leg_id = await ringside.place_call(GINA, APP)
    await hooks.incoming(call_id)
    await beta.communications.calls.by_call_id(call_id).delete()
    notes = await hooks.watch(call_id).until_state("terminated")
    assert notes[-1].change == "deleted"
    leg = await ringside.leg(leg_id)
    assert any(e["event"] == "rejected 603" for e in leg["events"]), leg


async def test_rejecting_as_forbidden_is_403_to_the_caller(beta, ringside, hooks):
    call_id, leg_id = await ringside.place_call(GINA, APP)
    await hooks.incoming(call_id)
    await beta.communications.calls.by_call_id(call_id).reject.post(RejectPostRequestBody(reason=RejectReason.Forbidden))
    await hooks.watch(call_id).until_state("terminated")
    leg = await ringside.leg(leg_id)
    assert any(e["event"] == "rejected 403" for e in leg["events"]), leg


async def test_masked_redirect_shows_the_bot_as_the_caller(beta, ringside, hooks, callback):
    call_id, _ = await ringside.place_call(GINA, APP)
    await hooks.incoming(call_id)
    await beta.communications.calls.by_call_id(call_id).redirect.post(
        RedirectPostRequestBody(targets=[user_target(HANK, "Hank")], mask_caller=True, callback_uri=callback)
    )
    await hooks.watch(call_id).until_state("terminated")
    hank = await ringside.latest_leg_of(HANK)
    assert hank["events"][0]["event"] == "ringing (from E2E bot)", hank


async def test_participants_cannot_be_removed_from_a_p2p_call_nor_the_bot_itself(beta, hooks, callback):
    call, w = await call_user(beta, hooks, callback, ALICE)
    parts = await beta.communications.calls.by_call_id(call.id).participants.get()
    other = next(p.id for p in parts.value if p.id != call.my_participant_id)
    with pytest.raises(ODataError) as e:
        await beta.communications.calls.by_call_id(call.id).participants.by_participant_id(other).delete()
    assert e.value.response_status_code == 400

    meeting_call, _, _ = await meeting_with_user(beta, hooks, callback + "-m", GINA)
    with pytest.raises(ODataError) as e:
        await beta.communications.calls.by_call_id(meeting_call.id).participants.by_participant_id(meeting_call.my_participant_id).delete()
    assert e.value.response_status_code == 400, "a bot leaves by deleting its call"


async def test_audio_routing_group_rules(beta, hooks, callback):
    call, w, alice = await meeting_with_user(beta, hooks, callback, ALICE)
    groups = beta.communications.calls.by_call_id(call.id).audio_routing_groups
    me = call.my_participant_id
    with pytest.raises(ODataError) as e:
        await groups.post(AudioRoutingGroup(routing_mode=RoutingMode.OneToOne, sources=[me], receivers=[alice, me]))
    assert e.value.response_status_code == 400
    with pytest.raises(ODataError) as e:
        await groups.post(AudioRoutingGroup(routing_mode=RoutingMode.Multicast, sources=[me], receivers=[]))
    assert e.value.response_status_code == 400

    named = await groups.post(AudioRoutingGroup(id="oneToOne", routing_mode=RoutingMode.OneToOne, sources=[me], receivers=[alice]))
    assert named.id == "oneToOne"
    with pytest.raises(ODataError) as e:
        await groups.post(AudioRoutingGroup(id="oneToOne", routing_mode=RoutingMode.OneToOne, sources=[me], receivers=[alice]))
    assert e.value.response_status_code == 409
    assert await groups.count.get() == 1


async def test_mute_all_with_a_participant_list_mutes_only_them(beta, hooks, callback):
    call, w, alice = await meeting_with_user(beta, hooks, callback, ALICE)
    await beta.communications.calls.by_call_id(call.id).participants.invite.post(InvitePostRequestBody(participants=[user_target(GINA, "Gina")]))
    gina = (await w.seen(lambda n: n.is_roster and user_in(n.data, GINA) is not None, "Gina joined")).data
    gina_pid = user_in(gina, GINA)["id"]

    res = await beta.communications.calls.by_call_id(call.id).participants.mute_all.post(MuteAllPostRequestBody(participants=[gina_pid], client_context="just-gina"))
    assert res.participants == [gina_pid]
    roster = await w.until_roster(lambda r: (member(r, gina_pid) or {}).get("isMuted") is True, "Gina muted")
    assert member(roster, alice)["isMuted"] is False

    with pytest.raises(ODataError) as e:
        await beta.communications.calls.by_call_id(call.id).participants.mute_all.post(MuteAllPostRequestBody(participants=["not-here"]))
    assert e.value.response_status_code == 404


async def test_hidden_invitee_is_not_shown_in_the_roster(beta, ringside, hooks, callback):
    meeting = await create_meeting(beta, "Hidden")
    call, w = await join_meeting(beta, hooks, callback, meeting)
    target = user_target(ALICE, "Alice")
    target.hidden = True
    op = await beta.communications.calls.by_call_id(call.id).participants.invite.post(InvitePostRequestBody(participants=[target]))
    done = await w.until_op(op.id)
    assert done.data["status"] == "completed"
    leg = await ringside.latest_leg_of(ALICE)
    assert leg["state"] == "connected"
    assert all(user_in(n.data, ALICE) is None for n in w.all() if n.is_roster)
    listed = await beta.communications.calls.by_call_id(call.id).participants.get()
    assert [p.id for p in listed.value] == [call.my_participant_id]


async def test_hold_music_with_a_custom_prompt_and_only_one_on_hold(beta, ringside, hooks, callback):
    call, w, alice = await meeting_with_user(beta, hooks, callback, ALICE)
    await beta.communications.calls.by_call_id(call.id).participants.invite.post(InvitePostRequestBody(participants=[user_target(GINA, "Gina")]))
    gina = user_in((await w.seen(lambda n: n.is_roster and user_in(n.data, GINA) is not None, "Gina joined")).data, GINA)["id"]
    parts = beta.communications.calls.by_call_id(call.id).participants

    url = f"{hooks.url}/prompt/400-hold-{call.id[:8]}.wav"
    op = await parts.by_participant_id(alice).start_hold_music.post(StartHoldMusicPostRequestBody(custom_prompt=prompt(url), client_context="music"))
    assert op.status == OperationStatus.Running
    done = await w.until_op(op.id)
    assert done.data["status"] == "completed"
    assert url.removeprefix(hooks.url) in hooks.prompt_gets, "the custom prompt was fetched"

    with pytest.raises(ODataError) as e:
        await parts.by_participant_id(gina).start_hold_music.post(StartHoldMusicPostRequestBody())
    assert e.value.response_status_code == 400, "only one participant may be on hold"


async def test_joining_a_meeting_with_its_join_web_url_token(beta, hooks, callback):
    meeting = await create_meeting(beta, "Token join")
    body = Call(
        callback_uri=callback,
        requested_modalities=[Modality.Audio],
        media_config=service_media(),
        meeting_info=TokenMeetingInfo(token=meeting.join_web_url),
        tenant_id=TENANT,
    )
    call = await beta.communications.calls.post(body)
    assert call.chat_info.thread_id == meeting.chat_info.thread_id
    w = hooks.watch(call.id)
    notes = await w.until_state("established")
    assert states(notes) == ["establishing", "established"]

    body.meeting_info = TokenMeetingInfo(token="https://example.com/not-a-meeting")
    with pytest.raises(ODataError) as e:
        await beta.communications.calls.post(body)
    assert e.value.response_status_code == 404


async def test_transferring_an_answered_incoming_call(beta, ringside, hooks, callback):
    call_id, leg_id = await ringside.place_call(GINA, APP)
    w = await answer_incoming(beta, hooks, call_id, callback)
    await beta.communications.calls.by_call_id(call_id).transfer.post(TransferPostRequestBody(transfer_target=user_target(HANK, "Hank")))
    notes = await w.until_state("terminated")
    assert states(notes) == ["transferring", "transferAccepted", "terminated"]
    assert notes[-1].data["resultInfo"]["subcode"] == 7015
    caller = await ringside.leg(leg_id)
    hank = await ringside.latest_leg_of(HANK)
    assert (caller["state"], hank["state"]) == ("connected", "connected"), (caller, hank)


async def test_callback_uri_is_used_verbatim_with_its_query(beta, hooks, callback):
    cb = callback + "?tenant=contoso&bot=7"
    call, w = await call_user(beta, hooks, cb, ALICE)
    assert all(n.path == cb.removeprefix(hooks.url) for n in w.all())


async def test_media_queue_keeps_working_after_a_cancel_and_records_after_prompts(beta, hooks, callback):
    call, w = await call_user(beta, hooks, callback, ALICE, script={"dtmf": [{"atMs": 1300, "digits": "#"}]})
    calls = beta.communications.calls.by_call_id(call.id)
    first = await calls.play_prompt.post(PlayPromptPostRequestBody(prompts=[prompt(f"{hooks.url}/prompt/3000-cancel-me.wav")]))
    await calls.cancel_media_processing.post(CancelMediaProcessingPostRequestBody())
    assert (await w.until_op(first.id)).data["status"] == "failed"

    play = await calls.play_prompt.post(PlayPromptPostRequestBody(prompts=[prompt(f"{hooks.url}/prompt/300-after.wav")], client_context="after"))
    rec = await calls.record_response.post(RecordResponsePostRequestBody(stop_tones=["#"], max_record_duration_in_seconds=10, client_context="queued-rec"))
    played = await w.until_op(play.id)
    assert played.data["status"] == "completed"
    recorded = await w.until_op(rec.id)
    assert recorded.data["completionReason"] == "stopToneDetected"
    assert recorded.at > played.at, "the recording waited for the prompt"


async def test_meeting_calls_read_back_their_meeting_info(beta, beta2, hooks, callback):
    meeting = await create_meeting(beta, "Meeting info")
    a, _ = await join_meeting(beta, hooks, callback, meeting)
    b, _ = await join_meeting(beta2, hooks, callback + "-2", meeting, by_id=True)
    got_a = await beta.communications.calls.by_call_id(a.id).get()
    assert isinstance(got_a.meeting_info, OrganizerMeetingInfo)
    assert got_a.meeting_info.organizer.application.id == APP
    assert got_a.chat_info.thread_id == meeting.chat_info.thread_id
    got_b = await beta2.communications.calls.by_call_id(b.id).get()
    assert isinstance(got_b.meeting_info, JoinMeetingIdMeetingInfo)
    assert got_b.meeting_info.join_meeting_id == meeting.join_meeting_id_settings.join_meeting_id
    assert got_b.chat_info.thread_id == meeting.chat_info.thread_id


async def test_request_limits(beta, hooks, callback):
    many = Call(
        callback_uri=callback,
        targets=[user_target(u) for u in (ALICE, GINA, HANK, ERIN_DTMF, CAROL_NO_ANSWER, BOB_BUSY)],
        requested_modalities=[Modality.Audio],
        media_config=service_media(),
    )
    with pytest.raises(ODataError) as e:
        await beta.communications.calls.post(many)
    assert e.value.response_status_code == 400, "at most 5 targets"

    slow = p2p_call(callback, ALICE)
    slow.ringing_timeout_in_seconds = 116
    with pytest.raises(ODataError) as e:
        await beta.communications.calls.post(slow)
    assert e.value.response_status_code == 400, "ringingTimeoutInSeconds <= 115"

    meeting = await create_meeting(beta, "Limits")
    call, _ = await join_meeting(beta, hooks, callback, meeting)
    with pytest.raises(ODataError) as e:
        await beta.communications.calls.by_call_id(call.id).participants.invite.post(
            InvitePostRequestBody(participants=[user_target(u) for u in (ALICE, GINA, HANK, ERIN_DTMF, CAROL_NO_ANSWER, BOB_BUSY)])
        )
    assert e.value.response_status_code == 400, "at most 5 invitees per request"
