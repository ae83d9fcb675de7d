"""Errors as the beta SDK raises them, device-quality logging, and notification dead letters."""
from __future__ import annotations

import datetime
import uuid

import httpx
import pytest
from msgraph_beta.generated.communications.calls.item.mute.mute_post_request_body import MutePostRequestBody
from msgraph_beta.generated.communications.calls.item.participants.mute_all.mute_all_post_request_body import MuteAllPostRequestBody
from msgraph_beta.generated.communications.calls.item.play_prompt.play_prompt_post_request_body import PlayPromptPostRequestBody
from msgraph_beta.generated.communications.calls.log_teleconference_device_quality.log_teleconference_device_quality_post_request_body import (
    LogTeleconferenceDeviceQualityPostRequestBody,
)
from msgraph_beta.generated.models.o_data_errors.o_data_error import ODataError
from msgraph_beta.generated.models.teleconference_device_audio_quality import TeleconferenceDeviceAudioQuality
from msgraph_beta.generated.models.teleconference_device_quality import TeleconferenceDeviceQuality

from msgraph_beta.generated.communications.calls.item.answer.answer_post_request_body import AnswerPostRequestBody

from bot import call_user, p2p_call, prompt, service_media
from support import ALICE, APP, CAROL_NO_ANSWER, TENANT, beta_client, close_client, states


async def test_unknown_call_id_is_404_with_code_8522(beta):
    calls = beta.communications.calls.by_call_id(str(uuid.uuid4()))
    for action in (
        calls.get,
        calls.delete,
        calls.keep_alive.post,
        lambda: calls.play_prompt.post(PlayPromptPostRequestBody(prompts=[prompt("http://127.0.0.1:1/x.wav")])),
    ):
        with pytest.raises(ODataError) as e:
            await action()
        assert e.value.response_status_code == 404
        assert e.value.error.code == "8522"
        assert e.value.error.message
        assert e.value.error.inner_error.request_id, "the Graph error envelope carries a request-id"


@pytest.mark.parametrize(
    "callback_uri",
    [None, "", "not a url", "ftp://bot.example.com/callback", "/callback"],
    ids=["missing", "empty", "not-a-url", "ftp", "relative"],
)
async def test_create_call_without_a_usable_callback_uri_is_400(beta, callback_uri):
    body = p2p_call("http://placeholder.invalid/cb", ALICE)
    body.callback_uri = callback_uri
    with pytest.raises(ODataError) as e:
        await beta.communications.calls.post(body)
    assert e.value.response_status_code == 400
    assert e.value.error.code == "BadRequest"
    assert "callbackUri" in e.value.error.message
    assert (await beta.communications.calls.get()).value == [], "no call was created"


async def test_create_call_without_media_config_or_targets_is_400(beta, callback):
    body = p2p_call(callback, ALICE)
    body.media_config = None
    with pytest.raises(ODataError) as e:
        await beta.communications.calls.post(body)
    assert e.value.response_status_code == 400
    assert "mediaConfig" in e.value.error.message

    body = p2p_call(callback, ALICE)
    body.targets = []
    with pytest.raises(ODataError) as e:
        await beta.communications.calls.post(body)
    assert e.value.response_status_code == 400


async def test_group_only_actions_are_refused_in_a_p2p_call(beta, hooks, callback):
    call, w = await call_user(beta, hooks, callback, ALICE)
    calls = beta.communications.calls.by_call_id(call.id)
    for action in (
        lambda: calls.mute.post(MutePostRequestBody(client_context="x")),
        lambda: calls.participants.mute_all.post(MuteAllPostRequestBody()),
    ):
        with pytest.raises(ODataError) as e:
            await action()
        assert e.value.response_status_code == 400
        assert e.value.error.code == "BadRequest"
        assert "peer-to-peer" in e.value.error.message


async def test_unknown_operation_is_404(beta, hooks, callback):
    call, _ = await call_user(beta, hooks, callback, ALICE)
    with pytest.raises(ODataError) as e:
        await beta.communications.calls.by_call_id(call.id).operations.by_comms_operation_id(str(uuid.uuid4())).get()
    assert e.value.response_status_code == 404
    assert e.value.error.code == "ItemNotFound"


async def test_device_quality_is_logged_and_visible_to_the_admin(beta, ringside):
    chain, pid, leg = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    quality = TeleconferenceDeviceQuality(
        call_chain_id=chain,
        participant_id=pid,
        media_leg_id=leg,
        device_name="E2E-VTC",
        device_description="pytest teleconference device",
        media_quality_list=[
            TeleconferenceDeviceAudioQuality(
                channel_index=1,
                media_duration=datetime.timedelta(minutes=20),
                network_link_speed_in_bytes=13000,
                local_i_p_address="127.0.0.1",
                local_port=6300,
                remote_i_p_address="127.0.0.2",
                remote_port=6301,
                inbound_packets=5500,
                outbound_packets=5400,
                average_inbound_packet_loss_rate_in_percentage=0.01,
                average_inbound_jitter=datetime.timedelta(milliseconds=10),
            )
        ],
    )
    res = await beta.communications.calls.log_teleconference_device_quality.post(LogTeleconferenceDeviceQualityPostRequestBody(quality=quality))
    assert res is None

    s, v = await ringside.admin("GET", f"/device-quality?tenant={TENANT}")
    assert s == 200
    mine = [q for q in v["value"] if q["quality"].get("callChainId") == str(chain)]
    assert len(mine) == 1, v
    q = mine[0]["quality"]
    assert q["deviceName"] == "E2E-VTC"
    assert q["participantId"] == str(pid)
    assert q["mediaQualityList"][0]["@odata.type"] == "#microsoft.graph.teleconferenceDeviceAudioQuality"
    assert q["mediaQualityList"][0]["localPort"] == 6300

    with pytest.raises(ODataError) as e:
        await beta.communications.calls.log_teleconference_device_quality.post(
            LogTeleconferenceDeviceQualityPostRequestBody(quality=TeleconferenceDeviceQuality(device_name="incomplete"))
        )
    assert e.value.response_status_code == 400


async def test_undeliverable_notifications_are_dead_lettered_and_redelivered(beta, ringside, hooks):
    failing = f"{hooks.url}/fail/{uuid.uuid4()}"
    call, = [await beta.communications.calls.post(p2p_call(failing, ALICE))]

    dead: list = []
    for _ in range(200):
        s, v = await ringside.admin("GET", "/dead-letters")
        dead = [d for d in v["value"] if d["callId"] == call.id]
        if len(dead) >= 3:
            break
        await __import__("asyncio").sleep(0.05)
    assert len(dead) >= 3, f"establishing, ringing and established should be dead-lettered: {dead}"
    assert all(d["url"] == failing and d["attempts"] == 4 for d in dead), dead
    assert [d["body"]["value"][0]["resourceData"]["state"] for d in dead[:3]] == ["establishing", "ringing", "established"]
    assert hooks.for_call(call.id) == []

    hooks.healed.add(failing.removeprefix(hooks.url))
    for d in sorted(dead, key=lambda d: d["seq"]):
        async with httpx.AsyncClient() as h:
            r = await h.post(f"{ringside.base}/admin/dead-letters/{d['seq']}/redeliver", headers={"Authorization": "Bearer admin-token-e2e"})
        assert r.status_code == 202
    notes = await hooks.watch(call.id).until_state("established")
    assert states(notes) == ["establishing", "ringing", "established"], "redelivered in their original order"

    s, v = await ringside.admin("POST", "/dead-letters/999999999/redeliver")
    assert s == 404


async def test_bad_token_is_401_and_other_apps_cannot_see_the_call(beta, beta2, ringside, hooks, callback):
    call, _ = await call_user(beta, hooks, callback, ALICE)

    stranger = beta_client(ringside.base, "not-a-token")
    try:
        with pytest.raises(ODataError) as e:
            await stranger.communications.calls.by_call_id(call.id).get()
        assert e.value.response_status_code == 401
        assert e.value.error.code == "InvalidAuthenticationToken"
    finally:
        await close_client(stranger)

    with pytest.raises(ODataError) as e:
        await beta2.communications.calls.by_call_id(call.id).get()
    assert e.value.response_status_code == 404, "another app's call is invisible"
    assert e.value.error.code == "8522"
    assert call.id not in [c.id for c in (await beta2.communications.calls.get()).value]


async def test_creating_a_call_for_another_tenant_is_403(beta, callback):
    body = p2p_call(callback, ALICE)
    body.tenant_id = "22222222-2222-2222-2222-222222222222"
    with pytest.raises(ODataError) as e:
        await beta.communications.calls.post(body)
    assert e.value.response_status_code == 403


async def test_token_endpoint_refuses_a_wrong_secret(ringside):
    async with httpx.AsyncClient() as h:
        r = await h.post(
            f"{ringside.base}/{TENANT}/oauth2/v2.0/token",
            data={"grant_type": "client_credentials", "client_id": APP, "client_secret": "wrong", "scope": "https://graph.microsoft.com/.default"},
        )
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"


async def test_actions_in_the_wrong_call_state_are_refused(beta, ringside, hooks, callback):
    ringing = await beta.communications.calls.post(p2p_call(callback, CAROL_NO_ANSWER))
    await hooks.watch(ringing.id).until_state("ringing")
    calls = beta.communications.calls.by_call_id(ringing.id)
    with pytest.raises(ODataError) as e:
        await calls.play_prompt.post(PlayPromptPostRequestBody(prompts=[prompt(f"{hooks.url}/prompt/100.wav")]))
    assert (e.value.response_status_code, e.value.error.code) == (400, "InvalidCallState")
    with pytest.raises(ODataError) as e:
        await calls.answer.post(AnswerPostRequestBody(callback_uri=callback, media_config=service_media()))
    assert (e.value.response_status_code, e.value.error.code) == (400, "InvalidCallState"), "an outgoing call cannot be answered"
