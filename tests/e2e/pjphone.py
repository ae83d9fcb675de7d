"""pjsua2 (PJSIP 2.15, PyPI `pjsua2-python`) as headless SIP phones for the end-to-end suite
(PEERS.md §3.3).

Each `PjPhone` registers to ringside as a SIP user with digest, auto-answers (or answers on
command), dials SIP URIs, plays an 8 kHz WAV into its calls (`AudioMediaPlayer`), records what
it receives into one WAV per call (`AudioMediaRecorder`), holds and resumes, follows a REFER
(pjsua2's default behaviour, logged) and hangs up. What happens is kept as an ordered event
log: ("reg 200", ...), ("incoming", ...), ("state CONFIRMED", ...), ("media active", ...),
("media hold local", ...), ("transfer_request", ...), ("transfer_status 200", ...)...

Only one pjsua2 `Endpoint` may exist in a process, so every phone lives in one `PjEndpoint`,
and that endpoint is owned by a dedicated thread: it creates the library, runs the commands
the other threads queue (`PjEndpoint.run`) between `libHandleEvents` polls, receives every
pjsua2 callback, and destroys everything (calls, players, recorders, accounts, then the
library) itself. pytest's asyncio loop never calls pjsua2; it reads the event log, which is
guarded by a lock. Each phone has its own UDP transport on 127.0.0.1, as a separate device
would.

    with PjEndpoint() as ep:
        ivan = ep.phone(ringside.sip_port, "ivan", "ivan-sip-secret", rec_dir=tmp_path)
        ivan.wait_registered()
        ...
        ivan.wait("state CONFIRMED")
        ivan.hold(); ivan.wait("media hold")
        ivan.hangup(); ivan.wait("state DISCONNECTED")
        heard = ivan.received()
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
import queue
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional, TypeVar

import pjsua2 as pj

T = TypeVar("T")

# The conference bridge runs at 8 kHz mono, so recordings are 8 kHz mono 16-bit WAVs.
CLOCK_RATE = 8000
KEEP_CODECS = ("PCMU/", "PCMA/")

STATE_NAMES = {
    pj.PJSIP_INV_STATE_NULL: "NULL",
    pj.PJSIP_INV_STATE_CALLING: "CALLING",
    pj.PJSIP_INV_STATE_INCOMING: "INCOMING",
    pj.PJSIP_INV_STATE_EARLY: "EARLY",
    pj.PJSIP_INV_STATE_CONNECTING: "CONNECTING",
    pj.PJSIP_INV_STATE_CONFIRMED: "CONFIRMED",
    pj.PJSIP_INV_STATE_DISCONNECTED: "DISCONNECTED",
}

MEDIA_NAMES = {
    pj.PJSUA_CALL_MEDIA_NONE: "none",
    pj.PJSUA_CALL_MEDIA_ACTIVE: "active",
    pj.PJSUA_CALL_MEDIA_LOCAL_HOLD: "hold local",
    pj.PJSUA_CALL_MEDIA_REMOTE_HOLD: "hold remote",
    pj.PJSUA_CALL_MEDIA_ERROR: "error",
}


class Event(NamedTuple):
    """One entry of a phone's log: `kind` is what `wait` matches by prefix."""

    kind: str
    details: dict
    at: float


def wav_complete(path: Path, timeout: float = 2) -> None:
    """Wait until pjmedia has written the final RIFF header (its size field is 0 while the
    recorder is open)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            size = path.stat().st_size
            with open(path, "rb") as f:
                head = f.read(8)
            if len(head) == 8 and head[:4] == b"RIFF" and int.from_bytes(head[4:], "little") == size - 8 > 36:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} is still being recorded (is its call still up?)")
        time.sleep(0.01)


# ------------------------------------------------------------------ the endpoint thread


class PjEndpoint:
    """The process's one pjsua2 Endpoint, owned and polled by a dedicated thread."""

    _current: Optional["PjEndpoint"] = None
    _guard = threading.Lock()

    def __init__(self, log_path: Optional[Path] = None, log_level: int = 4, poll_ms: int = 10) -> None:
        """`log_path`: pjsip's own log (level `log_level`); nothing goes to the console."""
        with PjEndpoint._guard:
            if PjEndpoint._current is not None:
                raise RuntimeError("a PjEndpoint is already running in this process (use PjEndpoint.shared())")
            PjEndpoint._current = self
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="pjsua2-", suffix=".log")[1])
        self.log_level = log_level
        self.poll_ms = poll_ms
        self.phones: list[PjPhone] = []
        self._commands: "queue.SimpleQueue[tuple[Callable[[], Any], Future]]" = queue.SimpleQueue()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_seq = itertools.count()
        self._timer_lock = threading.Lock()
        self._stopping = threading.Event()
        self._ready: Future = Future()
        self.ep: Any = None
        self._thread = threading.Thread(target=self._main, name="pjsua2", daemon=True)
        self._thread.start()
        try:
            self._ready.result(timeout=20)
        except BaseException:
            self._thread.join(5)
            with PjEndpoint._guard:
                PjEndpoint._current = None
            raise

    @classmethod
    def shared(cls, **kwargs: Any) -> "PjEndpoint":
        """The running endpoint, started on first use (closed at interpreter exit)."""
        with cls._guard:
            running = cls._current
        if running is not None and running.alive:
            return running
        ep = cls(**kwargs)
        import atexit

        atexit.register(ep.close)
        return ep

    def __enter__(self) -> "PjEndpoint":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stopping.is_set()

    def in_owner(self) -> bool:
        return threading.current_thread() is self._thread

    # -- the owner thread

    def _main(self) -> None:
        try:
            self._create()
        except BaseException as e:  # reported to the constructor
            self._ready.set_exception(e)
            return
        self._ready.set_result(None)
        try:
            while not self._stopping.is_set():
                self._run_pending()
                self.ep.libHandleEvents(self.poll_ms)
            self._run_pending()
        finally:
            self._stopping.set()
            self._destroy()

    def _create(self) -> None:
        self.ep = pj.Endpoint()
        self.ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0          # no pjsip worker threads: this thread polls
        cfg.uaConfig.mainThreadOnly = False
        cfg.uaConfig.maxCalls = 32
        cfg.uaConfig.userAgent = f"ringside-e2e pjsua2 {self.ep.libVersion().full}"
        cfg.logConfig.level = self.log_level
        cfg.logConfig.consoleLevel = 0
        cfg.logConfig.filename = str(self.log_path)
        cfg.medConfig.clockRate = CLOCK_RATE
        cfg.medConfig.sndClockRate = CLOCK_RATE
        cfg.medConfig.channelCount = 1
        cfg.medConfig.noVad = True          # a steady RTP stream, silence included
        cfg.medConfig.ecTailLen = 0
        self.ep.libInit(cfg)
        self.ep.audDevManager().setNullDev()  # no sound card: the bridge runs on a software clock
        for c in self.ep.codecEnum2():
            keep = c.codecId.startswith(KEEP_CODECS)
            self.ep.codecSetPriority(c.codecId, (255 if c.codecId.startswith("PCMU/") else 254) if keep else 0)
        self.ep.libStart()

    def _run_pending(self) -> None:
        while True:
            try:
                fn, fut = self._commands.get_nowait()
            except queue.Empty:
                break
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn())
                except BaseException as e:
                    fut.set_exception(e)
        now = time.monotonic()
        due: list[Callable[[], None]] = []
        with self._timer_lock:
            while self._timers and self._timers[0][0] <= now:
                due.append(heapq.heappop(self._timers)[2])
        for fn in due:
            try:
                fn()
            except Exception as e:  # a timer has nobody to report to: keep it in pjsip's log
                self.log(f"timer failed: {e!r}")

    def _destroy(self) -> None:
        for phone in list(self.phones):
            try:
                phone._teardown(unregister_timeout=1.0)
            except Exception as e:
                self.log(f"teardown of {phone.user} failed: {e!r}")
        self.phones.clear()
        with self._timer_lock:
            self._timers.clear()  # they hold Call objects, which must go before libDestroy
        while True:
            try:
                _, fut = self._commands.get_nowait()
            except queue.Empty:
                break
            fut.set_exception(RuntimeError("the pjsua2 endpoint is closed"))
        try:
            self.ep.libDestroy()
        finally:
            self.ep = None  # the Endpoint object goes in this thread, after libDestroy
            with PjEndpoint._guard:
                if PjEndpoint._current is self:
                    PjEndpoint._current = None

    def pump(self, until: Callable[[], bool], timeout: float) -> bool:
        """In the owner thread: poll pjsip until `until()` holds or `timeout` passes."""
        assert self.in_owner()
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                return False
            self.ep.libHandleEvents(self.poll_ms)
        return True

    # -- any thread

    def run(self, fn: Callable[[], T], timeout: float = 10) -> T:
        """Run `fn` in the owner thread and return its result (or raise its exception)."""
        if self.in_owner():
            return fn()
        if not self.alive:
            raise RuntimeError("the pjsua2 endpoint is closed")
        fut: Future = Future()
        self._commands.put((fn, fut))
        return fut.result(timeout=timeout)

    def later(self, delay: float, fn: Callable[[], None]) -> None:
        """Run `fn` in the owner thread after `delay` seconds."""
        with self._timer_lock:
            heapq.heappush(self._timers, (time.monotonic() + delay, next(self._timer_seq), fn))

    def settle(self, until: Callable[[], bool], timeout: float) -> bool:
        """Wait (from any thread) until `until()` holds; False on timeout."""
        if self.in_owner():
            return self.pump(until, timeout)
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def log(self, text: str) -> None:
        """A line of our own in pjsip's log (owner thread only; ignored elsewhere)."""
        if self.in_owner() and self.ep is not None:
            self.ep.utilLogWrite(3, "pjphone", text)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no pjsip log)"

    def phone(
        self,
        sip_port: int,
        user: str,
        password: str,
        rec_dir: Optional[Path] = None,
        source: Optional[Path] = None,
        auto_answer: bool = True,
        answer_delay: float = 0.2,
        register: bool = True,
        host: str = "127.0.0.1",
    ) -> "PjPhone":
        """A new phone (account + own UDP transport); it starts registering at once.
        `auto_answer`: 180 at once, then 200 after `answer_delay` seconds (a phone rings for a
        moment; 0 sends 180 and 200 back to back). `register=False`: no registrar (dial or be
        dialled at `contact_uri` directly)."""
        return PjPhone(self, sip_port, user, password, rec_dir, source, auto_answer, answer_delay, register, host)

    def close(self, timeout: float = 15) -> None:
        """Hang up, unregister and delete every phone, then destroy the library."""
        if self.in_owner():
            raise RuntimeError("PjEndpoint.close() from a pjsua2 callback")
        if not self._thread.is_alive():
            return
        self._stopping.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError(f"the pjsua2 thread did not stop in {timeout}s\n{self.log_tail()}")


# ------------------------------------------------------------------ pjsua2 subclasses


def _guarded(method: Callable[..., None]) -> Callable[..., None]:
    """A Python exception escaping a SWIG director callback unwinds through pjsip's C code
    (and aborts the process): log it as an "error" event instead."""

    def callback(self: Any, prm: Any) -> None:
        try:
            method(self, prm)
        except Exception as e:
            self.phone._event("error", where=method.__name__, error=repr(e))

    callback.__name__ = method.__name__
    return callback



class _Account(pj.Account):
    def __init__(self, phone: "PjPhone") -> None:
        super().__init__()
        self.phone = phone

    @_guarded
    def onRegState(self, prm: Any) -> None:
        self.phone._on_reg(prm.code, prm.reason, prm.expiration)

    @_guarded
    def onIncomingCall(self, prm: Any) -> None:
        self.phone._on_incoming(prm.callId)


class _Call(pj.Call):
    def __init__(self, phone: "PjPhone", call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(phone._acc, call_id)
        self.phone = phone
        self.serial = next(phone._serials)
        self.player: Any = None
        self.player_source: Optional[Path] = None
        self.recorder: Any = None
        self.rec_path: Optional[Path] = None
        self.ended = False

    @_guarded
    def onCallState(self, prm: Any) -> None:
        ci = self.getInfo()
        self.phone._on_state(self, ci)

    @_guarded
    def onCallMediaState(self, prm: Any) -> None:
        ci = self.getInfo()  # keep it: iterating a temporary's `media` reads freed memory
        self.phone._on_media(self, ci)

    @_guarded
    def onCallTransferRequest(self, prm: Any) -> None:
        # Accept (202, the default) and let pjsua2 dial the target with a Call of our own.
        new = _Call(self.phone)
        self.phone._calls.append(new)
        prm.newCall = new
        self.phone._event("transfer_request", call=self.serial, uri=prm.dstUri, code=prm.statusCode, new_call=new.serial)

    @_guarded
    def onCallTransferStatus(self, prm: Any) -> None:
        self.phone._event(f"transfer_status {prm.statusCode}", call=self.serial, reason=prm.reason, final=bool(prm.finalNotify))

    @_guarded
    def onStreamDestroyed(self, prm: Any) -> None:
        # The stream's last statistics: what arrived and what pjmedia's jitter buffer made of
        # it, to tell packets that never came (or came badly timed) from a playback problem.
        st = self.getStreamStat(prm.streamIdx)
        rx, jb = st.rtcp.rxStat, st.jbuf
        self.phone._event(
            "stream stats",
            call=self.serial,
            rx_packets=rx.pkt,
            rx_lost=rx.loss,
            rx_discarded=rx.discard,
            rx_reordered=rx.reorder,
            rx_duplicated=rx.dup,
            jitter_ms_mean_max=(rx.jitterUsec.mean / 1000, rx.jitterUsec.max / 1000),
            jbuf_lost=jb.lost,
            jbuf_discarded=jb.discard,
            jbuf_empty=jb.empty,
            jbuf_delay_ms_avg_max=(jb.avgDelayMsec, jb.maxDelayMsec),
        )

    @_guarded
    def onDtmfDigit(self, prm: Any) -> None:
        self.phone._event(f"dtmf {prm.digit}", call=self.serial)


# ------------------------------------------------------------------ one phone


class PjPhone:
    """One SIP phone (an account with its own transport) inside a `PjEndpoint`."""

    def __init__(
        self,
        endpoint: PjEndpoint,
        sip_port: int,
        user: str,
        password: str,
        rec_dir: Optional[Path] = None,
        source: Optional[Path] = None,
        auto_answer: bool = True,
        answer_delay: float = 0.2,
        register: bool = True,
        host: str = "127.0.0.1",
    ) -> None:
        self.endpoint = endpoint
        self.user = user
        self.registrar = f"sip:{host}:{sip_port}"
        self.rec_dir = rec_dir or Path(tempfile.mkdtemp(prefix=f"pjphone-{user}-"))
        self.rec_dir.mkdir(parents=True, exist_ok=True)
        self.source = source
        self.loop = True
        self.auto_answer = auto_answer
        self.answer_delay = answer_delay
        self.events: list[Event] = []
        self.recordings: list[Path] = []
        self._cond = threading.Condition()
        self._serials = itertools.count(1)
        self._calls: list[_Call] = []
        self._acc: Any = None
        self._transport = -1
        self.local_port = 0
        endpoint.run(lambda: self._create(host, sip_port, password, register))

    def _create(self, host: str, sip_port: int, password: str, register: bool) -> None:
        ep = self.endpoint.ep
        tc = pj.TransportConfig()
        tc.port = 0
        tc.boundAddress = "127.0.0.1"
        self._transport = ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc)
        self.local_port = int(ep.transportGetInfo(self._transport).localName.rsplit(":", 1)[1])
        cfg = pj.AccountConfig()
        cfg.idUri = f"sip:{self.user}@{host}:{sip_port}"
        if register:
            cfg.regConfig.registrarUri = self.registrar
            cfg.regConfig.timeoutSec = 300
        cfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", self.user, 0, password))
        cfg.sipConfig.transportId = self._transport
        cfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
        self._acc = _Account(self)
        self._acc.create(cfg)
        self.endpoint.phones.append(self)

    @property
    def contact_uri(self) -> str:
        """Where this phone listens: dial it directly, without ringside."""
        return f"sip:{self.user}@127.0.0.1:{self.local_port}"

    # -- the event log (any thread)

    def _event(self, kind: str, **details: Any) -> None:
        with self._cond:
            self.events.append(Event(kind, details, time.monotonic()))
            self._cond.notify_all()
        self.endpoint.log(f"{self.user}: {kind} {details}")

    def mark(self) -> int:
        """The log's length now: pass it as `since` to wait only for later events."""
        with self._cond:
            return len(self.events)

    def seen(self, prefix: str, since: int = 0) -> list[Event]:
        with self._cond:
            return [e for e in self.events[since:] if e.kind.startswith(prefix)]

    def kinds(self) -> list[str]:
        with self._cond:
            return [e.kind for e in self.events]

    def wait(self, prefix: str, count: int = 1, timeout: float = 10, since: int = 0) -> list[Event]:
        """Block until `count` events whose kind starts with `prefix` (after index `since`)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [e for e in self.events[since:] if e.kind.startswith(prefix)]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.1))
        raise AssertionError(f"{self.user}: no {prefix!r} (x{count}) within {timeout}s; events: {self.kinds()}\n{self.endpoint.log_tail()}")

    async def until(self, prefix: str, count: int = 1, timeout: float = 10, since: int = 0) -> list[Event]:
        """`wait` for asyncio code: the event loop keeps running meanwhile."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.seen(prefix, since)
            if len(got) >= count:
                return got
            await asyncio.sleep(0.02)
        raise AssertionError(f"{self.user}: no {prefix!r} (x{count}) within {timeout}s; events: {self.kinds()}\n{self.endpoint.log_tail()}")

    def wait_registered(self, timeout: float = 10) -> Event:
        """The registrar's 200; any other final answer fails at once."""
        deadline = time.monotonic() + timeout
        while True:
            regs = [e for e in self.seen("reg ") if e.details["code"] >= 200]
            if regs:
                assert regs[-1].kind == "reg 200", f"{self.user}: registration failed: {regs[-1]}"
                return regs[-1]
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.user}: not registered within {timeout}s; events: {self.kinds()}\n{self.endpoint.log_tail()}")
            time.sleep(0.02)

    # -- callbacks (owner thread)

    def _on_reg(self, code: int, reason: str, expiration: int) -> None:
        kind = "unreg" if code // 100 == 2 and expiration == 0 else "reg"
        self._event(f"{kind} {code}", code=code, reason=reason, expires=expiration)

    def _on_incoming(self, call_id: int) -> None:
        call = _Call(self, call_id)
        self._calls.append(call)
        ci = call.getInfo()
        self._event("incoming", call=call.serial, remote=ci.remoteUri, local=ci.localUri)
        self._answer(call, 180)
        if self.auto_answer:
            if self.answer_delay > 0:
                self.endpoint.later(self.answer_delay, lambda: None if call.ended else self._answer(call, 200))
            else:
                self._answer(call, 200)

    def _answer(self, call: _Call, code: int) -> None:
        prm = pj.CallOpParam(True)
        prm.statusCode = code
        call.answer(prm)

    def _on_state(self, call: _Call, ci: Any) -> None:
        state = STATE_NAMES.get(ci.state, str(ci.state))
        if ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            call.ended = True
            self._close_media(call)
            # Drop the Call object later, outside its own callback.
            self.endpoint.later(0, lambda: self._forget(call))
        self._event(f"state {state}", call=call.serial, code=ci.lastStatusCode, reason=ci.lastReason, remote=ci.remoteUri)

    def _forget(self, call: _Call) -> None:
        if call in self._calls:
            self._calls.remove(call)

    def _on_media(self, call: _Call, ci: Any) -> None:
        for mi in ci.media:
            if mi.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            self._event(f"media {MEDIA_NAMES.get(mi.status, str(mi.status))}", call=call.serial, index=mi.index)
            if mi.status in (pj.PJSUA_CALL_MEDIA_ACTIVE, pj.PJSUA_CALL_MEDIA_LOCAL_HOLD, pj.PJSUA_CALL_MEDIA_REMOTE_HOLD):
                self._connect(call, call.getAudioMedia(mi.index))

    def _connect(self, call: _Call, am: Any) -> None:
        """Microphone: the phone's source WAV; ear: a WAV per call. Re-done on each offer/answer,
        as a re-INVITE may give the call a new conference slot."""
        if call.recorder is None:
            call.rec_path = self.rec_dir / f"{self.user}-call{call.serial:02d}.wav"
            call.recorder = pj.AudioMediaRecorder()
            call.recorder.createRecorder(str(call.rec_path))
            self.recordings.append(call.rec_path)
        am.startTransmit(call.recorder)
        if self.source is not None and (call.player is None or call.player_source != self.source):
            self._stop_player(call)
            call.player = pj.AudioMediaPlayer()
            call.player.createPlayer(str(self.source), 0 if self.loop else pj.PJMEDIA_FILE_NO_LOOP)
            call.player_source = self.source
        if call.player is not None:
            call.player.startTransmit(am)

    def _stop_player(self, call: _Call) -> None:
        call.player = None  # its destructor disconnects and destroys the port
        call.player_source = None

    def _close_media(self, call: _Call) -> None:
        self._stop_player(call)
        # Destroying the recorder finalises the WAV header, but pjsua 2.15 does it a moment
        # later on the media clock thread (the bridge removes ports asynchronously): readers go
        # through `wav_complete`.
        call.recorder = None

    # -- commands (any thread)

    def _call(self, serial: Optional[int]) -> _Call:
        live = [c for c in self._calls if not c.ended and c.getId() != pj.PJSUA_INVALID_ID]
        if serial is not None:
            live = [c for c in live if c.serial == serial]
        assert live, f"{self.user}: no live call{'' if serial is None else f' #{serial}'}"
        return live[-1]

    def call(self, uri: str) -> int:
        """Dial `uri` (e.g. sip:judy@127.0.0.1:5060); returns the call's serial for this phone."""

        def dial() -> int:
            c = _Call(self)
            self._calls.append(c)
            c.makeCall(uri, pj.CallOpParam(True))
            return c.serial

        return self.endpoint.run(dial)

    def answer(self, code: int = 200, call: Optional[int] = None) -> None:
        self.endpoint.run(lambda: self._answer(self._call(call), code))

    def hangup(self, code: int = 0, call: Optional[int] = None) -> None:
        """End the call (BYE or CANCEL; for an unanswered incoming call `code` is the rejection,
        default 603)."""

        def end() -> None:
            prm = pj.CallOpParam(True)
            prm.statusCode = code
            self._call(call).hangup(prm)

        self.endpoint.run(end)

    def hold(self, call: Optional[int] = None) -> None:
        """re-INVITE with a `sendonly` offer; the log shows "media hold local" once answered."""
        self.endpoint.run(lambda: self._call(call).setHold(pj.CallOpParam(True)))

    def resume(self, call: Optional[int] = None) -> None:
        """re-INVITE with `sendrecv` (PJSUA_CALL_UNHOLD); the log shows "media active"."""

        def unhold() -> None:
            prm = pj.CallOpParam(True)
            prm.opt.flag = pj.PJSUA_CALL_UNHOLD
            self._call(call).reinvite(prm)

        self.endpoint.run(unhold)

    def transfer(self, target: str, call: Optional[int] = None) -> None:
        """Send REFER (blind transfer to `target`); progress arrives as "transfer_status N"."""
        self.endpoint.run(lambda: self._call(call).xfer(target, pj.CallOpParam(True)))

    def dtmf(self, digits: str, call: Optional[int] = None) -> None:
        """RFC 2833 keys."""
        self.endpoint.run(lambda: self._call(call).dialDtmf(digits))

    def play(self, source: Optional[Path], loop: bool = True) -> None:
        """Speak `source` (an 8 kHz mono 16-bit WAV) into the current and later calls from its
        start; None: silence."""

        def switch() -> None:
            self.source, self.loop = source, loop
            for c in self._calls:
                if c.ended:
                    continue
                self._stop_player(c)
                ci = c.getInfo()
                for mi in ci.media:
                    if mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status != pj.PJSUA_CALL_MEDIA_NONE and mi.audioConfSlot >= 0:
                        self._connect(c, c.getAudioMedia(mi.index))

        self.endpoint.run(switch)

    def set_auto_answer(self, on: bool, delay: float = 0.2) -> None:
        def apply() -> None:
            self.auto_answer, self.answer_delay = on, delay

        self.endpoint.run(apply)

    def stop_recording(self, call: Optional[int] = None, timeout: float = 2) -> Optional[Path]:
        """Close the current call's WAV now (it is closed anyway when the call ends)."""

        def stop() -> Optional[Path]:
            c = self._call(call)
            c.recorder = None
            return c.rec_path

        path = self.endpoint.run(stop)
        if path is not None:
            wav_complete(path, timeout)
        return path

    def received(self, timeout: float = 2) -> Optional[Path]:
        """The WAV of what the phone heard in its latest call, once the call has ended (waits
        up to `timeout` for pjsua to finish writing it)."""
        if not self.recordings:
            return None
        wav_complete(self.recordings[-1], timeout)
        return self.recordings[-1]

    def live_calls(self) -> int:
        return self.endpoint.run(lambda: len([c for c in self._calls if not c.ended]))

    def log_tail(self, n: int = 40) -> str:
        return self.endpoint.log_tail(n)

    # -- shutdown

    def close(self, timeout: float = 5) -> None:
        """Hang up, unregister (waiting for the registrar's answer) and delete the account."""
        if self not in self.endpoint.phones or not self.endpoint.alive:
            return
        self.endpoint.run(lambda: self._teardown(unregister_timeout=timeout), timeout=timeout + 10)

    def _teardown(self, unregister_timeout: float) -> None:
        """Owner thread: pump pjsip while the calls end and the unregistration completes."""
        ep = self.endpoint
        for c in self._calls:
            if not c.ended and c.getId() != pj.PJSUA_INVALID_ID:
                try:
                    c.hangup(pj.CallOpParam(True))
                except pj.Error:
                    pass
        ep.pump(lambda: all(c.ended for c in self._calls), 3)
        if self._acc is not None and self._acc.getInfo().regIsActive:
            mark = self.mark()
            try:
                self._acc.setRegistration(False)
                ep.pump(lambda: bool(self.seen("unreg", mark) or [e for e in self.seen("reg ", mark) if e.details["code"] >= 200]), unregister_timeout)
            except pj.Error:
                pass
        for c in self._calls:
            self._close_media(c)
        self._calls.clear()      # Call objects before the account, all before libDestroy
        if self._acc is not None:
            self._acc.shutdown()
            self._acc = None
        if self._transport >= 0:
            try:
                ep.ep.transportClose(self._transport)
            except pj.Error:
                pass
            self._transport = -1
        if self in ep.phones:
            ep.phones.remove(self)
        self._event("closed")
