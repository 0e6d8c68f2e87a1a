"""SQLite storage for accounts, API keys, instruments and reference prices.

The database runs in WAL mode so the command line and a running server use it at the same time:
the CLI writes, the server notices through ``PRAGMA data_version`` and reloads. Every write is a
short transaction; ``busy_timeout`` absorbs the rare overlap.

API secrets are 256-bit random tokens. Only their SHA-256 digest is stored: with that much
entropy a slow password hash adds nothing, and a digest costs microseconds per login. Digests are
compared with :func:`hmac.compare_digest`, and an unknown key is checked against a dummy digest
so that it takes as long to refuse as a wrong secret.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from tradews.api.errors import ApiError, ErrorCode
from tradews.domain.instrument import Instrument
from tradews.domain.pricing import ReferencePrice
from tradews.engine.events import OrderUpdated, TradeExecuted
from tradews.session.ports import Principal

TIERS = ("standard", "enterprise")

_SCHEMA = [
    # version 1
    """
    CREATE TABLE accounts (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        tier        TEXT NOT NULL CHECK (tier IN ('standard', 'enterprise')),
        created_at  INTEGER NOT NULL
    );
    CREATE TABLE api_keys (
        key_id       TEXT PRIMARY KEY,
        account_id   INTEGER NOT NULL REFERENCES accounts(id),
        secret_hash  BLOB NOT NULL,
        label        TEXT,
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER,
        revoked_at   INTEGER
    );
    CREATE INDEX api_keys_account ON api_keys(account_id);
    CREATE TABLE instruments (
        symbol      TEXT PRIMARY KEY,
        base        TEXT NOT NULL,
        quote       TEXT NOT NULL,
        tick        TEXT NOT NULL,
        lot         TEXT NOT NULL,
        min_size    TEXT NOT NULL,
        max_size    TEXT,
        quote_size  TEXT NOT NULL,
        spread_bps  TEXT NOT NULL,
        created_at  INTEGER NOT NULL
    );
    """,
    # version 2: the engine's journal, its read models, and the operator's inbox
    """
    CREATE TABLE journal (
        seq      INTEGER PRIMARY KEY,
        at       INTEGER NOT NULL,
        command  BLOB NOT NULL
    );
    CREATE TABLE orders (
        order_id         INTEGER PRIMARY KEY,
        account_id       INTEGER NOT NULL,
        client_order_id  TEXT,
        symbol           TEXT NOT NULL,
        side             INTEGER NOT NULL,
        type             INTEGER NOT NULL,
        price            INTEGER NOT NULL,
        quantity         INTEGER NOT NULL,
        remaining        INTEGER NOT NULL,
        tif              INTEGER NOT NULL,
        post_only        INTEGER NOT NULL,
        status           TEXT NOT NULL,
        reason           TEXT,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL,
        seq              INTEGER NOT NULL
    );
    CREATE INDEX orders_account ON orders(account_id, order_id);
    CREATE TABLE trades (
        trade_id          INTEGER PRIMARY KEY,
        symbol            TEXT NOT NULL,
        price             INTEGER NOT NULL,
        quantity          INTEGER NOT NULL,
        taker_side        INTEGER NOT NULL,
        maker_order_id    INTEGER NOT NULL,
        taker_order_id    INTEGER NOT NULL,
        maker_account_id  INTEGER NOT NULL,
        taker_account_id  INTEGER NOT NULL,
        maker_fee         INTEGER NOT NULL,
        taker_fee         INTEGER NOT NULL,
        quote_id          TEXT,
        at                INTEGER NOT NULL,
        seq               INTEGER NOT NULL
    );
    CREATE INDEX trades_maker ON trades(maker_account_id, trade_id);
    CREATE INDEX trades_taker ON trades(taker_account_id, trade_id);
    CREATE TABLE inbox (
        id        INTEGER PRIMARY KEY,
        command   BLOB NOT NULL,
        status    TEXT NOT NULL DEFAULT 'pending',
        result    TEXT,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX inbox_pending ON inbox(status) WHERE status = 'pending';
    """,
    # version 3: engine snapshots, so that a start replays only the journal's tail
    """
    CREATE TABLE snapshots (
        seq         INTEGER PRIMARY KEY,
        at          INTEGER NOT NULL,
        state_hash  TEXT NOT NULL,
        state       BLOB NOT NULL
    );
    """,
    # reference prices set by the operator, which anchor RFQ quotes (max_age_ms NULL: the
    # server's default). IF NOT EXISTS: it does not matter where among other migrations it runs.
    """
    CREATE TABLE IF NOT EXISTS reference_prices (
        symbol      TEXT PRIMARY KEY REFERENCES instruments(symbol),
        price       TEXT NOT NULL,
        max_age_ms  INTEGER,
        set_at      INTEGER NOT NULL
    );
    """,
]

_DUMMY_HASH = hashlib.sha256(b"tradews: no such key").digest()


class StoreError(Exception):
    """A request the store refuses (duplicate name, unknown account, ...). The message says why."""


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    name: str
    tier: str
    created_at: int


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    account: str
    label: str | None
    created_at: int
    expires_at: int | None
    revoked_at: int | None

    def status(self, now_ms: int) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now_ms:
            return "expired"
        return "active"


def resolve_db_path(url_or_path: str) -> Path:
    """Accept ``sqlite:///relative.db``, ``sqlite:////abs/path.db`` or a plain path."""
    if url_or_path.startswith("sqlite:///"):
        return Path(url_or_path[len("sqlite:///") :])
    if "://" in url_or_path:
        raise StoreError(f"unsupported database URL {url_or_path!r}: use sqlite:///PATH or a path")
    return Path(url_or_path)


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


class SqliteStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            raise StoreError(f"directory {self.path.parent} does not exist")
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _migrate(self) -> None:
        with self._tx() as db:
            (version,) = db.execute("PRAGMA user_version").fetchone()
            if version > len(_SCHEMA):
                raise StoreError(
                    f"database schema version {version} is newer than this tradews supports"
                )
            for number, script in enumerate(_SCHEMA[version:], start=version + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")

    def data_version(self) -> int:
        """Changes whenever another connection (the CLI) commits to the database."""
        (value,) = self._db.execute("PRAGMA data_version").fetchone()
        return int(value)

    # Accounts ------------------------------------------------------------------------------

    def create_account(self, name: str, tier: str, now_ms: int) -> Account:
        if tier not in TIERS:
            raise StoreError(f"tier must be one of {', '.join(TIERS)}, got {tier!r}")
        if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").isalnum():
            raise StoreError("account name must be 1-64 letters, digits, '-' or '_'")
        try:
            with self._tx() as db:
                cur = db.execute(
                    "INSERT INTO accounts(name, tier, created_at) VALUES (?, ?, ?)",
                    (name, tier, now_ms),
                )
        except sqlite3.IntegrityError:
            raise StoreError(f"account {name!r} already exists") from None
        return Account(int(cur.lastrowid or 0), name, tier, now_ms)

    def get_account(self, name: str) -> Account | None:
        row = self._db.execute(
            "SELECT id, name, tier, created_at FROM accounts WHERE name = ?", (name,)
        ).fetchone()
        return None if row is None else Account(*row)

    def list_accounts(self) -> list[Account]:
        rows = self._db.execute("SELECT id, name, tier, created_at FROM accounts ORDER BY id")
        return [Account(*row) for row in rows]

    def _require_account(self, name: str) -> Account:
        account = self.get_account(name)
        if account is None:
            raise StoreError(f"no account named {name!r}")
        return account

    # API keys ------------------------------------------------------------------------------

    def create_key(
        self,
        account_name: str,
        now_ms: int,
        *,
        expires_at: int | None = None,
        label: str | None = None,
    ) -> tuple[str, str]:
        """Create a key for the account; return ``(api_key, api_secret)``.

        The secret exists only in the return value: store it now, it cannot be shown again.
        """
        account = self._require_account(account_name)
        if expires_at is not None and expires_at <= now_ms:
            raise StoreError("the expiry must be in the future")
        key_id = "tw_" + secrets.token_hex(12)
        secret = secrets.token_urlsafe(32)  # 256 bits
        with self._tx() as db:
            db.execute(
                "INSERT INTO api_keys(key_id, account_id, secret_hash, label, created_at,"
                " expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                (key_id, account.id, _digest(secret), label, now_ms, expires_at),
            )
        return key_id, secret

    def list_keys(self, account_name: str) -> list[ApiKey]:
        account = self._require_account(account_name)
        rows = self._db.execute(
            "SELECT key_id, label, created_at, expires_at, revoked_at FROM api_keys"
            " WHERE account_id = ? ORDER BY created_at, key_id",
            (account.id,),
        )
        return [ApiKey(r[0], account.name, r[1], r[2], r[3], r[4]) for r in rows]

    def revoke_key(self, key_id: str, now_ms: int) -> bool:
        """Revoke a key. Returns False if it was already revoked; raises if unknown."""
        with self._tx() as db:
            row = db.execute(
                "SELECT revoked_at FROM api_keys WHERE key_id = ?", (key_id,)
            ).fetchone()
            if row is None:
                raise StoreError(f"no API key {key_id!r}")
            if row[0] is not None:
                return False
            db.execute("UPDATE api_keys SET revoked_at = ? WHERE key_id = ?", (now_ms, key_id))
        return True

    def revoke_keys_labelled(self, account_name: str, label: str, now_ms: int) -> int:
        account = self._require_account(account_name)
        with self._tx() as db:
            cur = db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE account_id = ? AND label = ?"
                " AND revoked_at IS NULL",
                (now_ms, account.id, label),
            )
        return cur.rowcount

    # Authentication (session.ports.Authenticator) -----------------------------------------

    def authenticate(self, api_key: str, api_secret: str, now_ms: int) -> Principal:
        row = self._db.execute(
            "SELECT k.secret_hash, k.expires_at, k.revoked_at, a.id, a.name, a.tier"
            " FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.key_id = ?",
            (api_key,),
        ).fetchone()
        stored = row[0] if row is not None else _DUMMY_HASH
        matches = hmac.compare_digest(stored, _digest(api_secret))
        if row is None or not matches:
            raise ApiError(ErrorCode.INVALID_CREDENTIALS, "invalid API key or secret")
        _, expires_at, revoked_at, account_id, name, tier = row
        if revoked_at is not None:
            raise ApiError(ErrorCode.KEY_REVOKED, "this API key has been revoked")
        if expires_at is not None and expires_at <= now_ms:
            raise ApiError(ErrorCode.KEY_EXPIRED, "this API key has expired")
        return Principal(account_id, name, tier, api_key, expires_at)

    def invalid_keys(self, key_ids: Iterable[str], now_ms: int) -> set[str]:
        """Of ``key_ids``, those now revoked, expired or deleted."""
        wanted = set(key_ids)
        if not wanted:
            return set()
        valid: set[str] = set()
        ids = list(wanted)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key_id FROM api_keys WHERE key_id IN ({marks}) AND revoked_at IS NULL"
                " AND (expires_at IS NULL OR expires_at > ?)",
                (*chunk, now_ms),
            )
            valid.update(r[0] for r in rows)
        return wanted - valid

    # Instruments ---------------------------------------------------------------------------

    def add_instrument(self, inst: Instrument, now_ms: int) -> None:
        try:
            with self._tx() as db:
                db.execute(
                    "INSERT INTO instruments(symbol, base, quote, tick, lot, min_size, max_size,"
                    " quote_size, spread_bps, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (
                        inst.symbol,
                        inst.base,
                        inst.quote,
                        str(inst.tick),
                        str(inst.lot),
                        str(inst.min_size),
                        None if inst.max_size is None else str(inst.max_size),
                        str(inst.quote_size),
                        str(inst.spread_bps),
                        now_ms,
                    ),
                )
        except sqlite3.IntegrityError:
            raise StoreError(f"instrument {inst.symbol!r} already exists") from None

    def list_instruments(self) -> list[Instrument]:
        rows = self._db.execute(
            "SELECT symbol, base, quote, tick, lot, min_size, max_size, quote_size, spread_bps"
            " FROM instruments ORDER BY symbol"
        )
        return [
            Instrument(
                symbol=r[0],
                base=r[1],
                quote=r[2],
                tick=Decimal(r[3]),
                lot=Decimal(r[4]),
                min_size=Decimal(r[5]),
                max_size=None if r[6] is None else Decimal(r[6]),
                quote_size=Decimal(r[7]),
                spread_bps=Decimal(r[8]),
            )
            for r in rows
        ]

    # Reference prices ----------------------------------------------------------------------

    def set_reference_price(
        self, symbol: str, price: Decimal, now_ms: int, *, max_age_ms: int | None = None
    ) -> None:
        """Set (or replace) the operator's reference price of a listed instrument."""
        try:
            with self._tx() as db:
                db.execute(
                    "INSERT INTO reference_prices(symbol, price, max_age_ms, set_at)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT(symbol) DO UPDATE SET"
                    " price = excluded.price, max_age_ms = excluded.max_age_ms,"
                    " set_at = excluded.set_at",
                    (symbol, str(price), max_age_ms, now_ms),
                )
        except sqlite3.IntegrityError:  # the foreign key: no such instrument
            raise StoreError(f"no instrument {symbol!r}") from None

    def reference_prices(self) -> list[ReferencePrice]:
        rows = self._db.execute(
            "SELECT symbol, price, set_at, max_age_ms FROM reference_prices ORDER BY symbol"
        )
        return [ReferencePrice(r[0], Decimal(r[1]), r[2], r[3]) for r in rows]

    def clear_reference_price(self, symbol: str) -> bool:
        """Remove a reference price; False if there was none."""
        with self._tx() as db:
            cur = db.execute("DELETE FROM reference_prices WHERE symbol = ?", (symbol,))
        return cur.rowcount > 0


HOUSE_ACCOUNT = "house"
FEE_ACCOUNT = "fees"


class Operations:
    """The parts of the store the engine side uses: system accounts, the inbox, read models."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self._db = store._db

    def system_accounts(self, now_ms: int) -> tuple[int, int]:
        """Ids of the ``house`` and ``fees`` accounts, created on first use."""
        ids = []
        for name in (HOUSE_ACCOUNT, FEE_ACCOUNT):
            account = self._store.get_account(name)
            if account is None:
                account = self._store.create_account(name, "enterprise", now_ms)
            ids.append(account.id)
        return ids[0], ids[1]

    def account_names(self) -> dict[int, str]:
        return {a.id: a.name for a in self._store.list_accounts()}

    # The operator's inbox: commands the CLI hands to a running engine --------------------------

    def inbox_add(self, command: bytes, now_ms: int) -> int:
        with self._store._tx() as db:
            cur = db.execute(
                "INSERT INTO inbox(command, created_at) VALUES (?, ?)", (command, now_ms)
            )
        return int(cur.lastrowid or 0)

    def inbox_pending(self) -> list[tuple[int, bytes]]:
        rows = self._db.execute(
            "SELECT id, command FROM inbox WHERE status = 'pending' ORDER BY id"
        )
        return [(int(r[0]), bytes(r[1])) for r in rows]

    def inbox_outcome(self, inbox_id: int) -> str | None:
        row = self._db.execute(
            "SELECT status, result FROM inbox WHERE id = ?", (inbox_id,)
        ).fetchone()
        if row is None or row[0] == "pending":
            return None
        return str(row[1])

    def inbox_fail(self, inbox_id: int, result: str) -> None:
        with self._store._tx() as db:
            db.execute(
                "UPDATE inbox SET status = 'done', result = ? WHERE id = ?", (result, inbox_id)
            )

    # Read models -----------------------------------------------------------------------------

    def trades_of(
        self, account_id: int, *, symbol: str | None, before: int | None, limit: int
    ) -> list[TradeExecuted]:
        """An account's trades, newest first, ``limit`` at most, below trade id ``before``."""
        sql = (
            "SELECT * FROM trades WHERE (maker_account_id = ? OR taker_account_id = ?)"
            " AND trade_id < ?"
        )
        args: list[object] = [account_id, account_id, before if before is not None else 1 << 62]
        if symbol is not None:
            sql += " AND symbol = ?"
            args.append(symbol)
        sql += " ORDER BY trade_id DESC LIMIT ?"
        args.append(limit)
        return [_trade(r) for r in self._db.execute(sql, args)]

    def trades_since(self, at: int) -> list[TradeExecuted]:
        rows = self._db.execute("SELECT * FROM trades WHERE at >= ? ORDER BY trade_id", (at,))
        return [_trade(r) for r in rows]

    def closed_order(
        self, account_id: int, order_id: int | None, client_order_id: str | None
    ) -> OrderUpdated | None:
        if order_id is not None:
            row = self._db.execute(
                "SELECT * FROM orders WHERE order_id = ? AND account_id = ?",
                (order_id, account_id),
            ).fetchone()
        else:
            row = self._db.execute(
                "SELECT * FROM orders WHERE client_order_id = ? AND account_id = ?"
                " ORDER BY order_id DESC LIMIT 1",
                (client_order_id, account_id),
            ).fetchone()
        if row is None:
            return None
        (oid, acct, coid, symbol, side, otype, price, qty, remaining, tif, post_only, status,
         reason, created_at, updated_at, seq) = row  # fmt: skip
        return OrderUpdated(
            seq, acct, oid, coid, symbol, side, otype, price, qty, remaining, tif,
            bool(post_only), status, reason, created_at, updated_at,
        )  # fmt: skip


def _trade(r: tuple[Any, ...]) -> TradeExecuted:
    (trade_id, symbol, price, qty, taker_side, maker_oid, taker_oid, maker_acct, taker_acct,
     maker_fee, taker_fee, quote_id, at, seq) = r  # fmt: skip
    return TradeExecuted(
        seq, trade_id, symbol, price, qty, taker_side, maker_oid, taker_oid, maker_acct,
        taker_acct, maker_fee, taker_fee, quote_id, at,
    )  # fmt: skip
