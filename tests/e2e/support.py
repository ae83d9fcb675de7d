"""Harness for the end-to-end suite: a real `ringside serve` process, a webhook receiver
that records every notification in arrival order (and serves prompt WAVs), Graph SDK
clients pointed at the server, and small helpers to wait for notifications.

Everything listens on 127.0.0.1 only.
"""
from __future__ import annotations

import asyncio
import io
import json
import math
import os
import re
import socket
import subprocess
import threading
import time
import wave
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Optional

import httpx
import jwt
from kiota_abstractions.authentication import (
    AccessTokenProvider,
    AllowedHostsValidator,
    BaseBearerTokenAuthenticationProvider,
)

# ------------------------------------------------------------------ directory

TENANT = "11111111-1111-1111-1111-111111111111"
APP = "aaaaaaaa-0000-0000-0000-000000000001"
APP2 = "aaaaaaaa-0000-0000-0000-000000000002"
SECRET = "secret-one"
SECRET2 = "secret-two"
ADMIN = "admin-token-e2e"

ALICE = "a11ce000-0000-0000-0000-000000000001"   # answers after 50 ms
BOB_BUSY = "b0b00000-0000-0000-0000-000000000002"
CAROL_NO_ANSWER = "ca401000-0000-0000-0000-000000000003"
DAVE_DECLINE = "da5e0000-0000-0000-0000-000000000004"
ERIN_DTMF = "e4140000-0000-0000-0000-000000000005"   # presses 4,5,6 from 1000 ms after answer
GINA = "91a40000-0000-0000-0000-000000000007"        # answers after 50 ms
HANK = "4a4c0000-0000-0000-0000-000000000008"        # answers after 50 ms (escalations)
IVAN_SIP = "1a4a0000-0000-0000-0000-000000000009"    # a SIP user: calls ring the phones registered as `ivan`
IVAN_SIP_USER = "ivan"
IVAN_SIP_PASSWORD = "ivan-sip-secret"
JUDY_SIP = "70d40000-0000-0000-0000-00000000000a"    # a second SIP user (`judy`), for phone-to-phone calls
JUDY_SIP_USER = "judy"
JUDY_SIP_PASSWORD = "judy-sip-secret"


def config_text(listen: str, hook: str, extra_server: str = "", extra_config: str = "", sip_port: int = 0) -> str:
    """The suite's ringside.toml; `extra_server` replaces the call cap under [server],
    `extra_config` is appended (more apps, tenants or users); SIP listens on `sip_port`."""
    return f"""
[server]
listen = "{listen}"
notification_backoff_ms = 50
notification_max_attempts = 4
record_participant_tracks = true
{extra_server or "max_calls_per_app = 1000"}

[admin]
token = "{ADMIN}"

[[tenants]]
id = "{TENANT}"
name = "Contoso"

[[apps]]
id = "{APP}"
tenant = "{TENANT}"
name = "E2E bot"
secret = "{SECRET}"
webhook = "{hook}/incoming"
addresses = ["sip:bot@contoso.example"]

[[apps]]
id = "{APP2}"
tenant = "{TENANT}"
name = "Second bot"
secret = "{SECRET2}"
webhook = "{hook}/incoming2"

[[users]]
id = "{ALICE}"
tenant = "{TENANT}"
display_name = "Alice"
behaviour = {{ action = "answer", answerAfterMs = 50 }}

[[users]]
id = "{BOB_BUSY}"
tenant = "{TENANT}"
display_name = "Bob"
behaviour = {{ action = "busy", answerAfterMs = 50 }}

[[users]]
id = "{CAROL_NO_ANSWER}"
tenant = "{TENANT}"
display_name = "Carol"
behaviour = {{ action = "noAnswer" }}

[[users]]
id = "{DAVE_DECLINE}"
tenant = "{TENANT}"
display_name = "Dave"
behaviour = {{ action = "decline", answerAfterMs = 50 }}

[[users]]
id = "{ERIN_DTMF}"
tenant = "{TENANT}"
display_name = "Erin"
behaviour = {{ action = "answer", answerAfterMs = 50, dtmf = [{{ atMs = 1000, digits = "456", gapMs = 100 }}] }}

[[users]]
id = "{GINA}"
tenant = "{TENANT}"
display_name = "Gina"
behaviour = {{ action = "answer", answerAfterMs = 50 }}

[[users]]
id = "{HANK}"
tenant = "{TENANT}"
display_name = "Hank"
behaviour = {{ action = "answer", answerAfterMs = 50 }}

[[users]]
id = "{IVAN_SIP}"
tenant = "{TENANT}"
display_name = "Ivan"
endpoint = "sip"
sip_user = "{IVAN_SIP_USER}"
sip_password = "{IVAN_SIP_PASSWORD}"

[[users]]
id = "{JUDY_SIP}"
tenant = "{TENANT}"
display_name = "Judy"
endpoint = "sip"
sip_user = "{JUDY_SIP_USER}"
sip_password = "{JUDY_SIP_PASSWORD}"

[sip]
udp = ["127.0.0.1:{sip_port}"]
rtp_ports = [44000, 44600]
# baresip 1.0 (libre 1.x) gives up on a REGISTER challenged with any algorithm but MD5, even
# when an MD5 challenge is offered beside it.
digest = ["MD5"]

[webrtc]
udp = "127.0.0.1:0"
{extra_config}"""


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ prompts

FIXTURES = Path(__file__).parent / "fixtures"


def wav_bytes(ms: int, rate: int = 16000) -> bytes:
    """A mono 16-bit PCM WAV of exactly `ms` milliseconds (a quiet 440 Hz tone)."""
    frames = rate * ms // 1000
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        samples = bytearray()
        for i in range(frames):
            v = int(3000 * math.sin(2 * math.pi * 440 * i / rate))
            samples += v.to_bytes(2, "little", signed=True)
        w.writeframes(bytes(samples))
    return buf.getvalue()


def wav_duration_ms(data: bytes) -> int:
    with wave.open(io.BytesIO(data), "rb") as w:
        return w.getnframes() * 1000 // w.getframerate()


# ------------------------------------------------------------------ webhook receiver


@dataclass
class Note:
    """One commsNotification item as the bot received it."""

    path: str
    change: str
    resource: str
    data: Any
    item: dict
    headers: dict
    at: float
    claims: Optional[dict] = None   # the verified callback token, when the path has a verifier

    @property
    def state(self) -> Optional[str]:
        return self.data.get("state") if isinstance(self.data, dict) else None

    @property
    def is_call(self) -> bool:
        r = self.resource.lower()
        return "/participants" not in r and "/operations" not in r and "/contentsharingsessions" not in r

    @property
    def is_roster(self) -> bool:
        return self.resource.endswith("/participants")

    @property
    def is_sharing(self) -> bool:
        return self.resource.lower().endswith("/contentsharingsessions")

    @property
    def is_operation(self) -> bool:
        return "/operations/" in self.resource

    def __repr__(self) -> str:  # readable failure messages
        return f"<{self.change} {self.resource} {json.dumps(self.data)[:300]}>"


class Hooks:
    """A threaded HTTP server: POSTs are notifications, GETs serve prompt files.

    GET /prompt/<ms>.wav  a WAV of that length (answered after 500 ms if the name has "-slow")
    GET /notwav           a text file (a prompt that cannot be played)
    GET /fixture/<name>   an audio fixture made by fixtures.sh
    POST /fail/...        always 500 (to produce dead letters), unless healed
    POST <path in fail_next>   500 that many times, then as below
    POST <path in redirects>   307 to the mapped location (a bot pinning an incoming call)
    POST anything else    recorded, answered 202
    """

    def __init__(self) -> None:
        self.notes: list[Note] = []
        self.lock = threading.Lock()
        self.healed: set[str] = set()
        self.fail_next: dict[str, int] = {}
        self.redirects: dict[str, str] = {}
        self.attempts: dict[str, int] = {}
        self.envelopes: list[tuple[str, dict, Any]] = []
        self.posts: list[tuple[str, float, Any]] = []   # (path, wall-clock time, body) of each accepted POST
        self.prompt_gets: list[str] = []
        self.verifiers: dict[str, "CallbackVerifier"] = {}
        self.rejected: list[tuple[str, str]] = []
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body: bytes = b"", ctype: str = "application/octet-stream"):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body:
                    self.wfile.write(body)

            def do_GET(self):
                with hooks.lock:
                    hooks.prompt_gets.append(self.path)
                m = re.fullmatch(r"/prompt/(\d+)(?:-[\w-]+)?\.wav", self.path)
                if m:
                    if "-slow" in self.path:
                        time.sleep(0.5)
                    return self._send(200, wav_bytes(int(m.group(1))), "audio/wav")
                f = re.fullmatch(r"/fixture/([\w.-]+\.wav)", self.path)
                if f and (FIXTURES / f.group(1)).is_file():
                    return self._send(200, (FIXTURES / f.group(1)).read_bytes(), "audio/wav")
                if self.path == "/notwav":
                    return self._send(200, b"hello, I am not a WAV file", "text/plain")
                return self._send(404)

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                claims = None
                verifier = hooks.verifier_for(self.path)
                if verifier is not None:
                    # A bot checks the token before it looks at the notification (reference §8.3).
                    try:
                        claims = verifier.verify(self.headers.get("Authorization"))
                    except (jwt.PyJWTError, httpx.HTTPError) as e:
                        with hooks.lock:
                            hooks.rejected.append((self.path, f"{type(e).__name__}: {e}"))
                        return self._send(401)
                with hooks.lock:
                    hooks.attempts[self.path] = hooks.attempts.get(self.path, 0) + 1
                    failing = hooks.fail_next.get(self.path, 0)
                    if failing:
                        hooks.fail_next[self.path] = failing - 1
                    redirect = hooks.redirects.get(self.path)
                if failing or (self.path.startswith("/fail/") and self.path not in hooks.healed):
                    return self._send(500)
                if redirect:
                    self.send_response(307)
                    self.send_header("Location", redirect)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self._send(400)
                now = time.monotonic()
                items = body.get("value") if isinstance(body, dict) else None
                with hooks.lock:
                    for item in items or []:
                        hooks.notes.append(
                            Note(
                                path=self.path,
                                change=item.get("changeType", ""),
                                resource=item.get("resourceUrl", ""),
                                data=item.get("resourceData"),
                                item=item,
                                headers={k.lower(): v for k, v in self.headers.items()},
                                at=now,
                                claims=claims,
                            )
                        )
                    hooks.envelopes.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    hooks.posts.append((self.path, time.time(), body))
                self._send(202)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):  # ringside closing idle keep-alive connections
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhooks", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def verify_under(self, prefix: str, verifier: "CallbackVerifier") -> None:
        """Check the Bearer token of every POST below `prefix` (the longest prefix wins);
        a token that does not verify is answered 401 and listed in `rejected`."""
        with self.lock:
            self.verifiers[prefix] = verifier

    def verifier_for(self, path: str) -> Optional["CallbackVerifier"]:
        with self.lock:
            best = max((p for p in self.verifiers if path.startswith(p)), key=len, default=None)
            return self.verifiers[best] if best is not None else None

    def snapshot(self) -> list[Note]:
        with self.lock:
            return list(self.notes)

    def for_call(self, call_id: str) -> list[Note]:
        return [n for n in self.snapshot() if call_id.lower() in n.resource.lower()]

    def watch(self, call_id: str) -> "Watch":
        return Watch(self, call_id)

    async def incoming(self, call_id: str, timeout: float = 10) -> Note:
        """The `created` notification of an incoming call (at an app's calling webhook)."""
        w = self.watch(call_id)
        notes = await w.until(lambda n: n.change == "created", f"incoming call {call_id}", timeout)
        return notes[-1]


class Watch:
    """Reads one call's notifications in order; `until` consumes up to the first match."""

    def __init__(self, hooks: Hooks, call_id: str) -> None:
        self.hooks = hooks
        self.call_id = call_id
        self.cursor = 0

    def all(self) -> list[Note]:
        return self.hooks.for_call(self.call_id)

    def pending(self) -> list[Note]:
        return self.all()[self.cursor:]

    async def until(self, pred: Callable[[Note], bool], what: str = "notification", timeout: float = 10) -> list[Note]:
        deadline = time.monotonic() + timeout
        while True:
            notes = self.all()
            for i in range(self.cursor, len(notes)):
                if pred(notes[i]):
                    out = notes[self.cursor : i + 1]
                    self.cursor = i + 1
                    return out
            if time.monotonic() > deadline:
                got = "\n  ".join(repr(n) for n in notes[self.cursor :])
                raise AssertionError(f"timed out after {timeout}s waiting for {what} on call {self.call_id}; unread:\n  {got}")
            await asyncio.sleep(0.01)

    async def seen(self, pred: Callable[[Note], bool], what: str = "notification", timeout: float = 10) -> Note:
        """Wait for a matching notification anywhere in the call's history (order-insensitive);
        the cursor moves past it if it was not read yet."""
        deadline = time.monotonic() + timeout
        while True:
            notes = self.all()
            for i, n in enumerate(notes):
                if pred(n):
                    self.cursor = max(self.cursor, i + 1)
                    return n
            if time.monotonic() > deadline:
                got = "\n  ".join(repr(n) for n in notes)
                raise AssertionError(f"timed out after {timeout}s waiting for {what} on call {self.call_id}; all:\n  {got}")
            await asyncio.sleep(0.01)

    async def until_state(self, state: str, timeout: float = 10) -> list[Note]:
        return await self.until(lambda n: n.is_call and n.state == state, f"state {state}", timeout)

    async def until_op(self, op_id: str, timeout: float = 10) -> Note:
        notes = await self.until(lambda n: n.is_operation and n.resource.lower().endswith("/operations/" + op_id.lower()), f"operation {op_id}", timeout)
        return notes[-1]

    async def until_roster(self, pred: Callable[[list], bool], what: str = "roster", timeout: float = 10) -> list:
        notes = await self.until(lambda n: n.is_roster and isinstance(n.data, list) and pred(n.data), what, timeout)
        return notes[-1].data

    async def quiet(self, seconds: float) -> list[Note]:
        """Wait, then return (and consume) whatever arrived meanwhile."""
        await asyncio.sleep(seconds)
        notes = self.all()
        out = notes[self.cursor :]
        self.cursor = len(notes)
        return out


def states(notes: list[Note]) -> list[str]:
    return [n.state for n in notes if n.is_call and n.state is not None]


def member(roster: list, pid: str) -> Optional[dict]:
    return next((p for p in roster if p.get("id", "").lower() == pid.lower()), None)


def user_in(roster: list, user_id: str) -> Optional[dict]:
    for p in roster:
        u = ((p.get("info") or {}).get("identity") or {}).get("user") or {}
        if (u.get("id") or "").lower() == user_id.lower():
            return p
    return None


# ------------------------------------------------------------------ the server process


class Ringside:
    def __init__(
        self,
        binary: Path,
        data_dir: Path,
        hooks: Hooks,
        extra_server: str = "",
        extra_config: str = "",
        https: bool = False,
        apps: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """`https`: also listen with TLS (dev certificate generated at `cert`); `apps`: more
        (app id, secret) pairs from `extra_config` whose calls `hang_up_everything` ends."""
        self.binary = binary
        self.data_dir = data_dir
        self.hooks = hooks
        self.port = free_port()
        self.sip_port = free_port(socket.SOCK_DGRAM)
        self.base = f"http://127.0.0.1:{self.port}"
        self.https_base: Optional[str] = None
        self.cert = data_dir / "tls" / "cert.pem"
        if https:
            https_port = free_port()
            self.https_base = f"https://localhost:{https_port}"
            extra_server = f'{extra_server or "max_calls_per_app = 1000"}\nhttps_listen = "127.0.0.1:{https_port}"'
        self.apps = ((APP, SECRET), (APP2, SECRET2)) + tuple(apps)
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "ringside.toml").write_text(config_text(f"127.0.0.1:{self.port}", hooks.url, extra_server, extra_config, self.sip_port))
        self.log_path = data_dir / "ringside.log"
        self.proc: Optional[subprocess.Popen] = None
        self._tokens: dict[str, str] = {}

    def start(self, timeout: float = 30) -> None:
        log = open(self.log_path, "wb")
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info,hyper=warn,reqwest=warn,rsipstack=warn"), NO_COLOR="1")
        self.proc = subprocess.Popen(
            [str(self.binary), "--data-dir", str(self.data_dir), "serve"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ringside exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                r = httpx.get(f"{self.base}/healthz", timeout=1)
                if r.status_code == 200 and self._https_up():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"ringside did not become healthy in {timeout}s:\n{self.log_tail()}")

    def _https_up(self) -> bool:
        if self.https_base is None:
            return True
        if not self.cert.exists():
            return False
        return httpx.get(f"{self.https_base}/healthz", verify=str(self.cert), timeout=1).status_code == 200

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def token(self, app: str = APP, secret: str = SECRET, tenant: str = TENANT) -> str:
        if app not in self._tokens:
            r = httpx.post(
                f"{self.base}/{tenant}/oauth2/v2.0/token",
                data={"grant_type": "client_credentials", "client_id": app, "client_secret": secret, "scope": "https://graph.microsoft.com/.default"},
                timeout=10,
            )
            r.raise_for_status()
            self._tokens[app] = r.json()["access_token"]
        return self._tokens[app]

    # Admin API (plain HTTP: it is ringside's own, not Graph).
    async def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with httpx.AsyncClient(timeout=10) as c:
            r = await c.request(method, f"{self.base}/admin{path}", json=body, headers={"Authorization": f"Bearer {ADMIN}"})
        try:
            v = r.json() if r.content else None
        except ValueError:
            v = r.text
        return r.status_code, v

    async def place_call(self, user: str, target: str = APP, script: Optional[dict] = None) -> tuple[str, str]:
        """A simulated user calls an app; returns (callId, legId)."""
        body: dict = {"target": target}
        if script:
            body["script"] = script
        s, v = await self.admin("POST", f"/users/{user}/call", body)
        assert s == 201, (s, v)
        return v["callId"], v["legId"]

    async def leg(self, leg_id: str) -> dict:
        s, v = await self.admin("GET", f"/legs/{leg_id}")
        assert s == 200, (s, v)
        return v

    async def heard(self, leg_id: str):
        """What a simulated user heard on a leg, as float samples at 16 kHz."""
        from audio import load

        async with httpx.AsyncClient(timeout=10) as c:
            r = await c.get(f"{self.base}/admin/legs/{leg_id}/heard", headers={"Authorization": f"Bearer {ADMIN}"})
        assert r.status_code == 200, (r.status_code, r.text)
        return load(r.content)

    async def latest_leg_of(self, user: str) -> dict:
        s, v = await self.admin("GET", f"/legs?user={user}")
        assert s == 200, (s, v)
        assert v["value"], f"no legs for {user}"
        return v["value"][-1]

    def hang_up_everything(self) -> None:
        """Leave no call behind between tests (each app's calls are deleted)."""
        for app, secret in self.apps:
            h = {"Authorization": f"Bearer {self.token(app, secret)}"}
            try:
                r = httpx.get(f"{self.base}/v1.0/communications/calls", headers=h, timeout=10)
                for c in r.json().get("value", []):
                    httpx.delete(f"{self.base}/v1.0/communications/calls/{c['id']}", headers=h, timeout=10)
            except httpx.HTTPError:
                pass


# ------------------------------------------------------------------ callback tokens


class CallbackVerifier:
    """What a bot does with the `Authorization` header of each notification (reference §8.3):
    read the OpenID configuration, take the signing keys from its `jwks_uri` (PyJWKClient with
    its defaults: the key set is cached and looked up again for an unknown `kid`), check the RS256 signature, lifetime,
    audience (the bot's app id) and issuer (the document's), then require a non-empty `tid`
    equal to the bot's tenant."""

    def __init__(self, oidc_url: str, app_id: str, tenant: str = TENANT) -> None:
        self.oidc_url = oidc_url
        self.app_id = app_id
        self.tenant = tenant
        self._lock = threading.Lock()
        self._doc: Optional[dict] = None
        self._jwks: Optional[jwt.PyJWKClient] = None

    def discover(self) -> tuple[dict, jwt.PyJWKClient]:
        with self._lock:
            if self._doc is None:
                r = httpx.get(self.oidc_url, timeout=10)
                r.raise_for_status()
                self._doc = r.json()
                self._jwks = jwt.PyJWKClient(self._doc["jwks_uri"])
            return self._doc, self._jwks

    def verify(self, authorization: Optional[str]) -> dict:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise jwt.InvalidTokenError("no Bearer token on the notification")
        doc, jwks = self.discover()
        key = jwks.get_signing_key_from_jwt(token).key
        claims = jwt.decode(
            token,
            key,
            algorithms=["RS256"],
            audience=self.app_id,
            issuer=doc["issuer"],
            options={"require": ["exp", "iat", "iss", "aud"]},
        )
        if not claims.get("tid"):
            raise jwt.InvalidTokenError("the token names no tenant (tid)")
        if claims["tid"].lower() != self.tenant.lower():
            raise jwt.InvalidTokenError(f"the token is for tenant {claims['tid']}, not {self.tenant}")
        return claims


def bearer_of(note: "Note") -> str:
    """The JWT a notification arrived with."""
    scheme, _, token = note.headers.get("authorization", "").partition(" ")
    assert scheme.lower() == "bearer" and token, f"no Bearer token on {note!r}"
    return token


# ------------------------------------------------------------------ Graph SDK clients


class StaticTokenProvider(AccessTokenProvider):
    """PEERS.md §1.2: a bearer token obtained from ringside's token endpoint."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def get_authorization_token(self, uri: str, additional_authentication_context: dict = {}) -> str:
        return self.token

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return AllowedHostsValidator([])


def beta_client(base: str, token: str):
    from msgraph_beta import GraphRequestAdapter, GraphServiceClient

    adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(StaticTokenProvider(token)))
    adapter.base_url = f"{base}/beta"
    return GraphServiceClient(request_adapter=adapter)


def v1_client(base: str, token: str):
    from msgraph import GraphRequestAdapter, GraphServiceClient

    adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(StaticTokenProvider(token)))
    adapter.base_url = f"{base}/v1.0"
    return GraphServiceClient(request_adapter=adapter)


async def close_client(client) -> None:
    http = getattr(client.request_adapter, "_http_client", None)
    if http is not None:
        await http.aclose()


async def warm_up(base: str, token: str, hooks_url: str) -> None:
    """The SDKs import their model modules lazily while parsing replies; the first parse of a
    call takes seconds on a busy 2-core machine, long enough to miss a scripted key press.
    Walk both SDKs through the common replies once, before the timed scenarios."""
    from msgraph.generated.models import (
        call as v1_call, identity as v1_identity, identity_set as v1_identity_set,
        invitation_participant_info as v1_invitation, modality as v1_modality,
        service_hosted_media_config as v1_media,
    )
    from msgraph_beta.generated.models import (
        call as b_call, identity as b_identity, identity_set as b_identity_set,
        invitation_participant_info as b_invitation, modality as b_modality,
        online_meeting as b_meeting, service_hosted_media_config as b_media,
    )

    flavours = (
        (beta_client, b_call.Call, b_identity.Identity, b_identity_set.IdentitySet, b_invitation.InvitationParticipantInfo, b_modality.Modality, b_media.ServiceHostedMediaConfig),
        (v1_client, v1_call.Call, v1_identity.Identity, v1_identity_set.IdentitySet, v1_invitation.InvitationParticipantInfo, v1_modality.Modality, v1_media.ServiceHostedMediaConfig),
    )
    for make, Call, Identity, IdentitySet, Invitation, Modality, Media in flavours:
        client = make(base, token)
        try:
            body = Call(
                callback_uri=f"{hooks_url}/warm-up",
                targets=[Invitation(identity=IdentitySet(user=Identity(id=CAROL_NO_ANSWER)))],
                requested_modalities=[Modality.Audio],
                media_config=Media(),
            )
            call = await client.communications.calls.post(body)
            calls = client.communications.calls.by_call_id(call.id)
            await calls.get()
            await client.communications.calls.get()
            await calls.participants.get()
            await calls.operations.get()
            await calls.delete()
            if make is beta_client:
                await client.communications.online_meetings.post(b_meeting.OnlineMeeting(subject="warm-up"))
        finally:
            await close_client(client)
