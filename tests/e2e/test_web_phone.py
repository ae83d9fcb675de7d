"""The web phone in a real browser: Debian's Chromium, driven by playwright-core
(tests/browser/phone.mjs), signs in with a user token, calls the bot over WebRTC and is heard
and hears: the bot answers, plays a prompt (a 500 Hz tone) the page hears through WebAudio,
gets the page's keypad presses as toneInfo, and records the page's microphone (an 800 Hz tone
from a fake device) with recordResponse. A bot calls the person: the tab rings, is answered,
and hears the hang-up. In a meeting, a real SIP phone (pjsua2) hears the browser through the
meeting's mix, and nothing once the person clicks Mute.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from conftest import _binary
from pjphone import PjPhone
from support import ALICE, APP, FIXTURES, IVAN_SIP, Hooks, Ringside
from test_pjsua_phones import ivan  # noqa: F401  (the pjsua2 phone registered as Ivan)

ROOT = Path(__file__).resolve().parents[2]
DRIVER = ROOT / "tests" / "browser" / "phone.mjs"


@pytest.fixture(scope="module")
def phone_server():
    hooks = Hooks()
    dir = Path(tempfile.mkdtemp(prefix="ringside-e2e-phone-"))
    rs = Ringside(_binary(), dir, hooks)
    rs.start()
    yield rs
    rs.hang_up_everything()
    rs.stop()
    hooks.close()
    shutil.rmtree(dir, ignore_errors=True)


async def _incoming(hooks: Hooks, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for n in hooks.snapshot():
            if n.change == "created":
                return n
        await asyncio.sleep(0.05)
    raise AssertionError("no incoming call from the browser")


def _dominant_hz(wav: bytes) -> float:
    samples = np.frombuffer(wav[44:], dtype="<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.argmax(spectrum[1:]) + 1) * 16000 / len(samples)


async def test_a_person_in_chromium_calls_the_bot_hears_its_prompt_and_is_heard(phone_server):
    rs = phone_server
    assert shutil.which("node") and Path("/usr/bin/chromium").exists(), "scripts/test.sh installs Node and Chromium"
    status, v = await rs.admin("POST", f"/users/{ALICE}/token")
    assert status == 201, v
    mic = FIXTURES / "sine800.wav"
    assert mic.exists(), "fixtures.sh makes sine800.wav"
    env = {
        "PATH": "/usr/bin:/bin:/usr/local/bin",
        "RINGSIDE": rs.base,
        "TOKEN": v["token"],
        "TARGET": APP,
        "KEYS": "1#",
        "MIC_WAV": str(mic),
        "SECONDS": "7",
    }
    if os.environ.get("RINGSIDE_SCREENSHOTS"):
        env["SCREENSHOT"] = str(ROOT / "docs" / "web-phone.png")
    driver = await asyncio.create_subprocess_exec(
        shutil.which("node"), str(DRIVER), env=env, cwd=str(DRIVER.parent),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        # The bot: answer the incoming call from the signed-in user.
        incoming = await _incoming(rs.hooks)
        call_id = incoming.resource.rsplit("/", 1)[-1]
        w = rs.hooks.watch(call_id)
        assert incoming.data["source"]["identity"]["user"]["id"] == ALICE
        token = rs.token()
        async with httpx.AsyncClient(base_url=f"{rs.base}/v1.0/communications/calls", headers={"Authorization": f"Bearer {token}"}, timeout=10) as g:
            r = await g.post(f"/{call_id}/answer", json={"callbackUri": f"{rs.hooks.url}/phone", "acceptedModalities": ["audio"], "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}})
            assert r.status_code == 202, r.text
            await w.until_state("established", timeout=15)
            r = await g.post(f"/{call_id}/subscribeToTone", json={})
            assert r.status_code == 200, r.text
            r = await g.post(f"/{call_id}/playPrompt", json={"prompts": [{"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": {"uri": f"{rs.hooks.url}/fixture/sine500.wav"}}]})
            assert r.status_code == 200, r.text
            # The page's keypad: "1" then "#".
            notes = await w.until(lambda n: isinstance(n.data, dict) and (n.data.get("toneInfo") or {}).get("tone") == "pound", "the keypad's #", timeout=20)
            tones = [n.data["toneInfo"]["tone"] for n in notes if isinstance(n.data, dict) and n.data.get("toneInfo")]
            assert tones[:2] == ["tone1", "pound"], tones
            # The page's microphone, recorded by the bot.
            r = await g.post(f"/{call_id}/recordResponse", json={"bargeInAllowed": True, "maxRecordDurationInSeconds": 2, "playBeep": False, "initialSilenceTimeoutInSeconds": 5, "maxSilenceTimeoutInSeconds": 5})
            assert r.status_code == 200, r.text
            op = r.json()["id"]
            done = await w.until_op(op, timeout=20)
            location = done.data["recordingLocation"]
            wav = httpx.get(location, headers={"Authorization": f"Bearer {done.data['recordingAccessToken']}"}).content
            assert abs(_dominant_hz(wav) - 800) < 40, "the bot recorded the browser's 800 Hz microphone"
        out, err = await asyncio.wait_for(driver.communicate(), timeout=60)
    finally:
        if driver.returncode is None:
            driver.kill()
    assert driver.returncode == 0, err.decode()[-2000:]
    steps = [json.loads(l) for l in out.decode().splitlines() if l.startswith("{")]
    heard = steps[-1]
    assert heard["step"] == "heard" and heard["keys"] == "1#", heard
    peaks = heard["peaks"]
    near = [p for p in peaks if abs(p - 500) <= 50]
    assert len(near) >= len(peaks) // 2 and len(near) >= 10, f"the page heard the bot's 500 Hz prompt: {peaks}"


async def _line(proc, step: str, timeout: float = 30) -> dict:
    """The driver's next JSON line, which must be `step`."""
    while True:
        raw = await asyncio.wait_for(proc.stdout.readline(), timeout=timeout)
        assert raw, f"the driver ended before {step}: {(await proc.stderr.read()).decode()[-2000:]}"
        if raw.startswith(b"{"):
            v = json.loads(raw)
            assert v["step"] == step, v
            return v


async def test_a_bot_calls_a_person_whose_chromium_tab_rings_answers_and_hears_the_hang_up(phone_server):
    rs = phone_server
    status, v = await rs.admin("POST", f"/users/{ALICE}/token")
    assert status == 201, v
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "RINGSIDE": rs.base, "TOKEN": v["token"], "TARGET": "", "MODE": "answer"}
    driver = await asyncio.create_subprocess_exec(
        shutil.which("node"), str(DRIVER), env=env, cwd=str(DRIVER.parent),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        await _line(driver, "signed-in")
        token = rs.token()
        async with httpx.AsyncClient(base_url=f"{rs.base}/v1.0/communications/calls", headers={"Authorization": f"Bearer {token}"}, timeout=10) as g:
            body = {
                "callbackUri": f"{rs.hooks.url}/phone-ring", "requestedModalities": ["audio"],
                "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
                "targets": [{"identity": {"user": {"id": ALICE, "displayName": "Alice"}}}],
                "source": {"identity": {"application": {"id": APP, "displayName": "Reminder bot"}}},
            }
            r = await g.post("", json=body)
            assert r.status_code == 201, r.text
            call_id = r.json()["id"]
            w = rs.hooks.watch(call_id)
            ringing = await _line(driver, "ringing")
            assert "Reminder bot" in ringing["from"], ringing
            await _line(driver, "connected")
            await w.until_state("established", timeout=15)
            r = await g.get(f"/{call_id}/participants")
            ids = [((p.get("info") or {}).get("identity") or {}).get("user", {}).get("id") for p in r.json()["value"]]
            assert ALICE in ids, r.json()
            r = await g.delete(f"/{call_id}")
            assert r.status_code == 204
        heard = await _line(driver, "heard")
        assert heard["status"].startswith("call ended"), heard
        await asyncio.wait_for(driver.wait(), timeout=30)
    finally:
        if driver.returncode is None:
            driver.kill()
    assert driver.returncode == 0


def _quiet_and_tone(wav_path: Path, hz: float) -> tuple[float, float, float]:
    """(level of `hz` while the browser talked, loudness of the last second, the WAV's rate)
    in what the phone heard: the loud stretch is the browser's microphone."""
    import wave

    with wave.open(str(wav_path), "rb") as w:
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(float) / 32768.0
    frame = rate // 50
    rms = np.array([np.sqrt(np.mean(x[i : i + frame] ** 2)) for i in range(0, len(x) - frame, frame)])
    loud = np.nonzero(rms > 0.01)[0]
    assert len(loud) > 25, f"the phone heard the browser ({len(loud)} loud frames of {len(rms)})"
    seg = x[loud[0] * frame : (loud[-1] + 1) * frame]
    spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
    peak = float(np.fft.rfftfreq(len(seg), 1 / rate)[np.argmax(spec[1:]) + 1])
    tail = float(np.sqrt(np.mean(x[-rate:] ** 2)))
    return peak, tail, rate


async def test_a_sip_phone_in_a_meeting_hears_a_browser_through_the_mix_until_the_browser_mutes(ringside, ivan: PjPhone):
    rs = ringside
    token = rs.token()
    async with httpx.AsyncClient(base_url=f"{rs.base}/beta/communications", headers={"Authorization": f"Bearer {token}"}, timeout=10) as g:
        r = await g.post("/onlineMeetings", json={"subject": "Browser and phone"})
        assert r.status_code == 201, r.text
        meeting = r.json()
        join = {
            "callbackUri": f"{rs.hooks.url}/meeting-bot", "requestedModalities": ["audio"],
            "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
            "chatInfo": {"threadId": meeting["chatInfo"]["threadId"], "messageId": "0"},
            "meetingInfo": {"@odata.type": "#microsoft.graph.organizerMeetingInfo", "organizer": {"user": {"id": "organizer-1"}}},
        }
        r = await g.post("/calls", json=join)
        assert r.status_code == 201, r.text
        bot = r.json()["id"]
        w = rs.hooks.watch(bot)
        await w.until_state("established")
        # The bot brings Ivan's phone into the meeting.
        r = await g.post(f"/calls/{bot}/participants/invite", json={"participants": [{"identity": {"user": {"id": IVAN_SIP}}}]})
        assert r.status_code == 200, r.text
        await asyncio.to_thread(ivan.wait, "state CONFIRMED", 1, 15)
        status, v = await rs.admin("POST", f"/users/{ALICE}/token")
        assert status == 201, v
        env = {
            "PATH": "/usr/bin:/bin:/usr/local/bin", "RINGSIDE": rs.base, "TOKEN": v["token"],
            "TARGET": meeting["joinWebUrl"], "MIC_WAV": str(FIXTURES / "sine800.wav"),
            "MUTE_AFTER": "3", "SECONDS": "6",
        }
        driver = await asyncio.create_subprocess_exec(
            shutil.which("node"), str(DRIVER), env=env, cwd=str(DRIVER.parent),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(driver.communicate(), timeout=60)
        assert driver.returncode == 0, err.decode()[-2000:]
        ivan.hangup()
        await asyncio.to_thread(ivan.wait, "state DISCONNECTED", 1, 10)
    peak, tail, rate = _quiet_and_tone(ivan.received(), 800)
    assert abs(peak - 800) < 30, f"the phone heard the browser's 800 Hz through the meeting's mix ({peak:.0f} Hz)"
    assert tail < 0.005, f"after the browser muted, the phone heard silence (RMS {tail:.4f})"
