"""Online meetings and group-call actions with msgraph-beta-sdk: join, invite, roster,
participants, mute, hold music, routing groups, gallery view, screen sharing, recording,
transcription, content sharing."""
from __future__ import annotations

import asyncio

import pytest
from msgraph_beta.generated.communications.calls.item.add_large_gallery_view.add_large_gallery_view_post_request_body import (
    AddLargeGalleryViewPostRequestBody,
)
from msgraph_beta.generated.communications.calls.item.change_screen_sharing_role.change_screen_sharing_role_post_request_body import (
    ChangeScreenSharingRolePostRequestBody,
)
from msgraph_beta.generated.communications.calls.item.mute.mute_post_request_body import MutePostRequestBody
from msgraph_beta.generated.communications.calls.item.participants.invite.invite_post_request_body import InvitePostRequestBody
from msgraph_beta.generated.communications.calls.item.participants.item.mute.mute_post_request_body import (
    MutePostRequestBody as ParticipantMutePostRequestBody,
)
from msgraph_beta.generated.communications.calls.item.participants.item.start_hold_music.start_hold_music_post_request_body import (
    StartHoldMusicPostRequestBody,
)
from msgraph_beta.generated.communications.calls.item.participants.item.stop_hold_music.stop_hold_music_post_request_body import (
    StopHoldMusicPostRequestBody,
)
from msgraph_beta.generated.communications.calls.item.participants.mute_all.mute_all_post_request_body import MuteAllPostRequestBody
from msgraph_beta.generated.communications.calls.item.start_recording.start_recording_post_request_body import StartRecordingPostRequestBody
from msgraph_beta.generated.communications.calls.item.start_transcription.start_transcription_post_request_body import (
    StartTranscriptionPostRequestBody,
)
from msgraph_beta.generated.communications.calls.item.stop_recording.stop_recording_post_request_body import StopRecordingPostRequestBody
from msgraph_beta.generated.communications.calls.item.stop_transcription.stop_transcription_post_request_body import (
    StopTranscriptionPostRequestBody,
)
from msgraph_beta.generated.communications.calls.item.subscribe_to_tone.subscribe_to_tone_post_request_body import SubscribeToTonePostRequestBody
from msgraph_beta.generated.communications.calls.item.unmute.unmute_post_request_body import UnmutePostRequestBody
from msgraph_beta.generated.communications.calls.item.update_recording_status.update_recording_status_post_request_body import (
    UpdateRecordingStatusPostRequestBody,
)
from msgraph_beta.generated.models.add_large_gallery_view_operation import AddLargeGalleryViewOperation
from msgraph_beta.generated.models.audio_routing_group import AudioRoutingGroup
from msgraph_beta.generated.models.call_state import CallState
from msgraph_beta.generated.models.call_transcription_state import CallTranscriptionState
from msgraph_beta.generated.models.content_sharing_session import ContentSharingSession
from msgraph_beta.generated.models.outgoing_call_options import OutgoingCallOptions
from msgraph_beta.generated.models.invite_participants_operation import InviteParticipantsOperation
from msgraph_beta.generated.models.mute_participant_operation import MuteParticipantOperation
from msgraph_beta.generated.models.mute_participants_operation import MuteParticipantsOperation
from msgraph_beta.generated.models.o_data_errors.o_data_error import ODataError
from msgraph_beta.generated.models.online_meeting import OnlineMeeting
from msgraph_beta.generated.models.operation_status import OperationStatus
from msgraph_beta.generated.models.participant import Participant
from msgraph_beta.generated.models.recording_status import RecordingStatus
from msgraph_beta.generated.models.routing_mode import RoutingMode
from msgraph_beta.generated.models.screen_sharing_role import ScreenSharingRole
from msgraph_beta.generated.models.start_hold_music_operation import StartHoldMusicOperation
from msgraph_beta.generated.models.start_recording_operation import StartRecordingOperation
from msgraph_beta.generated.models.start_transcription_operation import StartTranscriptionOperation
from msgraph_beta.generated.models.stop_hold_music_operation import StopHoldMusicOperation
from msgraph_beta.generated.models.stop_recording_operation import StopRecordingOperation
from msgraph_beta.generated.models.stop_transcription_operation import StopTranscriptionOperation
from msgraph_beta.generated.models.unmute_participant_operation import UnmuteParticipantOperation
from msgraph_beta.generated.models.update_recording_status_operation import UpdateRecordingStatusOperation

import audio
from bot import app_media, create_meeting, join_body, join_meeting, meeting_with_user, user_target
from support import ALICE, APP, APP2, GINA, HANK, member, states, user_in


def bot_member(roster: list, call) -> dict:
    m = member(roster, call.my_participant_id)
    assert m is not None, f"the bot ({call.my_participant_id}) is not in {roster}"
    return m


async def test_online_meeting_is_created_and_read_back(beta, ringside):
    m = await beta.communications.online_meetings.post(OnlineMeeting(subject="Weekly sync"))
    assert isinstance(m, OnlineMeeting)
    assert m.subject == "Weekly sync"
    assert m.join_web_url.startswith(f"{ringside.base}/l/meetup-join/")
    assert m.chat_info.thread_id.startswith("19:meeting_") and m.chat_info.thread_id.endswith("@thread.v2")
    assert m.join_meeting_id_settings.join_meeting_id.isdigit()
    assert m.join_meeting_id_settings.passcode
    assert m.participants.organizer.identity.application.id == APP

    again = await beta.communications.online_meetings.by_online_meeting_id(m.id).get()
    assert again.id == m.id
    assert again.chat_info.thread_id == m.chat_info.thread_id
    assert again.join_meeting_id_settings.join_meeting_id == m.join_meeting_id_settings.join_meeting_id

    with pytest.raises(ODataError) as e:
        await beta.communications.online_meetings.by_online_meeting_id("no-such-meeting").get()
    assert e.value.response_status_code == 404


async def test_bot_joins_a_meeting_and_invites_a_user(beta, ringside, hooks, callback):
    meeting = await create_meeting(beta, "Invite test")
    call = await beta.communications.calls.post(join_body(callback, meeting))
    assert call.state == CallState.Establishing
    assert call.chat_info.thread_id == meeting.chat_info.thread_id
    w = hooks.watch(call.id)
    notes = await w.until_state("established")
    assert states(notes) == ["establishing", "established"]
    roster = await w.until_roster(lambda r: member(r, call.my_participant_id) is not None, "the bot in the roster")
    assert len(roster) == 1

    op = await beta.communications.calls.by_call_id(call.id).participants.invite.post(
        InvitePostRequestBody(participants=[user_target(ALICE, "Alice")], client_context="invite-alice")
    )
    assert isinstance(op, InviteParticipantsOperation)
    assert op.status == OperationStatus.Running
    assert op.client_context == "invite-alice"
    assert op.participants[0].identity.user.id == ALICE
    invited_pid = op.participants[0].participant_id
    assert invited_pid

    done = await w.seen(lambda n: n.is_operation and op.id in n.resource, "invite completed")
    assert done.change == "deleted"
    assert done.data["@odata.type"] == "#microsoft.graph.inviteParticipantsOperation"
    assert done.data["status"] == "completed"
    assert done.data["clientContext"] == "invite-alice"
    roster_note = await w.seen(lambda n: n.is_roster and user_in(n.data, ALICE) is not None, "Alice in the roster")
    roster = roster_note.data
    assert roster_note.change == "updated"
    assert user_in(roster, ALICE)["id"] == invited_pid
    assert {p["id"] for p in roster} == {call.my_participant_id, invited_pid}
    assert all(p["@odata.type"] == "#microsoft.graph.participant" for p in roster)

    with pytest.raises(ODataError) as e:
        await beta.communications.calls.by_call_id(call.id).participants.invite.post(InvitePostRequestBody(participants=[user_target(ALICE)]))
    assert e.value.response_status_code == 409, "the same user cannot be invited twice"


async def test_two_bots_joining_one_meeting_share_its_roster(beta, beta2, hooks, callback):
    meeting = await create_meeting(beta, "Two bots")
    a, wa = await join_meeting(beta, hooks, callback, meeting)
    b, wb = await join_meeting(beta2, hooks, callback + "-bot2", meeting, by_id=True)
    assert b.chat_info is not None and b.chat_info.thread_id == meeting.chat_info.thread_id

    both = {a.my_participant_id, b.my_participant_id}
    for w in (wa, wb):
        roster = await w.until_roster(lambda r: {p["id"] for p in r} >= both, "both bots")
        apps = sorted(p["info"]["identity"]["application"]["id"] for p in roster)
        assert apps == sorted([APP, APP2])

    op = await beta.communications.calls.by_call_id(a.id).participants.invite.post(InvitePostRequestBody(participants=[user_target(ALICE, "Alice")]))
    roster_b = await wb.until_roster(lambda r: user_in(r, ALICE) is not None, "bot 2 sees the user bot 1 invited")
    alice = user_in(roster_b, ALICE)["id"]
    assert alice == op.participants[0].participant_id, "one participant id across the meeting"

    wrong = join_body(callback, meeting, by_id=True)
    wrong.meeting_info.passcode = "000000x"
    with pytest.raises(ODataError) as e:
        await beta2.communications.calls.post(wrong)
    assert e.value.response_status_code == 403

    await beta2.communications.calls.by_call_id(b.id).delete()
    await wb.until_state("terminated")
    roster = await wa.until_roster(lambda r: member(r, b.my_participant_id) is None, "bot 2 left")
    assert {p["id"] for p in roster} == {a.my_participant_id, alice}, "the meeting goes on without bot 2"


async def test_participants_are_listed_read_and_removed(beta, ringside, hooks, callback):
    call, w, alice = await meeting_with_user(beta, hooks, callback, ALICE)
    parts = beta.communications.calls.by_call_id(call.id).participants

    listed = await parts.get()
    assert all(isinstance(p, Participant) for p in listed.value)
    assert {p.id for p in listed.value} == {call.my_participant_id, alice}
    assert await parts.count.get() == 2

    p = await parts.by_participant_id(alice).get()
    assert isinstance(p, Participant)
    assert p.info.identity.user.id == ALICE
    assert p.is_muted is False
    assert p.media_streams[0].media_type.value == "audio"

    leg = await ringside.latest_leg_of(ALICE)
    assert leg["state"] == "connected"
    assert await parts.by_participant_id(alice).delete() is None
    roster = await w.until_roster(lambda r: member(r, alice) is None, "Alice removed")
    assert [m["id"] for m in roster] == [call.my_participant_id]
    leg = await ringside.leg(leg["legId"])
    assert leg["state"] == "ended", leg

    with pytest.raises(ODataError) as e:
        await parts.by_participant_id(alice).get()
    assert e.value.response_status_code == 404
    got = await beta.communications.calls.by_call_id(call.id).get()
    assert got.state == CallState.Established, "a meeting goes on when the user leaves"


async def test_bot_server_mutes_a_participant(beta, hooks, callback):
    call, w, alice = await meeting_with_user(beta, hooks, callback, ALICE)
    op = await beta.communications.calls.by_call_id(call.id).participants.by_participant_id(alice).mute.post(
        ParticipantMutePostRequestBody(client_context="mute-alice")
    )
    assert isinstance(op, MuteParticipantOperation)
    assert op.status == OperationStatus.Completed
    assert op.client_context == "mute-alice"
    roster = await w.until_roster(lambda r: (member(r, alice) or {}).get("isMuted") is True, "Alice muted")
    assert member(roster, alice)["mediaStreams"][0]["serverMuted"] is True
    assert bot_member(roster, call)["isMuted"] is False


async def test_bot_mutes_and_unmutes_itself_in_a_group_call(beta, hooks, callback):
    call, w, _ = await meeting_with_user(beta, hooks, callback, ALICE)
    calls = beta.communications.calls.by_call_id(call.id)

    op = await calls.mute.post(MutePostRequestBody(client_context="self-mute"))
    assert isinstance(op, MuteParticipantOperation)
    assert op.status == OperationStatus.Completed
    await w.until_roster(lambda r: bot_member(r, call)["isMuted"] is True, "bot muted")

    op = await calls.unmute.post(UnmutePostRequestBody(client_context="self-unmute"))
    assert isinstance(op, UnmuteParticipantOperation)
    assert op.status == OperationStatus.Completed
    assert op.client_context == "self-unmute"
    await w.until_roster(lambda r: bot_member(r, call)["isMuted"] is False, "bot unmuted")


async def test_mute_all_mutes_everyone_but_the_bot(beta, hooks, callback):
    call, w, alice = await meeting_with_user(beta, hooks, callback, ALICE)
    op = await beta.communications.calls.by_call_id(call.id).participants.mute_all.post(MuteAllPostRequestBody(client_context="quiet"))
    assert isinstance(op, MuteParticipantsOperation)
    assert op.status == OperationStatus.Completed
    assert op.participants == [alice]
    roster = await w.until_roster(lambda r: (member(r, alice) or {}).get("isMuted") is True, "Alice muted")
    assert bot_member(roster, call)["isMuted"] is False


async def test_hold_music_starts_and_stops_for_a_participant(beta, ringside, hooks, callback):
    call, w, alice = await meeting_with_user(beta, hooks, callback, ALICE)
    parts = beta.communications.calls.by_call_id(call.id).participants

    op = await parts.by_participant_id(alice).start_hold_music.post(
        StartHoldMusicPostRequestBody(custom_prompt=None, client_context="on-hold")
    )
    assert isinstance(op, StartHoldMusicOperation)
    assert op.status == OperationStatus.Running
    assert op.client_context == "on-hold"
    done = await w.until_op(op.id)
    assert done.data["@odata.type"] == "#microsoft.graph.startHoldMusicOperation"
    assert done.data["status"] == "completed"
    leg = await ringside.latest_leg_of(ALICE)
    await asyncio.sleep(0.5)
    assert audio.loud_ms((await ringside.heard(leg["legId"]))[-4000:]) > 0, "Alice hears the music"

    op = await parts.by_participant_id(alice).stop_hold_music.post(StopHoldMusicPostRequestBody(client_context="off-hold"))
    assert isinstance(op, StopHoldMusicOperation)
    assert op.status == OperationStatus.Completed
    await asyncio.sleep(0.5)
    assert audio.loud_ms((await ringside.heard(leg["legId"]))[-4000:]) == 0, "and then silence"

    with pytest.raises(ODataError) as e:
        await parts.by_participant_id(call.my_participant_id).start_hold_music.post(StartHoldMusicPostRequestBody())
    assert e.value.response_status_code == 400, "a bot cannot be put on hold music"


async def test_audio_routing_groups_crud(beta, hooks, callback):
    call, w, alice = await meeting_with_user(beta, hooks, callback, ALICE)
    groups = beta.communications.calls.by_call_id(call.id).audio_routing_groups

    created = await groups.post(AudioRoutingGroup(routing_mode=RoutingMode.OneToOne, sources=[call.my_participant_id], receivers=[alice]))
    assert isinstance(created, AudioRoutingGroup)
    assert created.id
    assert created.routing_mode == RoutingMode.OneToOne
    assert created.sources == [call.my_participant_id]
    assert created.receivers == [alice]

    listed = await groups.get()
    assert [g.id for g in listed.value] == [created.id]
    got = await groups.by_audio_routing_group_id(created.id).get()
    assert got.receivers == [alice]

    patched = await groups.by_audio_routing_group_id(created.id).patch(AudioRoutingGroup(routing_mode=RoutingMode.Multicast))
    assert patched.routing_mode == RoutingMode.Multicast
    assert patched.sources == [call.my_participant_id] and patched.receivers == [alice]

    with pytest.raises(ODataError) as e:
        await groups.post(AudioRoutingGroup(routing_mode=RoutingMode.OneToOne, sources=[call.my_participant_id], receivers=["not-in-the-call"]))
    assert e.value.response_status_code == 400

    assert await groups.by_audio_routing_group_id(created.id).delete() is None
    with pytest.raises(ODataError) as e:
        await groups.by_audio_routing_group_id(created.id).get()
    assert e.value.response_status_code == 404
    assert (await groups.get()).value == []


async def test_large_gallery_view_operation_completes_and_can_be_read(beta, hooks, callback):
    call, w, _ = await meeting_with_user(beta, hooks, callback, ALICE)
    calls = beta.communications.calls.by_call_id(call.id)
    op = await calls.add_large_gallery_view.post(AddLargeGalleryViewPostRequestBody(client_context="gallery"))
    assert isinstance(op, AddLargeGalleryViewOperation)
    assert op.status == OperationStatus.Running
    assert op.client_context == "gallery"

    done = await w.until_op(op.id)
    assert done.change == "deleted"
    assert done.data["status"] == "completed"
    assert done.data["clientContext"] == "gallery"

    got = await calls.operations.by_comms_operation_id(op.id).get()
    assert isinstance(got, AddLargeGalleryViewOperation)
    assert got.status == OperationStatus.Completed
    assert got.client_context == "gallery"

    roster = await w.seen(lambda n: n.is_roster and any(s.get("label") == "largeGalleryView" for s in bot_member(n.data, call)["mediaStreams"]), "gallery stream")
    assert roster is not None

    ops = await calls.operations.get()
    assert op.id in [o.id for o in ops.value]


async def test_screen_sharing_role_changes_for_an_app_hosted_bot(beta, hooks, callback):
    meeting = await create_meeting(beta, "Screen sharing")
    call, w = await join_meeting(beta, hooks, callback, meeting, media=app_media())
    res = await beta.communications.calls.by_call_id(call.id).change_screen_sharing_role.post(
        ChangeScreenSharingRolePostRequestBody(role=ScreenSharingRole.Sharer)
    )
    assert res is None
    roster = await w.until_roster(
        lambda r: any(s.get("mediaType") == "videoBasedScreenSharing" for s in bot_member(r, call)["mediaStreams"]), "bot sharing"
    )
    share = next(s for s in bot_member(roster, call)["mediaStreams"] if s["mediaType"] == "videoBasedScreenSharing")
    assert share["direction"] == "sendOnly"

    await beta.communications.calls.by_call_id(call.id).change_screen_sharing_role.post(ChangeScreenSharingRolePostRequestBody(role=ScreenSharingRole.Viewer))
    await w.until_roster(lambda r: all(s.get("mediaType") != "videoBasedScreenSharing" for s in bot_member(r, call)["mediaStreams"]), "bot viewing")


async def test_screen_sharing_role_is_refused_with_service_hosted_media(beta, hooks, callback):
    meeting = await create_meeting(beta, "Screen sharing refused")
    call, w = await join_meeting(beta, hooks, callback, meeting)
    with pytest.raises(ODataError) as e:
        await beta.communications.calls.by_call_id(call.id).change_screen_sharing_role.post(
            ChangeScreenSharingRolePostRequestBody(role=ScreenSharingRole.Sharer)
        )
    assert e.value.response_status_code == 400


async def test_update_recording_status_shows_in_the_roster(beta, hooks, callback):
    call, w, _ = await meeting_with_user(beta, hooks, callback, ALICE)
    op = await beta.communications.calls.by_call_id(call.id).update_recording_status.post(
        UpdateRecordingStatusPostRequestBody(status=RecordingStatus.Recording, client_context="rec-on")
    )
    assert isinstance(op, UpdateRecordingStatusOperation)
    assert op.status == OperationStatus.Completed
    assert op.client_context == "rec-on"
    roster = await w.until_roster(lambda r: (bot_member(r, call).get("recordingInfo") or {}).get("recordingStatus") == "recording", "recording")
    assert bot_member(roster, call)["recordingInfo"]["initiator"]["application"]["id"] == APP


async def test_start_and_stop_recording(beta, hooks, callback):
    call, w, _ = await meeting_with_user(beta, hooks, callback, ALICE)
    calls = beta.communications.calls.by_call_id(call.id)

    op = await calls.start_recording.post(StartRecordingPostRequestBody(client_context="rec"))
    assert isinstance(op, StartRecordingOperation)
    assert op.status == OperationStatus.Running
    done = await w.seen(lambda n: n.is_operation and op.id in n.resource, "recording started")
    assert done.data["status"] == "completed"
    await w.seen(lambda n: n.is_roster and (bot_member(n.data, call).get("recordingInfo") or {}).get("recordingStatus") == "recording", "recording")

    stop = await calls.stop_recording.post(StopRecordingPostRequestBody(client_context="rec-stop"))
    assert isinstance(stop, StopRecordingOperation)
    assert stop.status == OperationStatus.Completed
    assert stop.client_context == "rec-stop"
    await w.seen(lambda n: n.is_roster and (bot_member(n.data, call).get("recordingInfo") or {}).get("recordingStatus") == "notRecording", "not recording")

    with pytest.raises(ODataError) as e:
        await calls.stop_recording.post(StopRecordingPostRequestBody())
    assert e.value.response_status_code == 400


async def test_start_and_stop_transcription(beta, hooks, callback):
    call, w, _ = await meeting_with_user(beta, hooks, callback, ALICE)
    calls = beta.communications.calls.by_call_id(call.id)

    op = await calls.start_transcription.post(StartTranscriptionPostRequestBody(language="en-us", client_context="tx"))
    assert isinstance(op, StartTranscriptionOperation)
    assert op.status == OperationStatus.Running
    await w.seen(lambda n: n.is_call and (n.data.get("transcription") or {}).get("state") == "active", "transcription active")
    done = await w.seen(lambda n: n.is_operation and op.id in n.resource, "transcription started")
    assert done.data["status"] == "completed"
    got = await calls.get()
    assert got.transcription.state == CallTranscriptionState.Active

    with pytest.raises(ODataError) as e:
        await calls.start_transcription.post(StartTranscriptionPostRequestBody(language="fr-fr"))
    assert e.value.response_status_code == 400

    stop = await calls.stop_transcription.post(StopTranscriptionPostRequestBody(language="en-us", client_context="tx-stop"))
    assert isinstance(stop, StopTranscriptionOperation)
    assert stop.status == OperationStatus.Completed
    await w.seen(lambda n: n.is_call and (n.data.get("transcription") or {}).get("state") == "inactive", "transcription inactive")
    got = await calls.get()
    assert got.transcription.state == CallTranscriptionState.Inactive


async def test_content_sharing_sessions_are_empty_without_a_presenter(beta, hooks, callback):
    meeting = await create_meeting(beta, "Content sharing")
    call, w = await join_meeting(beta, hooks, callback, meeting)
    sessions = beta.communications.calls.by_call_id(call.id).content_sharing_sessions
    listed = await sessions.get()
    assert listed.value == []
    assert await sessions.count.get() == 0
    with pytest.raises(ODataError) as e:
        await sessions.by_content_sharing_session_id("nope").get()
    assert e.value.response_status_code == 404


async def test_user_joining_by_link_and_sharing_a_screen_is_seen_by_the_bot(beta, ringside, hooks, callback):
    meeting = await create_meeting(beta, "Screen share by a user")
    body = join_body(callback, meeting)
    body.call_options = OutgoingCallOptions(is_content_sharing_notification_enabled=True)
    call = await beta.communications.calls.post(body)
    w = hooks.watch(call.id)
    await w.until_state("established")

    s, v = await ringside.admin(
        "POST", f"/users/{GINA}/join", {"joinWebUrl": meeting.join_web_url, "script": {"shareScreenAtMs": 300, "stopSharingAtMs": 900}}
    )
    assert s == 201, v
    gina = (await w.seen(lambda n: n.is_roster and user_in(n.data, GINA) is not None, "Gina joined")).data
    gina_pid = user_in(gina, GINA)["id"]

    created = await w.seen(lambda n: n.is_sharing and n.change == "created", "sharing started")
    assert created.resource == f"/communications/calls/{call.id}/contentsharingsessions"
    assert isinstance(created.data, list) and len(created.data) == 1
    sid = created.data[0]["id"]
    assert created.data[0]["@odata.type"] == "#microsoft.graph.contentSharingSession"

    sessions = beta.communications.calls.by_call_id(call.id).content_sharing_sessions
    listed = await sessions.get()
    assert [x.id for x in listed.value] == [sid]
    one = await sessions.by_content_sharing_session_id(sid).get()
    assert isinstance(one, ContentSharingSession) and one.id == sid
    await w.seen(
        lambda n: n.is_roster and any(st.get("mediaType") == "videoBasedScreenSharing" for st in (member(n.data, gina_pid) or {}).get("mediaStreams", [])),
        "Gina's screen-sharing stream",
    )

    ended = await w.seen(lambda n: n.is_sharing and n.change == "deleted", "sharing stopped")
    assert ended.data[0]["id"] == sid
    assert (await sessions.get()).value == []


async def test_bot_without_content_sharing_notifications_gets_none(beta, ringside, hooks, callback):
    meeting = await create_meeting(beta, "No sharing notifications")
    call, w = await join_meeting(beta, hooks, callback, meeting)
    s, v = await ringside.admin("POST", f"/users/{GINA}/join", {"threadId": meeting.chat_info.thread_id, "script": {"shareScreenAtMs": 100}})
    assert s == 201, v
    await w.seen(lambda n: n.is_roster and user_in(n.data, GINA) is not None, "Gina joined")
    await w.quiet(0.5)
    assert not any(n.is_sharing for n in w.all())
    listed = await beta.communications.calls.by_call_id(call.id).content_sharing_sessions.get()
    assert len(listed.value) == 1, "the session is still listed"


async def test_user_who_joined_by_meeting_id_presses_keys_and_leaves(beta, ringside, hooks, callback):
    meeting = await create_meeting(beta, "Keys in a meeting")
    call, w = await join_meeting(beta, hooks, callback, meeting)
    await beta.communications.calls.by_call_id(call.id).subscribe_to_tone.post(SubscribeToTonePostRequestBody())
    s, v = await ringside.admin(
        "POST",
        f"/users/{HANK}/join",
        {
            "joinMeetingId": meeting.join_meeting_id_settings.join_meeting_id,
            "passcode": meeting.join_meeting_id_settings.passcode,
            "script": {"dtmf": [{"atMs": 300, "digits": "42", "gapMs": 100}], "hangupAfterMs": 900},
        },
    )
    assert s == 201, v
    hank = user_in((await w.seen(lambda n: n.is_roster and user_in(n.data, HANK) is not None, "Hank joined")).data, HANK)["id"]
    await w.seen(lambda n: n.is_call and (n.data.get("toneInfo") or {}).get("sequenceId") == 2, "Hank's second key")
    tones = [n.data["toneInfo"]["tone"] for n in w.all() if n.is_call and n.data.get("toneInfo")]
    assert tones == ["tone4", "tone2"]
    await w.seen(lambda n: n.is_roster and member(n.data, hank) is None and any(n2.is_roster and member(n2.data, hank) for n2 in w.all()), "Hank left")
    got = await beta.communications.calls.by_call_id(call.id).get()
    assert got.state == CallState.Established

    s, v = await ringside.admin("POST", f"/users/{HANK}/join", {"joinMeetingId": meeting.join_meeting_id_settings.join_meeting_id, "passcode": "wrong"})
    assert s == 403, v


async def test_a_bot_can_remove_another_bot_from_the_meeting(beta, beta2, hooks, callback):
    meeting = await create_meeting(beta, "Kick a bot")
    a, wa = await join_meeting(beta, hooks, callback, meeting)
    b, wb = await join_meeting(beta2, hooks, callback + "-2", meeting, by_id=True)
    await wa.until_roster(lambda r: member(r, b.my_participant_id) is not None, "bot 2 joined")
    assert await beta.communications.calls.by_call_id(a.id).participants.by_participant_id(b.my_participant_id).delete() is None
    notes = await wb.until_state("terminated")
    assert notes[-1].change == "deleted"
    assert (notes[-1].data["resultInfo"]["code"], notes[-1].data["resultInfo"]["subcode"]) == (200, 5000)
    await wa.until_roster(lambda r: member(r, b.my_participant_id) is None, "bot 2 removed")
