"""The store's contract, on every backend: accounts, API keys (sealed secrets, signed login),
instruments, reference prices, the operator's inbox, and the change feed other processes see."""

from __future__ import annotations

import base64
import stat
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.unit.test_signing import (
    API_KEY,
    ED25519_PUBLIC,
    ED25519_SIGNATURE,
    HMAC_SIGNATURE,
    MESSAGE,
)
from tradews.adapters.registry import open_store
from tradews.adapters.sql_store import Operations, SqlStore, StoreError
from tradews.api import signing
from tradews.api.errors import ApiError, ErrorCode
from tradews.domain.instrument import Instrument

NOW = 1_763_779_226_123
BTC_USD = Instrument(
    "BTC_USD", "BTC", "USD", Decimal("0.01"), Decimal("0.0001"), Decimal("0.0001"), None,
    Decimal(1), Decimal(5),
)  # fmt: skip


@pytest.fixture
def store(db_url: str, key_file: Path) -> Iterator[SqlStore]:
    s = open_store(db_url, key_file=key_file)
    s.create_account("acme", "enterprise", NOW)
    yield s
    s.close()


class Calls:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def signed_login(store: SqlStore, key: str, message: bytes, signature: str) -> Calls:
    verified = Calls()
    store.authenticate_signed(key, message, signature, NOW, verified)
    return verified


def refusal(store: SqlStore, key: str, message: bytes, signature: str) -> ApiError:
    verified = Calls()
    with pytest.raises(ApiError) as info:
        store.authenticate_signed(key, message, signature, NOW, verified)
    assert verified.count == 0  # the session records a nonce only for a verified signature
    return info.value


# Accounts ----------------------------------------------------------------------------------


def test_accounts_are_numbered_unique_and_listed(store: SqlStore) -> None:
    other = store.create_account("other-1", "standard", NOW + 1)
    assert other.id > store._require_account("acme").id
    assert [a.name for a in store.list_accounts()] == ["acme", "other-1"]
    assert store.get_account("other-1") == other
    assert store.get_account("nobody") is None
    with pytest.raises(StoreError, match="already exists"):
        store.create_account("acme", "standard", NOW)
    with pytest.raises(StoreError, match="tier must be"):
        store.create_account("x", "gold", NOW)
    ops = Operations(store)
    house, fees = ops.system_accounts(NOW)
    assert ops.system_accounts(NOW) == (house, fees)  # created once
    assert ops.account_names()[house] == "house"


# API keys ----------------------------------------------------------------------------------


def test_ed25519_fixed_vector(store: SqlStore, key_file: Path) -> None:
    key = store.create_ed25519_key("acme", base64.b64decode(ED25519_PUBLIC), NOW)
    with store.db.transaction() as db:  # give it the key id the vector signs for
        db.execute("UPDATE api_keys SET key_id = ? WHERE key_id = ?", (API_KEY, key))
    assert signed_login(store, API_KEY, MESSAGE, ED25519_SIGNATURE).count == 1
    tampered = ED25519_SIGNATURE[:-1] + "9"
    assert refusal(store, API_KEY, MESSAGE, tampered).code is ErrorCode.INVALID_CREDENTIALS
    assert refusal(store, API_KEY, MESSAGE, HMAC_SIGNATURE).code is ErrorCode.INVALID_CREDENTIALS
    assert not key_file.exists()  # an Ed25519 key needs no key file


def test_hmac_secret_is_sealed_under_the_key_file(store: SqlStore, key_file: Path) -> None:
    key, secret = store.create_key("acme", NOW)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and key_file.stat().st_size == 32
    message = signing.login_message(key, NOW, "nonce-0001")
    assert signed_login(store, key, message, signing.hmac_signature(secret, message)).count == 1
    assert store.authenticate(key, secret, NOW).key_id == key
    err = refusal(store, key, message, HMAC_SIGNATURE)
    assert (err.code, err.message) == (ErrorCode.INVALID_CREDENTIALS, "invalid API key or secret")
    unknown = refusal(store, "tw_unknown", message, HMAC_SIGNATURE)
    assert (unknown.code, unknown.message, unknown.data) == (err.code, err.message, err.data)
    with pytest.raises(ApiError) as wrong:
        store.authenticate(key, secret + "x", NOW)
    assert wrong.value.code is ErrorCode.INVALID_CREDENTIALS
    (row,) = store.db.all("SELECT * FROM api_keys")
    assert not any(secret.encode() in bytes(v) for v in row if isinstance(v, bytes | memoryview))
    assert not any(secret in v for v in row if isinstance(v, str))


def test_a_sealed_secret_opens_only_on_its_own_row(store: SqlStore) -> None:
    a, _ = store.create_key("acme", NOW)
    b, secret_b = store.create_key("acme", NOW)
    with store.db.transaction() as db:
        sealed_b = db.scalar("SELECT secret_sealed FROM api_keys WHERE key_id = ?", (b,))
        db.execute("UPDATE api_keys SET secret_sealed = ? WHERE key_id = ?", (sealed_b, a))
    message = signing.login_message(a, NOW, "nonce-0001")
    err = refusal(store, a, message, signing.hmac_signature(secret_b, message))
    assert err.data == {"reason": "KEY_FILE_UNAVAILABLE"}


def test_a_missing_or_foreign_key_file(
    store: SqlStore, db_url: str, key_file: Path, tmp_path: Path
) -> None:
    key, secret = store.create_key("acme", NOW)
    key_file.rename(tmp_path / "elsewhere.key")
    reopened = open_store(db_url, key_file=key_file)
    problem = reopened.key_file_problem()
    assert problem is not None and "is missing" in problem
    message = signing.login_message(key, NOW, "nonce-0001")
    err = refusal(reopened, key, message, signing.hmac_signature(secret, message))
    assert err.code is ErrorCode.INVALID_CREDENTIALS and "cannot verify" in err.message
    with pytest.raises(StoreError, match="is missing, and this database holds secrets"):
        reopened.create_key("acme", NOW)
    assert not key_file.exists()  # no second master key was made
    # Plain login does not need the key file.
    assert reopened.authenticate(key, secret, NOW).key_id == key
    # With the right file given, all is well again.
    moved = open_store(db_url, key_file=tmp_path / "elsewhere.key")
    assert moved.key_file_problem() is None
    assert signed_login(moved, key, message, signing.hmac_signature(secret, message)).count == 1
    reopened.close()
    moved.close()


def test_key_options_are_validated_and_listed(store: SqlStore) -> None:
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
    with pytest.raises(StoreError, match="no account"):
        store.create_key("nobody", NOW)


def test_revoked_and_expired_keys_are_refused_and_reported(store: SqlStore) -> None:
    revoked, revoked_secret = store.create_key("acme", NOW, label="bot")
    labelled, _ = store.create_key("acme", NOW, label="bot")
    expiring, expiring_secret = store.create_key("acme", NOW, expires_at=NOW + 1000)
    kept, _ = store.create_key("acme", NOW)
    assert store.invalid_keys([], NOW) == set()
    assert store.invalid_keys([revoked, expiring, kept, "tw_gone"], NOW) == {"tw_gone"}
    assert store.revoke_key(revoked, NOW + 1) is True
    assert store.revoke_key(revoked, NOW + 2) is False  # already
    with pytest.raises(StoreError, match="no API key"):
        store.revoke_key("tw_gone", NOW)
    assert store.revoke_keys_labelled("acme", "bot", NOW + 3) == 1  # the other "bot" key
    with pytest.raises(ApiError) as info:
        store.authenticate(revoked, revoked_secret, NOW + 5)
    assert info.value.code is ErrorCode.KEY_REVOKED
    with pytest.raises(ApiError) as info:
        store.authenticate(expiring, expiring_secret, NOW + 1000)
    assert info.value.code is ErrorCode.KEY_EXPIRED
    later = NOW + 1000
    assert store.invalid_keys([revoked, labelled, expiring, kept], later) == {
        revoked, labelled, expiring,
    }  # fmt: skip
    statuses = {k.key_id: k.status(later) for k in store.list_keys("acme")}
    assert statuses == {
        revoked: "revoked", labelled: "revoked", expiring: "expired", kept: "active",
    }  # fmt: skip
    many = [f"tw_{n}" for n in range(1200)] + [kept]  # more than one statement's worth
    assert store.invalid_keys(many, NOW) == set(many) - {kept}


# Instruments and reference prices ------------------------------------------------------------


def test_instruments_and_reference_prices(store: SqlStore) -> None:
    store.add_instrument(BTC_USD, NOW)
    with pytest.raises(StoreError, match="already exists"):
        store.add_instrument(BTC_USD, NOW)
    assert store.list_instruments() == [BTC_USD]
    with pytest.raises(StoreError, match="no instrument"):
        store.set_reference_price("ETH_USD", Decimal(1), NOW)
    store.set_reference_price("BTC_USD", Decimal("42000.5"), NOW)
    store.set_reference_price("BTC_USD", Decimal("42001"), NOW + 1, max_age_ms=30_000)
    (price,) = store.reference_prices()
    assert (price.symbol, price.price, price.set_at, price.max_age_ms) == (
        "BTC_USD", Decimal("42001"), NOW + 1, 30_000,
    )  # fmt: skip
    assert store.clear_reference_price("BTC_USD") is True
    assert store.clear_reference_price("BTC_USD") is False
    assert store.reference_prices() == []


# The inbox, and the change feed ---------------------------------------------------------------


def test_the_inbox_round_trip(store: SqlStore) -> None:
    ops = Operations(store)
    first = ops.inbox_add(b"\x93command-1", NOW)
    second = ops.inbox_add(b"command-2", NOW)
    assert second > first
    assert ops.inbox_pending() == [(first, b"\x93command-1"), (second, b"command-2")]
    assert ops.inbox_outcome(first) is None
    ops.inbox_fail(first, '{"ok": false}')
    assert ops.inbox_outcome(first) == '{"ok": false}'
    assert ops.inbox_pending() == [(second, b"command-2")]
    assert ops.inbox_outcome(999_999) is None


def test_data_version_changes_when_another_connection_writes(
    store: SqlStore, db_url: str, key_file: Path
) -> None:
    """What the server polls to notice the CLI: every kind of write the CLI makes."""
    cli = open_store(db_url, key_file=key_file)
    key, _ = store.create_key("acme", NOW)
    writes = [
        lambda: cli.revoke_key(key, NOW),
        lambda: cli.add_instrument(BTC_USD, NOW),
        lambda: cli.set_reference_price("BTC_USD", Decimal(1), NOW),
        lambda: Operations(cli).inbox_add(b"deposit", NOW),
        lambda: cli.create_account("new", "standard", NOW),
    ]
    for write in writes:
        before = store.data_version()
        assert store.data_version() == before  # reading changes nothing
        write()
        assert store.data_version() != before
    cli.close()


def test_processes_starting_together_share_the_system_accounts(
    store: SqlStore, db_url: str, key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An engine and a gateway starting at once on a new database both look for the house and
    fee accounts; the one that finds them missing and loses the race to create them uses the
    other's, instead of failing to start."""
    other = open_store(db_url, key_file=key_file)
    try:
        first = Operations(store).system_accounts(NOW)
        looked = {"house": False, "fees": False}
        real = other.get_account

        def late(name: str):  # type: ignore[no-untyped-def]
            if name in looked and not looked[name]:
                looked[name] = True
                return None  # it looked before the first process created it
            return real(name)

        monkeypatch.setattr(other, "get_account", late)
        assert Operations(other).system_accounts(NOW) == first
    finally:
        other.close()
