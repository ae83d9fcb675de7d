"""The console in a real browser: Debian's Chromium, driven by playwright-core
(tests/browser/console.mjs), signs in with the admin token and shows a new call's
notifications within a second of the bot receiving them, exactly as the bot received them;
lists a dead letter, and redelivering it from the page delivers it; adds a tenant with the
directory form; plays a recording in the page.
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
import pytest

from conftest import _binary
from support import ADMIN, ALICE, APP, Hooks, Ringside

ROOT = Path(__file__).resolve().parents[2]
DRIVER = ROOT / "tests" / "browser" / "console.mjs"


@pytest.fixture(scope="module")
def console_server():
    hooks = Hooks()
    dir = Path(tempfile.mkdtemp(prefix="ringside-e2e-console-"))
    rs = Ringside(_binary(), dir, hooks)
    rs.start()
    yield rs
    rs.hang_up_everything()
    rs.stop()
    hooks.close()
    shutil.rmtree(dir, ignore_errors=True)


class Console:
    """The driver process: its JSON lines, and commands to it."""

    def __init__(self, proc):
        self.proc = proc
        self.lines: list[dict] = []

    async def expect(self, step: str, match=lambda v: True, timeout: float = 20) -> dict:
        for v in self.lines:
            if v["step"] == step and match(v):
                self.lines.remove(v)
                return v
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"the console never reported {step}; it said {self.lines[-5:]}"
            raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout=left)
            assert raw, f"the driver ended before {step}: {(await self.proc.stderr.read()).decode()[-2000:]}"
            if not raw.startswith(b"{"):
                continue
            v = json.loads(raw)
            assert v["step"] != "page-error", v
            if v["step"] == step and match(v):
                return v
            self.lines.append(v)

    async def send(self, line: str) -> None:
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()


async def test_the_console_shows_a_calls_notifications_as_delivered_and_redelivers_a_dead_letter(console_server):
    rs = console_server
    assert shutil.which("node") and Path("/usr/bin/chromium").exists(), "scripts/test.sh installs Node and Chromium"
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "RINGSIDE": rs.base, "ADMIN": ADMIN}
    proc = await asyncio.create_subprocess_exec(
        shutil.which("node"), str(DRIVER), env=env, cwd=str(DRIVER.parent),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    page = Console(proc)
    try:
        await page.expect("live")
        token = rs.token()
        async with httpx.AsyncClient(base_url=f"{rs.base}/v1.0/communications/calls", headers={"Authorization": f"Bearer {token}"}, timeout=10) as g:
            # A call the bot places to Alice, with a prompt and a recorded response.
            body = {
                "callbackUri": f"{rs.hooks.url}/console", "requestedModalities": ["audio"],
                "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
                "targets": [{"identity": {"user": {"id": ALICE, "displayName": "Alice"}}}],
                "source": {"identity": {"application": {"id": APP, "displayName": "Console bot"}}},
            }
            r = await g.post("", json=body)
            assert r.status_code == 201, r.text
            call_id = r.json()["id"]
            w = rs.hooks.watch(call_id)
            await w.until_state("established", timeout=15)
            r = await g.post(f"/{call_id}/recordResponse", json={"maxRecordDurationInSeconds": 1, "playBeep": False, "bargeInAllowed": True})
            assert r.status_code == 200, r.text
            await w.until_op(r.json()["id"], timeout=15)
            r = await g.delete(f"/{call_id}")
            assert r.status_code == 204
            await w.until_state("terminated", timeout=15)

            # Each notification the bot received, the page showed within a second, as received.
            with rs.hooks.lock:
                posts = [(at, b) for p, at, b in rs.hooks.posts if p == "/console"]
            assert len(posts) >= 5, posts
            shown = []
            for _ in posts:
                shown.append(await page.expect("shown", lambda v: v["callId"] == call_id and all(v["seq"] != s["seq"] for s in shown)))
            shown.sort(key=lambda v: v["seq"])
            for (received, sent), seen in zip(posts, shown):
                assert seen["body"] == sent, "the page shows the payload the bot received"
                lag = seen["at"] / 1000 - received
                assert lag < 1.0, f"notification {seen['seq']} appeared {lag:.3f} s after the bot received it"
            await page.send(f"select {call_id}")
            selected = await page.expect("selected")
            assert selected["rows"] == len(posts), selected

            # A bot whose endpoint fails: its notifications end as dead letters in the page.
            body["callbackUri"] = f"{rs.hooks.url}/fail/console"
            r = await g.post("", json=body)
            assert r.status_code == 201, r.text
            failing = r.json()["id"]
            dead = await page.expect("dead")
            rs.hooks.healed.add("/fail/console")
            await page.send(f"redeliver {dead['seq']}")
            await page.expect("clicked")
            again = await page.expect("shown", lambda v: v["seq"] == dead["seq"])
            assert again["callId"] == failing and again["attempts"] == 5, again
            with rs.hooks.lock:
                redelivered = [b for p, _, b in rs.hooks.posts if p == "/fail/console"]
            assert again["body"] in redelivered, "the bot received the redelivered notification"
            await g.delete(f"/{failing}")

        # The directory from the page, and a recording played in it.
        await page.send("tenant Fabrikam")
        await page.expect("tenant")
        status, d = await rs.admin("GET", "/directory")
        assert any(t.get("name") == "Fabrikam" for t in d["tenants"]), d
        await page.send("play")
        playing = await page.expect("playing")
        assert 0.5 < playing["seconds"] < 3, playing
        if os.environ.get("RINGSIDE_SCREENSHOTS"):
            await page.send(f"select {call_id}")
            await page.expect("selected")
            await page.send(f"shot {ROOT / 'docs' / 'console.png'}")
            await page.expect("shot")
        await page.send("quit")
        await asyncio.wait_for(proc.wait(), timeout=30)
    finally:
        if proc.returncode is None:
            proc.kill()
    assert proc.returncode == 0, (await proc.stderr.read()).decode()[-2000:]
