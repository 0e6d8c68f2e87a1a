"""Browser origins and TLS: who may open a connection from a web page, and wss://."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tradews.client import Client, ClientError
from tradews.testing import ServerProcess


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = tmp_path_factory.mktemp("origin") / "o.db"
    args = ("--allow-origin", "https://desk.example.com", "--no-demo-traders")
    with ServerProcess.start(db, demo=True, args=args) as proc:
        yield proc


async def handshake(server: ServerProcess, origin: str | None) -> bool:
    """Whether a handshake with this Origin header opens a working connection."""
    headers = {} if origin is None else {"Origin": origin}
    try:
        async with await Client.connect(server.url, headers=headers) as c:
            return isinstance(await c.time(), int)
    except ClientError as exc:
        assert "403" in str(exc), exc
        return False


async def test_browser_pages_from_other_origins_are_refused(desk: ServerProcess) -> None:
    assert await handshake(desk, "https://evil.example") is False
    assert await handshake(desk, "http://desk.example.com") is False  # another scheme
    assert await handshake(desk, "null") is False  # sandboxed pages, file:// pages


async def test_allowed_origins_and_non_browsers_may_connect(desk: ServerProcess) -> None:
    assert await handshake(desk, None) is True  # not a browser
    assert await handshake(desk, "https://desk.example.com") is True
    assert await handshake(desk, "https://DESK.example.com/") is True
    own = desk.url.replace("ws://", "http://")
    assert await handshake(desk, own) is True  # the server's own pages (its console)


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_tls_serves_wss_in_both_encodings(tmp_path: Path, encoding: str) -> None:
    cert, key = self_signed(tmp_path)
    args = ("--tls-cert", str(cert), "--tls-key", str(key), "--no-demo-traders")
    with ServerProcess.start(tmp_path / "tls.db", demo=True, args=args) as server:
        assert server.url.startswith("wss://127.0.0.1:")
        trust = ssl.create_default_context(cafile=str(cert))
        async with await Client.connect(server.url, encoding=encoding, ssl=trust) as c:
            await c.login(server.api_key, server.api_secret)
            await c.quote_request("BTC_USD")
            assert (await c.next_notification()).method == "quote"
        # The console is served over https too, and may connect to wss:// on the same host only.
        page = server.url.replace("wss://", "https://") + "/"
        response = await asyncio.to_thread(urllib.request.urlopen, page, timeout=5, context=trust)
        with response:
            policy = response.headers["Content-Security-Policy"]
        assert f"connect-src {server.url};" in policy
        # A client that does not trust the certificate does not get in.
        with pytest.raises((ssl.SSLError, OSError, ClientError)):
            await Client.connect(server.url, encoding=encoding, timeout=5)
        # Nor does one that speaks plain ws:// to the TLS port.
        with pytest.raises((OSError, ClientError, ConnectionError)):
            await Client.connect(server.url.replace("wss://", "ws://"), timeout=5)


def test_tls_options_are_checked(tmp_path: Path) -> None:
    import subprocess
    import sys

    base = [sys.executable, "-m", "tradews", "serve", "--db", str(tmp_path / "x.db"), "--port", "0"]
    half = subprocess.run([*base, "--tls-cert", "c.pem"], capture_output=True, text=True)
    assert half.returncode == 1 and "--tls-cert and --tls-key go together" in half.stderr
    missing = subprocess.run(
        [*base, "--tls-cert", "nope.pem", "--tls-key", "nope.key"], capture_output=True, text=True
    )
    assert missing.returncode == 1 and "cannot load --tls-cert/--tls-key" in missing.stderr
    assert "Traceback" not in half.stderr + missing.stderr
