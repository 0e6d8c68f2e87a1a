"""Signed login, key permissions and allow-lists, over real sockets, keys made with the CLI."""

from __future__ import annotations

import base64
import hashlib
import os
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tradews.adapters.sql import SQLITE
from tradews.adapters.sql_schema import statements
from tradews.api import signing
from tradews.client import Client, RpcError
from tradews.testing import ServerProcess, run_cli

WRONG = "invalid API key or secret"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def signed_params(api_key: str, sign: Any, *, timestamp: int | None = None,
                  nonce: str | None = None) -> dict[str, Any]:  # fmt: skip
    """rpc.login params signed by ``sign(message) -> hex``, as any client would send them."""
    ts = now_ms() if timestamp is None else timestamp
    once = signing.new_nonce() if nonce is None else nonce
    message = signing.login_message(api_key, ts, once)
    return {"apiKey": api_key, "timestamp": ts, "nonce": once, "signature": sign(message)}


def hmac_signer(key: str | bytes) -> Any:
    return lambda message: signing.hmac_signature(key, message)


async def login_error(server: ServerProcess, encoding: str, params: dict[str, Any]) -> RpcError:
    """Log in on a new connection with these params; return the error it must give."""
    async with await Client.connect(server.url, encoding=encoding) as c:
        with pytest.raises(RpcError) as info:
            await c.call("rpc.login", params)
        assert await c.time() > 0  # the connection (and the server) carry on
        return info.value


async def test_hmac_signed_login(server: ServerProcess, encoding: str) -> None:
    created = server.cli("key", "create", "demo")
    assert (created["type"], created["signedLogin"], created["plainLogin"]) == ("hmac", True, True)
    async with await Client.connect(server.url, encoding=encoding) as c:
        assert await c.login(created["apiKey"], created["apiSecret"], signed=True) is True
        assert isinstance(await c.call("balances"), list)


def test_the_key_file_is_made_private(server: ServerProcess) -> None:
    key_file = Path(f"{server.db}.key")  # the default: beside the database, never inside it
    assert key_file.stat().st_size == 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


async def test_ed25519_key_with_a_generated_pair(server: ServerProcess, encoding: str) -> None:
    created = server.cli("key", "create", "demo", "--type", "ed25519")
    assert "apiSecret" not in created and created["plainLogin"] is False
    public = signing.parse_private_key(created["privateKey"]).public_key()
    assert base64.b64decode(created["publicKey"]) == signing.public_key_bytes(public)
    async with await Client.connect(server.url, encoding=encoding) as c:
        assert await c.login(created["apiKey"], private_key=created["privateKey"]) is True
        assert isinstance(await c.call("balances"), list)
    # No plain login: there is no secret, so any is wrong, exactly as for an unknown key.
    err = await login_error(server, encoding, {"apiKey": created["apiKey"], "apiSecret": "x"})
    assert (err.code, err.message) == (1002, WRONG)


async def test_ed25519_key_with_a_given_public_key(
    server: ServerProcess, encoding: str, tmp_path: Path
) -> None:
    key = Ed25519PrivateKey.generate()
    raw = signing.public_key_bytes(key.public_key())
    pem = tmp_path / "public.pem"
    pem.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    for given in (base64.b64encode(raw).decode(), str(pem)):
        created = server.cli("key", "create", "demo", "--type", "ed25519", "--public-key", given)
        assert "privateKey" not in created and base64.b64decode(created["publicKey"]) == raw
        async with await Client.connect(server.url, encoding=encoding) as c:
            assert await c.login(created["apiKey"], private_key=key) is True
        # Someone else's key pair does not log in, and looks like a wrong secret.
        intruder = Ed25519PrivateKey.generate()
        params = signed_params(created["apiKey"], lambda m: intruder.sign(m).hex())  # noqa: B023
        err = await login_error(server, encoding, params)
        assert (err.code, err.message) == (1002, WRONG)


def test_bad_public_keys_are_refused_by_the_cli(server: ServerProcess) -> None:
    for args, says in [
        (("--type", "ed25519", "--public-key", "AAEC"), "must be 32 bytes"),
        (("--public-key", base64.b64encode(bytes(32)).decode()), "for --type ed25519"),
        (("--type", "rsa"), "--type must be hmac or ed25519"),
        (("--scopes", "read,admin"), "unknown scope admin"),
        (("--allow-ip", "10.0.0.1/8"), "has host bits set"),
        (("--allow-ip", "intranet"), "not an IP address or network"),
    ]:
        done = run_cli("key", "create", "demo", *args, db=server.db, check=False)
        assert done.returncode == 1 and says in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr


async def test_a_replayed_signature_is_refused(server: ServerProcess, encoding: str) -> None:
    created = server.cli("key", "create", "demo")
    params = signed_params(created["apiKey"], hmac_signer(created["apiSecret"]))
    async with await Client.connect(server.url, encoding=encoding) as c:
        assert await c.call("rpc.login", params) is True
    err = await login_error(server, encoding, params)  # the same message, as an eavesdropper
    assert err.code == 1011 and "nonce" in err.message
    async with await Client.connect(server.url, encoding=encoding) as c:  # a fresh nonce is fine
        assert await c.login(created["apiKey"], created["apiSecret"], signed=True) is True


async def test_a_timestamp_outside_the_window(server: ServerProcess, encoding: str) -> None:
    created = server.cli("key", "create", "demo")
    for skew in (-60_000, 60_000):
        params = signed_params(
            created["apiKey"], hmac_signer(created["apiSecret"]), timestamp=now_ms() + skew
        )
        before = now_ms()
        err = await login_error(server, encoding, params)
        after = now_ms()
        assert err.code == 1010 and "5000 ms" in err.message
        assert isinstance(err.data, dict) and before <= err.data["serverTime"] <= after
    # The client learns the server's time from that error and signs again with it.
    async with await Client.connect(server.url, encoding=encoding) as c:
        c.clock_offset_ms = -3_600_000  # as if the local clock were an hour behind
        assert await c.login(created["apiKey"], created["apiSecret"], signed=True) is True
        assert abs(c.clock_offset_ms) < 3_600_000


async def test_a_bad_signature_is_a_failed_login(server: ServerProcess, encoding: str) -> None:
    created = server.cli("key", "create", "demo")
    wrong_secret = await login_error(
        server, encoding, {"apiKey": created["apiKey"], "apiSecret": "not-the-secret"}
    )
    async with await Client.connect(server.url, encoding=encoding) as c:
        codes, messages = [], []
        for _ in range(5):
            params = signed_params(created["apiKey"], hmac_signer("not-the-secret"))
            with pytest.raises(RpcError) as info:
                await c.call("rpc.login", params)
            codes.append(info.value.code)
            messages.append(info.value.message)
        assert codes == [1002, 1002, 1002, 1002, 1007]
        assert set(messages[:4]) == {wrong_secret.message} == {WRONG}
        closed = await c.wait_closed(timeout=5)
        assert closed.code == 1008 and closed.reason == "too many failed logins"


async def test_plain_login_off_for_one_key(server: ServerProcess, encoding: str) -> None:
    created = server.cli("key", "create", "demo", "--no-plain-login")
    assert (created["plainLogin"], created["signedLogin"]) == (False, True)
    key, secret = created["apiKey"], created["apiSecret"]
    err = await login_error(server, encoding, {"apiKey": key, "apiSecret": secret})
    assert err.code == 1012 and "for this API key" in err.message
    # Said only to holders of the secret: a guess is just wrong.
    err = await login_error(server, encoding, {"apiKey": key, "apiSecret": "guess"})
    assert (err.code, err.message) == (1002, WRONG)
    async with await Client.connect(server.url, encoding=encoding) as c:
        assert await c.login(key, secret, signed=True) is True


@pytest.fixture(scope="module")
def signed_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = tmp_path_factory.mktemp("signed-only") / "tradews.db"
    with ServerProcess.start(db, demo=True, args=("--no-plain-login",)) as proc:
        yield proc


async def test_plain_login_off_server_wide(signed_only: ServerProcess, encoding: str) -> None:
    server = signed_only
    assert any("Plain login is off" in line for line in server.output)
    err = await login_error(
        server, encoding, {"apiKey": server.api_key, "apiSecret": server.api_secret}
    )
    assert err.code == 1012 and "on this server" in err.message
    async with await Client.connect(server.url, encoding=encoding) as c:
        assert await c.login(server.api_key, server.api_secret, signed=True) is True


async def test_a_read_only_key(server: ServerProcess, encoding: str) -> None:
    created = server.cli("key", "create", "demo", "--scopes", "read")
    assert created["scopes"] == ["read"]
    async with await Client.connect(server.url, encoding=encoding) as c:
        await c.login(created["apiKey"], created["apiSecret"], signed=True)
        assert isinstance(await c.call("balances"), list)
        assert (await c.quote_request("BTC_USD"))["symbol"] == "BTC_USD"
        with pytest.raises(RpcError) as info:
            await c.place_order("BTC_USD", "buy", "0.0001", price="1.00")
        assert info.value.code == 1008 and "'trade' permission" in info.value.message


async def test_address_allow_lists(server: ServerProcess, encoding: str) -> None:
    elsewhere = server.cli(
        "key", "create", "demo", "--allow-ip", "10.0.0.0/8", "--allow-ip", "2001:db8::/32"
    )
    assert elsewhere["allowIps"] == ["10.0.0.0/8", "2001:db8::/32"]
    key, secret = elsewhere["apiKey"], elsewhere["apiSecret"]
    err = await login_error(server, encoding, {"apiKey": key, "apiSecret": secret})
    assert err.code == 1009 and "address" in err.message
    params = signed_params(key, hmac_signer(secret))
    assert (await login_error(server, encoding, params)).code == 1009
    # Only said once the credential verified.
    err = await login_error(server, encoding, {"apiKey": key, "apiSecret": "guess"})
    assert (err.code, err.message) == (1002, WRONG)
    # The refused message's nonce was used up all the same: it cannot be replayed elsewhere.
    assert (await login_error(server, encoding, params)).code == 1011

    here = server.cli("key", "create", "demo", "--allow-ip", "10.0.0.0/8",
                      "--allow-ip", "127.0.0.1")  # fmt: skip
    assert here["allowIps"] == ["10.0.0.0/8", "127.0.0.1/32"]
    async with await Client.connect(server.url, encoding=encoding) as c:
        assert await c.login(here["apiKey"], here["apiSecret"], signed=True) is True
    async with await Client.connect(server.url, encoding=encoding) as c:
        assert await c.login(here["apiKey"], here["apiSecret"]) is True


def steal(db: Path, key: str, secret: str, to: Path) -> tuple[bytes, bytes]:
    """Copy a live database as a backup would (without its key file); return what it holds
    of the key: the secret's digest and the sealed secret."""
    src, dst = sqlite3.connect(db), sqlite3.connect(to)
    try:
        src.backup(dst)
        digest, sealed = dst.execute(
            "SELECT secret_hash, secret_sealed FROM api_keys WHERE key_id = ?", (key,)
        ).fetchone()
    finally:
        src.close()
        dst.close()
    assert not Path(f"{to}.key").exists()
    assert secret.encode() not in to.read_bytes()
    assert len(digest) == 32 and len(sealed) > 32
    return bytes(digest), bytes(sealed)


def write_key_file(path: Path) -> None:
    path.write_bytes(os.urandom(32))
    path.chmod(0o600)


async def test_the_database_alone_yields_no_credential(
    server: ServerProcess, encoding: str, tmp_path: Path
) -> None:
    created = server.cli("key", "create", "demo")
    key, secret = created["apiKey"], created["apiSecret"]
    copy = tmp_path / "stolen.db"
    digest, sealed = steal(server.db, key, secret, copy)
    # What the database holds, used as a secret or as an HMAC key, logs in nowhere.
    candidates: list[str | bytes] = []
    for blob in (digest, sealed):
        candidates += [blob, blob.hex(), base64.b64encode(blob).decode(),
                       base64.urlsafe_b64encode(blob).decode().rstrip("=")]  # fmt: skip
    for candidate in candidates:
        if isinstance(candidate, str):
            err = await login_error(server, encoding, {"apiKey": key, "apiSecret": candidate})
            assert (err.code, err.message) == (1002, WRONG)
        err = await login_error(server, encoding, signed_params(key, hmac_signer(candidate)))
        assert (err.code, err.message) == (1002, WRONG)

    # A server on the copy, with a key file of its own, cannot verify HMAC signatures of the
    # keys it finds: it says so at start and refuses them clearly, and keeps serving.
    fresh = tmp_path / "fresh.key"
    write_key_file(fresh)
    with ServerProcess.start(copy, demo=False, args=("--key-file", str(fresh))) as stolen:
        assert any("does not open the sealed secrets" in line for line in stolen.output)
        for candidate in (secret, digest, sealed):
            err = await login_error(stolen, encoding, signed_params(key, hmac_signer(candidate)))
            assert err.code == 1002 and "cannot verify signed logins" in err.message
            assert err.data == {"reason": "KEY_FILE_UNAVAILABLE"}
        for candidate in (digest.hex(), sealed.hex()):
            err = await login_error(stolen, encoding, {"apiKey": key, "apiSecret": candidate})
            assert (err.code, err.message) == (1002, WRONG)
        async with await Client.connect(stolen.url, encoding=encoding) as c:
            assert await c.time() > 0
        assert stolen.process.poll() is None
    # The key file is what makes the secrets usable: refusing to mix a new one into the copy.
    done = run_cli("key", "create", "demo", "--key-file", str(fresh), db=copy, check=False)
    assert done.returncode == 1 and "not the one this database's secrets" in done.stderr


@pytest.fixture(scope="module")
def before_signed_login(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A database made before signed login (schema version 3), with one key, then served."""
    db = tmp_path_factory.mktemp("old") / "tradews.db"
    conn = sqlite3.connect(db)
    for number in range(1, 4):
        for statement in statements(number, "sqlite", dict(SQLITE.types)):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {number}")
    conn.execute("INSERT INTO accounts(name, tier, created_at) VALUES ('old', 'enterprise', 0)")
    conn.execute(
        "INSERT INTO api_keys(key_id, account_id, secret_hash, created_at) VALUES (?, 1, ?, 0)",
        ("tw_000000000000000000000001", hashlib.sha256(b"old-secret-old-secret").digest()),
    )
    conn.commit()
    conn.close()
    with ServerProcess.start(db, demo=True) as proc:
        yield proc


async def test_keys_made_before_signed_login(
    before_signed_login: ServerProcess, encoding: str
) -> None:
    server = before_signed_login
    key, secret = "tw_000000000000000000000001", "old-secret-old-secret"
    (listed,) = server.cli("key", "list", "old")
    assert (listed["type"], listed["scopes"], listed["allowIps"]) == ("hmac", ["read", "trade"], [])
    assert (listed["plainLogin"], listed["signedLogin"]) == (True, False)
    async with await Client.connect(server.url, encoding=encoding) as c:
        assert await c.login(key, secret) is True
    err = await login_error(server, encoding, signed_params(key, hmac_signer(secret)))
    assert err.code == 1002 and "created before signed login" in err.message
    assert err.data == {"reason": "SIGNED_LOGIN_UNSUPPORTED"}


def quotes(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "tradews", "quotes", "BTC_USD", "--url", server.url,
           "--count", "1", *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_the_quotes_command_signs(server: ServerProcess) -> None:
    signed_only = server.cli("key", "create", "demo", "--no-plain-login")
    done = quotes(server, "--key", signed_only["apiKey"], "--secret", signed_only["apiSecret"])
    assert done.returncode == 0, done.stderr
    assert "BTC_USD buy" in done.stdout and "refused" not in done.stderr
    pair = server.cli("key", "create", "demo", "--type", "ed25519")
    done = quotes(server, "--key", pair["apiKey"], "--private-key", pair["privateKey"])
    assert done.returncode == 0 and "BTC_USD buy" in done.stdout, done.stderr
    done = quotes(server, "--key", pair["apiKey"])
    assert done.returncode == 1 and "give --secret" in done.stderr


def test_the_quotes_command_falls_back_to_plain_for_old_keys(
    before_signed_login: ServerProcess,
) -> None:
    server = before_signed_login
    done = quotes(server, "--key", "tw_000000000000000000000001", "--secret",
                  "old-secret-old-secret")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "logging in with the secret" in done.stderr and "BTC_USD buy" in done.stdout


def test_key_list_never_cuts_the_key_id(server: ServerProcess) -> None:
    created = server.cli("key", "create", "demo", "--scopes", "read", "--allow-ip", "127.0.0.1")
    for columns in ("40", "200"):
        done = subprocess.run(
            [sys.executable, "-m", "tradews", "key", "list", "demo", "--db", str(server.db)],
            capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": columns},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert created["apiKey"] in done.stdout
    row = next(line for line in done.stdout.splitlines() if created["apiKey"] in line)
    assert all(word in row for word in ("hmac", "read", "127.0.0.1/32", "signed+plain"))
