"""The SQLite key store's side of signed login: sealed secrets, the key file, fixed vectors."""

from __future__ import annotations

import base64
import sqlite3
import stat
from pathlib import Path

import pytest

from tests.unit.test_signing import (
    API_KEY,
    ED25519_PUBLIC,
    ED25519_SIGNATURE,
    HMAC_SIGNATURE,
    MESSAGE,
)
from tradews.adapters.sqlite_store import SqliteStore, StoreError
from tradews.api import signing
from tradews.api.errors import ApiError, ErrorCode

NOW = 1_763_779_226_123


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    s = SqliteStore(tmp_path / "t.db")
    s.create_account("acme", "enterprise", NOW)
    return s


class Calls:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def signed_login(store: SqliteStore, key: str, message: bytes, signature: str) -> Calls:
    verified = Calls()
    store.authenticate_signed(key, message, signature, NOW, verified)
    return verified


def refusal(store: SqliteStore, key: str, message: bytes, signature: str) -> ApiError:
    verified = Calls()
    with pytest.raises(ApiError) as info:
        store.authenticate_signed(key, message, signature, NOW, verified)
    assert verified.count == 0  # the session records a nonce only for a verified signature
    return info.value


def test_ed25519_fixed_vector(store: SqliteStore) -> None:
    key = store.create_ed25519_key("acme", base64.b64decode(ED25519_PUBLIC), NOW)
    with sqlite3.connect(store.path) as db:  # give it the key id the vector signs for
        db.execute("UPDATE api_keys SET key_id = ? WHERE key_id = ?", (API_KEY, key))
    assert signed_login(store, API_KEY, MESSAGE, ED25519_SIGNATURE).count == 1
    tampered = ED25519_SIGNATURE[:-1] + "9"
    assert refusal(store, API_KEY, MESSAGE, tampered).code is ErrorCode.INVALID_CREDENTIALS
    assert refusal(store, API_KEY, MESSAGE, HMAC_SIGNATURE).code is ErrorCode.INVALID_CREDENTIALS
    assert not Path(f"{store.path}.key").exists()  # an Ed25519 key needs no key file


def test_hmac_secret_is_sealed_under_the_key_file(store: SqliteStore) -> None:
    key, secret = store.create_key("acme", NOW)
    key_file = Path(f"{store.path}.key")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and key_file.stat().st_size == 32
    message = signing.login_message(key, NOW, "nonce-0001")
    assert signed_login(store, key, message, signing.hmac_signature(secret, message)).count == 1
    err = refusal(store, key, message, HMAC_SIGNATURE)
    assert (err.code, err.message) == (ErrorCode.INVALID_CREDENTIALS, "invalid API key or secret")
    unknown = refusal(store, "tw_unknown", message, HMAC_SIGNATURE)
    assert (unknown.code, unknown.message, unknown.data) == (err.code, err.message, err.data)
    assert secret.encode() not in store.path.read_bytes()


def test_a_sealed_secret_opens_only_on_its_own_row(store: SqliteStore) -> None:
    a, _ = store.create_key("acme", NOW)
    b, secret_b = store.create_key("acme", NOW)
    with sqlite3.connect(store.path) as db:
        (sealed_b,) = db.execute("SELECT secret_sealed FROM api_keys WHERE key_id = ?", (b,))
        db.execute("UPDATE api_keys SET secret_sealed = ? WHERE key_id = ?", (sealed_b[0], a))
    message = signing.login_message(a, NOW, "nonce-0001")
    err = refusal(store, a, message, signing.hmac_signature(secret_b, message))
    assert err.data == {"reason": "KEY_FILE_UNAVAILABLE"}


def test_a_missing_or_foreign_key_file(store: SqliteStore, tmp_path: Path) -> None:
    key, secret = store.create_key("acme", NOW)
    store.close()
    Path(f"{store.path}.key").rename(tmp_path / "elsewhere.key")
    reopened = SqliteStore(store.path)
    problem = reopened.key_file_problem()
    assert problem is not None and "is missing" in problem
    message = signing.login_message(key, NOW, "nonce-0001")
    err = refusal(reopened, key, message, signing.hmac_signature(secret, message))
    assert err.code is ErrorCode.INVALID_CREDENTIALS and "cannot verify" in err.message
    with pytest.raises(StoreError, match="is missing, and this database holds secrets"):
        reopened.create_key("acme", NOW)
    assert not Path(f"{store.path}.key").exists()  # no second master key was made
    # Plain login does not need the key file.
    assert reopened.authenticate(key, secret, NOW).key_id == key
    # With the right file given, all is well again.
    moved = SqliteStore(store.path, key_file=tmp_path / "elsewhere.key")
    assert moved.key_file_problem() is None
    assert signed_login(moved, key, message, signing.hmac_signature(secret, message)).count == 1


def test_key_options_are_validated_and_listed(store: SqliteStore) -> None:
    key, _ = store.create_key(
        "acme", NOW, scopes=["trade", "read", "read"], allowed_ips=["10.0.0.0/8", "::1"],
        plain_login=False,
    )  # fmt: skip
    (listed,) = store.list_keys("acme")
    assert (listed.key_id, listed.scopes, listed.allowed_ips) == (
        key, ("read", "trade"), ("10.0.0.0/8", "::1/128"),
    )  # fmt: skip
    assert (listed.plain_login, listed.signed_login) == (False, True)
    for bad in ({"scopes": []}, {"scopes": ["write"]}, {"allowed_ips": ["10.0.0.1/8"]}):
        with pytest.raises(StoreError):
            store.create_key("acme", NOW, **bad)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="not an Ed25519 public key"):
        store.create_ed25519_key("acme", b"\x00" * 31, NOW)
