"""Trust, as a bot meets it: azure-identity's ClientSecretCredential against ringside's HTTPS
authority, signed callbacks checked with PyJWT exactly as reference §8.3 describes, signing-key
rotation, per-app request budgets through the SDK's retry handler, and permissions per method.

Servers of its own: `trusted` (HTTPS with its generated dev certificate, an app holding only
Calls.Initiate.All, a webhook receiver that verifies every notification's token), `rotating`
(a fresh one per test: rotations retire keys), `throttled` (one request per second per app)
and one with a small tenant budget.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import json
import re
import shutil
import ssl
import tempfile
import time
from pathlib import Path

import httpx
import jwt
import pytest
from azure.identity import ClientSecretCredential
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_http.middleware.options.headers_inspection_handler_option import HeadersInspectionHandlerOption
from msgraph_beta import GraphServiceClient
from msgraph_beta.generated.communications.calls.item.participants.invite.invite_post_request_body import InvitePostRequestBody
from msgraph_beta.generated.communications.calls.item.play_prompt.play_prompt_post_request_body import PlayPromptPostRequestBody
from msgraph_beta.generated.communications.calls.item.start_recording.start_recording_post_request_body import StartRecordingPostRequestBody
from msgraph_beta.generated.models.call_state import CallState
from msgraph_beta.generated.models.o_data_errors.o_data_error import ODataError

from bot import answer_incoming, app_media, call_user, create_meeting, join_body, p2p_call, prompt, user_target
from conftest import _binary
from support import (
    ALICE,
    APP,
    APP2,
    GINA,
    SECRET,
    SECRET2,
    TENANT,
    CallbackVerifier,
    Hooks,
    Ringside,
    bearer_of,
    beta_client,
    close_client,
)

APP3 = "aaaaaaaa-0000-0000-0000-000000000003"
SECRET3 = "secret-three"
P2P_ONLY = f"""
[[apps]]
id = "{APP3}"
tenant = "{TENANT}"
name = "P2P only"
secret = "{SECRET3}"
permissions = ["Calls.Initiate.All"]
"""
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
SECRETS = {APP: SECRET, APP2: SECRET2, APP3: SECRET3}


def _start(hooks: Hooks, prefix: str, **kw) -> Ringside:
    rs = Ringside(_binary(), Path(tempfile.mkdtemp(prefix=prefix)), hooks, **kw)
    rs.start()
    return rs


def _stop(rs: Ringside) -> None:
    rs.stop()
    shutil.rmtree(rs.data_dir, ignore_errors=True)


def _verify_everything(hooks: Hooks, rs: Ringside) -> dict[str, CallbackVerifier]:
    """One bot per app, each checking every notification that reaches it: its calling webhook
    and the per-call callbacks below /<app id>/."""
    oidc = f"{rs.base}/.well-known/openid-configuration"
    bots = {app: CallbackVerifier(oidc, app) for app in SECRETS}
    hooks.verify_under("/incoming", bots[APP])
    hooks.verify_under("/incoming2", bots[APP2])
    for app, v in bots.items():
        hooks.verify_under(f"/{app}/", v)
    return bots


def _refused(hooks: Hooks, prefix: str = "/") -> list[tuple[str, str]]:
    with hooks.lock:
        return [r for r in hooks.rejected if r[0].startswith(prefix)]


async def _until_state(hooks: Hooks, w, state: str, timeout: float = 10):
    """Like Watch.until_state, but a notification the bot refused fails the wait at once."""
    deadline = time.monotonic() + timeout
    while True:
        refused = _refused(hooks)
        assert not refused, f"the bot refused notifications while waiting for {state}: {refused}"
        try:
            return await w.until_state(state, timeout=0)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.02)


def _assert_callback_claims(notes, rs: Ringside, app: str) -> None:
    assert notes
    for n in notes:
        c = n.claims
        assert c is not None, f"not verified: {n!r}"
        assert c["aud"] == app and c["tid"] == TENANT and c["iss"] == rs.base, c
        assert 0 < c["exp"] - c["iat"] <= 600, f"short-lived: {c}"
        assert c["exp"] > time.time()


# ------------------------------------------------------------------ servers and bots


@pytest.fixture(scope="module")
def trust_hooks():
    h = Hooks()
    yield h
    h.close()


@pytest.fixture(scope="module")
def trusted(trust_hooks):
    rs = _start(trust_hooks, "ringside-e2e-trust-", extra_config=P2P_ONLY, https=True, apps=((APP3, SECRET3),))
    _verify_everything(trust_hooks, rs)
    # The bot process trusts ringside's generated certificate: requests (sync credential) reads
    # REQUESTS_CA_BUNDLE, ssl/aiohttp (aio credential) and httpx read SSL_CERT_FILE. aiohttp
    # loads its default CA store when first imported, which azure.identity.aio does lazily,
    # so the variables are set before any credential exists.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REQUESTS_CA_BUNDLE", str(rs.cert))
        mp.setenv("SSL_CERT_FILE", str(rs.cert))
        yield rs
    _stop(rs)


@pytest.fixture
def trust(trusted, trust_hooks):
    yield trusted
    trusted.hang_up_everything()


@pytest.fixture
def cb(trust_hooks, request):
    """A per-test callback of the given app on the verifying receiver."""
    name = re.sub(r"[^\w-]", "-", request.node.name)
    return lambda app, tail="": f"{trust_hooks.url}/{app}/{name}{tail}"


@contextlib.asynccontextmanager
async def sdk_bot(rs: Ringside, app: str, *, aio: bool = False, graph: str = "http"):
    """Unchanged bot code: a ClientSecretCredential for ringside's authority inside Microsoft's
    GraphServiceClient; only the base URL is repointed (http on loopback, or https)."""
    if aio:
        from azure.identity.aio import ClientSecretCredential as Credential
    else:
        Credential = ClientSecretCredential
    cred = Credential(TENANT, app, SECRETS[app], authority=rs.https_base, disable_instance_discovery=True)
    client = GraphServiceClient(credentials=cred, scopes=[GRAPH_SCOPE])
    client.request_adapter.base_url = f"{rs.https_base if graph == 'https' else rs.base}/beta"
    try:
        yield client, cred
    finally:
        await close_client(client)
        closed = cred.close()
        if inspect.isawaitable(closed):
            await closed


def _inspect() -> tuple[HeadersInspectionHandlerOption, RequestConfiguration]:
    opt = HeadersInspectionHandlerOption(inspect_request_headers=True, inspect_response_headers=True)
    return opt, RequestConfiguration(options=[opt])


def _verify_access_token(rs: Ringside, token: str) -> dict:
    """Check a Graph access token as a resource would, with the keys ringside publishes over HTTPS."""
    doc = httpx.get(f"{rs.https_base}/{TENANT}/v2.0/.well-known/openid-configuration", verify=str(rs.cert)).json()
    for k in ("token_endpoint", "jwks_uri", "issuer"):
        assert doc[k].startswith(rs.https_base + "/"), f"{k} names the scheme and host the client used: {doc}"
    keys = jwt.PyJWKClient(doc["jwks_uri"], ssl_context=ssl.create_default_context(cafile=str(rs.cert)))
    return jwt.decode(
        token,
        keys.get_signing_key_from_jwt(token).key,
        algorithms=["RS256"],
        audience="https://graph.microsoft.com",
        issuer=doc["issuer"],
    )


# ------------------------------------------------------------------ 1. azure-identity, access tokens


@pytest.mark.parametrize("graph", ["http", "https"])
@pytest.mark.parametrize("flavour", ["sync", "aio"])
async def test_client_secret_credential_drives_the_graph_sdk(trust, trust_hooks, cb, flavour, graph):
    async with sdk_bot(trust, APP, aio=flavour == "aio", graph=graph) as (client, cred):
        call = await client.communications.calls.post(p2p_call(cb(APP), ALICE))
        assert call.id and call.state == CallState.Establishing
        w = trust_hooks.watch(call.id)
        await _until_state(trust_hooks, w, "established")

        opt, config = _inspect()
        listed = await client.communications.calls.get(request_configuration=config)
        assert [c.id for c in listed.value] == [call.id], "the credential's app owns the call"
        (auth,) = opt.request_headers.get("authorization")
        claims = _verify_access_token(trust, auth.removeprefix("Bearer "))
        assert (claims["tid"], claims["appid"], claims["azp"]) == (TENANT, APP, APP)
        assert "Calls.Initiate.All" in claims["roles"]

        await client.communications.calls.by_call_id(call.id).delete()
        notes = await _until_state(trust_hooks, w, "terminated")
        assert notes[-1].change == "deleted"
        _assert_callback_claims(w.all(), trust, APP)


async def test_a_used_token_with_an_altered_header_or_payload_is_refused(trust):
    """A resource verifies the signature over header and payload on every token, also after it
    has accepted the genuine token: a signature is only valid for what it signed."""
    good = trust.token()
    head, payload, sig = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(appid=APP2, azp=APP2)
    other_app = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    empty = base64.urlsafe_b64encode(b"{}").rstrip(b"=").decode()
    async with httpx.AsyncClient(base_url=trust.base, timeout=10) as c:
        for token, status in (
            (good, 200),
            (f"{head}.{other_app}.{sig}", 401),
            (f"{head}.{empty}.{sig}", 401),
            (f"{empty}.{payload}.{sig}", 401),
            (good, 200),
        ):
            r = await c.get("/v1.0/communications/calls", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == status, (token[:40], r.status_code, r.text)
            if status == 401:
                assert r.json()["error"]["code"] == "InvalidAuthenticationToken"
                assert r.headers["www-authenticate"].startswith("Bearer")


# ------------------------------------------------------------------ 2. signed callbacks


async def test_every_notification_of_a_call_lifecycle_verifies(trust, trust_hooks, cb):
    async with sdk_bot(trust, APP) as (client, _):
        # Outgoing: establishing, ringing, established, an operation, the end.
        call = await client.communications.calls.post(p2p_call(cb(APP, "-out"), ALICE))
        out = trust_hooks.watch(call.id)
        await _until_state(trust_hooks, out, "established")
        op = await client.communications.calls.by_call_id(call.id).play_prompt.post(
            PlayPromptPostRequestBody(prompts=[prompt(f"{trust_hooks.url}/prompt/100.wav")], client_context="p")
        )
        await out.until_op(op.id)
        await client.communications.calls.by_call_id(call.id).delete()
        await _until_state(trust_hooks, out, "terminated")

        # Incoming: the calling webhook's `created`, then the answered call's callbacks.
        incoming_id, _ = await trust.place_call(GINA, APP)
        inc = await answer_incoming(client, trust_hooks, incoming_id, cb(APP, "-in"))
        await client.communications.calls.by_call_id(incoming_id).delete()
        await _until_state(trust_hooks, inc, "terminated")

    assert _refused(trust_hooks, f"/{APP}/") == [] and _refused(trust_hooks, "/incoming") == []
    outgoing, incoming = out.all(), inc.all()
    assert {"established", "terminated"} <= {n.state for n in outgoing}
    assert any(n.is_operation for n in outgoing)
    assert incoming[0].change == "created" and incoming[0].path == "/incoming"
    _assert_callback_claims(outgoing + incoming, trust, APP)


async def test_a_notification_for_another_app_fails_audience(trust, trust_hooks, cb):
    mine = beta_client(trust.base, trust.token())
    theirs = beta_client(trust.base, trust.token(APP2, SECRET2))
    try:
        (c1, w1), (c2, w2) = await asyncio.gather(
            call_user(mine, trust_hooks, cb(APP), ALICE), call_user(theirs, trust_hooks, cb(APP2), ALICE)
        )
    finally:
        await close_client(mine)
        await close_client(theirs)
    oidc = f"{trust.base}/.well-known/openid-configuration"
    bot1, bot2 = CallbackVerifier(oidc, APP), CallbackVerifier(oidc, APP2)
    t1, t2 = bearer_of(w1.all()[0]), bearer_of(w2.all()[0])
    assert bot1.verify(f"Bearer {t1}")["aud"] == APP
    assert bot2.verify(f"Bearer {t2}")["aud"] == APP2
    with pytest.raises(jwt.InvalidAudienceError):
        bot1.verify(f"Bearer {t2}")
    with pytest.raises(jwt.InvalidAudienceError):
        bot2.verify(f"Bearer {t1}")
    with pytest.raises(jwt.InvalidTokenError):
        bot1.verify(f"Bearer {trust.token()}")  # an access token (aud Graph, tenant issuer) is no callback token

    # Replayed to the first bot's endpoint, the second app's notification is refused with 401,
    # as are a missing token and a tampered signature.
    note = w2.all()[0]
    body = {"@odata.type": "#microsoft.graph.commsNotifications", "value": [note.item]}
    head, payload, sig = t1.split(".")
    tampered = f"{head}.{payload}.{sig[:-4]}{'AAAA' if sig[-4:] != 'AAAA' else 'BBBB'}"
    replay = cb(APP, "-replayed")
    path = replay.removeprefix(trust_hooks.url)
    for auth, error in ((f"Bearer {t2}", "InvalidAudienceError"), (None, "InvalidTokenError"), (f"Bearer {tampered}", "InvalidSignatureError")):
        headers = {"Authorization": auth} if auth else {}
        r = httpx.post(replay, json=body, headers=headers, timeout=10)
        assert r.status_code == 401, (auth, r.status_code)
        refused = _refused(trust_hooks, path)
        assert refused and refused[-1][1].startswith(error), refused
    assert not [n for n in trust_hooks.snapshot() if n.path == path], "nothing refused reached the bot"
    with trust_hooks.lock:
        trust_hooks.rejected[:] = [r for r in trust_hooks.rejected if r[0] != path]


# ------------------------------------------------------------------ key rotation


@pytest.fixture
def rotating():
    """A fresh server and receiver per test, every notification checked by APP's bot."""
    hooks = Hooks()
    rs = _start(hooks, "ringside-e2e-rotate-")
    bot = CallbackVerifier(f"{rs.base}/.well-known/openid-configuration", APP)
    hooks.verify_under("/", bot)
    yield rs, hooks, bot
    _stop(rs)
    hooks.close()


async def _rotate(rs: Ringside) -> str:
    s, v = await rs.admin("POST", "/signing-keys/rotate")
    assert s == 201, (s, v)
    return v["kid"]


def _kids(rs: Ringside) -> list[str]:
    return [k["kid"] for k in httpx.get(f"{rs.base}/discovery/keys", timeout=10).json()["keys"]]


async def test_callbacks_verify_across_a_signing_key_rotation(rotating, request):
    rs, hooks, bot = rotating
    beta = beta_client(rs.base, rs.token())
    cb = f"{hooks.url}/callback/{request.node.name}"
    try:
        first, w1 = await call_user(beta, hooks, cb + "-1", ALICE)
        before = [bearer_of(n) for n in w1.all()]
        old_kid = jwt.get_unverified_header(before[0])["kid"]

        new_kid = await _rotate(rs)
        assert new_kid != old_kid and set(_kids(rs)) == {new_kid, old_kid}, "current and previous key published"

        await beta.communications.calls.by_call_id(first.id).delete()  # the pre-rotation access token still works
        await _until_state(hooks, w1, "terminated")
        second = await beta.communications.calls.post(p2p_call(cb + "-2", ALICE))
        w2 = hooks.watch(second.id)
        await _until_state(hooks, w2, "established")
        await beta.communications.calls.by_call_id(second.id).delete()
        await _until_state(hooks, w2, "terminated")
    finally:
        await close_client(beta)
    assert hooks.rejected == []
    _assert_callback_claims(w1.all() + w2.all(), rs, APP)
    # A bot that starts after the rotation still accepts what was signed before it.
    fresh = CallbackVerifier(f"{rs.base}/.well-known/openid-configuration", APP)
    for t in before:
        assert fresh.verify(f"Bearer {t}")["tid"] == TENANT


async def test_callbacks_after_two_quick_rotations_are_signed_with_a_published_key(rotating, request):
    rs, hooks, _ = rotating
    cb = f"{hooks.url}/callback/{request.node.name}"
    beta = beta_client(rs.base, rs.token())
    try:
        first, w1 = await call_user(beta, hooks, cb + "-1", ALICE)
        await beta.communications.calls.by_call_id(first.id).delete()
        await _until_state(hooks, w1, "terminated")
    finally:
        await close_client(beta)
    in_use = jwt.get_unverified_header(bearer_of(w1.all()[0]))["kid"]
    k1 = await _rotate(rs)
    k2 = await _rotate(rs)
    # New keys are published before they sign (server.signing_key_activation_seconds), and
    # the key in use is never dropped by a rotation.
    assert {in_use, k1, k2} <= set(_kids(rs)), "the key in use and both new keys are published"

    # The bot restarts (or its key cache expires) after the rotations: it knows the published keys only.
    hooks.verify_under("/", CallbackVerifier(f"{rs.base}/.well-known/openid-configuration", APP))
    rs._tokens.clear()  # its access token was signed with the retired key as well
    beta = beta_client(rs.base, rs.token())
    try:
        second = await beta.communications.calls.post(p2p_call(cb + "-2", ALICE))
        w2 = hooks.watch(second.id)
        await _until_state(hooks, w2, "established", timeout=5)
        await beta.communications.calls.by_call_id(second.id).delete()
        await _until_state(hooks, w2, "terminated", timeout=5)
    finally:
        await close_client(beta)
    _assert_callback_claims(w2.all(), rs, APP)


# ------------------------------------------------------------------ 3. throttling


@pytest.fixture(scope="module")
def throttled(hooks):
    rs = _start(hooks, "ringside-e2e-throttle-", extra_server="rate_per_app = 1.0\nburst_per_app = 3.0", extra_config=P2P_ONLY)
    yield rs
    _stop(rs)


async def _burst(base: str, token: str, n: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10) as c:
        return [await c.get("/v1.0/communications/calls") for _ in range(n)]


async def test_a_burst_over_the_app_rate_gets_429_with_retry_after(throttled):
    replies = await _burst(throttled.base, throttled.token(APP2, SECRET2), 6)
    statuses = [r.status_code for r in replies]
    assert statuses[:3] == [200, 200, 200] and 429 in statuses, statuses
    r = next(r for r in replies if r.status_code == 429)
    wait = int(r.headers["retry-after"])
    assert wait >= 1
    err = r.json()["error"]
    assert err["code"] == "TooManyRequests" and err["message"]
    assert err["innerError"]["request-id"] and err["innerError"]["date"]
    assert r.headers["request-id"] == err["innerError"]["request-id"]

    other = await _burst(throttled.base, throttled.token(APP3, SECRET3), 1)
    assert other[0].status_code == 200, "another app has its own budget"
    await asyncio.sleep(wait)
    again = await _burst(throttled.base, throttled.token(APP2, SECRET2), 1)
    assert again[0].status_code == 200, "served again after Retry-After"


async def test_the_tenant_budget_spans_its_apps(hooks):
    rs = _start(hooks, "ringside-e2e-tenant-", extra_server="rate_per_tenant = 1.0\nburst_per_tenant = 2.0", extra_config=P2P_ONLY)
    try:
        tokens = [rs.token(a, SECRETS[a]) for a in (APP, APP2, APP3)]
        replies = [(await _burst(rs.base, t, 1))[0] for t in tokens]
        assert [r.status_code for r in replies] == [200, 200, 429], "the third app finds its tenant's budget spent"
        assert int(replies[2].headers["retry-after"]) >= 1
        assert replies[2].json()["error"]["code"] == "TooManyRequests"
    finally:
        _stop(rs)


async def test_the_sdk_retry_handler_waits_out_a_429(throttled, hooks, callback):
    beta = beta_client(throttled.base, throttled.token())
    try:
        drained = [r.status_code for r in await _burst(throttled.base, throttled.token(), 6)]
        assert drained[-1] == 429, f"the app's budget is spent: {drained}"

        opt, config = _inspect()
        started = time.monotonic()
        call = await beta.communications.calls.post(p2p_call(callback, ALICE), request_configuration=config)
        waited = time.monotonic() - started
        assert call.id and call.state == CallState.Establishing
        # The inspection option is read on the first attempt only (kiota drops the request
        # options before sending): what it saw is the 429, which the SDK then retried.
        (retry_after,) = opt.response_headers.get("retry-after")
        assert waited >= int(retry_after) - 0.05, f"the SDK waited Retry-After ({retry_after} s): {waited:.2f} s"

        w = hooks.watch(call.id)
        await w.until_state("established")
        await beta.communications.calls.by_call_id(call.id).delete()
        await w.until_state("terminated")
    finally:
        await close_client(beta)


# ------------------------------------------------------------------ 4. permissions


async def test_an_app_with_only_calls_initiate_all_places_p2p_calls_only(trust, trust_hooks, cb):
    main = beta_client(trust.base, trust.token())
    try:
        meeting = await create_meeting(main, "permissions")
    finally:
        await close_client(main)

    async with sdk_bot(trust, APP3, graph="https") as (client, cred):
        roles = jwt.decode(cred.get_token(GRAPH_SCOPE).token, options={"verify_signature": False})["roles"]
        assert roles == ["Calls.Initiate.All"]

        call, w = await call_user(client, trust_hooks, cb(APP3), ALICE)
        calls = client.communications.calls.by_call_id(call.id)

        refused = [
            ("Calls.JoinGroupCall.All", lambda: client.communications.calls.post(join_body(cb(APP3, "-join"), meeting))),
            ("Calls.InitiateGroupCall.All", lambda: calls.participants.invite.post(
                InvitePostRequestBody(participants=[user_target(GINA, "Gina")], client_context="inv")
            )),
            ("Calls.AccessMedia.All", lambda: client.communications.calls.post(p2p_call(cb(APP3, "-media"), ALICE, media=app_media()))),
            ("Calls.JoinGroupCall.All", lambda: calls.start_recording.post(StartRecordingPostRequestBody(client_context="rec"))),
        ]
        for permission, attempt in refused:
            with pytest.raises(ODataError) as e:
                await attempt()
            assert e.value.response_status_code == 403, permission
            assert e.value.error.code == "Forbidden"
            assert permission in e.value.error.message, (permission, e.value.error.message)
            assert e.value.error.inner_error.request_id

        assert [c.id for c in (await client.communications.calls.get()).value] == [call.id], "the refused creates made nothing"
        roster = (await calls.participants.get()).value
        assert not any(p.info and p.info.identity and p.info.identity.user and p.info.identity.user.id == GINA for p in roster)
        assert (await calls.get()).state == CallState.Established, "the refused actions left the call alone"
        await calls.delete()
        await _until_state(trust_hooks, w, "terminated")
    assert _refused(trust_hooks, f"/{APP3}/") == []
    _assert_callback_claims(w.all(), trust, APP3)
