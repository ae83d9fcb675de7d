"""When did this machine stop running a thread that asked to run?

A media tick is late when its thread wakes late. Inside the machine that has causes ringside
owns (its own threads, work that overran); on a virtual machine it also has one it cannot:
the hypervisor running another guest on this one's CPU, which holds up every thread on it,
timers included. `/proc/stat` counts that time (steal) but not when it came or how long each
stretch was. A clock probe sees it directly: one process pinned to each CPU, at a realtime
priority above everything in the machine, that asks to wake every 2 ms. Nothing in the
guest can hold it up, so when it wakes more than 2 ms late, the CPU was
not running anything: those stretches are the machine's, with their wall-clock times.

    probe = ClockProbe(out_dir).start()
    ...                          # the load
    probe.stop()
    probe.stalls                 # [(start, end)] in time.time() seconds, any CPU
    probe.realtime               # False when not permitted (then stalls may be the guest's own)

Run as a script it is one CPU's probe (`--cpu N --out FILE`), writing a line per stall.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PERIOD_S = 0.002
# A wake later than this is a stall (a Python wake-up on an idle CPU is well under 1 ms late).
STALL_S = 0.002
PRIORITY = 50  # above ringside's media threads (SCHED_RR 10) when those ask for realtime


def probe(cpu: int, out: Path) -> None:
    os.sched_setaffinity(0, {cpu})
    realtime = True
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(PRIORITY))
    except PermissionError:
        realtime = False
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    with open(out, "w", buffering=1) as f:
        f.write(f"realtime {int(realtime)}\n")
        due = time.monotonic() + PERIOD_S
        while not stop:
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            now = time.monotonic()
            late = now - due
            if late > STALL_S:
                end = time.time()
                f.write(f"stall {end - late:.6f} {end:.6f}\n")
            due = max(due + PERIOD_S, now)


class ClockProbe:
    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.procs: list[tuple[subprocess.Popen, Path]] = []
        self.stalls: list[tuple[float, float]] = []
        self.realtime = False

    def start(self) -> "ClockProbe":
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for cpu in sorted(os.sched_getaffinity(0)):
            out = self.out_dir / f"cpu{cpu}.txt"
            self.procs.append((subprocess.Popen([sys.executable, __file__, "--cpu", str(cpu), "--out", str(out)]), out))
        return self

    def stop(self) -> None:
        """Stop the probes and read what they saw (again: nothing more)."""
        running = [(p, out) for p, out in self.procs if p.poll() is None]
        for p, _ in running:
            p.terminate()
        for p, _ in running:
            p.wait(10)
        if not running:
            return
        flags = []
        for _, out in self.procs:
            lines = out.read_text().splitlines()
            flags.append(lines[:1] == ["realtime 1"])
            for line in lines[1:]:
                _, start, end = line.split()
                self.stalls.append((float(start), float(end)))
        self.realtime = bool(flags) and all(flags)
        self.stalls.sort()

    def away(self, start: float, end: float) -> float:
        """Seconds of [start, end] in which some CPU was stalled (the longest overlap of one
        stall: a thread waits out one CPU's stall, not the sum over CPUs)."""
        best = 0.0
        for s, e in self.stalls:
            if s >= end:
                break
            best = max(best, min(e, end) - max(s, start))
        return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpu", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    probe(a.cpu, a.out)


if __name__ == "__main__":
    main()
