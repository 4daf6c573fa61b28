"""TLS (server certificate, client-certificate login) and WebSocket listeners, with certificates made in the test."""

import shutil
import ssl
import subprocess
import uuid
from pathlib import Path

import pytest

from fleethub.hub import Hub
from security import CLI
from tests.integration.security.client import Client
from tests.integration.security.conftest import secure_settings

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _signed(name: str, cn: str, cwd: Path, ext: str) -> None:
    _openssl("req", *_EC, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=cwd)
    (cwd / f"{name}.ext").write_text(ext)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext", cwd=cwd,
    )  # fmt: skip


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """A throwaway CA, a server certificate for 127.0.0.1, and client certificates for two vehicle ids."""
    _openssl(
        "req", "-x509", *_EC, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=fleethub-test-ca",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=tmp_path,
    )  # fmt: skip
    _signed("server", "127.0.0.1", tmp_path, "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    for name in ("veh-cert-1", "veh-cert-2"):
        _signed(name, name, tmp_path, "extendedKeyUsage=clientAuth\n")
    return tmp_path


@pytest.fixture
async def tls_hub(pki: Path, tmp_path: Path):
    settings = secure_settings(
        str(tmp_path / "tls.db"),
        **{
            "mqtt.tls_port": 0,
            "mqtt.tls_certfile": str(pki / "server.pem"),
            "mqtt.tls_keyfile": str(pki / "server.key"),
            "mqtt.tls_cafile": str(pki / "ca.pem"),
            "mqtt.tls_client_cert_auth": True,
            "mqtt.ws_enabled": True,
            "mqtt.ws_port": 0,
        },
    )
    async with Hub(settings) as hub:
        yield hub


def _context(pki: Path, client_cert: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if client_cert is not None:
        context.load_cert_chain(str(pki / f"{client_cert}.pem"), str(pki / f"{client_cert}.key"))
    return context


async def _connect(client: Client) -> int:
    try:
        return await client.connect()
    finally:
        client.close()


async def test_tls_login_with_secret_and_with_client_certificate(tls_hub, pki) -> None:
    """Over TLS a vehicle logs in with its secret, or with a CA-signed certificate whose CN is its id."""
    plain = await tls_hub.security.provision(f"veh-{uuid.uuid4().hex[:6]}", "acme", actor=CLI)
    await tls_hub.security.provision("veh-cert-1", "acme", actor=CLI)
    port = tls_hub.tls_port
    assert port is not None
    by_secret = Client(port, plain.vehicle_id, username=plain.vehicle_id, password=plain.secret, tls=_context(pki))
    assert await _connect(by_secret) == 0
    by_cert = Client(port, "veh-cert-1", tls=_context(pki, "veh-cert-1"))
    assert await _connect(by_cert) == 0
    anonymous = Client(port, "someone", tls=_context(pki))
    assert await _connect(anonymous) != 0


async def test_client_certificate_must_name_a_provisioned_active_vehicle(tls_hub, pki) -> None:
    """A valid certificate for an unknown or revoked vehicle, or used for another username, is refused."""
    port = tls_hub.tls_port
    unknown = Client(port, "veh-cert-2", tls=_context(pki, "veh-cert-2"))
    assert await _connect(unknown) != 0
    await tls_hub.security.provision("veh-cert-1", "acme", actor=CLI)
    other = await tls_hub.security.provision("veh-other", "acme", actor=CLI)
    posing = Client(port, "veh-other", username="veh-other", password=other.secret, tls=_context(pki, "veh-cert-1"))
    assert await _connect(posing) != 0
    await tls_hub.security.revoke("veh-cert-1", actor=CLI)
    revoked = Client(port, "veh-cert-1", tls=_context(pki, "veh-cert-1"))
    assert await _connect(revoked) != 0


async def test_websocket_listener_authenticates_like_tcp(tls_hub) -> None:
    """MQTT over WebSocket accepts a user with a token and refuses an anonymous client."""
    from security import Role

    await tls_hub.security.add_user("dash", Role.VIEWER, ("acme",), actor=CLI)
    token = (await tls_hub.security.issue_token("dash", actor=CLI)).secret
    port = tls_hub.ws_port
    assert port is not None
    dashboard = Client(port, "dashboard-1", username="dash", password=token, websocket=True)
    try:
        assert await dashboard.connect() == 0
        assert await dashboard.subscribe("alerts/acme/#") == 1
        assert await dashboard.subscribe("alerts/globex/#") == 0x80
    finally:
        dashboard.close()
    assert await _connect(Client(port, "anon", websocket=True)) != 0
