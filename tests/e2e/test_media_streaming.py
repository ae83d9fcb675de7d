"""App-hosted media over a WebSocket (docs/media-streaming.md), with a bot written in Python
against `websockets`: the call is placed through Microsoft's Graph SDK with an
appHostedMediaConfig that asks for a media stream; ringside connects to the bot, streams
what the bot hears, and plays what the bot sends back. The caller is a simulated user who
speaks a recording; what it heard is checked against that recording by correlation."""
from __future__ import annotations

import asyncio
import base64
import json
import os

import numpy as np
import websockets
from msgraph_beta.generated.communications.calls.item.subscribe_to_tone.subscribe_to_tone_post_request_body import SubscribeToTonePostRequestBody
from msgraph_beta.generated.models.app_hosted_media_config import AppHostedMediaConfig

import audio
from bot import call_user
from support import ALICE


def speaks(hooks, name: str, at_ms: int = 0) -> dict:
    return {"uri": f"{hooks.url}/fixture/{name}", "atMs": at_ms}


def pcm(message: dict) -> np.ndarray:
    raw = base64.b64decode(message["audioData"]["data"])
    return np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0


async def test_a_python_bot_hears_the_caller_and_echoes_it_back_over_a_websocket(beta, ringside, hooks, callback):
    received: list[dict] = []

    async def echo(ws):
        async for text in ws:
            m = json.loads(text)
            received.append(m)
            if m["kind"] == "AudioData":
                await ws.send(json.dumps({"kind": "AudioData", "audioData": {"data": m["audioData"]["data"]}}))

    speech = audio.fixture("speech.wav")
    speech_s = len(speech) / audio.RATE
    async with websockets.serve(echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        media = AppHostedMediaConfig(blob=json.dumps({"mediaStreaming": {"transportUrl": f"ws://127.0.0.1:{port}/bot"}}))
        script = {"speak": [speaks(hooks, "speech.wav", at_ms=800)], "dtmf": [{"atMs": int(800 + speech_s * 1000 + 1500), "digits": "5"}]}
        call, w = await call_user(beta, hooks, callback, ALICE, script=script, media=media)
        calls = beta.communications.calls.by_call_id(call.id)
        # Keys still come as toneInfo to a bot that hosts its own media.
        await calls.subscribe_to_tone.post(SubscribeToTonePostRequestBody())
        notes = await w.until(lambda n: isinstance(n.data, dict) and n.data.get("toneInfo"), "Alice's key", timeout=speech_s + 10)
        assert notes[-1].data["toneInfo"]["tone"] == "tone5"
        got = await calls.get()
        assert got.additional_data["mediaStreaming"]["audioChannelType"] == "mixed"
        await calls.delete()
        await w.until_state("terminated")

    assert received[0]["kind"] == "AudioMetadata" and received[0]["audioMetadata"]["sampleRate"] == 16000
    frames = [m for m in received if m["kind"] == "AudioData"]
    heard_by_bot = np.concatenate([pcm(m) for m in frames])
    score, _ = audio.correlation(heard_by_bot, speech)
    assert score > 0.95, f"the bot heard Alice (correlation {score:.3f})"
    leg = await ringside.latest_leg_of(ALICE)
    heard_by_alice = await ringside.heard(leg["legId"])
    score, _ = audio.correlation(heard_by_alice, speech)
    assert score > 0.9, f"Alice heard herself through the bot (correlation {score:.3f})"
    s, m = await ringside.admin("GET", "/media")
    assert m["streams"]["framesReceived"] > 0, m["streams"]


async def test_a_rust_bot_listens_for_a_word_and_answers_when_it_hears_it(beta, ringside, hooks, callback):
    """tests/e2e/stream-bot: tokio-tungstenite and Whisper. Alice says "Hello, I need some help
    with my order."; the bot writes it down, hears "order", and answers with a tone Alice hears."""
    bin_dir = os.path.dirname(os.environ["RINGSIDE_BIN"])
    bot = await asyncio.create_subprocess_exec(os.path.join(bin_dir, "stream-bot"), "order", stdout=asyncio.subprocess.PIPE)
    try:
        first = (await asyncio.wait_for(bot.stdout.readline(), 30)).decode().split()
        assert first[0] == "LISTENING", first
        media = AppHostedMediaConfig(blob=json.dumps({"mediaStreaming": {"transportUrl": first[1]}}))
        script = {"speak": [speaks(hooks, "transcribe.wav", at_ms=500)]}
        call, w = await call_user(beta, hooks, callback, ALICE, script=script, media=media)
        said: list[str] = []
        while "WORD order" not in said:
            line = await asyncio.wait_for(bot.stdout.readline(), 20)
            assert line, f"the bot ended before hearing the word: {said}"
            said.append(line.decode().strip())
        heard = [s for s in said if s.startswith("HEARD ")]
        assert audio.wer("Hello, I need some help with my order.", heard[0][6:]) <= 0.25, said
        await asyncio.sleep(1.0)  # the bot's tone plays out
        leg = await ringside.latest_leg_of(ALICE)
        heard_by_alice = await ringside.heard(leg["legId"])
        half = audio.RATE // 2
        loudest = max(audio.level_at(heard_by_alice[i : i + half], 880) for i in range(0, max(1, len(heard_by_alice) - half), half // 2))
        assert loudest > -20, f"Alice heard the bot's answer ({loudest:.1f} dBFS at 880 Hz)"
        await beta.communications.calls.by_call_id(call.id).delete()
        await w.until_state("terminated")
        tail = await asyncio.wait_for(bot.stdout.read(), 10)
        assert b"CLOSED" in tail, "the stream closed with the call"
    finally:
        if bot.returncode is None:
            bot.kill()
        await bot.wait()
