"""The v1.0 surface through msgraph-sdk (not beta): the same bot flows a v1.0 bot uses."""
from __future__ import annotations

import time
import uuid

import httpx
import pytest
from kiota_abstractions.authentication import BaseBearerTokenAuthenticationProvider
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.communications.calls.item.answer.answer_post_request_body import AnswerPostRequestBody
from msgraph.generated.communications.calls.item.play_prompt.play_prompt_post_request_body import PlayPromptPostRequestBody
from msgraph.generated.communications.calls.item.record_response.record_response_post_request_body import RecordResponsePostRequestBody
from msgraph.generated.communications.calls.item.subscribe_to_tone.subscribe_to_tone_post_request_body import SubscribeToTonePostRequestBody
from msgraph.generated.communications.calls.item.participants.invite.invite_post_request_body import InvitePostRequestBody
from msgraph.generated.models.call import Call
from msgraph.generated.models.call_direction import CallDirection
from msgraph.generated.models.call_state import CallState
from msgraph.generated.models.chat_info import ChatInfo
from msgraph.generated.models.identity import Identity
from msgraph.generated.models.identity_set import IdentitySet
from msgraph.generated.models.invitation_participant_info import InvitationParticipantInfo
from msgraph.generated.models.invite_participants_operation import InviteParticipantsOperation
from msgraph.generated.models.media_info import MediaInfo
from msgraph.generated.models.media_prompt import MediaPrompt
from msgraph.generated.models.media_state import MediaState
from msgraph.generated.models.modality import Modality
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.online_meeting import OnlineMeeting
from msgraph.generated.models.operation_status import OperationStatus
from msgraph.generated.models.organizer_meeting_info import OrganizerMeetingInfo
from msgraph.generated.models.play_prompt_operation import PlayPromptOperation
from msgraph.generated.models.record_operation import RecordOperation
from msgraph.generated.models.service_hosted_media_config import ServiceHostedMediaConfig
from msgraph.generated.models.subscribe_to_tone_operation import SubscribeToToneOperation
from msgraph.generated.models.tone import Tone
from msgraph_core import APIVersion, GraphClientFactory

from support import ALICE, APP, ERIN_DTMF, TENANT, StaticTokenProvider, close_client, states


def v1_call(callback: str, user: str, script: dict | None = None) -> Call:
    return Call(
        callback_uri=callback,
        targets=[
            InvitationParticipantInfo(
                identity=IdentitySet(user=Identity(id=user, display_name="Target")),
                additional_data={"ringside": script} if script else {},
            )
        ],
        requested_modalities=[Modality.Audio],
        media_config=ServiceHostedMediaConfig(),
    )


async def test_v1_bot_calls_plays_a_prompt_listens_for_tones_and_hangs_up(v1, hooks, callback):
    call = await v1.communications.calls.post(v1_call(callback, ALICE, {"dtmf": [{"atMs": 1200, "digits": "7*", "gapMs": 100}]}))
    assert isinstance(call, Call)
    assert call.state == CallState.Establishing
    assert call.direction == CallDirection.Outgoing
    assert call.source.identity.application.id == APP
    assert isinstance(call.media_config, ServiceHostedMediaConfig)
    assert "ringingTimeoutInSeconds" not in call.additional_data, "beta-only properties stay out of v1.0"

    w = hooks.watch(call.id)
    notes = await w.until_state("established")
    assert states(notes) == ["establishing", "ringing", "established"]

    got = await v1.communications.calls.by_call_id(call.id).get()
    assert got.state == CallState.Established
    assert got.media_state.audio == MediaState.Active

    calls = v1.communications.calls.by_call_id(call.id)
    sub = await calls.subscribe_to_tone.post(SubscribeToTonePostRequestBody(client_context="v1-tones"))
    assert isinstance(sub, SubscribeToToneOperation)
    assert sub.status == OperationStatus.Completed

    started = time.monotonic()
    op = await calls.play_prompt.post(
        PlayPromptPostRequestBody(prompts=[MediaPrompt(media_info=MediaInfo(uri=f"{hooks.url}/prompt/300-v1.wav", resource_id="v1"))], client_context="v1-play")
    )
    assert isinstance(op, PlayPromptOperation)
    assert op.status == OperationStatus.Running
    assert op.client_context == "v1-play"
    done = await w.seen(lambda n: n.is_operation and op.id in n.resource, "prompt completed")
    assert done.data["status"] == "completed"
    assert done.data["clientContext"] == "v1-play"
    assert done.at - started >= 0.25

    await w.seen(lambda n: n.is_call and (n.data.get("toneInfo") or {}).get("sequenceId") == 2, "second tone")
    tones = [n.data["toneInfo"] for n in w.all() if n.is_call and n.data.get("toneInfo")]
    assert [(t["sequenceId"], t["tone"]) for t in tones] == [(1, "tone7"), (2, "star")]
    got = await calls.get()
    assert got.tone_info.tone == Tone.Star

    assert await calls.delete() is None
    notes = await w.until_state("terminated")
    assert states(notes)[-2:] == ["terminating", "terminated"]

    with pytest.raises(ODataError) as e:
        await calls.get()
    assert e.value.response_status_code == 404
    assert e.value.error.code == "8522"


async def test_v1_bot_answers_an_incoming_call_and_hears_the_callers_digits(v1, ringside, hooks, callback):
    call_id, leg_id = await ringside.place_call(ERIN_DTMF, APP)  # Erin presses 4, 5, 6 from 1000 ms after answer
    w = hooks.watch(call_id)
    created = (await w.until(lambda n: n.change == "created", "incoming call"))[-1]
    assert created.data["state"] == "incoming"

    answer = AnswerPostRequestBody(callback_uri=callback, accepted_modalities=[Modality.Audio], media_config=ServiceHostedMediaConfig())
    assert await v1.communications.calls.by_call_id(call_id).answer.post(answer) is None
    notes = await w.until_state("established")
    assert states(notes) == ["establishing", "established"]

    op = await v1.communications.calls.by_call_id(call_id).subscribe_to_tone.post(SubscribeToTonePostRequestBody())
    assert op.status == OperationStatus.Completed
    await w.until(lambda n: n.is_call and (n.data.get("toneInfo") or {}).get("sequenceId") == 3, "third tone")
    tones = [n.data["toneInfo"]["tone"] for n in w.all() if n.is_call and n.data.get("toneInfo")]
    assert tones == ["tone4", "tone5", "tone6"]


async def test_v1_record_response_stops_on_the_callers_pound_key(v1, ringside, hooks, callback):
    call_id, _ = await ringside.place_call(ALICE, APP, script={"dtmf": [{"atMs": 900, "digits": "#"}]})
    w = hooks.watch(call_id)
    await w.until(lambda n: n.change == "created", "incoming call")
    await v1.communications.calls.by_call_id(call_id).answer.post(
        AnswerPostRequestBody(callback_uri=callback, accepted_modalities=[Modality.Audio], media_config=ServiceHostedMediaConfig())
    )
    await w.until_state("established")
    op = await v1.communications.calls.by_call_id(call_id).record_response.post(
        RecordResponsePostRequestBody(stop_tones=["#"], max_record_duration_in_seconds=10, client_context="v1-rec")
    )
    assert isinstance(op, RecordOperation)
    assert op.status == OperationStatus.Running
    done = await w.until_op(op.id)
    assert done.data["completionReason"] == "stopToneDetected"
    got = await v1.communications.calls.by_call_id(call_id).operations.by_comms_operation_id(op.id).get()
    assert isinstance(got, RecordOperation)
    assert got.status == OperationStatus.Completed
    assert got.recording_location and got.recording_access_token


async def test_v1_errors_are_odata_errors(v1, callback):
    with pytest.raises(ODataError) as e:
        await v1.communications.calls.by_call_id(str(uuid.uuid4())).get()
    assert e.value.response_status_code == 404
    assert e.value.error.code == "8522"

    bad = v1_call("not a callback", ALICE)
    with pytest.raises(ODataError) as e:
        await v1.communications.calls.post(bad)
    assert e.value.response_status_code == 400
    assert e.value.error.code == "BadRequest"


async def test_v1_sdk_with_a_custom_httpx_base_url_sends_a_double_slash_that_works(ringside, hooks, callback):
    """PEERS.md §1.1 (B): httpx appends '/', so the SDK sends POST /v1.0//communications/calls."""
    seen: list[str] = []

    async def record(request: httpx.Request) -> None:
        seen.append(f"{request.method} {request.url.raw_path.decode()}")

    http = GraphClientFactory.create_with_default_middleware(
        api_version=APIVersion.v1, client=httpx.AsyncClient(base_url=f"{ringside.base}/v1.0", event_hooks={"request": [record]})
    )
    adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(StaticTokenProvider(ringside.token())), client=http)
    client = GraphServiceClient(request_adapter=adapter)
    try:
        call = await client.communications.calls.post(v1_call(callback, ALICE))
        assert call.state == CallState.Establishing
        assert seen[0] == "POST /v1.0//communications/calls", seen
        await hooks.watch(call.id).until_state("established")
        got = await client.communications.calls.by_call_id(call.id).get()
        assert got.state == CallState.Established
        assert seen[-1] == f"GET /v1.0//communications/calls/{call.id}", seen
        await client.communications.calls.by_call_id(call.id).delete()
    finally:
        await close_client(client)


async def test_v1_bot_creates_and_joins_a_meeting_then_invites(v1, hooks, callback):
    meeting = await v1.communications.online_meetings.post(OnlineMeeting(subject="v1 meeting"))
    assert isinstance(meeting, OnlineMeeting)
    assert meeting.chat_info.thread_id.startswith("19:meeting_")

    call = await v1.communications.calls.post(
        Call(
            callback_uri=callback,
            requested_modalities=[Modality.Audio],
            media_config=ServiceHostedMediaConfig(),
            chat_info=ChatInfo(thread_id=meeting.chat_info.thread_id, message_id="0"),
            meeting_info=OrganizerMeetingInfo(organizer=meeting.participants.organizer.identity),
            tenant_id=TENANT,
        )
    )
    w = hooks.watch(call.id)
    await w.until_state("established")
    op = await v1.communications.calls.by_call_id(call.id).participants.invite.post(
        InvitePostRequestBody(participants=[InvitationParticipantInfo(identity=IdentitySet(user=Identity(id=ALICE)))], client_context="v1-invite")
    )
    assert isinstance(op, InviteParticipantsOperation)
    assert op.status == OperationStatus.Running
    done = await w.seen(lambda n: n.is_operation and op.id in n.resource, "invite completed")
    assert done.data["status"] == "completed"
    parts = await v1.communications.calls.by_call_id(call.id).participants.get()
    assert sorted(bool(p.info.identity.user) for p in parts.value) == [False, True]
    assert await v1.communications.calls.count.get() == 1
