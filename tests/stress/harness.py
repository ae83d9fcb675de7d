"""What the stress scenarios share: a `ringside serve` process they can kill -9 and restart, a
bot endpoint whose behaviour a scenario switches (up, down, 500, slow, redirect, cut mid-body),
Graph requests over plain HTTP, and the checks every scenario ends with: every committed
notification delivered, per-call order, no call left live.

Everything listens on 127.0.0.1. Ground truth for "committed" is the database itself: the
outbox's AUTOINCREMENT sequence only advances in a committed transaction, so the notifications
ever committed are exactly 1..sqlite_sequence('outbox').
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

TENANT = "11111111-1111-1111-1111-111111111111"
ADMIN = "admin-token-stress"
ALICE = "a11ce000-0000-0000-0000-000000000001"  # answers after 50 ms
ERIN = "e4140000-0000-0000-0000-000000000005"   # answers after 50 ms, presses 4, 5, 6 from 300 ms
GINA = "91a40000-0000-0000-0000-000000000007"   # answers after 50 ms, hangs up 3 s later (transfer target)


@dataclass
class App:
    id: str
    secret: str
    name: str


APPS = [
    App("aaaaaaaa-0000-0000-0000-00000000000a", "secret-a", "Bot A"),
    App("aaaaaaaa-0000-0000-0000-00000000000b", "secret-b", "Bot B"),
]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binary() -> Path:
    b = Path(os.environ.get("RINGSIDE_BIN", ROOT / "target" / "debug" / "ringside"))
    if not b.is_absolute():
        b = ROOT / b
    if not os.access(b, os.X_OK):
        sys.exit(f"ringside binary not found at {b} (build it, or set RINGSIDE_BIN)")
    return b


def config(port: int, webhooks: dict[str, str], server_extra: str = "", extra: str = "", sip_port: int = 0, sip_host: str = "127.0.0.1") -> str:
    """Two apps (bot A answers SIP calls to `sip:bot@…`), three simulated users. They keep
    none of what they hear (`recordHeardSeconds = 0`): nothing here asks, and a long run would
    otherwise measure that bounded history (64 MB, registry.rs) rather than ringside."""
    apps = "\n".join(
        f'[[apps]]\nid = "{a.id}"\ntenant = "{TENANT}"\nname = "{a.name}"\nsecret = "{a.secret}"\nwebhook = "{webhooks[a.id]}"\n'
        + ('addresses = ["sip:bot@contoso.example"]\n' if a is APPS[0] else "")
        for a in APPS
    )
    return f"""
[server]
listen = "127.0.0.1:{port}"
max_calls_per_app = 100000
rate_per_app = 100000.0
burst_per_app = 100000.0
rate_per_tenant = 100000.0
burst_per_tenant = 100000.0
{server_extra}

[admin]
token = "{ADMIN}"

[[tenants]]
id = "{TENANT}"
name = "Contoso"

{apps}
[[users]]
id = "{ALICE}"
tenant = "{TENANT}"
display_name = "Alice"
behaviour = {{ action = "answer", answerAfterMs = 50, recordHeardSeconds = 0 }}

[[users]]
id = "{ERIN}"
tenant = "{TENANT}"
display_name = "Erin"
behaviour = {{ action = "answer", answerAfterMs = 50, dtmf = [{{ atMs = 300, digits = "456", gapMs = 100 }}], recordHeardSeconds = 0 }}

[[users]]
id = "{GINA}"
tenant = "{TENANT}"
display_name = "Gina"
behaviour = {{ action = "answer", answerAfterMs = 50, hangupAfterMs = 3000, recordHeardSeconds = 0 }}

[sip]
udp = ["{sip_host}:{sip_port or free_port(socket.SOCK_DGRAM)}"]
rtp_ip = "{sip_host}"
digest = ["MD5"]  # baresip 1.0 answers only MD5 challenges

[webrtc]
udp = "127.0.0.1:0"
{extra}"""


def _prompt() -> bytes:
    import io
    import math
    import struct
    import wave

    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / 16000))) for i in range(16000)))
    return out.getvalue()


PROMPT = _prompt()


class Server:
    """One `ringside serve` in its own data folder; kill -9 and restart keep the folder."""

    def __init__(self, data_dir: Path, config_text_for_port, log_path: Optional[Path] = None, log_extra: str = "") -> None:
        self.data_dir = data_dir
        self.log_extra = log_extra  # more RUST_LOG directives, e.g. ",media::runtime=debug"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "ringside.toml").write_text(config_text_for_port(self.port))
        self.log_path = log_path or data_dir / "ringside.log"
        self.proc: Optional[subprocess.Popen] = None
        self.tokens: dict[str, tuple[str, float]] = {}  # app id → (token, refresh after)
        self.starts = 0

    def start(self, timeout: float = 60) -> None:
        log = open(self.log_path, "ab")
        log.write(f"\n---- start {self.starts} ----\n".encode())
        log.flush()
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info,hyper=warn,reqwest=warn,rsipstack=warn,http=warn,notification=warn") + self.log_extra, NO_COLOR="1")
        self.proc = subprocess.Popen(
            [str(binary()), "--data-dir", str(self.data_dir), "serve"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        )
        log.close()  # the child has its own
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ringside exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"ringside was not ready in {timeout}s:\n{self.log_tail()}")

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def token(self, app: App) -> str:
        """The app's access token, fetched again five minutes before it expires (as MSAL does:
        the soak's hour outlives one)."""
        token, until = self.tokens.get(app.id, ("", 0.0))
        if time.monotonic() >= until:
            r = httpx.post(
                f"{self.base}/{TENANT}/oauth2/v2.0/token",
                data={"grant_type": "client_credentials", "client_id": app.id, "client_secret": app.secret, "scope": "https://graph.microsoft.com/.default"},
                timeout=10,
            )
            r.raise_for_status()
            v = r.json()
            token, until = v["access_token"], time.monotonic() + float(v["expires_in"]) - 300
            self.tokens[app.id] = (token, until)
        return token

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.data_dir / 'ringside.db'}?mode=ro", uri=True, timeout=30)

    def committed_notifications(self) -> int:
        """How many notifications were ever committed: the outbox's AUTOINCREMENT high mark."""
        with closing(self.db()) as c:
            row = c.execute("SELECT seq FROM sqlite_sequence WHERE name='outbox'").fetchone()
        return row[0] if row else 0

    def integrity(self) -> str:
        """PRAGMA integrity_check on the database as it is on disk (with its WAL)."""
        c = sqlite3.connect(self.data_dir / "ringside.db", timeout=30)
        try:
            return "; ".join(r[0] for r in c.execute("PRAGMA integrity_check").fetchall())
        finally:
            c.close()

    def undelivered(self) -> tuple[int, int]:
        """(rows in the outbox, dead letters)."""
        with closing(self.db()) as c:
            return (c.execute("SELECT count(*) FROM outbox").fetchone()[0], c.execute("SELECT count(*) FROM dead_letters").fetchone()[0])


def call_body(callback: str, user: str = ALICE) -> dict:
    return {
        "@odata.type": "#microsoft.graph.call",
        "callbackUri": callback,
        "targets": [{"@odata.type": "#microsoft.graph.invitationParticipantInfo", "identity": {"@odata.type": "#microsoft.graph.identitySet", "user": {"@odata.type": "#microsoft.graph.identity", "id": user, "displayName": "Target"}}}],
        "requestedModalities": ["audio"],
        "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
    }


class Graph:
    """Graph requests as an app, over one HTTP/1.1 connection pool."""

    def __init__(self, server: Server, app: App) -> None:
        self.server = server
        self.app = app
        self.http = httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64))

    async def request(self, method: str, path: str, body=None) -> tuple[int, object]:
        h = {"Authorization": f"Bearer {self.server.token(self.app)}"}
        r = await self.http.request(method, f"{self.server.base}{path}", json=body, headers=h)
        try:
            return r.status_code, (r.json() if r.content else None)
        except ValueError:
            return r.status_code, r.text

    async def admin(self, method: str, path: str, body=None) -> tuple[int, object]:
        r = await self.http.request(method, f"{self.server.base}/admin{path}", json=body, headers={"Authorization": f"Bearer {ADMIN}"})
        try:
            return r.status_code, (r.json() if r.content else None)
        except ValueError:
            return r.status_code, r.text

    async def live_calls(self) -> list[dict]:
        s, v = await self.request("GET", "/v1.0/communications/calls")
        assert s == 200, (s, v)
        return v["value"]

    async def close(self) -> None:
        await self.http.aclose()


# ------------------------------------------------------------------ the bot's endpoint


@dataclass
class Arrival:
    seq: int
    call: str
    at: float        # monotonic seconds
    status: int      # what the endpoint answered (0: it cut the connection)
    states: list[str]  # the call's own states in this notification
    items: list[dict] = field(default_factory=list)  # (changeType, resourceUrl, resourceData)

    def terminated(self) -> bool:
        return "terminated" in self.states

    def mentions(self, text: str) -> bool:
        return any(text in i.get("resourceUrl", "") for i in self.items)


@dataclass
class Endpoint:
    """A bot's notification endpoint on a fixed port. `mode`: up (202), down (not listening),
    500, slow (answers 200 after `slow_s`), redirect (302 to a private address), cut (reads
    half the body, then closes)."""

    name: str
    port: int = field(default_factory=free_port)
    mode: str = "up"
    slow_s: float = 30.0
    arrivals: list[Arrival] = field(default_factory=list)
    server: Optional[asyncio.base_events.Server] = None
    # Called with every arrival answered 2xx (a bot reacting: answering an incoming call).
    hook: Optional[Callable[[Arrival], None]] = None
    prompt: bytes = b""  # what GET answers (default: PROMPT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.name}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)

    async def set(self, mode: str) -> None:
        if mode == "down" and self.server is not None:
            self.server.close()
            self.server = None
        elif mode != "down" and self.server is None:
            await self.start()
        self.mode = mode

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:] if l)}
                n = int(headers.get("content-length", "0"))
                mode = self.mode
                if lines[0].startswith("GET "):
                    # Prompts: a second of a 440 Hz tone unless told otherwise.
                    wav = self.prompt or PROMPT
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\nContent-Length: %d\r\n\r\n" % len(wav) + wav)
                    await writer.drain()
                    continue
                if mode == "cut":
                    await reader.readexactly(n // 2)
                    self._arrive(headers, None, 0)
                    writer.transport.abort()
                    return
                body = await reader.readexactly(n)
                if mode == "500":
                    status, extra = 500, ""
                elif mode == "redirect":
                    status, extra = 302, "Location: http://10.255.255.1:9/hook\r\n"
                else:
                    status, extra = (200 if mode == "slow" else 202), ""
                self._arrive(headers, body, status)
                if mode == "slow":
                    await asyncio.sleep(self.slow_s)
                writer.write(f"HTTP/1.1 {status} X\r\n{extra}Content-Length: 0\r\n\r\n".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    def _arrive(self, headers: dict, body: Optional[bytes], status: int) -> None:
        states, items = [], []
        if body:
            try:
                items = json.loads(body).get("value", [])
            except ValueError:
                pass
            for item in items:
                data = item.get("resourceData")  # a roster's is a list of participants
                st = data.get("state") if isinstance(data, dict) else None
                if st and "/participants" not in item.get("resourceUrl", "") and "/operations" not in item.get("resourceUrl", ""):
                    states.append(st)
        a = Arrival(int(headers.get("ringside-sequence", "0")), headers.get("scenario-id", ""), time.monotonic(), status, states, items)
        self.arrivals.append(a)
        if self.hook is not None and 200 <= status < 300:
            try:
                self.hook(a)
            except Exception as e:  # a bug in a scenario's bot must not look like a refused notification
                print(f"bot {self.name}: hook failed on seq {a.seq}: {e!r}", flush=True)

    def delivered(self) -> list[Arrival]:
        """Arrivals ringside saw succeed (2xx), in order."""
        return [a for a in self.arrivals if 200 <= a.status < 300]


async def bots_and_server(data: Path, server_extra: str, sip_port: int = 0, log_extra: str = "") -> tuple[Endpoint, Endpoint, Server]:
    """Bots A and B listening, and ringside started in `data` with them as the two apps'
    endpoints (SIP on `sip_port` when given; `log_extra`: more RUST_LOG directives)."""
    bot_a, bot_b = Endpoint("a"), Endpoint("b")
    await bot_a.start()
    await bot_b.start()
    server = Server(data, lambda port: config(port, {APPS[0].id: bot_a.url + "/incoming", APPS[1].id: bot_b.url + "/incoming"}, server_extra, sip_port=sip_port), log_extra=log_extra)
    await asyncio.to_thread(server.start)
    return bot_a, bot_b, server


def delivery_report(committed: int, endpoints: list[Endpoint], late: set[int] = frozenset()) -> dict:
    """The gates every scenario shares. `late`: sequences redelivered from dead letters, which
    arrive after what followed them in their call (docs/connecting-bots.md)."""
    seen: dict[int, Arrival] = {}
    duplicates = 0
    for e in endpoints:
        for a in e.delivered():
            if a.seq in seen:
                duplicates += 1
            else:
                seen[a.seq] = a
    missing = [s for s in range(1, committed + 1) if s not in seen]
    per_call: dict[str, list[Arrival]] = {}
    for a in sorted(seen.values(), key=lambda a: a.at):
        if a.seq not in late:
            per_call.setdefault(a.call, []).append(a)
    out_of_order = []
    for call, arrivals in per_call.items():
        seqs = [a.seq for a in arrivals]
        if seqs != sorted(seqs):
            out_of_order.append((call, seqs))
    return {
        "committed": committed,
        "delivered": len(seen),
        "missing": missing,
        "duplicates": duplicates,
        "calls": len(per_call),
        "out_of_order": out_of_order,
    }


def percentile(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def table(title: str, rows: list[tuple[str, object]]) -> str:
    w = max(len(k) for k, _ in rows)
    lines = [f"## {title}", ""] + [f"  {k.ljust(w)}  {v}" for k, v in rows]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


class Gates:
    """Collects pass/fail lines; `finish` exits non-zero if any failed."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def check(self, ok: bool, what: str, quiet: bool = False) -> None:
        if not ok or not quiet:
            print(f"  [{'pass' if ok else 'FAIL'}] {what}", flush=True)
        if not ok:
            self.failed.append(what)

    def finish(self, server: Optional[Server] = None) -> None:
        if self.failed:
            if server is not None:
                print("---- ringside log tail ----\n" + server.log_tail(60))
            sys.exit(f"{len(self.failed)} gate(s) failed: " + "; ".join(self.failed))
        print("all gates passed", flush=True)
