"""Deadlines and limits, on a second ringside with short ones: keepAlive lapse, the answer
deadline, and the concurrent-call cap (429 with Retry-After, retried by the SDK)."""
from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from msgraph_beta.generated.models.call_state import CallState
from msgraph_beta.generated.models.o_data_errors.o_data_error import ODataError

from bot import call_user, p2p_call
from conftest import _binary
from support import ALICE, APP, CAROL_NO_ANSWER, Ringside, beta_client, close_client


def _server(hooks, extra: str):
    data = Path(tempfile.mkdtemp(prefix="ringside-e2e-extra-"))
    rs = Ringside(_binary(), data, hooks, extra_server=extra)
    rs.start()
    return rs, data


@pytest.fixture(scope="module")
def quick(hooks):
    rs, data = _server(hooks, "keepalive_seconds = 2\nanswer_deadline_seconds = 1")
    yield rs
    rs.stop()
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="module")
def capped(hooks):
    rs, data = _server(hooks, "max_calls_per_app = 3")
    yield rs
    rs.stop()
    shutil.rmtree(data, ignore_errors=True)


async def test_calls_without_keep_alive_end_and_keep_alive_extends_them(quick, hooks, callback):
    beta = beta_client(quick.base, quick.token())
    try:
        (idle, wi), (kept, wk) = await asyncio.gather(
            call_user(beta, hooks, callback + "-idle", ALICE), call_user(beta, hooks, callback + "-kept", ALICE)
        )
        started = time.monotonic()
        await asyncio.sleep(1.0)
        assert await beta.communications.calls.by_call_id(kept.id).keep_alive.post() is None

        notes = await wi.until_state("terminated", timeout=5)
        assert notes[-1].change == "deleted"
        assert (notes[-1].data["resultInfo"]["code"], notes[-1].data["resultInfo"]["subcode"]) == (408, 8537)
        got = await beta.communications.calls.by_call_id(kept.id).get()
        assert got.state == CallState.Established, "the call that sent keepAlive lives on"

        notes = await wk.until_state("terminated", timeout=5)
        assert notes[-1].data["resultInfo"]["subcode"] == 8537
        assert time.monotonic() - started >= 2.5, "keepAlive moved the deadline"
    finally:
        await close_client(beta)


async def test_incoming_call_not_answered_in_time_ends_with_408(quick, hooks):
    call_id, leg_id = await quick.place_call(ALICE, APP)
    w = hooks.watch(call_id)
    notes = await w.until_state("terminated", timeout=5)
    assert [n.change for n in notes] == ["created", "deleted"]
    assert (notes[-1].data["resultInfo"]["code"], notes[-1].data["resultInfo"]["subcode"]) == (408, 1106)
    leg = await quick.leg(leg_id)
    assert leg["state"] == "ended"


async def test_concurrent_call_cap_is_429_after_the_sdk_retries(capped, hooks, callback):
    beta = beta_client(capped.base, capped.token())
    try:
        assert (await beta.communications.calls.get()).value == []
        calls = [await beta.communications.calls.post(p2p_call(callback, CAROL_NO_ANSWER)) for _ in range(3)]
        started = time.monotonic()
        with pytest.raises(ODataError) as e:
            await beta.communications.calls.post(p2p_call(callback, CAROL_NO_ANSWER))
        assert e.value.response_status_code == 429
        assert e.value.error.code == "TooManyRequests"
        assert time.monotonic() - started >= 2.5, "the SDK honoured Retry-After and retried"
        for c in calls:
            await beta.communications.calls.by_call_id(c.id).delete()
        again = await beta.communications.calls.post(p2p_call(callback, CAROL_NO_ANSWER))
        await beta.communications.calls.by_call_id(again.id).delete()
    finally:
        await close_client(beta)
