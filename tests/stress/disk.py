"""The data folder fills up, then turns read-only, while a bot places calls.

ringside's data folder is a small tmpfs made for the test (so this needs root, as the test
command runs on CI). First the disk is filled to the last byte, then the mount is remounted
read-only; each time the bot keeps placing and hanging up calls, then space (or write access)
comes back.

Gates:
  * while it cannot write, a request that must change state fails with a 5xx Graph error
    envelope that says storage is the problem, and the log says why; reads still answer;
  * nothing half-written: no call that was refused ever shows up (not in GET /calls, not in a
    notification), and every acknowledged call's notifications arrive in order;
  * service resumes by itself when space or write access returns; the database passes
    PRAGMA integrity_check.

    python tests/stress/disk.py
"""
from __future__ import annotations

import argparse
import asyncio
import errno
import os
import subprocess
import tempfile
import time
from pathlib import Path

from harness import ALICE, APPS, Endpoint, Gates, Graph, Server, call_body, config, delivery_report, table


def mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)


def fill(where: Path) -> int:
    """Write a file until the disk says no: bytes written."""
    n = 0
    chunk = b"\0" * (1 << 20)
    with open(where / "filler", "wb", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
                n += len(chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    return n
                chunk = chunk[: len(chunk) // 2]


async def attempt_calls(g: Graph, bot: Endpoint, n: int, refused: list, accepted: list, errors: list) -> None:
    """Place n calls one after another; sort the answers."""
    for _ in range(n):
        s, v = await g.request("POST", "/v1.0/communications/calls", call_body(bot.url, ALICE))
        if s == 201:
            accepted.append(v["id"])
        else:
            refused.append((s, v))
            if not (500 <= s < 600 and isinstance(v, dict) and "error" in v and "storage" in v["error"].get("message", "").lower()):
                errors.append((s, v))
        await asyncio.sleep(0.05)


async def hang_up(g: Graph, ids: list[str]) -> None:
    for cid in ids:
        await g.request("DELETE", f"/v1.0/communications/calls/{cid}")


async def run(work: Path) -> None:
    data = work / "data"
    mount_tmpfs(data, "64m")
    bot = Endpoint("a")
    await bot.start()
    server = Server(data, lambda port: config(port, {APPS[0].id: bot.url + "/incoming", APPS[1].id: bot.url + "/incoming"}, "notification_backoff_ms = 100\nnotification_max_attempts = 1000"), log_path=work / "ringside.log")
    gates = Gates()
    rows = []
    try:
        await asyncio.to_thread(server.start)
        g = Graph(server, APPS[0])
        accepted: list[str] = []
        await attempt_calls(g, bot, 5, [], accepted, [])
        gates.check(len(accepted) == 5, "calls are placed while the disk has room")
        await asyncio.sleep(0.5)
        await hang_up(g, accepted)

        for trouble in ("full",):
            log_before = server.log_path.stat().st_size
            if trouble == "full":
                filled = fill(data)
                rows.append(("filler written", f"{filled / 1e6:.1f} MB"))
            refused: list = []
            errors: list = []
            during: list[str] = []
            t0 = time.monotonic()
            await attempt_calls(g, bot, 20, refused, during, errors)
            s_read, _ = await g.request("GET", "/v1.0/communications/calls")
            log = server.log_path.read_bytes()[log_before:].decode(errors="replace")
            rows.append((f"{trouble}: calls refused / accepted", f"{len(refused)} / {len(during)}"))
            rows.append((f"{trouble}: first refusal", str(refused[0])[:160] if refused else "-"))
            gates.check(len(refused) > 0, f"{trouble}: requests that must write are refused")
            gates.check(not errors, f"{trouble}: every refusal is a 5xx Graph error about storage ({errors[:2]})")
            gates.check(s_read == 200, f"{trouble}: reads still answer ({s_read})")
            gates.check("store commit failed" in log, f"{trouble}: the log says why")
            # Room comes back: the service resumes by itself.
            os.remove(data / "filler")
            after: list[str] = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not after:
                await attempt_calls(g, bot, 1, [], after, [])
            rows.append((f"{trouble}: back to normal after", f"{time.monotonic() - t0:.1f} s"))
            gates.check(bool(after), f"{trouble}: service resumes when it can write again")
            await attempt_calls(g, bot, 5, [], after, [])
            accepted += during + after
            await asyncio.sleep(0.5)
            await hang_up(g, during + after)

        # The machine crashes with calls up and its volume comes back read-only: ringside
        # refuses to start, saying why; once the volume is writable it starts with the calls.
        kept: list[str] = []
        await attempt_calls(g, bot, 3, [], kept, [])
        await asyncio.sleep(0.5)
        server.kill9()
        subprocess.run(["mount", "-o", "remount,ro", str(data)], check=True)
        t0 = time.monotonic()
        try:
            await asyncio.to_thread(server.start, 20)
            started, why = True, ""
        except RuntimeError as e:
            started, why = False, str(e)
        rows.append(("read-only: ringside says", (why.strip().splitlines() or ["(nothing)"])[-1][:160]))
        gates.check(not started and "read-only" in why.lower(), "read-only: ringside refuses to start and says the data folder is read-only")
        subprocess.run(["mount", "-o", "remount,rw", str(data)], check=True)
        await asyncio.to_thread(server.start)
        rows.append(("read-only: back after", f"{time.monotonic() - t0:.1f} s"))
        live_ids = {c["id"] for c in await g.live_calls()}
        gates.check(set(kept) <= live_ids, f"read-only: the calls acknowledged before are there after ({len(set(kept) & live_ids)}/{len(kept)})")
        await hang_up(g, kept)
        accepted += kept

        # Settle: every acknowledged call ended and delivered; nothing else ever appeared.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (server.undelivered()[0] > 0 or await g.live_calls()):
            await asyncio.sleep(0.3)
        live = await g.live_calls()
        committed = server.committed_notifications()
        rep = delivery_report(committed, [bot])
        strangers = sorted({a.call for a in bot.delivered()} - set(accepted))
        unheard = [c for c in accepted if c not in {a.call for a in bot.delivered()}]
        await g.close()
    finally:
        await asyncio.to_thread(server.stop)
    integrity = server.integrity()
    subprocess.run(["umount", str(data)], check=False)
    rows += [
        ("calls acknowledged in all", len(accepted)),
        ("notifications committed / delivered", f"{committed} / {rep['delivered']}"),
        ("integrity_check", integrity),
    ]
    table("disk full, then read-only", rows)
    gates.check(not strangers, f"no refused call ever appeared in a notification ({strangers[:3]})")
    gates.check(not unheard, f"every acknowledged call was notified ({unheard[:3]})")
    gates.check(not rep["missing"] and not rep["out_of_order"], f"committed notifications delivered in order ({rep['missing'][:5]}, {rep['out_of_order'][:2]})")
    gates.check(not live, f"no call left live ({len(live)})")
    gates.check(integrity == "ok", "PRAGMA integrity_check")
    gates.finish(server)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="the same run (it has one size)")
    ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("disk.py mounts a small tmpfs for ringside's data folder: run it as root (CI does)")
    work = Path(tempfile.mkdtemp(prefix="ringside-disk-"))
    print(f"work folder: {work}")
    asyncio.run(run(work))


if __name__ == "__main__":
    main()
