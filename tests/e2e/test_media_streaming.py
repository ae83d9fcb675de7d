"""App-hosted media over a WebSocket (docs/media-streaming.md), with a bot written in Python
against `websockets`: the call is placed through Microsoft's Graph SDK with an
appHostedMediaConfig that asks for a media stream; ringside connects to the bot, streams
what the bot hears, and plays what the bot sends back. The caller is a simulated user who
speaks a recording; what it heard is checked against that recording by correlation."""
from __future__ import annotations

import asyncio
import base64
import json

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
