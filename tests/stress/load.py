"""The mixed load the crash and soak scenarios drive: bots place calls that play prompts,
subscribe to tones and are transferred or hung up, answer incoming calls from a simulated user,
join meetings two at a time; SIPp phones call bot A. Each flow records what ringside
acknowledged, so a scenario can check it is reflected later.
"""
from __future__ import annotations

import asyncio
import random
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from harness import ALICE, APPS, ERIN, GINA, ROOT, TENANT, Arrival, Endpoint, Graph, Server, call_body, free_port

NETWORK = (httpx.HTTPError, OSError)
# The bots' one prompt, under one resourceId as a bot names a prompt it plays again and again
# (ringside caches decoded prompts by it, up to 128 MB).
PROMPT_ID = "5f0e1a2b-0000-4000-8000-00000000beef"


@dataclass
class Ledger:
    """What ringside acknowledged."""
    calls: dict[str, str] = field(default_factory=dict)          # call id → how it began
    ended: dict[str, str] = field(default_factory=dict)          # call id → DELETE / transfer acknowledged
    operations: dict[str, str] = field(default_factory=dict)     # operation id → call id
    refused: int = 0                                             # requests that failed while ringside was down
    errors: list[str] = field(default_factory=list)              # a 4xx/5xx that is not about a dead call
    latency: list[float] = field(default_factory=list)           # seconds, each answered request


def target(user: str, name: str) -> dict:
    return {"@odata.type": "#microsoft.graph.invitationParticipantInfo", "identity": {"@odata.type": "#microsoft.graph.identitySet", "user": {"@odata.type": "#microsoft.graph.identity", "id": user, "displayName": name}}}


class Load:
    def __init__(self, server: Server, bots: list[Endpoint], profile: dict) -> None:
        self.server = server
        self.a, self.b = bots
        self.ga, self.gb = Graph(server, APPS[0]), Graph(server, APPS[1])
        self.profile = profile
        self.ledger = Ledger()
        self.stop = asyncio.Event()
        self.tasks: set[asyncio.Task] = set()
        self.a.hook = self.on_bot_a
        self.hold_s = profile.get("hold_s", 1.0)  # how long a call stays up
        self.sip_calls = 0
        # 0: every meeting is new; N: N meetings, then they are joined again in turn (a
        # meeting is kept data, like a directory entry: a fresh one every few seconds for an
        # hour would measure meetings kept, not a leak).
        self.meeting_pool = profile.get("meeting_pool", 0)
        self.meetings: list[dict] = []
        self.meetings_joined = 0

    async def req(self, g: Graph, method: str, path: str, body=None, ok=(200, 201, 202, 204)) -> tuple[int, object] | None:
        """A request; None when ringside was unreachable (killed) — not acknowledged."""
        t0 = time.monotonic()
        try:
            s, v = await g.request(method, path, body)
        except NETWORK:
            self.ledger.refused += 1
            return None
        self.ledger.latency.append(time.monotonic() - t0)
        if s not in ok and s not in (404, 400, 409, 503):
            # 404/400/409: the call ended under us (a kill restarts its timers; a transfer ended it).
            self.ledger.errors.append(f"{method} {path} -> {s} {str(v)[:200]}")
        return s, v

    def flows(self) -> list[asyncio.Task]:
        """The mix's three flows running at the profile's rates, until `finish`."""
        return [asyncio.create_task(self.every(self.profile[k], flow)) for k, flow in (("p2p_every", self.p2p), ("incoming_every", self.incoming), ("meeting_every", self.meeting))]

    def spawn(self, coro) -> None:
        t = asyncio.create_task(coro)
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    async def every(self, seconds: float, make) -> None:
        while not self.stop.is_set():
            self.spawn(make())
            try:
                await asyncio.wait_for(self.stop.wait(), seconds)
            except asyncio.TimeoutError:
                pass

    async def end(self, g: Graph, cid: str) -> None:
        r = await self.req(g, "DELETE", f"/v1.0/communications/calls/{cid}")
        if r and r[0] == 204:
            self.ledger.ended[cid] = "DELETE"

    async def p2p(self) -> None:
        """Call a user, play a prompt, listen for tones, then transfer or hang up."""
        r = await self.req(self.ga, "POST", "/v1.0/communications/calls", call_body(self.a.url, random.choice([ALICE, ERIN])))
        if not r or r[0] != 201:
            return
        cid = r[1]["id"]
        self.ledger.calls[cid] = "p2p"
        await asyncio.sleep(0.3)
        prompt = {"clientContext": "prompt", "prompts": [{"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": {"@odata.type": "#microsoft.graph.mediaInfo", "uri": f"{self.a.url}/prompt.wav", "resourceId": PROMPT_ID}}]}
        for action, body in [("playPrompt", prompt), ("subscribeToTone", {"clientContext": "tones"})]:
            r = await self.req(self.ga, "POST", f"/v1.0/communications/calls/{cid}/{action}", body)
            if r and r[0] == 200 and isinstance(r[1], dict) and r[1].get("status") == "running":
                self.ledger.operations[r[1]["id"]] = cid
        await asyncio.sleep(0.7 * self.hold_s)
        if random.random() < 0.4:
            r = await self.req(self.ga, "POST", f"/v1.0/communications/calls/{cid}/transfer", {"transferTarget": target(GINA, "Gina")})
            if r and r[0] == 202:
                self.ledger.ended[cid] = "transfer"
                return
        await self.end(self.ga, cid)

    async def incoming(self) -> None:
        """A simulated user calls bot A (answered by `on_bot_a`)."""
        try:
            s, v = await self.ga.admin("POST", f"/users/{ALICE}/call", {"target": APPS[0].id})
        except NETWORK:
            self.ledger.refused += 1
            return
        if s == 201:
            self.ledger.calls[v["callId"]] = "incoming"

    def on_bot_a(self, a: Arrival) -> None:
        for item in a.items:
            data = item.get("resourceData")
            if isinstance(data, dict) and item.get("changeType") == "created" and data.get("state") == "incoming" and not self.stop.is_set():
                caller = ((data.get("source") or {}).get("identity") or {}).get("user") or {}
                if caller.get("id") != ALICE:
                    self.sip_calls += 1  # SIPp's "carol", not the simulated user
                self.spawn(self.answer(data.get("id") or a.call))

    async def answer(self, cid: str) -> None:
        body = {"callbackUri": self.a.url, "acceptedModalities": ["audio"], "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}}
        self.ledger.calls.setdefault(cid, "incoming")
        r = await self.req(self.ga, "POST", f"/v1.0/communications/calls/{cid}/answer", body)
        if r and r[0] == 202:
            await asyncio.sleep(self.hold_s)
            await self.end(self.ga, cid)

    async def meeting(self) -> None:
        """Two bots join a meeting (a fresh one, or the next of the pool), stay, leave."""
        self.meetings_joined += 1
        if self.meeting_pool and len(self.meetings) >= self.meeting_pool:
            m = self.meetings[self.meetings_joined % self.meeting_pool]
        else:
            r = await self.req(self.ga, "POST", "/beta/communications/onlineMeetings", {"subject": "stress"})
            if not r or r[0] != 201:
                return
            m = r[1]
            if self.meeting_pool:
                self.meetings.append(m)
        joins = []
        for g, bot in ((self.ga, self.a), (self.gb, self.b)):
            body = {
                "@odata.type": "#microsoft.graph.call",
                "callbackUri": bot.url,
                "requestedModalities": ["audio"],
                "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
                "chatInfo": {"threadId": m["chatInfo"]["threadId"], "messageId": "0"},
                "meetingInfo": {"@odata.type": "#microsoft.graph.organizerMeetingInfo", "organizer": m["participants"]["organizer"]["identity"], "allowConversationWithoutHost": True},
                "tenantId": TENANT,
            }
            r = await self.req(g, "POST", "/v1.0/communications/calls", body)
            if r and r[0] == 201:
                self.ledger.calls[r[1]["id"]] = "meeting"
                joins.append((g, r[1]["id"]))
        await asyncio.sleep(self.hold_s)
        for g, cid in joins:
            await self.end(g, cid)

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.gather(*list(self.tasks), return_exceptions=True)


def sipp(server_sip: int, rate: int, seconds: float, workdir: Path) -> subprocess.Popen | None:
    """SIPp calling bot A at `rate` calls/s for `seconds` (uac-hung-up: the bot hangs up)."""
    if shutil.which("sipp") is None:
        return None
    workdir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        ["sipp", f"127.0.0.1:{server_sip}", "-sf", str(ROOT / "tests/sip/uac-hung-up.xml"), "-s", "bot", "-i", "127.0.0.1", "-p", str(free_port(2)),
         "-r", str(rate), "-m", str(int(rate * seconds)), "-timeout", f"{int(seconds) + 60}s", "-nostdin", "-recv_timeout", "15000", "-trace_stat", "-fd", "1000"],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
