"""Two real phones: pjsua2 (PJSIP 2.15) registered as the SIP users Ivan and Judy, driven by
pjphone.py, and a bot written with Microsoft's Graph SDK.

* The bot sends keys with sendDtmfTones: the phone's stack reports them, in order, as the
  RFC 4733 telephone-events it received.
* A phone puts the bot's call on hold and takes it off again: the bot sees `hold`, then
  `established`, and the phone hears the prompt played after the resume (second by second,
  in order; see `heard_prompt`).
* The bot transfers Ivan to Judy. pjsua2 allows REFER, so ringside sends Ivan a REFER whose
  Refer-To is a ringside URI; Ivan's phone calls it, ringside rings Judy's phone and, when
  she answers, bridges the two and ends Ivan's original call. The bot sees transferring,
  transferAccepted, terminated (7015). Ivan hears what Judy's phone plays. Ivan then holds
  Judy and resumes: ringside answers each re-INVITE per RFC 3264 and the call between the
  two phones stays up until Ivan hangs up, which hangs Judy up too."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest_asyncio
from msgraph_beta.generated.communications.calls.item.play_prompt.play_prompt_post_request_body import PlayPromptPostRequestBody
from msgraph_beta.generated.communications.calls.item.send_dtmf_tones.send_dtmf_tones_post_request_body import SendDtmfTonesPostRequestBody
from msgraph_beta.generated.communications.calls.item.transfer.transfer_post_request_body import TransferPostRequestBody
from msgraph_beta.generated.models.identity import Identity
from msgraph_beta.generated.models.identity_set import IdentitySet
from msgraph_beta.generated.models.invitation_participant_info import InvitationParticipantInfo
from msgraph_beta.generated.models.tone import Tone

import audio
from bot import call_user, prompt
from pjphone import PjEndpoint, PjPhone
from support import IVAN_SIP, IVAN_SIP_PASSWORD, IVAN_SIP_USER, JUDY_SIP, JUDY_SIP_PASSWORD, JUDY_SIP_USER

FIXTURES = Path(__file__).parent / "fixtures"


async def registered(ringside, user: str) -> list:
    s, v = await ringside.admin("GET", f"/sip/registrations/{user}")
    assert s == 200, v
    return v["contacts"]


async def phone(ringside, tmp_path: Path, user: str, password: str) -> PjPhone:
    p = PjEndpoint.shared().phone(ringside.sip_port, user, password, rec_dir=tmp_path / user)
    p.wait_registered()
    return p


async def unregistered(ringside, p: PjPhone, user: str) -> None:
    p.close()
    # The next test's phone must be the only contact.
    deadline = time.monotonic() + 5
    while await registered(ringside, user) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


@pytest_asyncio.fixture
async def ivan(ringside, tmp_path):
    p = await phone(ringside, tmp_path, IVAN_SIP_USER, IVAN_SIP_PASSWORD)
    yield p
    await unregistered(ringside, p, IVAN_SIP_USER)


@pytest_asyncio.fixture
async def judy(ringside, tmp_path):
    p = await phone(ringside, tmp_path, JUDY_SIP_USER, JUDY_SIP_PASSWORD)
    yield p
    await unregistered(ringside, p, JUDY_SIP_USER)


def heard_prompt(p: PjPhone) -> list[float]:
    """How well each second of the prompt is found, in order, in what the phone recorded."""
    received = p.received()
    assert received is not None, "pjsua2 recorded what it received"
    return audio.pieces_heard(audio.load(received.read_bytes()), audio.fixture("prompt8k.wav"))


def clearly(pieces: list[float]) -> bool:
    """The prompt's content arrived, in order: most seconds heard (correlation > 0.8), none
    lost (none below 0.4). A broken path (no audio, wrong codec, noise, gaps) scores every
    second below 0.4.

    Why not every second: stream statistics from both sides (2026-11-28) show failing runs
    with every packet delivered on time (ringside's legs: nothing late, concealed or
    dropped; the phone's stream: nothing lost, mean arrival jitter under 0.2 ms), yet the
    phone's jitter buffer ran empty once or twice (`jbuf_empty`). The bridge's software clock
    in this test process runs late and then catches up; each concealed frame shifts the rest
    of its second by 20 ms and scores that second 0.5-0.7. A deeper phone jitter buffer made
    it worse. Clean runs score 0.99 per second for the bot's prompt and 0.90-0.95 through two
    pjsua2 bridges. What ringside controls, the packets and their timing, is checked exactly
    by `delivered_on_time`."""
    return sum(s > 0.8 for s in pieces) * 2 > len(pieces) and min(pieces) > 0.4


def delivered_on_time(p: PjPhone) -> None:
    """Every RTP stream of the phone lost no packet ringside sent (by sequence number), and
    they arrived evenly paced (mean interarrival jitter under 5 ms)."""
    stats = [e.details for e in p.seen("stream stats")]
    assert stats, "pjsua2 reported its stream statistics"
    assert all(s["rx_lost"] == 0 for s in stats), stats
    assert all(s["jitter_ms_mean_max"][0] < 5 for s in stats), stats


async def media_timing(ringside, *phones: PjPhone) -> dict:
    """ringside's media-thread timing and RTP counters, and what the phones' streams
    received, for a failure message."""
    s, v = await ringside.admin("GET", "/media")
    assert s == 200, v
    v["phones"] = {p.user: [e.details for e in p.seen("stream stats")] for p in phones}
    v["legs"] = [line for line in ringside.log_tail(400).splitlines() if "RTP leg ended" in line]
    return v


async def test_keys_the_bot_sends_reach_a_real_phone_as_telephone_events(beta, ringside, hooks, callback, ivan):
    call, w = await call_user(beta, hooks, callback, IVAN_SIP)
    await ivan.until("media active")
    m = ivan.mark()
    op = await beta.communications.calls.by_call_id(call.id).send_dtmf_tones.post(
        SendDtmfTonesPostRequestBody(tones=[Tone.Tone1, Tone.Tone9, Tone.Star, Tone.Pound, Tone.Tone0], delay_between_tones_ms=100)
    )
    done = await w.until_op(op.id, timeout=20)
    assert done.data["status"] == "completed", done.data
    got = await ivan.until("dtmf ", count=5, since=m)
    assert [e.kind for e in got] == ["dtmf 1", "dtmf 9", "dtmf *", "dtmf #", "dtmf 0"], ivan.kinds()
    await asyncio.sleep(0.5)
    assert len(ivan.seen("dtmf ", since=m)) == 5, f"each key once, though its end is sent three times: {ivan.kinds()}"
    await beta.communications.calls.by_call_id(call.id).delete()
    await w.until_state("terminated")
    await ivan.until("state DISCONNECTED")


async def test_a_real_phone_holds_the_bots_call_and_resumes_then_hears_the_prompt(beta, ringside, hooks, callback, ivan, judy):
    call, w = await call_user(beta, hooks, callback, IVAN_SIP)
    await ivan.until("media active")
    assert not judy.seen("incoming"), "only Ivan's phone rang"
    # pjsua2 answers as it rings (180 and 200 back to back): ringing is still shown first.
    states = [n.state for n in w.all() if n.is_call and n.state]
    assert states[:3] == ["establishing", "ringing", "established"], states

    m = ivan.mark()
    ivan.hold()
    await ivan.until("media hold local", since=m)
    await w.until_state("hold")
    got = await beta.communications.calls.by_call_id(call.id).get()
    assert got.state.value == "hold"

    m = ivan.mark()
    ivan.resume()
    await ivan.until("media active", since=m)
    await w.until_state("established")

    op = await beta.communications.calls.by_call_id(call.id).play_prompt.post(
        PlayPromptPostRequestBody(prompts=[prompt(f"{hooks.url}/fixture/prompt.wav")])
    )
    done = await w.until_op(op.id, timeout=20)
    assert done.data["status"] == "completed", done.data
    # The prompt's end may still sit in the phone's jitter buffer (pjmedia's grows after a
    # late packet): give it time to play out before hanging up.
    await asyncio.sleep(1.5)
    await beta.communications.calls.by_call_id(call.id).delete()
    await w.until_state("terminated")
    await ivan.until("state DISCONNECTED")
    pieces = heard_prompt(ivan)
    assert clearly(pieces), f"the phone heard the prompt after the resume (each second's correlation: {pieces}); ringside media: {await media_timing(ringside, ivan)}"
    delivered_on_time(ivan)


async def test_the_bot_transfers_one_real_phone_to_another_by_refer_and_they_talk(beta, ringside, hooks, callback, ivan, judy):
    call, w = await call_user(beta, hooks, callback, IVAN_SIP)
    await ivan.until("media active")

    await beta.communications.calls.by_call_id(call.id).transfer.post(
        TransferPostRequestBody(
            transfer_target=InvitationParticipantInfo(identity=IdentitySet(user=Identity(id=JUDY_SIP, display_name="Judy")))
        )
    )
    notes = await w.until_state("terminated", timeout=20)
    states = [n.state for n in notes if n.is_call and n.state]
    assert states[-3:] == ["transferring", "transferAccepted", "terminated"], states
    assert notes[-1].data["resultInfo"]["subcode"] == 7015, notes[-1].data

    # Ivan's phone was asked to make the new call itself, to ringside.
    request = (await ivan.until("transfer_request"))[0]
    assert "xfer-" in str(request.details), request
    await judy.until("state CONFIRMED")
    await ivan.until("state CONFIRMED", count=2)

    # Judy's phone speaks; Ivan's phone hears it through ringside.
    await judy.until("media active")
    m = ivan.mark()
    judy.play(FIXTURES / "prompt8k.wav", loop=False)
    # 5.7 s of prompt, and time for both phones' jitter buffers to play it out.
    await asyncio.sleep(8)

    # Ivan holds Judy and takes her back; the call between the phones stays up.
    ivan.hold()
    await ivan.until("media hold local", since=m)
    m = ivan.mark()
    ivan.resume()
    await ivan.until("media active", since=m)
    await asyncio.sleep(0.5)
    assert not judy.seen("state DISCONNECTED"), judy.kinds()

    ivan.hangup()
    await ivan.until("state DISCONNECTED", count=2)
    await judy.until("state DISCONNECTED")
    pieces = heard_prompt(ivan)
    assert clearly(pieces), f"Ivan heard Judy's phone (each second's correlation: {pieces}); ringside media: {await media_timing(ringside, ivan)}"
    delivered_on_time(ivan)
    s, v = await ringside.admin("GET", f"/sip/registrations/{JUDY_SIP_USER}")
    assert s == 200 and v["contacts"], "Judy's phone is still registered"
