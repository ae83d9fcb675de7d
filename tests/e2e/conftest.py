"""Fixtures: one real `ringside serve` for the session, one webhook receiver, and Graph SDK
clients (beta and v1.0) with a static bearer token from ringside's token endpoint."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import pytest_asyncio

import asyncio

from support import APP2, SECRET2, Hooks, Ringside, beta_client, close_client, v1_client, warm_up

REPO = Path(__file__).resolve().parents[2]


def _binary() -> Path:
    b = Path(os.environ.get("RINGSIDE_BIN", "target/debug/ringside"))
    if not b.is_absolute():
        b = REPO / b
    if not b.exists():
        pytest.exit(f"ringside binary not found at {b} (set RINGSIDE_BIN)", returncode=2)
    return b


@pytest.fixture(scope="session")
def hooks():
    h = Hooks()
    yield h
    h.close()


@pytest.fixture(scope="session")
def ringside(hooks):
    data = Path(tempfile.mkdtemp(prefix="ringside-e2e-"))
    rs = Ringside(_binary(), data, hooks)
    rs.start()
    asyncio.run(warm_up(rs.base, rs.token(), hooks.url))
    rs.hang_up_everything()
    yield rs
    rs.stop()
    if os.environ.get("RINGSIDE_E2E_KEEP"):
        print(f"\nringside data kept in {data}")
    else:
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(autouse=True)
def _clean_calls(request, ringside):
    """Each scenario starts with no live calls and hangs up whatever it left behind."""
    yield
    ringside.hang_up_everything()


@pytest.fixture
def callback(hooks, request):
    """A per-test callback URI on the webhook receiver."""
    return f"{hooks.url}/callback/{request.node.name}"


@pytest_asyncio.fixture
async def beta(ringside):
    c = beta_client(ringside.base, ringside.token())
    yield c
    await close_client(c)


@pytest_asyncio.fixture
async def beta2(ringside):
    """The second application's client (another bot in the same tenant)."""
    c = beta_client(ringside.base, ringside.token(APP2, SECRET2))
    yield c
    await close_client(c)


@pytest_asyncio.fixture
async def v1(ringside):
    c = v1_client(ringside.base, ringside.token())
    yield c
    await close_client(c)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach the tail of ringside's log to the report."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed and "ringside" in item.funcargs:
        rep.sections.append(("ringside log (tail)", item.funcargs["ringside"].log_tail(40)))
