"""A bot built on the SDK parses notification resourceData with the SDK's own models (kiota's
JSON parse nodes). Every kind of notification ringside sends must parse into the right type."""
from __future__ import annotations

import json

from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory
from msgraph_beta.generated.communications.calls.item.play_prompt.play_prompt_post_request_body import PlayPromptPostRequestBody
from msgraph_beta.generated.communications.calls.item.subscribe_to_tone.subscribe_to_tone_post_request_body import SubscribeToTonePostRequestBody
from msgraph_beta.generated.models.call import Call
from msgraph_beta.generated.models.call_direction import CallDirection
from msgraph_beta.generated.models.call_state import CallState
from msgraph_beta.generated.models.comms_operation import CommsOperation
from msgraph_beta.generated.models.media_direction import MediaDirection
from msgraph_beta.generated.models.media_state import MediaState
from msgraph_beta.generated.models.modality import Modality
from msgraph_beta.generated.models.operation_status import OperationStatus
from msgraph_beta.generated.models.participant import Participant
from msgraph_beta.generated.models.play_prompt_operation import PlayPromptOperation
from msgraph_beta.generated.models.tone import Tone

from bot import answer_incoming, meeting_with_user, prompt
from support import ALICE, APP, ERIN_DTMF


def parse_object(model, data):
    node = JsonParseNodeFactory().get_root_parse_node("application/json", json.dumps(data).encode())
    return node.get_object_value(model)


def parse_list(model, data):
    node = JsonParseNodeFactory().get_root_parse_node("application/json", json.dumps(data).encode())
    return node.get_collection_of_object_values(model)


async def test_call_notifications_parse_as_sdk_calls(beta, ringside, hooks, callback):
    call_id, _ = await ringside.place_call(ERIN_DTMF, APP)  # Erin presses 4, 5, 6 after answer
    created = await hooks.incoming(call_id)
    incoming = parse_object(Call, created.data)
    assert isinstance(incoming, Call)
    assert incoming.state == CallState.Incoming
    assert incoming.direction == CallDirection.Incoming
    assert incoming.source.identity.user.id == ERIN_DTMF
    assert incoming.targets[0].identity.application.id == APP
    assert incoming.requested_modalities == [Modality.Audio]

    w = await answer_incoming(beta, hooks, call_id, callback)
    established = parse_object(Call, [n for n in w.all() if n.state == "established"][0].data)
    assert established.state == CallState.Established
    assert established.media_state.audio == MediaState.Active

    await beta.communications.calls.by_call_id(call_id).subscribe_to_tone.post(SubscribeToTonePostRequestBody())
    op = await beta.communications.calls.by_call_id(call_id).play_prompt.post(
        PlayPromptPostRequestBody(prompts=[prompt(f"{hooks.url}/prompt/200.wav")], client_context="parse")
    )
    done = await w.until_op(op.id)
    parsed_op = parse_object(CommsOperation, done.data)
    assert isinstance(parsed_op, PlayPromptOperation), "the @odata.type picks the operation subtype"
    assert parsed_op.status == OperationStatus.Completed
    assert parsed_op.client_context == "parse"

    tone_note = await w.seen(lambda n: n.is_call and (n.data.get("toneInfo") or {}).get("sequenceId") == 1, "first tone")
    toned = parse_object(Call, tone_note.data)
    assert toned.tone_info.sequence_id == 1
    assert toned.tone_info.tone == Tone.Tone4

    await beta.communications.calls.by_call_id(call_id).delete()
    final = (await w.until_state("terminated"))[-1]
    ended = parse_object(Call, final.data)
    assert ended.state == CallState.Terminated
    assert (ended.result_info.code, ended.result_info.subcode) == (200, 5001)


async def test_roster_notifications_parse_as_sdk_participants(beta, hooks, callback):
    call, w, alice = await meeting_with_user(beta, hooks, callback, ALICE)
    roster_note = [n for n in w.all() if n.is_roster][-1]
    roster = parse_list(Participant, roster_note.data)
    assert all(isinstance(p, Participant) for p in roster)
    by_id = {p.id: p for p in roster}
    assert set(by_id) == {call.my_participant_id, alice}
    me, her = by_id[call.my_participant_id], by_id[alice]
    assert me.info.identity.application.id == APP
    assert her.info.identity.user.id == ALICE
    assert her.is_muted is False and her.is_in_lobby is False
    stream = her.media_streams[0]
    assert stream.media_type == Modality.Audio
    assert stream.direction == MediaDirection.SendReceive
    assert stream.server_muted is False
    assert stream.source_id
