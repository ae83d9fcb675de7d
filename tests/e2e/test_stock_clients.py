"""Stock clients, unchanged, against ringside: Python msal and azure-identity with a
certificate credential (msal pads the x5t thumbprint), and the examples of
docs/connecting-bots.md run as they are written — Python msal with instance_discovery=False,
and Microsoft's Node libraries (@azure/msal-node, @azure/identity with
@microsoft/microsoft-graph-client, and the Kiota-based @microsoft/msgraph-beta-sdk).
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from conftest import _binary
from support import ALICE, APP, SECRET, TENANT, Hooks, Ringside

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
DOC = ROOT / "docs" / "connecting-bots.md"
APP_CERT = "aaaaaaaa-0000-0000-0000-0000000000c1"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"


def _certificate(dir: Path) -> tuple[Path, Path, str, str]:
    """A key and self-signed certificate as a bot registers one: (key file, key+cert file,
    certificate PEM, hex SHA-1 thumbprint)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stock-client bot")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_file = dir / "bot-key.pem"
    key_file.write_text(key_pem)
    both = dir / "bot-key-and-cert.pem"
    both.write_text(key_pem + cert_pem)
    return key_file, both, cert_pem, cert.fingerprint(hashes.SHA1()).hex()


@pytest.fixture(scope="module")
def stock():
    hooks = Hooks()
    dir = Path(tempfile.mkdtemp(prefix="ringside-e2e-stock-"))
    key_file, both, cert_pem, sha1 = _certificate(dir)
    extra = f'''
[[apps]]
id = "{APP_CERT}"
tenant = "{TENANT}"
name = "Certificate bot"
certificates = ["""{cert_pem}"""]
'''
    rs = Ringside(_binary(), dir / "data", hooks, extra_config=extra, https=True)
    rs.start()
    rs.bot_key, rs.bot_pem, rs.bot_sha1 = key_file, both, sha1
    yield rs
    rs.hang_up_everything()
    rs.stop()
    hooks.close()
    shutil.rmtree(dir, ignore_errors=True)


def _env(rs: Ringside, **more: str) -> dict[str, str]:
    """What the examples read, and the dev certificate trusted the way each runtime does."""
    env = dict(
        os.environ,
        RINGSIDE_HTTPS=rs.https_base,
        RINGSIDE_GRAPH=rs.https_base,
        TENANT_ID=TENANT,
        CLIENT_ID=APP,
        CLIENT_SECRET=SECRET,
        USER_ID=ALICE,
        CALLBACK_URI=f"{rs.hooks.url}/stock",
        REQUESTS_CA_BUNDLE=str(rs.cert),
        NODE_EXTRA_CA_CERTS=str(rs.cert),
    )
    env.update(more)
    return env


def _run(cmd: list[str], env: dict[str, str]) -> dict:
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, f"{cmd} failed:\n{p.stdout}\n{p.stderr}"
    return json.loads(p.stdout.strip().splitlines()[-1])


def _node(example: str, env: dict[str, str]) -> dict:
    node = shutil.which("node")
    assert node, "Node.js is installed (scripts/test.sh installs it)"
    assert (EXAMPLES / "node" / "node_modules").is_dir(), "tests/e2e/run.sh installs the examples' packages"
    return _run([node, str(EXAMPLES / "node" / example)], env)


async def _live_call(rs: Ringside, call_id: str) -> dict:
    status, calls = await rs.admin("GET", "/calls")
    assert status == 200
    found = [c for c in calls["calls"] if c["id"] == call_id]
    assert found, f"ringside has call {call_id}"
    return found[0]


# ------------------------------------------------------------------ certificate credentials


def test_python_msal_signs_in_with_a_certificate(stock):
    out = _run(
        [sys.executable, str(EXAMPLES / "python" / "msal_certificate.py")],
        _env(stock, CLIENT_ID=APP_CERT, CLIENT_KEY_PEM=str(stock.bot_key), CLIENT_CERT_SHA1=stock.bot_sha1),
    )
    assert out == {"token": True, "error": None, "description": None}, out


def test_azure_identity_certificate_credential_gets_a_token_graph_accepts(stock, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(stock.cert))
    from azure.identity import CertificateCredential

    cred = CertificateCredential(
        TENANT, APP_CERT, certificate_path=str(stock.bot_pem), authority=stock.https_base, disable_instance_discovery=True
    )
    token = cred.get_token(GRAPH_SCOPE).token
    r = httpx.get(f"{stock.https_base}/beta/communications/calls", headers={"Authorization": f"Bearer {token}"}, verify=str(stock.cert))
    assert r.status_code == 200, r.text
    assert r.json()["value"] == []


def test_a_certificate_ringside_does_not_know_is_refused_with_entras_error(stock, tmp_path):
    key_file, _, _, sha1 = _certificate(tmp_path)
    out = _run(
        [sys.executable, str(EXAMPLES / "python" / "msal_certificate.py")],
        _env(stock, CLIENT_ID=APP_CERT, CLIENT_KEY_PEM=str(key_file), CLIENT_CERT_SHA1=sha1),
    )
    assert out["token"] is False and out["error"] == "invalid_client", out
    assert out["description"].startswith("AADSTS700027: "), out


# ------------------------------------------------------------------ the documented examples


def test_python_msal_with_a_secret_and_no_instance_discovery(stock):
    out = _run([sys.executable, str(EXAMPLES / "python" / "msal_secret.py")], _env(stock))
    assert out == {"token": True, "error": None}, out


def test_node_msal_gets_a_token_from_a_known_authority(stock):
    out = _node("msal-node.mjs", _env(stock))
    assert out["token"] is True and out["tokenType"] == "Bearer", out


async def test_node_graph_client_places_a_call(stock):
    out = _node("graph-client.mjs", _env(stock))
    assert out["state"] == "establishing", out
    call = await _live_call(stock, out["id"])
    assert call["appId"] == APP


async def test_node_kiota_beta_sdk_places_a_call(stock):
    out = _node("kiota-beta.mjs", _env(stock))
    assert out["state"] == "establishing", out
    await _live_call(stock, out["id"])


def test_the_docs_show_each_example_as_it_is_run():
    doc = DOC.read_text()
    for f in sorted(EXAMPLES.glob("*/*")):
        if f.suffix in (".py", ".mjs"):
            assert f.read_text().strip() in doc, f"{f.relative_to(ROOT)} is shown verbatim in {DOC.name}"
