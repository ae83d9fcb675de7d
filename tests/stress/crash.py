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
import subprocess
import tempfile
import time
from pathlib import Path

from harness import Gates, bots_and_server, delivery_report, free_port, table
from load import Load, sipp

PROFILES = {
    "short": dict(kills=20, between=(2.0, 5.0), p2p_every=0.25, incoming_every=1.0, meeting_every=3.0, sip_rate=1),
    "full": dict(kills=20, between=(5.0, 15.0), p2p_every=0.02, incoming_every=0.1, meeting_every=0.5, sip_rate=5),
}
ANSWER_DEADLINE_S = 8


async def run(profile: dict, data: Path, seed: int) -> None:
    random.seed(seed)
    sip_port = free_port(2)
    extra = f"notification_backoff_ms = 100\nnotification_max_attempts = 1000\nanswer_deadline_seconds = {ANSWER_DEADLINE_S}"
    bot_a, bot_b, server = await bots_and_server(data, extra, sip_port)
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
