"""Bad networks for media: a real SIP phone (baresip) behind a lossy, jittery, reordering path.

ringside runs in a network namespace of its own, the phone in another, and the path between
them is netpath.py's userspace router (this kernel has no `sch_netem`). The same calls run
over each profile in turn — clean, 1 % loss with 40 ms jitter, 5 % loss with 40 ms jitter
and reordering — and each call does what an IVR does: the bot calls the phone, subscribes to
tones, plays a spoken prompt, the phone presses keys (RFC 4733 events), then the bot records
the phone's speech (recordResponse, stopped by `#`) and hangs up.

Measured per profile: how well the phone heard the prompt (what baresip's own decoder wrote,
against the prompt: the median of its one-second pieces' correlation, see
tests/e2e/audio.py), how well ringside heard the phone (the recording against the speech),
the keys that arrived as toneInfo. Gates: every key detected once and in order, both
directions recognisable (correlation ≥ the floors below, set under the figures measured and
recorded in docs/reliability.md), every call ends (no leg left in ringside or the phone).

    sudo python tests/stress/badnet.py             # one call per profile (the test command)
    sudo python tests/stress/badnet.py --full      # five calls per profile

Needs root (network namespaces, TUN devices); run.sh skips it otherwise.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path as FsPath

import httpx

from harness import APPS, TENANT, Endpoint, Gates, Graph, Server, config, table
from netpath import Impairment, Path

E2E = FsPath(__file__).resolve().parent.parent / "e2e"
sys.path.insert(0, str(E2E))
import audio  # noqa: E402  (tests/e2e: WAV loading and correlation)
from baresip import Baresip  # noqa: E402  (tests/e2e: baresip driven over ctrl_tcp)

PROFILES = [
    Impairment("clean"),
    Impairment("1 % loss, 40 ms jitter", loss=0.01, delay_ms=50, jitter_ms=40),
    Impairment("5 % loss, 40 ms jitter, 5 % reordered", loss=0.05, delay_ms=50, jitter_ms=40, reorder=0.05),
]
# Floors for the gates: under the worst figures measured over repeated runs (docs/reliability.md).
HEARD_FLOOR = {"clean": 0.95, "1 %": 0.9, "5 %": 0.8}
KEYS = "159#"
PHONE = "1a4a0000-0000-0000-0000-00000000b0b0"
PHONE_USER, PHONE_PASSWORD = "phone", "phone-sip-secret"
SIP_PORT = 5060


def floor(profile: str) -> float:
    return next(v for k, v in HEARD_FLOOR.items() if profile.startswith(k))


def wait_for(cond, what: str, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def until(cond, what: str, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def op_done(bot: Endpoint, op_id: str):
    for a in bot.delivered():
        for i in a.items:
            d = i.get("resourceData")
            if op_id in i.get("resourceUrl", "") and isinstance(d, dict) and d.get("status") in ("completed", "failed"):
                return d
    return None


def tones_heard(bot: Endpoint, call_id: str) -> list[str]:
    out = []
    for a in bot.delivered():
        for i in a.items:
            d = i.get("resourceData")
            if call_id in i.get("resourceUrl", "") and isinstance(d, dict) and d.get("toneInfo"):
                out.append(d["toneInfo"]["tone"])
    return out


TONE = {"#": "pound", "*": "star", **{str(i): f"tone{i}" for i in range(10)}}


async def one_call(g: Graph, bot: Endpoint, phone: Baresip, server: Server) -> dict:
    """The IVR call: prompt heard, keys pressed, speech recorded. Returns what was measured."""
    closed_before = len(phone.seen("CALL_CLOSED"))
    established_before = len(phone.seen("CALL_ESTABLISHED"))
    body = {
        "@odata.type": "#microsoft.graph.call",
        "callbackUri": bot.url,
        "targets": [{"@odata.type": "#microsoft.graph.invitationParticipantInfo", "identity": {"@odata.type": "#microsoft.graph.identitySet", "user": {"@odata.type": "#microsoft.graph.identity", "id": PHONE}}}],
        "requestedModalities": ["audio"],
        "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
    }
    s, call = await g.request("POST", "/v1.0/communications/calls", body)
    assert s == 201, (s, call)
    cid = call["id"]
    base = f"/v1.0/communications/calls/{cid}"
    await until(lambda: any("established" in a.states and cid in json.dumps(a.items) for a in bot.delivered()), "the call established", 30)
    await asyncio.to_thread(phone.wait, "CALL_ESTABLISHED", established_before + 1, 10)
    s, v = await g.request("POST", f"{base}/subscribeToTone", {})
    assert s == 200, (s, v)
    s, op = await g.request("POST", f"{base}/playPrompt", {"prompts": [{"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": {"@odata.type": "#microsoft.graph.mediaInfo", "uri": bot.url + "/prompt.wav"}}]})
    assert s == 200, (s, op)
    done = await until(lambda: op_done(bot, op["id"]), "the prompt played", 30)
    assert done["status"] == "completed", done
    for key in KEYS[:-1]:
        phone.command("sndcode", key)
        await asyncio.sleep(0.4)
    await until(lambda: len(tones_heard(bot, cid)) >= len(KEYS) - 1, "the keys as toneInfo", 10)
    s, rec = await g.request("POST", f"{base}/recordResponse", {"playBeep": False, "stopTones": ["#"], "maxRecordDurationInSeconds": 30, "initialSilenceTimeoutInSeconds": 5, "maxSilenceTimeoutInSeconds": 5})
    assert s == 200, (s, rec)
    speech = audio.fixture("speech.wav")
    r = phone.reply(phone.command("ausrc", f"aufile,{E2E / 'fixtures' / 'speech8k.wav'}"))
    assert r.get("ok"), r
    await asyncio.sleep(len(speech) / audio.RATE + 0.8)
    phone.command("sndcode", KEYS[-1])
    done = await until(lambda: op_done(bot, rec["id"]), "the recording", 20)
    r = phone.reply(phone.command("ausrc", f"aufile,{E2E / 'fixtures' / 'silence8k.wav'}"))
    async with httpx.AsyncClient(timeout=10) as h:
        got = await h.get(done["recordingLocation"], headers={"Authorization": f"Bearer {done['recordingAccessToken']}"})
    assert got.status_code == 200, got.status_code
    recorded = audio.load(got.content)
    s, _ = await g.request("DELETE", base)
    assert s == 204, s
    await until(lambda: any("terminated" in a.states and cid in json.dumps(a.items) for a in bot.delivered()), "the call terminated", 30)
    await asyncio.to_thread(phone.wait, "CALL_CLOSED", closed_before + 1, 15)
    heard = audio.load(phone.received().read_bytes())
    prompt = audio.fixture("prompt8k.wav")
    heard_pieces = audio.pieces_heard(heard, prompt)
    recorded_pieces = audio.pieces_heard(recorded, speech, rate=audio.RATE) if len(recorded) >= len(speech) else [0.0]
    return {
        "heard": statistics.median(heard_pieces),
        "heard_worst_piece": min(heard_pieces),
        "heard_whole": audio.correlation(heard, prompt)[0] if len(heard) >= len(prompt) else 0.0,
        "recorded": statistics.median(recorded_pieces),
        "recorded_worst_piece": min(recorded_pieces),
        "tones": tones_heard(bot, cid),
        "completion": done.get("completionReason"),
    }


async def inside(args) -> None:
    """In ringside's namespace: the path, ringside, the bot, the phone; every profile in turn."""
    work = FsPath(tempfile.mkdtemp(prefix="ringside-badnet-"))
    results: dict[str, list[dict]] = {}
    stats: dict[str, dict] = {}
    with Path(str(os.getpid() % 100000), seed=args.seed) as path:
        bot = Endpoint("a", prompt=(E2E / "fixtures" / "prompt.wav").read_bytes())
        await bot.start()
        users = f'\n[[users]]\nid = "{PHONE}"\ntenant = "{TENANT}"\ndisplay_name = "Phone"\nendpoint = "sip"\nsip_user = "{PHONE_USER}"\nsip_password = "{PHONE_PASSWORD}"\n'
        server = Server(work / "data", lambda port: config(port, {APPS[0].id: bot.url, APPS[1].id: bot.url}, extra=users, sip_port=SIP_PORT, sip_host=path.addr_server))
        await asyncio.to_thread(server.start)
        phone = None
        g = Graph(server, APPS[0])
        try:
            phone = Baresip(work / "phone", SIP_PORT, PHONE_USER, PHONE_PASSWORD, E2E / "fixtures" / "silence8k.wav", netns=path.ns_phone, host=path.addr_phone, server=path.addr_server)
            for _ in range(150):
                s, v = await g.admin("GET", f"/sip/registrations/{PHONE_USER}")
                if s == 200 and v["contacts"]:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"the phone did not register: {phone.log_tail()}")
            for imp in PROFILES:
                path.impair(imp)
                results[imp.name] = []
                for n in range(args.calls):
                    r = await one_call(g, bot, phone, server)
                    print(f"{imp.name}: call {n + 1}: the phone heard the prompt {r['heard']:.3f} (worst second {r['heard_worst_piece']:.3f}, whole {r['heard_whole']:.3f}), ringside heard the phone {r['recorded']:.3f} (worst second {r['recorded_worst_piece']:.3f}), keys {r['tones']}", flush=True)
                    results[imp.name].append(r)
                stats[imp.name] = {k: vars(v) for k, v in path.stats().items()}
            path.impair(PROFILES[0])
            live = await g.live_calls()
            # A BYE whose answer was lost keeps its dialog until the transaction gives up
            # (64 × T1 = 32 s): wait that long for the SIP stack to let go.
            deadline = time.monotonic() + 40
            while True:
                s, media = await g.admin("GET", "/media")
                behind = {"audio ports": media["ports"], "SIP dialogs": media["rtp"]["dialogs"], "room members": media["members"]} if s == 200 else {"/admin/media": s}
                if not any(behind.values()) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
        finally:
            if phone is not None:
                phone.close()
            await g.close()
            await asyncio.to_thread(server.stop)
    args.out.write_text(json.dumps({"results": results, "stats": stats, "live": len(live), "behind": behind}))


def report(out: dict) -> None:
    gates = Gates()
    rows = []
    for name, calls in out["results"].items():
        st = out["stats"][name]
        heard = [c["heard"] for c in calls]
        rec = [c["recorded"] for c in calls]
        path = ", ".join(f"{d}: {v['packets']} UDP, {v['dropped']} lost, {v['reordered']} reordered" for d, v in st.items())
        worst_h = min(c["heard_worst_piece"] for c in calls)
        worst_r = min(c["recorded_worst_piece"] for c in calls)
        rows.append((name, f"phone heard {min(heard):.3f}–{max(heard):.3f} (worst second {worst_h:.3f}); ringside heard {min(rec):.3f}–{max(rec):.3f} (worst second {worst_r:.3f}); {path}"))
        want = [TONE[k] for k in KEYS]
        for i, c in enumerate(calls):
            gates.check(c["tones"] == want, f"{name}, call {i + 1}: keys {KEYS} each detected once, in order ({c['tones']})")
            gates.check(c["completion"] == "stopToneDetected", f"{name}, call {i + 1}: the recording stopped on # ({c['completion']})")
        gates.check(min(heard) >= floor(name), f"{name}: the phone heard the prompt (worst {min(heard):.3f} ≥ {floor(name)})")
        gates.check(min(rec) >= floor(name), f"{name}: ringside heard the phone (worst {min(rec):.3f} ≥ {floor(name)})")
    table("bad networks (median correlation of the one-second pieces, min–max over the calls; the worst single second)", rows)
    gates.check(out["live"] == 0, f"no call left live ({out['live']})")
    gates.check(not any(out["behind"].values()), f"nothing left behind in ringside ({out['behind']})")
    gates.finish()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=1, help="calls per profile")
    ap.add_argument("--full", action="store_true", help="five calls per profile")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=FsPath, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.full:
        args.calls = 5
    if os.geteuid() != 0:
        sys.exit("badnet.py needs root: it makes network namespaces and TUN devices")
    if args.inside:
        asyncio.run(inside(args))
        return
    subprocess.run(["bash", str(E2E / "fixtures.sh")], check=True, stdout=subprocess.DEVNULL)
    ns = f"rs-srv-{os.getpid()}"
    out = FsPath(tempfile.mkdtemp(prefix="ringside-badnet-")) / "result.json"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, sys.executable, __file__, "--inside", "--calls", str(args.calls), "--seed", str(args.seed), "--out", str(out)], check=True)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    report(json.loads(out.read_text()))


if __name__ == "__main__":
    main()
