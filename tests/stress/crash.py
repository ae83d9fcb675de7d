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
    python tests/stress/crash.py --capacity      # the mixed load's capacity on this machine
    python tests/stress/crash.py --full          # capacity first, then 20 kills at half of it

Capacity: the short profile's mix (a bot call every 250 ms, an incoming call a second, a
meeting every 3 s, SIPp at 1 call/s) scaled ×1, ×2, ×4 … for 20 s a step without kills, until
a step fails: a request failed, create/answer/action p99 over 500 ms, media ticks late over
0.1 %, or less than 90 % of the intended calls acknowledged. The last step that held is the
capacity; CPU of ringside and of this load client are reported per step, so a client that
saturates first is visible.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from harness import ADMIN, Gates, bots_and_server, delivery_report, free_port, percentile, table
from load import Load, sipp

PROFILES = {
    "short": dict(kills=20, between=(2.0, 5.0), p2p_every=0.25, incoming_every=1.0, meeting_every=3.0, sip_rate=1),
    "full": dict(kills=20, between=(5.0, 15.0)),  # the short mix scaled to half the capacity
}
ANSWER_DEADLINE_S = 8
STEP_S = 20.0
STEP_P99_S = 0.5


def scaled(profile: dict, k: float) -> dict:
    """The short profile's mix, k times as fast."""
    base = PROFILES["short"]
    return dict(profile, p2p_every=base["p2p_every"] / k, incoming_every=base["incoming_every"] / k, meeting_every=base["meeting_every"] / k, sip_rate=max(1, round(base["sip_rate"] * k)))


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def capacity(data: Path) -> float:
    """The highest multiple of the short mix that ringside keeps up with (module docstring)."""
    sip_port = free_port(2)
    extra = f"notification_backoff_ms = 100\nanswer_deadline_seconds = {ANSWER_DEADLINE_S}"
    bot_a, bot_b, server = await bots_and_server(data, extra, sip_port)
    held, k, rows = 0.0, 1.0, []
    admin = httpx.AsyncClient(timeout=10, headers={"Authorization": f"Bearer {ADMIN}"})
    try:
        while True:
            profile = scaled({}, k)
            load = Load(server, [bot_a, bot_b], profile)
            m0 = (await admin.get(f"{server.base}/admin/media")).json()
            cpu0, me0, t0 = cpu_s(server.proc.pid), time.process_time(), time.monotonic()
            phone = sipp(sip_port, profile["sip_rate"], STEP_S, data / f"sipp-{k:g}")
            loops = load.flows()
            await asyncio.sleep(STEP_S)
            await load.finish()
            await asyncio.gather(*loops)
            wall = time.monotonic() - t0
            cpu, me = cpu_s(server.proc.pid) - cpu0, time.process_time() - me0
            m1 = (await admin.get(f"{server.base}/admin/media")).json()
            if phone is not None:
                phone.wait(timeout=60)
            ticks, late = m1["ticks"] - m0["ticks"], m1["ticksLate5ms"] - m0["ticksLate5ms"]
            intended = STEP_S * (1 / profile["p2p_every"] + 1 / profile["incoming_every"] + 2 / profile["meeting_every"] + profile["sip_rate"])
            got = len(load.ledger.calls)
            p50, p99 = percentile(load.ledger.latency, 50), percentile(load.ledger.latency, 99)
            late_pc = 100 * late / max(1, ticks)
            ok = not load.ledger.errors and p99 < STEP_P99_S and late_pc < 0.1 and got >= 0.9 * intended
            rows.append((f"×{k:g}: {intended / STEP_S:.1f} calls/s", f"{got / STEP_S:.1f} acknowledged/s, requests p50 {p50 * 1000:.0f} / p99 {p99 * 1000:.0f} ms, late ticks {late_pc:.3f} %, CPU ringside {100 * cpu / wall:.0f} % / client {100 * me / wall:.0f} % of a core, errors {len(load.ledger.errors)} → {'held' if ok else 'did not hold'}"))
            print(rows[-1][0], rows[-1][1], flush=True)
            await asyncio.sleep(ANSWER_DEADLINE_S)  # the step's calls end before the next
            if not ok:
                break
            held, k = k, k * 2
    finally:
        await admin.aclose()
        await asyncio.to_thread(server.stop)
    table("capacity of the mixed load (steps of 20 s, no kills)", rows + [("capacity", f"×{held:g} the short mix" if held else "not even ×1")])
    return held


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
    loops = load.flows()
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
    ap.add_argument("--full", action="store_true", help="capacity first, then 20 kills at half of it")
    ap.add_argument("--capacity", action="store_true", help="only measure the mixed load's capacity")
    ap.add_argument("--kills", type=int)
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    ap.add_argument("--data-dir", type=Path)
    args = ap.parse_args()
    profile = dict(PROFILES["full" if args.full else "short"])
    if args.kills:
        profile["kills"] = args.kills
    data = args.data_dir or Path(tempfile.mkdtemp(prefix="ringside-crash-"))
    print(f"data folder: {data}")
    if args.capacity or args.full:
        held = asyncio.run(capacity(data / "capacity"))
        if args.capacity:
            return
        if not held:
            sys.exit("ringside did not keep up with even the short mix: no capacity to halve")
        profile = scaled(profile, held / 2)
        print(f"the kills run at half the capacity: ×{held / 2:g} the short mix", flush=True)
    asyncio.run(run(profile, data / "kills", args.seed))


if __name__ == "__main__":
    main()
