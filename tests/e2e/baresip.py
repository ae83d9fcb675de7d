"""baresip 1.0 (a real softphone) driven headless for the end-to-end suite (PEERS.md §3.2).

It registers to ringside as a SIP user with digest, auto-answers, speaks an 8 kHz WAV
(`aufile`, switchable during a call with `ausrc`), records what it receives (`sndfile`:
`dump-*-dec.wav`) and takes commands over `ctrl_tcp` (netstring-framed JSON): `dial`,
`hangup`, `sndcode` (RFC 2833 keys)... Events (REGISTER_OK, CALL_ESTABLISHED, CALL_CLOSED,
CALL_DTMF_START...) are collected in order."""
from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Optional

from support import free_port


def free_sip_port() -> int:
    """A port baresip can listen on: it binds UDP and TCP on it, and TLS (TCP) on the next."""
    for _ in range(100):
        p = free_port(socket.SOCK_DGRAM)
        socks = []
        try:
            for kind, port in ((socket.SOCK_DGRAM, p), (socket.SOCK_STREAM, p), (socket.SOCK_STREAM, p + 1)):
                s = socket.socket(socket.AF_INET, kind)
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return p
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port for baresip")


class Baresip:
    def __init__(
        self,
        workdir: Path,
        sip_port: int,
        user: str,
        password: str,
        source: Path,
        answermode: str = "auto",
        netns: Optional[str] = None,
        host: str = "127.0.0.1",
        server: str = "127.0.0.1",
    ) -> None:
        """`netns`: run baresip in that network namespace, listening on `host` there (SIP
        and its control port), registering to ringside at `server`."""
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rec = self.dir / "rec"
        self.rec.mkdir(exist_ok=True)
        self.ctrl_port = free_port()
        self.host = host
        self.sip_listen = free_sip_port() if netns is None else 5070  # a namespace of its own
        rtp = 45000 + (self.sip_listen % 50) * 20
        (self.dir / "config").write_text(
            f"""poll_method		epoll
sip_listen		{host}:{self.sip_listen}
audio_player		aufile,{self.dir}/discard.wav
audio_source		aufile,{source}
audio_alert		aufile,{self.dir}/discard.wav
ausrc_srate		8000
auplay_srate		8000
ausrc_channels		1
auplay_channels		1
audio_buffer		20-160
rtp_ports		{rtp}-{rtp + 18}
rtcp_mux		no
jitter_buffer_delay	5-10
module_path		/usr/lib/baresip/modules
module			g711.so
module			aufile.so
module			ctrl_tcp.so
module			sndfile.so
module_tmp		uuid.so
module_tmp		account.so
module_app		contact.so
module_app		menu.so
snd_path		{self.rec}
ctrl_tcp_listen		{host}:{self.ctrl_port}
"""
        )
        (self.dir / "accounts").write_text(
            f"<sip:{user}@{server}:{sip_port}>;auth_pass={password};regint=300;"
            f"answermode={answermode};audio_codecs=PCMU,PCMA\n"
        )
        (self.dir / "contacts").write_text("")
        self.log = open(self.dir / "baresip.log", "wb")
        self.proc = subprocess.Popen(
            (["ip", "netns", "exec", netns] if netns else []) + ["baresip", "-f", str(self.dir)],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.events: list[dict] = []
        self._lock = threading.Lock()
        self._token = 0
        self.sock = self._connect()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _connect(self) -> socket.socket:
        deadline = time.monotonic() + 10
        while True:
            try:
                return socket.create_connection((self.host, self.ctrl_port), timeout=1)
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"baresip did not start: {self.log_tail()}")
                time.sleep(0.05)

    def _read(self) -> None:
        buf = b""
        self.sock.settimeout(None)
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data
            while b":" in buf:
                n, rest = buf.split(b":", 1)
                try:
                    size = int(n)
                except ValueError:
                    buf = b""
                    break
                if len(rest) < size + 1:
                    break
                msg = json.loads(rest[:size])
                buf = rest[size + 1 :]
                with self._lock:
                    self.events.append(msg)

    def command(self, cmd: str, params: str = "") -> str:
        """Send a command; returns its token (see `reply`)."""
        self._token += 1
        token = str(self._token)
        d = json.dumps({"command": cmd, "params": params, "token": token}).encode()
        self.sock.sendall(str(len(d)).encode() + b":" + d + b",")
        return token

    def reply(self, token: str, timeout: float = 5) -> dict:
        """baresip's response to the command with this token."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for e in self.events:
                    if e.get("response") and e.get("token") == token:
                        return e
            time.sleep(0.02)
        raise AssertionError(f"baresip: no reply to command {token}\n{self.log_tail()}")

    def seen(self, kind: str) -> list[dict]:
        with self._lock:
            return [e for e in self.events if e.get("event") and e.get("type") == kind]

    def wait(self, kind: str, count: int = 1, timeout: float = 10) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.seen(kind)
            if len(got) >= count:
                return got
            time.sleep(0.02)
        with self._lock:
            types = [e.get("type") for e in self.events if e.get("event")]
        raise AssertionError(f"baresip: no {kind} within {timeout}s; events: {types}\n{self.log_tail()}")

    def received(self) -> Optional[Path]:
        """The WAV of what baresip received in its (latest) call."""
        dec = sorted(self.rec.glob("dump-*-dec.wav"), key=lambda p: p.stat().st_mtime)
        return dec[-1] if dec else None

    def log_tail(self, n: int = 30) -> str:
        self.log.flush()
        try:
            lines = (self.dir / "baresip.log").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def close(self) -> None:
        try:
            self.command("quit")
        except OSError:
            pass
        try:
            self.proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.sock.close()
        self.log.close()
