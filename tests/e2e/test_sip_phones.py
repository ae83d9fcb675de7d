"""A real softphone on the other end: baresip registers to ringside as the SIP user Ivan
(digest), and the bot — through Microsoft's Graph SDK — calls it, plays it a prompt, hears its
keys (RFC 2833 events and in-band tones) and records its speech; baresip also calls the app.

What baresip received is its own recording (sndfile's `dump-*-dec.wav`), measured against
the prompt with audio.py."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest_asyncio
from msgraph_beta.generated.communications.calls.item.answer.answer_post_request_body import AnswerPostRequestBody
from msgraph_beta.generated.communications.calls.item.play_prompt.play_prompt_post_request_body import PlayPromptPostRequestBody
from msgraph_beta.generated.communications.calls.item.record_response.record_response_post_request_body import RecordResponsePostRequestBody
from msgraph_beta.generated.communications.calls.item.start_transcription.start_transcription_post_request_body import (
    StartTranscriptionPostRequestBody,
)
from msgraph_beta.generated.communications.calls.item.stop_transcription.stop_transcription_post_request_body import (
    StopTranscriptionPostRequestBody,
)
from msgraph_beta.generated.communications.calls.item.subscribe_to_tone.subscribe_to_tone_post_request_body import SubscribeToTonePostRequestBody
from msgraph_beta.generated.models.modality import Modality

import audio
from baresip import Baresip
from bot import call_user, prompt, service_media
from support import IVAN_SIP, IVAN_SIP_PASSWORD, IVAN_SIP_USER

FIXTURES = Path(__file__).parent / "fixtures"


async def contacts(ringside) -> list:
    s, v = await ringside.admin("GET", f"/sip/registrations/{IVAN_SIP_USER}")
    assert s == 200, v
    return v["contacts"]


@pytest_asyncio.fixture
async def phone(ringside, tmp_path):
    """baresip registered as Ivan, auto-answering, silent until told to speak."""
    bs = Baresip(tmp_path / "baresip", ringside.sip_port, IVAN_SIP_USER, IVAN_SIP_PASSWORD, FIXTURES / "silence8k.wav")
    deadline = time.monotonic() + 10
    while not await contacts(ringside):
        assert time.monotonic() < deadline, f"baresip did not register:\n{bs.log_tail()}"
        await asyncio.sleep(0.05)
    yield bs
    bs.close()
    # baresip unregisters as it quits; the next test's phone must be the only contact.
    deadline = time.monotonic() + 5
    while await contacts(ringside) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


async def tones(w, count: int, timeout: float = 10) -> list[dict]:
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        notes = await w.quiet(0.3)
        got += [n.data["toneInfo"] for n in notes if isinstance(n.data, dict) and n.data.get("toneInfo")]
    return got


async def hang_up(beta, w, call_id: str) -> None:
    await beta.communications.calls.by_call_id(call_id).delete()
    await w.until_state("terminated")


async def test_the_bot_calls_a_real_phone_which_hears_the_prompt(beta, ringside, hooks, callback, phone):
    call, w = await call_user(beta, hooks, callback, IVAN_SIP)
    states = [n.state for n in w.all() if n.is_call]
    assert states[:3] == ["establishing", "ringing", "established"], states
    phone.wait("CALL_ESTABLISHED")
    got = await beta.communications.calls.by_call_id(call.id).get()
    assert got.media_state.audio.value == "active"
    op = await beta.communications.calls.by_call_id(call.id).play_prompt.post(
        PlayPromptPostRequestBody(prompts=[prompt(f"{hooks.url}/fixture/prompt.wav")])
    )
    done = await w.until_op(op.id, timeout=20)
    assert done.data["status"] == "completed", done.data
    await asyncio.sleep(0.5)
    await hang_up(beta, w, call.id)
    phone.wait("CALL_CLOSED")
    received = phone.received()
    assert received is not None, "baresip recorded what it received"
    heard = audio.load(received.read_bytes())
    ref = audio.fixture("prompt8k.wav")
    score, _ = audio.correlation(heard, ref)
    assert score > 0.9, f"the phone heard the prompt (correlation {score:.3f})"


async def test_keys_pressed_on_the_phone_as_rfc2833_events_arrive_as_tone_info(beta, hooks, callback, phone):
    call, w = await call_user(beta, hooks, callback, IVAN_SIP)
    phone.wait("CALL_ESTABLISHED")
    await beta.communications.calls.by_call_id(call.id).subscribe_to_tone.post(SubscribeToTonePostRequestBody())
    await asyncio.sleep(0.3)
    for key in "19#":
        phone.command("sndcode", key)
        await asyncio.sleep(0.4)
    got = await tones(w, 3)
    assert [t["tone"] for t in got] == ["tone1", "tone9", "pound"], got
    assert [t["sequenceId"] for t in got] == [1, 2, 3]
    await hang_up(beta, w, call.id)


async def test_in_band_tones_from_the_phone_arrive_as_tone_info(beta, hooks, callback, phone):
    call, w = await call_user(beta, hooks, callback, IVAN_SIP)
    phone.wait("CALL_ESTABLISHED")
    await beta.communications.calls.by_call_id(call.id).subscribe_to_tone.post(SubscribeToTonePostRequestBody())
    # Switch the phone's microphone to the tones once its audio is running.
    await asyncio.sleep(0.5)
    r = phone.reply(phone.command("ausrc", f"aufile,{FIXTURES / 'dtmf8k.wav'}"))
    assert r.get("ok"), r
    got = await tones(w, 7)
    assert [t["tone"] for t in got] == ["tone1", "tone2", "tone3", "tone4", "pound", "star", "tone0"], got
    await hang_up(beta, w, call.id)


async def test_record_response_holds_what_the_phone_said(beta, hooks, callback, phone):
    call, w = await call_user(beta, hooks, callback, IVAN_SIP)
    phone.wait("CALL_ESTABLISHED")
    op = await beta.communications.calls.by_call_id(call.id).record_response.post(
        RecordResponsePostRequestBody(
            play_beep=False,
            stop_tones=["#"],
            max_record_duration_in_seconds=30,
            initial_silence_timeout_in_seconds=5,
            max_silence_timeout_in_seconds=5,
        )
    )
    speech = audio.fixture("speech.wav")
    r = phone.reply(phone.command("ausrc", f"aufile,{FIXTURES / 'speech8k.wav'}"))
    assert r.get("ok"), r
    await asyncio.sleep(len(speech) / audio.RATE + 0.5)
    phone.command("sndcode", "#")
    done = await w.until_op(op.id, timeout=20)
    d = done.data
    assert d["completionReason"] == "stopToneDetected", d
    async with httpx.AsyncClient(timeout=10) as h:
        r = await h.get(d["recordingLocation"], headers={"Authorization": f"Bearer {d['recordingAccessToken']}"})
    assert r.status_code == 200
    rec = audio.load(r.content)
    score, _ = audio.correlation(rec, speech)
    assert score > 0.9, f"the recording holds the phone's speech (correlation {score:.3f})"
    await hang_up(beta, w, call.id)


async def test_what_the_phone_says_is_transcribed_for_the_bot(beta, ringside, hooks, callback, phone):
    """startTranscription through the Graph SDK; baresip speaks over G.711; Whisper writes it
    down, attributed to the phone's participant, as a notification and in the WebVTT."""
    said = ["Hello, I need some help with my order.", "Can you tell me when the store opens tomorrow?"]
    call, w = await call_user(beta, hooks, callback, IVAN_SIP)
    phone.wait("CALL_ESTABLISHED")
    calls = beta.communications.calls.by_call_id(call.id)
    await calls.start_transcription.post(StartTranscriptionPostRequestBody(language="en-us"))
    await w.until(lambda n: n.is_call and (n.data.get("transcription") or {}).get("state") == "active", "transcription active")
    r = phone.reply(phone.command("ausrc", f"aufile,{FIXTURES / 'transcribe8k.wav'}"))
    assert r.get("ok"), r
    is_line = lambda n: isinstance(n.data, dict) and n.data.get("@odata.type") == "#ringside.transcriptLine"  # noqa: E731
    lines = [(await w.until(is_line, "a transcript line", timeout=30))[-1].data for _ in said]
    heard = " ".join(line["text"] for line in lines)
    assert audio.wer(" ".join(said), heard) <= 0.25, lines
    line = lines[0]
    roster = (await calls.participants.get()).value
    ivan = next(p for p in roster if p.info.identity.user and p.info.identity.user.id == IVAN_SIP)
    assert line["participantId"] == ivan.id, (line, ivan.id)
    await calls.stop_transcription.post(StopTranscriptionPostRequestBody(language="en-us"))
    async with httpx.AsyncClient(timeout=10) as h:
        r = await h.get(f"{ringside.base}/beta/communications/calls/{call.id}/transcripts", headers={"Authorization": f"Bearer {ringside.token()}"})
        assert r.status_code == 200, r.text
        [t] = r.json()["value"]
        r = await h.get(t["transcriptContentUrl"], headers={"Authorization": f"Bearer {ringside.token()}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/vtt"), r.text
    assert f"<v {line['speaker']}>" in r.text, r.text
    await hang_up(beta, w, call.id)


async def test_the_phone_calls_the_app_which_answers_and_the_phone_hears_it(beta, ringside, hooks, callback, phone):
    before = len(hooks.snapshot())
    phone.command("dial", f"sip:bot@127.0.0.1:{ringside.sip_port}")
    deadline = time.monotonic() + 10
    incoming = None
    while incoming is None:
        assert time.monotonic() < deadline, "no incoming call notification"
        incoming = next((n for n in hooks.snapshot()[before:] if n.path.endswith("/incoming") and n.change == "created"), None)
        await asyncio.sleep(0.02)
    call_id = incoming.data["id"]
    assert incoming.data["source"]["identity"]["user"]["id"] == IVAN_SIP, "the caller is the directory user"
    w = hooks.watch(call_id)
    await beta.communications.calls.by_call_id(call_id).answer.post(
        AnswerPostRequestBody(callback_uri=callback, accepted_modalities=[Modality.Audio], media_config=service_media())
    )
    await w.until_state("established")
    phone.wait("CALL_ESTABLISHED")
    op = await beta.communications.calls.by_call_id(call_id).play_prompt.post(
        PlayPromptPostRequestBody(prompts=[prompt(f"{hooks.url}/fixture/prompt.wav")])
    )
    await w.until_op(op.id, timeout=20)
    await asyncio.sleep(0.5)  # the last packets through baresip's jitter buffer
    phone.command("hangup")
    await w.until_state("terminated")
    phone.wait("CALL_CLOSED")
    heard = audio.load(phone.received().read_bytes())
    score, _ = audio.correlation(heard, audio.fixture("prompt8k.wav"))
    assert score > 0.9, f"the phone heard the app's prompt (correlation {score:.3f})"


async def test_ended_calls_leave_no_sip_dialog_behind(beta, ringside, hooks, callback, phone):
    """Calls the phone makes and calls the bot makes both end without a trace in the SIP
    stack: its dialog count (`/admin/media` `rtp.dialogs`) comes back to zero. (Incoming
    dialogs were once kept forever, ~13 KB per call, found by the soak.)"""
    for _ in range(2):
        before = len(hooks.snapshot())
        phone.command("dial", f"sip:bot@127.0.0.1:{ringside.sip_port}")
        deadline = time.monotonic() + 10
        incoming = None
        while incoming is None:
            assert time.monotonic() < deadline, "no incoming call notification"
            incoming = next((n for n in hooks.snapshot()[before:] if n.path.endswith("/incoming") and n.change == "created"), None)
            await asyncio.sleep(0.02)
        w = hooks.watch(incoming.data["id"])
        await beta.communications.calls.by_call_id(incoming.data["id"]).answer.post(
            AnswerPostRequestBody(callback_uri=callback, accepted_modalities=[Modality.Audio], media_config=service_media())
        )
        await w.until_state("established")
        phone.command("hangup")
        await w.until_state("terminated")
    call, w = await call_user(beta, hooks, callback, IVAN_SIP)
    phone.wait("CALL_ESTABLISHED", 3)
    await hang_up(beta, w, call.id)
    deadline = time.monotonic() + 5
    while True:
        s, v = await ringside.admin("GET", "/media")
        assert s == 200, v
        if v["rtp"]["dialogs"] == 0:
            break
        assert time.monotonic() < deadline, f"SIP dialogs left after every call ended: {v['rtp']}"
        await asyncio.sleep(0.1)
