"""Storage for accounts, API keys, instruments and reference prices, in SQLite or PostgreSQL.

One implementation for both databases, written against ``adapters/sql.py``'s :class:`Database`;
``adapters/registry.py`` opens it from a URL. The command line and a running server use the
store at the same time: the CLI writes, the server notices through :meth:`SqlStore.data_version`
(SQLite's ``PRAGMA data_version``; PostgreSQL's revision counter, bumped by every write
transaction of the store) and reloads. Every write is a short transaction.

API secrets are 256-bit random tokens. Their SHA-256 digest is stored for plain login: with that
much entropy a slow password hash adds nothing, and a digest costs microseconds per login.
Digests are compared with :func:`hmac.compare_digest`, and an unknown key is checked against a
dummy digest so that it takes as long to refuse as a wrong secret.

Signed HMAC logins need the secret itself, so it is also stored *sealed* (AES-256-GCM) under the
master key of a key file kept outside the database (``adapters/key_file.py``): the database alone
yields no usable credential. Ed25519 keys store only their public key.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tradews.adapters.key_file import KeyFileError, MasterKey, SealError, load_master_key
from tradews.adapters.sql import Database, IntegrityError, Row
from tradews.adapters.sql import DatabaseUnavailable as DatabaseUnavailable  # a StoreError
from tradews.adapters.sql import StoreError as StoreError  # raised by every method here
from tradews.adapters.sql_schema import check, upgrade
from tradews.api import signing
from tradews.api.errors import ApiError, ErrorCode
from tradews.domain.instrument import Instrument, format_ladder, parse_ladder
from tradews.domain.pricing import ReferencePrice
from tradews.engine.events import OrderUpdated, TradeExecuted
from tradews.session.ports import Principal

log = logging.getLogger(__name__)

TIERS = ("standard", "enterprise")

_DUMMY_HASH = hashlib.sha256(b"tradews: no such key").digest()
_DUMMY_SECRET = b"tradews: no such key"
# A valid Ed25519 signature to check when the key is not an Ed25519 key: every signed login
# costs one Ed25519 verification and one HMAC, so timing does not tell key types (or absence)
# apart.
_DUMMY_ED25519 = Ed25519PrivateKey.from_private_bytes(_DUMMY_HASH)
_DUMMY_PUBLIC = signing.public_key_bytes(_DUMMY_ED25519.public_key())
_DUMMY_MESSAGE = signing.login_message("tw_", 0, "dummy-nonce")
_DUMMY_SIGNATURE = signing.ed25519_signature(_DUMMY_ED25519, _DUMMY_MESSAGE)
SCOPES = ("read", "trade")
_BAD_CREDENTIALS = "invalid API key or secret"


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
    key_type: str = "hmac"
    scopes: tuple[str, ...] = SCOPES
    allowed_ips: tuple[str, ...] = ()  # networks; empty: any address
    plain_login: bool = True  # plain login allowed (hmac keys only)
    signed_login: bool = True  # an hmac key made before signed login has no sealed secret

    def status(self, now_ms: int) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now_ms:
            return "expired"
        return "active"


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def _seal_context(key_id: str) -> bytes:
    """GCM associated data: a sealed secret opens only on the row of its own key."""
    return b"tradews api secret v1\n" + key_id.encode()


def parse_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Validated, de-duplicated scopes in canonical order; StoreError says what is wrong."""
    wanted = {s.strip() for s in scopes if s.strip()}
    unknown = wanted - set(SCOPES)
    if unknown:
        raise StoreError(
            f"unknown scope {', '.join(sorted(unknown))}: scopes are {', '.join(SCOPES)}"
        )
    if not wanted:
        raise StoreError(f"a key needs at least one scope ({', '.join(SCOPES)})")
    return tuple(s for s in SCOPES if s in wanted)


def parse_networks(texts: Iterable[str]) -> tuple[IPv4Network | IPv6Network, ...]:
    """Addresses and networks (``203.0.113.7``, ``10.0.0.0/8``, ``2001:db8::/32``)."""
    out = []
    for text in texts:
        try:
            out.append(ip_network(text.strip()))
        except ValueError as exc:
            raise StoreError(f"not an IP address or network: {exc}") from None
    return tuple(dict.fromkeys(out))


class SqlStore:
    """The operator's data, on one connection of its own (``revision=True``: its writes are the
    ones other processes must notice)."""

    def __init__(
        self,
        db: Database,
        *,
        url: str,
        key_file: str | Path,
        path: Path | None = None,
        migrate: bool = True,
        shown_url: str | None = None,
        shard: str = "main",
        schema: str | None = None,
    ) -> None:
        """Use ``db`` (made by ``adapters/registry.py``). ``migrate``: bring the schema up to
        date (SQLite, on open); else only check it is (PostgreSQL: ``tradews db upgrade``).
        ``key_file`` holds the master key that seals HMAC secrets; it is read when first
        needed."""
        self.db = db
        self._nonces_pruned_at = 0
        self.url = url
        self.path = path  # the SQLite file, None on PostgreSQL
        self.key_file = Path(key_file)
        self.shard = shard  # the engine shard whose trading state this store reaches
        self._master: MasterKey | None = None
        try:
            if migrate:
                upgrade(db)
            else:
                check(db, shown_url or url, schema, shard=shard)
        except BaseException:
            db.close()
            raise

    def close(self) -> None:
        self.db.close()

    def data_version(self) -> int:
        """Changes whenever another connection (the CLI) commits to the store."""
        return self.db.data_version()

    # Accounts ------------------------------------------------------------------------------

    def create_account(self, name: str, tier: str, now_ms: int) -> Account:
        if tier not in TIERS:
            raise StoreError(f"tier must be one of {', '.join(TIERS)}, got {tier!r}")
        if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").isalnum():
            raise StoreError("account name must be 1-64 letters, digits, '-' or '_'")
        try:
            with self.db.transaction() as db:
                account_id = db.insert_id(
                    "INSERT INTO accounts(name, tier, created_at) VALUES (?, ?, ?) RETURNING id",
                    (name, tier, now_ms),
                )
        except IntegrityError:
            raise StoreError(f"account {name!r} already exists") from None
        return Account(account_id, name, tier, now_ms)

    def get_account(self, name: str) -> Account | None:
        row = self.db.one("SELECT id, name, tier, created_at FROM accounts WHERE name = ?", (name,))
        return None if row is None else Account(*row)

    def list_accounts(self) -> list[Account]:
        rows = self.db.all("SELECT id, name, tier, created_at FROM accounts ORDER BY id")
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
        scopes: Sequence[str] = SCOPES,
        allowed_ips: Sequence[str] = (),
        plain_login: bool = True,
    ) -> tuple[str, str]:
        """Create an HMAC key for the account; return ``(api_key, api_secret)``.

        The secret exists only in the return value: store it now, it cannot be shown again. The
        database keeps its digest (plain login) and the secret sealed under the key file's
        master key (signed login); the key file is created on first use.
        """
        key_id = "tw_" + secrets.token_hex(12)
        secret = secrets.token_urlsafe(32)  # 256 bits
        options = self._key_options(account_name, now_ms, expires_at, scopes, allowed_ips)
        sealed = self._master_key(create=True).seal(secret.encode(), _seal_context(key_id))
        self._insert_key(
            key_id, options, label, now_ms, expires_at,
            key_type="hmac", secret_hash=_digest(secret), secret_sealed=sealed,
            plain_login=plain_login,
        )  # fmt: skip
        return key_id, secret

    def create_ed25519_key(
        self,
        account_name: str,
        public_key: bytes,
        now_ms: int,
        *,
        expires_at: int | None = None,
        label: str | None = None,
        scopes: Sequence[str] = SCOPES,
        allowed_ips: Sequence[str] = (),
    ) -> str:
        """Register an Ed25519 public key (raw 32 bytes) for the account; return the key id.
        Such a key logs in only signed: the server never has anything secret of it."""
        try:
            Ed25519PublicKey.from_public_bytes(public_key)
        except ValueError as exc:
            raise StoreError(f"not an Ed25519 public key: {exc}") from None
        key_id = "tw_" + secrets.token_hex(12)
        options = self._key_options(account_name, now_ms, expires_at, scopes, allowed_ips)
        self._insert_key(
            key_id, options, label, now_ms, expires_at,
            key_type="ed25519", secret_hash=b"", public_key=bytes(public_key), plain_login=False,
        )  # fmt: skip
        return key_id

    def _key_options(
        self,
        account_name: str,
        now_ms: int,
        expires_at: int | None,
        scopes: Sequence[str],
        allowed_ips: Sequence[str],
    ) -> tuple[int, str, str | None]:
        """Validate what every key type shares: (account id, scopes, allowed networks)."""
        account = self._require_account(account_name)
        if expires_at is not None and expires_at <= now_ms:
            raise StoreError("the expiry must be in the future")
        networks = parse_networks(allowed_ips)
        return (
            account.id,
            ",".join(parse_scopes(scopes)),
            ",".join(str(n) for n in networks) or None,
        )

    def _insert_key(
        self,
        key_id: str,
        options: tuple[int, str, str | None],
        label: str | None,
        now_ms: int,
        expires_at: int | None,
        *,
        key_type: str,
        secret_hash: bytes,
        plain_login: bool,
        secret_sealed: bytes | None = None,
        public_key: bytes | None = None,
    ) -> None:
        account_id, scopes, allowed_ips = options
        with self.db.transaction() as db:
            db.execute(
                "INSERT INTO api_keys(key_id, account_id, secret_hash, label, created_at,"
                " expires_at, key_type, public_key, secret_sealed, scopes, allowed_ips,"
                " plain_login) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key_id, account_id, secret_hash, label, now_ms, expires_at, key_type,
                 public_key, secret_sealed, scopes, allowed_ips, int(plain_login)),
            )  # fmt: skip

    def list_keys(self, account_name: str) -> list[ApiKey]:
        account = self._require_account(account_name)
        rows = self.db.all(
            "SELECT key_id, label, created_at, expires_at, revoked_at, key_type, scopes,"
            " allowed_ips, plain_login, secret_sealed IS NOT NULL FROM api_keys"
            " WHERE account_id = ? ORDER BY created_at, key_id",
            (account.id,),
        )
        return [
            ApiKey(
                r[0], account.name, r[1], r[2], r[3], r[4],
                key_type=r[5], scopes=tuple(r[6].split(",")),
                allowed_ips=tuple(r[7].split(",")) if r[7] else (),
                plain_login=r[5] == "hmac" and bool(r[8]),
                signed_login=r[5] == "ed25519" or bool(r[9]),
            )
            for r in rows
        ]  # fmt: skip

    def revoke_key(self, key_id: str, now_ms: int) -> bool:
        """Revoke a key. Returns False if it was already revoked; raises if unknown."""
        with self.db.transaction() as db:
            row = db.one("SELECT revoked_at FROM api_keys WHERE key_id = ?", (key_id,))
            if row is None:
                raise StoreError(f"no API key {key_id!r}")
            if row[0] is not None:
                return False
            db.execute("UPDATE api_keys SET revoked_at = ? WHERE key_id = ?", (now_ms, key_id))
        return True

    def revoke_keys_labelled(self, account_name: str, label: str, now_ms: int) -> int:
        account = self._require_account(account_name)
        with self.db.transaction() as db:
            cur = db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE account_id = ? AND label = ?"
                " AND revoked_at IS NULL",
                (now_ms, account.id, label),
            )
        return int(cur.rowcount)

    # The key file ----------------------------------------------------------------------------

    def _master_key(self, *, create: bool) -> MasterKey:
        """The master key, read once. Created only if the database holds no sealed secret yet:
        a new key file next to sealed secrets would split the keys between two master keys."""
        if self._master is not None:
            return self._master
        sealed = self.db.one(
            "SELECT key_id, secret_sealed FROM api_keys WHERE secret_sealed IS NOT NULL"
            " ORDER BY created_at DESC LIMIT 1"
        )
        try:
            master = load_master_key(self.key_file, create=create and sealed is None)
        except KeyFileError as exc:
            raise StoreError(str(exc)) from None
        if master is None:
            raise StoreError(
                f"the key file {self.key_file} is missing, and this database holds secrets "
                "sealed with it: restore it from the backup where you keep it (or give its "
                "path with --key-file / TRADEWS_KEY_FILE)"
            )
        if sealed is not None:
            try:
                master.open(sealed[1], _seal_context(sealed[0]))
            except SealError:
                raise StoreError(
                    f"the key file {self.key_file} is not the one this database's secrets were "
                    "sealed with: use the right key file (--key-file / TRADEWS_KEY_FILE)"
                ) from None
        self._master = master
        return master

    def key_file_problem(self) -> str | None:
        """Why signed HMAC logins of some keys cannot be verified (the key file is missing or
        is not the one their secrets were sealed with), or None. For the server's start."""
        rows = self.db.all(
            "SELECT key_id, secret_sealed FROM api_keys WHERE secret_sealed IS NOT NULL"
            " AND revoked_at IS NULL"
        )
        if not rows:
            return None
        try:
            master = load_master_key(self.key_file, create=False)
        except KeyFileError as exc:
            return f"{exc}; signed HMAC logins will be refused"
        if master is None:
            return (
                f"the key file {self.key_file} is missing: signed HMAC logins of the "
                f"{len(rows)} keys whose secrets it sealed will be refused (plain and Ed25519 "
                "logins still work)"
            )
        unopened = 0
        for key_id, blob in rows:
            try:
                master.open(blob, _seal_context(key_id))
            except SealError:
                unopened += 1
        if unopened:
            return (
                f"the key file {self.key_file} does not open the sealed secrets of {unopened} "
                "keys: their signed HMAC logins will be refused (plain and Ed25519 logins still "
                "work)"
            )
        return None

    # Authentication (session.ports.Authenticator) -----------------------------------------

    _KEY_ROW = (
        "SELECT k.key_type, k.secret_hash, k.secret_sealed, k.public_key, k.expires_at,"
        " k.revoked_at, a.id, a.name, a.tier, k.scopes, k.allowed_ips, k.plain_login"
        " FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.key_id = ?"
    )

    def authenticate(self, api_key: str, api_secret: str, now_ms: int) -> Principal:
        row = self.db.one(self._KEY_ROW, (api_key,))
        hmac_key = row is not None and row[0] == "hmac"
        stored = row[1] if row is not None and hmac_key else _DUMMY_HASH
        matches = hmac.compare_digest(stored, _digest(api_secret))
        if row is None or not hmac_key or not matches:  # an Ed25519 key has no secret
            raise ApiError(ErrorCode.INVALID_CREDENTIALS, _BAD_CREDENTIALS)
        return self._principal(api_key, row, now_ms)

    def authenticate_signed(
        self,
        api_key: str,
        message: bytes,
        signature: str,
        now_ms: int,
        verified: Callable[[], None],
    ) -> Principal:
        row = self.db.one(self._KEY_ROW, (api_key,))
        if row is not None and row[0] == "ed25519":
            signing.hmac_signature(_DUMMY_SECRET, message)
            ok = signing.verify_ed25519(row[3], message, signature)
        else:
            signing.verify_ed25519(_DUMMY_PUBLIC, _DUMMY_MESSAGE, _DUMMY_SIGNATURE)
            secret = _DUMMY_SECRET if row is None else self._secret_for_signing(api_key, row[2])
            ok = signing.verify_hmac(secret, message, signature)
        if row is None or not ok:
            raise ApiError(ErrorCode.INVALID_CREDENTIALS, _BAD_CREDENTIALS)
        verified()
        return self._principal(api_key, row, now_ms)

    def _secret_for_signing(self, key_id: str, sealed: bytes | None) -> bytes:
        """An HMAC key's secret, unsealed; a clear refusal where the server cannot have it."""
        if sealed is None:
            raise ApiError(
                ErrorCode.INVALID_CREDENTIALS,
                "this API key was created before signed login and supports plain login only "
                "(apiKey and apiSecret); create a new key to sign logins",
                {"reason": "SIGNED_LOGIN_UNSUPPORTED"},
            )
        try:
            return self._master_key(create=False).open(sealed, _seal_context(key_id))
        except DatabaseUnavailable:
            raise  # not the key file's fault: the session says the database is unreachable
        except (StoreError, SealError) as exc:
            log.error("cannot verify a signed login of key %s: %s", key_id, exc)
            raise ApiError(
                ErrorCode.INVALID_CREDENTIALS,
                "the server cannot verify signed logins of this API key now (its key file is "
                "missing or wrong); log in with apiKey and apiSecret, or ask the operator",
                {"reason": "KEY_FILE_UNAVAILABLE"},
            ) from None

    @staticmethod
    def _principal(api_key: str, row: Row, now_ms: int) -> Principal:
        """The key's principal, once its holder is proven; revoked and expired are said now."""
        (_, _, _, _, expires_at, revoked_at, account_id, name, tier, scopes, allowed_ips,
         plain_login) = row  # fmt: skip
        if revoked_at is not None:
            raise ApiError(ErrorCode.KEY_REVOKED, "this API key has been revoked")
        if expires_at is not None and expires_at <= now_ms:
            raise ApiError(ErrorCode.KEY_EXPIRED, "this API key has expired")
        return Principal(
            account_id, name, tier, api_key, expires_at,
            scopes=frozenset(scopes.split(",")),
            allowed_networks=parse_networks(allowed_ips.split(",")) if allowed_ips else (),
            plain_login=bool(plain_login),
        )  # fmt: skip

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
            rows = self.db.all(
                f"SELECT key_id FROM api_keys WHERE key_id IN ({marks}) AND revoked_at IS NULL"
                " AND (expires_at IS NULL OR expires_at > ?)",
                (*chunk, now_ms),
            )
            valid.update(r[0] for r in rows)
        return wanted - valid

    # Instruments ---------------------------------------------------------------------------

    def add_instrument(self, inst: Instrument, now_ms: int, shard: str | None = None) -> None:
        """List ``inst`` on ``shard`` (default: this store's)."""
        shard = self.shard if shard is None else shard
        try:
            with self.db.transaction() as db:
                if db.one("SELECT 1 FROM shards WHERE name = ?", (shard,)) is None:
                    raise StoreError(
                        f"no shard {shard!r}: set it up first with `tradews db upgrade --shard "
                        f"{shard}` (PostgreSQL)"
                    )
                db.execute(
                    "INSERT INTO instruments(symbol, base, quote, tick, lot, min_size, max_size,"
                    " quote_size, spread_bps, spread_ladder, created_at, shard)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
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
                        format_ladder(inst.spread_ladder) or None,
                        now_ms,
                        shard,
                    ),
                )
        except IntegrityError:
            raise StoreError(f"instrument {inst.symbol!r} already exists") from None

    def list_instruments(self, *, every_shard: bool = False) -> list[Instrument]:
        """This store's shard's instruments (``every_shard``: all of them)."""
        rows = self.db.all(
            "SELECT symbol, base, quote, tick, lot, min_size, max_size, quote_size, spread_bps,"
            " spread_ladder FROM instruments WHERE shard = ? OR ? ORDER BY symbol",
            (self.shard, every_shard),
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
                spread_ladder=parse_ladder(r[9] or ""),
            )
            for r in rows
        ]

    def instrument_shards(self) -> dict[str, str]:
        """Every instrument's shard, by symbol."""
        return dict(self.db.all("SELECT symbol, shard FROM instruments"))

    def shards(self) -> dict[str, int]:
        """Every shard set up in the database, with its number."""
        return {str(n): int(k) for n, k in self.db.all("SELECT name, number FROM shards")}

    def shard_number(self) -> int:
        """This store's shard's number: its engine's order and trade ids start above
        ``number << 40``."""
        row = self.db.one("SELECT number FROM shards WHERE name = ?", (self.shard,))
        if row is None:
            raise StoreError(f"no shard {self.shard!r} in the database")
        return int(row[0])

    def set_spread(
        self, symbol: str, spread_bps: Decimal, ladder: tuple[tuple[Decimal, Decimal], ...]
    ) -> None:
        """Change an instrument's RFQ spread (running servers quote with it within a second)."""
        with self.db.transaction() as db:
            cur = db.execute(
                "UPDATE instruments SET spread_bps = ?, spread_ladder = ? WHERE symbol = ?",
                (str(spread_bps), format_ladder(ladder) or None, symbol),
            )
            if cur.rowcount == 0:
                raise StoreError(f"no instrument {symbol!r}")

    # Assets --------------------------------------------------------------------------------

    def add_asset(self, name: str, now_ms: int) -> bool:
        """Declare an asset; False if it was declared before."""
        with self.db.transaction() as db:
            added = db.all(
                "INSERT INTO assets(name, created_at) VALUES (?, ?)"
                " ON CONFLICT (name) DO NOTHING RETURNING name",
                (name, now_ms),
            )
        return bool(added)

    def known_assets(self) -> dict[str, str]:
        """Every asset deposits may use, each with where it comes from: the instruments that
        trade it (on any shard: funds move between shards), or ``declared`` (``tradews asset
        add``)."""
        found: dict[str, list[str]] = {}
        for inst in self.list_instruments(every_shard=True):
            for asset in (inst.base, inst.quote):
                found.setdefault(asset, []).append(inst.symbol)
        for (name,) in self.db.all("SELECT name FROM assets ORDER BY name"):
            found.setdefault(name, []).append("declared")
        return {asset: ", ".join(found[asset]) for asset in sorted(found)}

    # Reference prices ----------------------------------------------------------------------

    def set_reference_price(
        self, symbol: str, price: Decimal, now_ms: int, *, max_age_ms: int | None = None
    ) -> None:
        """Set (or replace) the operator's reference price of a listed instrument."""
        try:
            with self.db.transaction() as db:
                db.execute(
                    "INSERT INTO reference_prices(symbol, price, max_age_ms, set_at)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT(symbol) DO UPDATE SET"
                    " price = excluded.price, max_age_ms = excluded.max_age_ms,"
                    " set_at = excluded.set_at",
                    (symbol, str(price), max_age_ms, now_ms),
                )
        except IntegrityError:  # the foreign key: no such instrument
            raise StoreError(f"no instrument {symbol!r}") from None

    def claim_nonce(self, key_id: str, nonce: str, now_ms: int, keep_ms: int) -> bool:
        """Record that a verified signed login used ``nonce`` with ``key_id``; False if some
        process recorded it before (a replay). Rows older than ``keep_ms`` are deleted now and
        then. One autocommitted statement: not a change other processes need to notice."""
        fresh = self.db.all(
            "INSERT INTO login_nonces(key_id, nonce, used_at) VALUES (?, ?, ?)"
            " ON CONFLICT (key_id, nonce) DO NOTHING RETURNING used_at",
            (key_id, nonce, now_ms),
        )
        if now_ms - self._nonces_pruned_at >= keep_ms:
            self._nonces_pruned_at = now_ms
            self.db.execute("DELETE FROM login_nonces WHERE used_at < ?", (now_ms - keep_ms,))
        return bool(fresh)

    def reference_prices(self) -> list[ReferencePrice]:
        rows = self.db.all(
            "SELECT symbol, price, set_at, max_age_ms FROM reference_prices ORDER BY symbol"
        )
        return [ReferencePrice(r[0], Decimal(r[1]), r[2], r[3]) for r in rows]

    def clear_reference_price(self, symbol: str) -> bool:
        """Remove a reference price; False if there was none."""
        with self.db.transaction() as db:
            cur = db.execute("DELETE FROM reference_prices WHERE symbol = ?", (symbol,))
        return int(cur.rowcount) > 0


HOUSE_ACCOUNT = "house"
FEE_ACCOUNT = "fees"


class Operations:
    """The parts of the store the engine side uses: system accounts, the inbox, read models."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self.db = store.db

    def system_accounts(self, now_ms: int) -> tuple[int, int]:
        """Ids of the ``house`` and ``fees`` accounts, created on first use (by whichever
        process of a deployment gets there first: an engine and its gateways start together)."""
        ids = []
        for name in (HOUSE_ACCOUNT, FEE_ACCOUNT):
            account = self._store.get_account(name)
            if account is None:
                try:
                    account = self._store.create_account(name, "enterprise", now_ms)
                except StoreError:
                    account = self._store.get_account(name)  # another process made it first
                    if account is None:
                        raise
            ids.append(account.id)
        return ids[0], ids[1]

    def account_names(self) -> dict[int, str]:
        return {a.id: a.name for a in self._store.list_accounts()}

    # The operator's inbox: commands the CLI hands to a running engine --------------------------

    def inbox_add(self, command: bytes, now_ms: int) -> int:
        with self.db.transaction() as db:
            return db.insert_id(
                "INSERT INTO inbox(command, created_at) VALUES (?, ?) RETURNING id",
                (command, now_ms),
            )

    def inbox_pending(self) -> list[tuple[int, bytes]]:
        rows = self.db.all("SELECT id, command FROM inbox WHERE status = 'pending' ORDER BY id")
        return [(int(r[0]), bytes(r[1])) for r in rows]

    def inbox_outcome(self, inbox_id: int) -> str | None:
        row = self.db.one("SELECT status, result FROM inbox WHERE id = ?", (inbox_id,))
        if row is None or row[0] == "pending":
            return None
        return str(row[1])

    def inbox_fail(self, inbox_id: int, result: str) -> None:
        with self.db.transaction() as db:
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
        return [_trade(r) for r in self.db.all(sql, args)]

    def trades_since(self, at: int) -> list[TradeExecuted]:
        rows = self.db.all("SELECT * FROM trades WHERE at >= ? ORDER BY trade_id", (at,))
        return [_trade(r) for r in rows]

    def orders_of(self, account_id: int, *, open_only: bool) -> list[OrderUpdated]:
        """An account's orders as last recorded, oldest first (only open ones if asked)."""
        sql = "SELECT * FROM orders WHERE account_id = ?"
        if open_only:
            sql += " AND status IN ('new', 'partially_filled')"
        rows = self.db.all(sql + " ORDER BY order_id", (account_id,))
        return [_order(r) for r in rows]

    def trades_matching(
        self, *, account_id: int | None, symbol: str | None, since: int | None
    ) -> list[TradeExecuted]:
        """Trades, oldest first: of one account, one symbol, at or after ``since`` (ms)."""
        sql = "SELECT * FROM trades WHERE 1 = 1"
        args: list[object] = []
        if account_id is not None:
            sql += " AND (maker_account_id = ? OR taker_account_id = ?)"
            args += [account_id, account_id]
        if symbol is not None:
            sql += " AND symbol = ?"
            args.append(symbol)
        if since is not None:
            sql += " AND at >= ?"
            args.append(since)
        return [_trade(r) for r in self.db.all(sql + " ORDER BY trade_id", args)]

    def closed_order(
        self, account_id: int, order_id: int | None, client_order_id: str | None
    ) -> OrderUpdated | None:
        if order_id is not None:
            row = self.db.one(
                "SELECT * FROM orders WHERE order_id = ? AND account_id = ?",
                (order_id, account_id),
            )
        else:
            row = self.db.one(
                "SELECT * FROM orders WHERE client_order_id = ? AND account_id = ?"
                " ORDER BY order_id DESC LIMIT 1",
                (client_order_id, account_id),
            )
        return None if row is None else _order(row)


def _order(r: Row) -> OrderUpdated:
    (oid, acct, coid, symbol, side, otype, price, qty, remaining, tif, post_only, status,
     reason, created_at, updated_at, seq) = r  # fmt: skip
    return OrderUpdated(
        seq, acct, oid, coid, symbol, side, otype, price, qty, remaining, tif,
        bool(post_only), status, reason, created_at, updated_at,
    )  # fmt: skip


def _trade(r: Row) -> TradeExecuted:
    (trade_id, symbol, price, qty, taker_side, maker_oid, taker_oid, maker_acct, taker_acct,
     maker_fee, taker_fee, quote_id, at, seq) = r  # fmt: skip
    return TradeExecuted(
        seq, trade_id, symbol, price, qty, taker_side, maker_oid, taker_oid, maker_acct,
        taker_acct, maker_fee, taker_fee, quote_id, at,
    )  # fmt: skip
