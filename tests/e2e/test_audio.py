"""Real audio through Microsoft's Graph SDK and simulated users: what a caller hears of the
bot's prompts, keys pressed as in-band tones, recordResponse holding the caller's speech,
who hears whom in meetings and routing groups, mute, hold music and cancelling a prompt.

The audio fixtures come from fixtures.sh (espeak-ng and SoX); simulated users speak them and
record what they hear, which the tests fetch and measure (audio.py)."""
from __future__ import annotations

import asyncio
import time

import httpx
from msgraph_beta.generated.communications.calls.item.cancel_media_processing.cancel_media_processing_post_request_body import (
    CancelMediaProcessingPostRequestBody,
)
from msgraph_beta.generated.communications.calls.item.participants.item.mute.mute_post_request_body import MutePostRequestBody
from msgraph_beta.generated.communications.calls.item.participants.item.start_hold_music.start_hold_music_post_request_body import (
    StartHoldMusicPostRequestBody,
)
from msgraph_beta.generated.communications.calls.item.participants.invite.invite_post_request_body import InvitePostRequestBody
from msgraph_beta.generated.communications.calls.item.play_prompt.play_prompt_post_request_body import PlayPromptPostRequestBody
from msgraph_beta.generated.communications.calls.item.record_response.record_response_post_request_body import RecordResponsePostRequestBody
from msgraph_beta.generated.communications.calls.item.start_recording.start_recording_post_request_body import StartRecordingPostRequestBody
from msgraph_beta.generated.communications.calls.item.stop_recording.stop_recording_post_request_body import StopRecordingPostRequestBody
from msgraph_beta.generated.communications.calls.item.subscribe_to_tone.subscribe_to_tone_post_request_body import SubscribeToTonePostRequestBody
from msgraph_beta.generated.models.audio_routing_group import AudioRoutingGroup
from msgraph_beta.generated.models.call import Call
from msgraph_beta.generated.models.modality import Modality
from msgraph_beta.generated.models.operation_status import OperationStatus
from msgraph_beta.generated.models.routing_mode import RoutingMode
from msgraph_beta.generated.models.service_hosted_media_config import ServiceHostedMediaConfig

import audio
from bot import call_user, create_meeting, join_meeting, prompt, service_media, user_target
from support import ALICE, APP2, GINA, HANK, SECRET2, TENANT, user_in


def speaks(hooks, name: str, at_ms: int = 0, loop: bool = False) -> dict:
    return {"uri": f"{hooks.url}/fixture/{name}", "atMs": at_ms, "loop": loop}


async def heard_by(ringside, user: str):
    leg = await ringside.latest_leg_of(user)
    return await ringside.heard(leg["legId"])


async def play(beta, w, call_id: str, url: str):
    op = await beta.communications.calls.by_call_id(call_id).play_prompt.post(PlayPromptPostRequestBody(prompts=[prompt(url)]))
    return await w.until_op(op.id, timeout=20)


async def test_the_user_hears_the_bots_prompt(beta, ringside, hooks, callback):
    call, w = await call_user(beta, hooks, callback, ALICE)
    done = await play(beta, w, call.id, f"{hooks.url}/fixture/prompt.wav")
    assert done.data["status"] == "completed"
    heard = await heard_by(ringside, ALICE)
    ref = audio.fixture("prompt.wav")
    score, lag = audio.correlation(heard, ref)
    assert score > 0.95, f"the prompt is in what Alice heard (correlation {score:.3f})"
    loud = audio.loud_ms(heard[lag : lag + len(ref)])
    assert abs(loud - audio.loud_ms(ref)) <= 60, "all of it, at its own length"


async def test_a_44k_stereo_prompt_is_resampled_not_refused(beta, ringside, hooks, callback):
    call, w = await call_user(beta, hooks, callback, ALICE)
    done = await play(beta, w, call.id, f"{hooks.url}/fixture/prompt-44k-stereo.wav")
    assert done.data["status"] == "completed", done.data
    heard = await heard_by(ringside, ALICE)
    score, _ = audio.correlation(heard, audio.fixture("prompt.wav"))
    assert score > 0.9, f"the resampled prompt sounds like the original (correlation {score:.3f})"


async def test_digits_pressed_as_tones_arrive_as_the_exact_tone_info_sequence(beta, hooks, callback):
    # The user's phone plays DTMF made by SoX: the bot hears it in the audio, nothing else.
    call, w = await call_user(beta, hooks, callback, ALICE, script={"speak": [speaks(hooks, "dtmf.wav", at_ms=800)]})
    await beta.communications.calls.by_call_id(call.id).subscribe_to_tone.post(SubscribeToTonePostRequestBody(client_context="keys"))
    got = []
    deadline = time.monotonic() + 10
    while len(got) < 7 and time.monotonic() < deadline:
        notes = await w.quiet(0.3)
        got += [n.data["toneInfo"] for n in notes if isinstance(n.data, dict) and n.data.get("toneInfo")]
    assert [t["tone"] for t in got] == ["tone1", "tone2", "tone3", "tone4", "pound", "star", "tone0"]
    assert [t["sequenceId"] for t in got] == list(range(1, 8))


async def test_speech_and_prompts_give_no_false_digits(beta, hooks, callback):
    # The caller talks (espeak-ng) while the bot plays its own prompt: no toneInfo at all.
    call, w = await call_user(beta, hooks, callback, ALICE, script={"speak": [speaks(hooks, "speech.wav"), speaks(hooks, "prompt.wav", at_ms=5500)]})
    await beta.communications.calls.by_call_id(call.id).subscribe_to_tone.post(SubscribeToTonePostRequestBody())
    await play(beta, w, call.id, f"{hooks.url}/fixture/prompt.wav")
    await asyncio.sleep(6.0)
    tones = [n for n in w.all() if isinstance(n.data, dict) and n.data.get("toneInfo")]
    assert tones == [], tones


async def test_record_response_returns_the_users_speech_and_stops_on_pound(beta, hooks, callback):
    speech = audio.fixture("speech.wav")
    speech_ms = len(speech) * 1000 // audio.RATE
    script = {"speak": [speaks(hooks, "speech.wav", at_ms=600)], "dtmf": [{"atMs": 600 + speech_ms + 400, "digits": "#"}]}
    call, w = await call_user(beta, hooks, callback, ALICE, script=script)
    op = await beta.communications.calls.by_call_id(call.id).record_response.post(
        RecordResponsePostRequestBody(
            play_beep=False,
            stop_tones=["#"],
            max_record_duration_in_seconds=30,
            initial_silence_timeout_in_seconds=5,
            max_silence_timeout_in_seconds=5,
        )
    )
    done = await w.until_op(op.id, timeout=30)
    d = done.data
    assert d["completionReason"] == "stopToneDetected", d
    async with httpx.AsyncClient(timeout=10) as h:
        r = await h.get(d["recordingLocation"], headers={"Authorization": f"Bearer {d['recordingAccessToken']}"})
    assert r.status_code == 200
    rec = audio.load(r.content)
    score, _ = audio.correlation(rec, speech)
    assert score > 0.95, f"the recording holds Alice's speech (correlation {score:.3f})"
    assert len(rec) < len(speech) + 2 * audio.RATE, "and stops at the # after it"


async def test_in_a_three_party_meeting_each_hears_the_other_two_and_not_itself(beta, ringside, hooks, callback):
    tones = {ALICE: 500, GINA: 800, HANK: 1100}
    meeting = await create_meeting(beta, "three tones")
    call, w = await join_meeting(beta, hooks, callback, meeting)
    targets = [user_target(u, None, {"speak": [speaks(hooks, f"sine{f}.wav", loop=True)]}) for u, f in tones.items()]
    await beta.communications.calls.by_call_id(call.id).participants.invite.post(InvitePostRequestBody(participants=targets))
    await w.until_roster(lambda r: all(user_in(r, u) for u in tones), "all three joined")
    await asyncio.sleep(1.0)
    for user, own in tones.items():
        tail = (await heard_by(ringside, user))[-audio.RATE // 2 :]
        assert audio.level_at(tail, own) < -60, f"{user} does not hear itself"
        for other, f in tones.items():
            if other != user:
                assert audio.level_at(tail, f) > -20, f"{user} hears {other} ({f} Hz)"


async def group_call(beta, hooks, callback, scripts: dict, media=None):
    body = Call(
        callback_uri=callback,
        targets=[user_target(u, None, s) for u, s in scripts.items()],
        requested_modalities=[Modality.Audio],
        media_config=media or service_media(),
        tenant_id=TENANT,
    )
    call = await beta.communications.calls.post(body)
    w = hooks.watch(call.id)
    await w.until_state("established")
    roster = await w.until_roster(lambda r: all(user_in(r, u) for u in scripts), "everyone joined")
    return call, w, {u: user_in(roster, u)["id"] for u in scripts}


async def test_a_one_to_one_routing_group_whispers_to_one_participant_only(beta, ringside, hooks, callback):
    media = ServiceHostedMediaConfig(additional_data={"removeFromDefaultAudioGroup": True})
    call, w, pids = await group_call(beta, hooks, callback, {ALICE: None, GINA: None}, media)
    await beta.communications.calls.by_call_id(call.id).audio_routing_groups.post(
        AudioRoutingGroup(routing_mode=RoutingMode.OneToOne, sources=[call.my_participant_id], receivers=[pids[ALICE]])
    )
    done = await play(beta, w, call.id, f"{hooks.url}/fixture/prompt.wav")
    assert done.data["status"] == "completed"
    score, _ = audio.correlation(await heard_by(ringside, ALICE), audio.fixture("prompt.wav"))
    assert score > 0.95, f"Alice hears the whisper ({score:.3f})"
    assert audio.loud_ms(await heard_by(ringside, GINA)) == 0, "Gina hears nothing of it"


async def test_a_muted_participant_is_not_heard(beta, ringside, hooks, callback):
    scripts = {ALICE: {"speak": [speaks(hooks, "sine500.wav", loop=True)]}, GINA: None}
    call, w, pids = await group_call(beta, hooks, callback, scripts)
    await asyncio.sleep(0.5)
    assert audio.level_at((await heard_by(ringside, GINA))[-4000:], 500) > -20, "Gina hears Alice"
    op = await beta.communications.calls.by_call_id(call.id).participants.by_participant_id(pids[ALICE]).mute.post(MutePostRequestBody())
    assert op.status == OperationStatus.Completed, op
    await asyncio.sleep(0.5)
    assert audio.loud_ms((await heard_by(ringside, GINA))[-4000:]) == 0, "nobody hears a muted participant"


async def test_hold_music_reaches_only_the_held_participant(beta, ringside, hooks, callback):
    call, w, pids = await group_call(beta, hooks, callback, {ALICE: None, GINA: None})
    op = await beta.communications.calls.by_call_id(call.id).participants.by_participant_id(pids[ALICE]).start_hold_music.post(
        StartHoldMusicPostRequestBody()
    )
    await w.until_op(op.id)
    await asyncio.sleep(1.0)
    assert audio.loud_ms((await heard_by(ringside, ALICE))[-audio.RATE :]) >= 800, "Alice hears hold music"
    assert audio.loud_ms(await heard_by(ringside, GINA)) == 0, "Gina does not"


async def test_cancel_media_processing_stops_a_long_prompt_at_once(beta, ringside, hooks, callback):
    call, w = await call_user(beta, hooks, callback, ALICE)
    calls = beta.communications.calls.by_call_id(call.id)
    started = time.monotonic()
    op = await calls.play_prompt.post(PlayPromptPostRequestBody(prompts=[prompt(f"{hooks.url}/fixture/long.wav")]))
    await asyncio.sleep(1.0)
    await calls.cancel_media_processing.post(CancelMediaProcessingPostRequestBody())
    cancelled_after_ms = (time.monotonic() - started) * 1000
    done = await w.until_op(op.id)
    assert done.data["completionReason"] == "mediaOperationCanceled"
    await asyncio.sleep(0.5)
    heard = await heard_by(ringside, ALICE)
    played = audio.loud_ms(heard)
    assert 500 <= played <= cancelled_after_ms + 20, f"{played} ms of the prompt played, cancelled after {cancelled_after_ms:.0f} ms"
    assert audio.loud_ms(heard[-audio.RATE // 2 :]) == 0, "and none after"


async def test_a_call_recording_lists_and_downloads_with_the_apps_token_only(beta, ringside, hooks, callback):
    call, w = await call_user(beta, hooks, callback, ALICE, script={"speak": [speaks(hooks, "sine500.wav", loop=True)]})
    calls = beta.communications.calls.by_call_id(call.id)
    op = await calls.start_recording.post(StartRecordingPostRequestBody(client_context="rec"))
    await w.until_op(op.id)
    await asyncio.sleep(1.5)
    await calls.stop_recording.post(StopRecordingPostRequestBody(client_context="stop"))
    url = f"{ringside.base}/beta/communications/calls/{call.id}/recordings"
    mine = {"Authorization": f"Bearer {ringside.token()}"}
    async with httpx.AsyncClient(timeout=10) as h:
        for _ in range(50):
            listed = (await h.get(url, headers=mine)).json()["value"]
            if listed and listed[0]["status"] == "available":
                break
            await asyncio.sleep(0.1)
        assert len(listed) == 1 and listed[0]["status"] == "available", listed
        rec = listed[0]
        assert rec["callId"] == call.id
        assert 1300 <= rec["durationInMilliseconds"] <= 2500, rec
        r = await h.get(rec["recordingContentUrl"], headers=mine)
        assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
        mix = audio.load(r.content)
        assert audio.level_at(mix, 500) > -20, "the recording holds what was said in the call"

        # With record_participant_tracks, each participant also has a track of its own.
        tracks = {t["participantId"]: t for t in rec["tracks"]}
        assert set(tracks) == {call.my_participant_id, next(p for p in tracks if p != call.my_participant_id)}, tracks
        alice_track = next(t for p, t in tracks.items() if p != call.my_participant_id)
        alice = audio.load((await h.get(alice_track["recordingContentUrl"], headers=mine)).content)
        bot = audio.load((await h.get(tracks[call.my_participant_id]["recordingContentUrl"], headers=mine)).content)
        assert audio.level_at(alice, 500) > -20, "Alice's track is what Alice said"
        assert audio.loud_ms(bot) == 0, "the bot said nothing"

        other = {"Authorization": f"Bearer {ringside.token(APP2, SECRET2)}"}
        assert (await h.get(url, headers=other)).json()["value"] == [], "another app sees none"
        assert (await h.get(rec["recordingContentUrl"], headers=other)).status_code == 404
        assert (await h.get(rec["recordingContentUrl"])).status_code == 401

        # The recording outlives the call.
        await calls.delete()
        assert (await h.get(rec["recordingContentUrl"], headers=mine)).status_code == 200
