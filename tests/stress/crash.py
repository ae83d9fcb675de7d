"""kill -9 under a mixed load, again and again.

While bots place calls that play prompts, subscribe to tones and are transferred or hung up,
answer incoming calls, join meetings two bots at a time, and a SIPp phone calls bot A, ringside
is killed with SIGKILL at random moments and restarted in the same data folder.

Gates, after the load stops and the bots hang up what is left:
  * every acknowledged request is reflected: each acknowledged call has its notifications,
    each acknowledged hang-up or transfer ends its call, each acknowledged operation reaches
    its final notification (or its call ends);
  * every notification ever committed is delivered, in per-call order (at least once:
    duplicates are counted and reported);
  * no call is stuck: once the timers have run, every live call is established and a hang-up
    ends it;
  * the SQLite file passes PRAGMA integrity_check after every kill.

    python tests/stress/crash.py                 # the test command's run (20 kills)
    python tests/stress/crash.py --full          # heavier load, longer between kills
"""
from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from harness import ALICE, APPS, ERIN, GINA, HERE, ROOT, TENANT, Arrival, Endpoint, Gates, Graph, Server, call_body, config, delivery_report, free_port, table

PROFILES = {
    "short": dict(kills=20, between=(2.0, 5.0), p2p_every=0.25, incoming_every=1.0, meeting_every=3.0, sip_rate=1),
    "full": dict(kills=20, between=(5.0, 15.0), p2p_every=0.02, incoming_every=0.1, meeting_every=0.5, sip_rate=5),
}
ANSWER_DEADLINE_S = 8
NETWORK = (httpx.HTTPError, OSError)


@dataclass
class Ledger:
    """What ringside acknowledged."""
    calls: dict[str, str] = field(default_factory=dict)          # call id → how it began
    ended: dict[str, str] = field(default_factory=dict)          # call id → DELETE / transfer acknowledged
    operations: dict[str, str] = field(default_factory=dict)     # operation id → call id
    refused: int = 0                                             # requests that failed while ringside was down
    errors: list[str] = field(default_factory=list)              # a 4xx/5xx that is not about a dead call


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
        self.sip_calls = 0

    async def req(self, g: Graph, method: str, path: str, body=None, ok=(200, 201, 202, 204)) -> tuple[int, object] | None:
        """A request; None when ringside was unreachable (killed) — not acknowledged."""
        try:
            s, v = await g.request(method, path, body)
        except NETWORK:
            self.ledger.refused += 1
            return None
        if s not in ok and s not in (404, 400, 409, 503):
            # 404/400/409: the call ended under us (a kill restarts its timers; a transfer ended it).
            self.ledger.errors.append(f"{method} {path} -> {s} {str(v)[:200]}")
        return s, v

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
        prompt = {"clientContext": "prompt", "prompts": [{"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": {"@odata.type": "#microsoft.graph.mediaInfo", "uri": f"{self.a.url}/prompt.wav", "resourceId": str(uuid.uuid4())}}]}
        for action, body in [("playPrompt", prompt), ("subscribeToTone", {"clientContext": "tones"})]:
            r = await self.req(self.ga, "POST", f"/v1.0/communications/calls/{cid}/{action}", body)
            if r and r[0] == 200 and isinstance(r[1], dict) and r[1].get("status") == "running":
                self.ledger.operations[r[1]["id"]] = cid
        await asyncio.sleep(0.7)
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
            await asyncio.sleep(1.0)
            await self.end(self.ga, cid)

    async def meeting(self) -> None:
        """Two bots join a fresh meeting, stay a second, leave."""
        r = await self.req(self.ga, "POST", "/beta/communications/onlineMeetings", {"subject": "stress"})
        if not r or r[0] != 201:
            return
        m = r[1]
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
        await asyncio.sleep(1.0)
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


async def run(profile: dict, data: Path, seed: int) -> None:
    random.seed(seed)
    bot_a, bot_b = Endpoint("a"), Endpoint("b")
    await bot_a.start()
    await bot_b.start()
    sip_port = free_port(2)
    extra = f"notification_backoff_ms = 100\nnotification_max_attempts = 1000\nanswer_deadline_seconds = {ANSWER_DEADLINE_S}"
    server = Server(data, lambda port: config(port, {APPS[0].id: bot_a.url + "/incoming", APPS[1].id: bot_b.url + "/incoming"}, extra, sip_port=sip_port))
    await asyncio.to_thread(server.start)
    load = Load(server, [bot_a, bot_b], profile)
    gates = Gates()
    integrity: list[str] = []
    downtime: list[float] = []
    expected_s = profile["kills"] * sum(profile["between"]) / 2
    phone = sipp(sip_port, profile["sip_rate"], expected_s, data / "sipp")
    loops = [
        asyncio.create_task(load.every(profile["p2p_every"], load.p2p)),
        asyncio.create_task(load.every(profile["incoming_every"], load.incoming)),
        asyncio.create_task(load.every(profile["meeting_every"], load.meeting)),
    ]
    t_start = time.monotonic()
    try:
        for k in range(profile["kills"]):
            await asyncio.sleep(random.uniform(*profile["between"]))
            server.kill9()
            t_down = time.monotonic()
            integrity.append(await asyncio.to_thread(server.integrity))
            await asyncio.to_thread(server.start)
            downtime.append(time.monotonic() - t_down)
            print(f"kill {k + 1}/{profile['kills']}: back in {downtime[-1]:.2f} s, integrity {integrity[-1]}", flush=True)
        await load.finish()
        for t in loops:
            await t
        t_load = time.monotonic() - t_start
        if phone is not None:
            try:
                phone.wait(timeout=90)
            except subprocess.TimeoutExpired:
                phone.kill()

        # The timers run (unanswered incoming calls end at their deadline); then nothing may be
        # anything but established, and the bots hang up what is left.
        await asyncio.sleep(ANSWER_DEADLINE_S + 2)
        live = await load.ga.live_calls() + await load.gb.live_calls()
        stuck = [(c["id"], c.get("state")) for c in live if c.get("state") not in ("established",)]
        for c in live:
            g = load.ga if c["id"] in {x["id"] for x in await load.ga.live_calls()} else load.gb
            s, _ = await g.request("DELETE", f"/v1.0/communications/calls/{c['id']}")
            if s == 204:
                load.ledger.ended[c["id"]] = "cleanup"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (server.undelivered()[0] > 0 or await load.ga.live_calls() or await load.gb.live_calls()):
            await asyncio.sleep(0.5)
        left = await load.ga.live_calls() + await load.gb.live_calls()
        outbox, dead = server.undelivered()
        committed = server.committed_notifications()
    finally:
        await load.ga.close()
        await load.gb.close()
        await asyncio.to_thread(server.stop)
    integrity.append(server.integrity())

    rep = delivery_report(committed, [bot_a, bot_b])
    delivered = [a for e in (bot_a, bot_b) for a in e.delivered()]
    calls_heard = {a.call for a in delivered}
    ended_heard = {a.call for a in delivered if a.terminated()}
    missing_calls = [c for c in load.ledger.calls if c not in calls_heard]
    unended = [c for c in load.ledger.ended if c not in ended_heard]
    ops_unfinished = [
        op for op, cid in load.ledger.operations.items()
        if cid not in ended_heard and not any(a.mentions(op) and any(isinstance(i.get("resourceData"), dict) and i["resourceData"].get("status") in ("completed", "failed") for i in a.items) for a in delivered)
    ]
    kinds: dict[str, int] = {}
    for k in load.ledger.calls.values():
        kinds[k] = kinds.get(k, 0) + 1
    rows = [
        ("load", f"{t_load:.0f} s, {profile['kills']} kills, seed {seed}"),
        ("restart (kill → ready) mean / max", f"{sum(downtime) / len(downtime):.2f} / {max(downtime):.2f} s"),
        ("calls acknowledged", ", ".join(f"{v} {k}" for k, v in sorted(kinds.items()))),
        ("of which SIPp phone calls", load.sip_calls),
        ("hang-ups / transfers acknowledged", f"{sum(1 for v in load.ledger.ended.values() if v != 'transfer')} / {sum(1 for v in load.ledger.ended.values() if v == 'transfer')}"),
        ("operations acknowledged (running)", len(load.ledger.operations)),
        ("requests refused while down", load.ledger.refused),
        ("notifications committed / delivered", f"{committed} / {rep['delivered']}"),
        ("duplicates (delivered again after a kill)", rep["duplicates"]),
        ("calls out of order", len(rep["out_of_order"])),
        ("stuck calls after the timers", len(stuck)),
        ("integrity_check", "ok" if all(i == "ok" for i in integrity) else integrity),
    ]
    table("kill -9 under mixed load", rows)
    gates.check(not load.ledger.errors, f"no request failed but for a dead call ({load.ledger.errors[:3]})")
    gates.check(not missing_calls, f"every acknowledged call has its notifications ({missing_calls[:5]})")
    gates.check(not unended, f"every acknowledged hang-up or transfer ended its call ({unended[:5]})")
    gates.check(not ops_unfinished, f"every acknowledged operation finished or its call ended ({ops_unfinished[:5]})")
    gates.check(not rep["missing"], f"every committed notification delivered (missing {rep['missing'][:10]})")
    gates.check(not rep["out_of_order"], f"per-call order kept ({rep['out_of_order'][:2]})")
    gates.check(not stuck, f"no call stuck in a non-final state past its timers ({stuck[:5]})")
    gates.check(not left and (outbox, dead) == (0, 0), f"all calls ended and delivered ({len(left)} live, outbox {outbox}, dead {dead})")
    gates.check(all(i == "ok" for i in integrity), "PRAGMA integrity_check ok after every kill")
    gates.finish(server)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--kills", type=int)
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    ap.add_argument("--data-dir", type=Path)
    args = ap.parse_args()
    profile = dict(PROFILES["full" if args.full else "short"])
    if args.kills:
        profile["kills"] = args.kills
    data = args.data_dir or Path(tempfile.mkdtemp(prefix="ringside-crash-"))
    print(f"data folder: {data}")
    asyncio.run(run(profile, data, args.seed))


if __name__ == "__main__":
    main()
