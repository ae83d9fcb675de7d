"""A bad network path between two network namespaces, impaired in userspace.

This kernel (like CI's) has no `sch_netem`, so `tc qdisc ... netem` is not available. The
same effect comes from a router in userspace: one TUN device in each namespace, routes that
send the other side's addresses through it, and a thread here that reads each IP packet from
one device and writes it to the other after the impairment decides its fate — dropped, or
held for `delay_ms ± jitter_ms` (uniform, so packets overtake each other: reordering), with
`reorder` of the rest sent at once (netem's `reorder`). UDP is impaired (SIP and RTP); TCP
passes untouched (the test's control connection to the phone). All seeded: a run is
repeatable.

    this namespace (ringside) 10.77.0.1 ─tunA─┐             ┌─tunB─ 10.77.1.2 (the phone's)
                                              └─ route() ───┘
"""
from __future__ import annotations

import fcntl
import heapq
import multiprocessing
import os
import random
import select
import struct
import subprocess
import time
from dataclasses import dataclass

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
UDP, TCP = 17, 6


@dataclass(frozen=True)
class Impairment:
    name: str
    loss: float = 0.0       # probability a UDP packet is dropped
    delay_ms: float = 0.0   # base one-way delay
    jitter_ms: float = 0.0  # ± uniform around the base
    reorder: float = 0.0    # probability a kept packet skips the delay (jumps the queue)


@dataclass
class Direction:
    packets: int = 0
    dropped: int = 0
    reordered: int = 0  # sent before a packet that arrived earlier
    last_sent: int = -1


def sh(cmd: str) -> None:
    subprocess.run(cmd, shell=True, check=True)


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


class Path:
    """The phone's namespace, joined to the current one (ringside's) through a router process
    forked from this one. `impair()` changes what the path does; `stats()` reads its counts."""

    def __init__(self, tag: str, seed: int = 7) -> None:
        self.ns_phone = f"rs-phone-{tag}"
        self.addr_server, self.addr_phone = "10.77.0.1", "10.77.1.2"
        self.tuns = (f"rsa{tag}"[:15], f"rsb{tag}"[:15])
        self.seed = seed
        self._proc: multiprocessing.Process | None = None
        self._ctl = None

    def __enter__(self) -> "Path":
        tun_a, tun_b = self.tuns
        fds = (open_tun(tun_a), open_tun(tun_b))
        sh(f"ip netns add {self.ns_phone}")
        sh(f"ip link set {tun_b} netns {self.ns_phone}")
        for ns, tun, mine in (("", tun_a, self.addr_server), (self.ns_phone, tun_b, self.addr_phone)):
            n = f"-n {ns} " if ns else ""
            sh(f"ip {n}link set lo up")
            sh(f"ip {n}addr add {mine}/32 dev {tun}")
            sh(f"ip {n}link set {tun} up")
            sh(f"ip {n}route add default dev {tun}")  # baresip wants a default route; the namespaces reach nothing else
        self._ctl, child = multiprocessing.Pipe()
        self._proc = multiprocessing.get_context("fork").Process(target=route, args=(fds, child, self.seed), daemon=True)
        self._proc.start()
        for fd in fds:
            os.close(fd)  # the router holds them now
        return self

    def __exit__(self, *exc) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.join(5)
        subprocess.run(["ip", "netns", "del", self.ns_phone], check=False)

    def impair(self, imp: Impairment) -> None:
        """From now on, this impairment (and counts from zero)."""
        self._ctl.send(imp)
        self._ctl.recv()

    def stats(self) -> dict[str, Direction]:
        self._ctl.send("stats")
        return self._ctl.recv()


def route(fds: tuple[int, int], ctl, seed: int) -> None:
    """The router: every IPv4 packet read from one TUN device is written to the other, UDP
    after the impairment's verdict. Runs in its own process (timing free of the test's GIL)."""
    fd_a, fd_b = fds
    rng = random.Random(seed)
    imp = Impairment("clean")
    stats = {"to_phone": Direction(), "to_server": Direction()}
    queue: list[tuple[float, int, int, bytes, Direction | None]] = []  # (due, arrival no., out fd, packet, counts)
    arrival = 0
    while True:
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, n, out, pkt, d = heapq.heappop(queue)
            if d is not None:
                if n < d.last_sent:
                    d.reordered += 1
                d.last_sent = max(d.last_sent, n)
            try:
                os.write(out, pkt)
            except OSError:
                pass
        wait = min(0.05, max(0.0, queue[0][0] - now)) if queue else 0.05
        ready, _, _ = select.select([fd_a, fd_b, ctl], [], [], wait)
        if ctl in ready:
            msg = ctl.recv()
            if isinstance(msg, Impairment):
                imp = msg
                stats = {"to_phone": Direction(), "to_server": Direction()}
            ctl.send(stats)
        for fd in (f for f in ready if f is not ctl):
            try:
                pkt = os.read(fd, 65536)
            except OSError:
                continue
            if len(pkt) < 20 or pkt[0] >> 4 != 4:
                continue  # IPv4 only (the kernel's IPv6 chatter is dropped)
            out, d = (fd_b, stats["to_phone"]) if fd == fd_a else (fd_a, stats["to_server"])
            arrival += 1
            due = time.monotonic()
            if pkt[9] != UDP:
                d = None
            else:
                d.packets += 1
                if rng.random() < imp.loss:
                    d.dropped += 1
                    continue
                if rng.random() >= imp.reorder:
                    due += max(0.0, imp.delay_ms + rng.uniform(-imp.jitter_ms, imp.jitter_ms)) / 1000
            heapq.heappush(queue, (due, arrival, out, pkt, d))
