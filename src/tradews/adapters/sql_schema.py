"""The database's schema: one versioned list of migrations, for SQLite and PostgreSQL alike.

Each migration is written once with a few type tokens that each dialect fills in
(``adapters/sql.py``): ``{int}`` is SQLite's ``INTEGER`` and PostgreSQL's ``BIGINT`` (every
integer here, atoms above all, is a signed 64-bit one), ``{blob}`` is ``BLOB`` or ``BYTEA``,
``{id}`` is SQLite's rowid or an identity column, ``{without_rowid}`` a SQLite storage hint.
So a table has the same columns, in the same order, on both: ``SELECT *`` reads alike.

Where the schema stands is recorded in the database: SQLite's ``PRAGMA user_version``,
PostgreSQL's ``schema_version`` table (one row per migration applied, with its time).

SQLite migrates itself when opened, as it always has: a file is one installation's, and the
default needs no step. PostgreSQL is shared by an engine, many gateways and the command line, of
possibly different releases during an upgrade, so nothing migrates it behind the operator's
back: each process *checks* at start and refuses to run on a schema other than its own, and
``tradews db upgrade`` applies what is missing, in one transaction (PostgreSQL's DDL is
transactional: an upgrade is all or nothing), under an advisory lock so two at once do not race.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from tradews.adapters.sql import Database, StoreError


@dataclass(frozen=True, slots=True)
class Migration:
    script: str  # statements separated by ';', with the dialect's type tokens
    only: dict[str, str] = field(default_factory=dict)  # dialect name -> more statements


MIGRATIONS = [
    Migration(  # 1
        """
        CREATE TABLE accounts (
            id          {id},
            name        TEXT NOT NULL UNIQUE,
            tier        TEXT NOT NULL CHECK (tier IN ('standard', 'enterprise')),
            created_at  {int} NOT NULL
        );
        CREATE TABLE api_keys (
            key_id       TEXT PRIMARY KEY,
            account_id   {int} NOT NULL REFERENCES accounts(id),
            secret_hash  {blob} NOT NULL,
            label        TEXT,
            created_at   {int} NOT NULL,
            expires_at   {int},
            revoked_at   {int}
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
            created_at  {int} NOT NULL
        );
        """
    ),
    Migration(  # 2: the engine's journal, its read models, and the operator's inbox
        """
        CREATE TABLE journal (
            seq      {int} PRIMARY KEY,
            at       {int} NOT NULL,
            command  {blob} NOT NULL
        );
        CREATE TABLE orders (
            order_id         {int} PRIMARY KEY,
            account_id       {int} NOT NULL,
            client_order_id  TEXT,
            symbol           TEXT NOT NULL,
            side             {int} NOT NULL,
            type             {int} NOT NULL,
            price            {int} NOT NULL,
            quantity         {int} NOT NULL,
            remaining        {int} NOT NULL,
            tif              {int} NOT NULL,
            post_only        {int} NOT NULL,
            status           TEXT NOT NULL,
            reason           TEXT,
            created_at       {int} NOT NULL,
            updated_at       {int} NOT NULL,
            seq              {int} NOT NULL
        );
        CREATE INDEX orders_account ON orders(account_id, order_id);
        CREATE TABLE trades (
            trade_id          {int} PRIMARY KEY,
            symbol            TEXT NOT NULL,
            price             {int} NOT NULL,
            quantity          {int} NOT NULL,
            taker_side        {int} NOT NULL,
            maker_order_id    {int} NOT NULL,
            taker_order_id    {int} NOT NULL,
            maker_account_id  {int} NOT NULL,
            taker_account_id  {int} NOT NULL,
            maker_fee         {int} NOT NULL,
            taker_fee         {int} NOT NULL,
            quote_id          TEXT,
            at                {int} NOT NULL,
            seq               {int} NOT NULL
        );
        CREATE INDEX trades_maker ON trades(maker_account_id, trade_id);
        CREATE INDEX trades_taker ON trades(taker_account_id, trade_id);
        CREATE TABLE inbox (
            id          {id},
            command     {blob} NOT NULL,
            status      TEXT NOT NULL DEFAULT 'pending',
            result      TEXT,
            created_at  {int} NOT NULL
        );
        CREATE INDEX inbox_pending ON inbox(status) WHERE status = 'pending';
        """
    ),
    Migration(  # 3: engine snapshots, so that a start replays only the journal's tail
        """
        CREATE TABLE snapshots (
            seq         {int} PRIMARY KEY,
            at          {int} NOT NULL,
            state_hash  TEXT NOT NULL,
            state       {blob} NOT NULL
        );
        """
    ),
    # 4: signed login (HMAC-SHA256, Ed25519), key permissions and address allow-lists. Keys
    # made before keep plain login only: their secret was never stored, even sealed.
    Migration(
        """
        ALTER TABLE api_keys ADD COLUMN key_type TEXT NOT NULL DEFAULT 'hmac'
            CHECK (key_type IN ('hmac', 'ed25519'));
        ALTER TABLE api_keys ADD COLUMN public_key {blob};
        ALTER TABLE api_keys ADD COLUMN secret_sealed {blob};
        ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT 'read,trade';
        ALTER TABLE api_keys ADD COLUMN allowed_ips TEXT;
        ALTER TABLE api_keys ADD COLUMN plain_login {int} NOT NULL DEFAULT 1;
        """
    ),
    # 5: reference prices set by the operator, which anchor RFQ quotes (max_age_ms NULL: the
    # server's default). IF NOT EXISTS: it does not matter where among other migrations it runs.
    Migration(
        """
        CREATE TABLE IF NOT EXISTS reference_prices (
            symbol      TEXT PRIMARY KEY REFERENCES instruments(symbol),
            price       TEXT NOT NULL,
            max_age_ms  {int},
            set_at      {int} NOT NULL
        );
        """
    ),
    # 6: the private streams' messages (orders, fills, balances), one row per account and
    # command, in write order; the index that finds an account's rows, written a second behind
    # (adapters/sql_journal.py); where each stream stood when its oldest rows were pruned.
    # IF NOT EXISTS: it does not matter where among other migrations it runs.
    Migration(
        """
        CREATE TABLE IF NOT EXISTS account_events (
            id            {id},
            account_id    {int} NOT NULL,
            seq           {int} NOT NULL,
            at            {int} NOT NULL,
            orders_seq    {int} NOT NULL,
            balances_seq  {int} NOT NULL,
            messages      {blob} NOT NULL
        );
        CREATE TABLE IF NOT EXISTS account_events_index (
            account_id    {int} NOT NULL,
            seq           {int} NOT NULL,
            id            {int} NOT NULL,
            orders_seq    {int} NOT NULL,
            balances_seq  {int} NOT NULL,
            PRIMARY KEY (account_id, seq)
        ) {without_rowid};
        CREATE TABLE IF NOT EXISTS account_events_indexed (through {int} NOT NULL);
        INSERT INTO account_events_indexed(through)
            SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM account_events_indexed);
        CREATE TABLE IF NOT EXISTS account_events_pruned (
            account_id    {int} PRIMARY KEY,
            orders_seq    {int} NOT NULL,
            balances_seq  {int} NOT NULL
        );
        """
    ),
    # 7: what a command's sender called it (msg_id, unique: a resent command is answered from
    # here, not applied twice) and the reply it got, for commands that arrive over a bus.
    # PostgreSQL also gets the revision counter that tells other processes something changed
    # (SQLite has PRAGMA data_version for that).
    Migration(
        """
        ALTER TABLE journal ADD COLUMN msg_id TEXT;
        ALTER TABLE journal ADD COLUMN reply {blob};
        CREATE UNIQUE INDEX journal_msg_id ON journal(msg_id) WHERE msg_id IS NOT NULL;
        """,
        only={
            "postgresql": """
            CREATE TABLE revision (n {int} NOT NULL);
            INSERT INTO revision(n) VALUES (0);
            """
        },
    ),
    # 8: signed logins' nonces, shared by every gateway of a distributed deployment, so that a
    # captured login cannot be replayed on another gateway within the window. Transient (rows
    # older than twice the window are deleted), so not copied by `tradews db migrate`.
    Migration(
        """
        CREATE TABLE login_nonces (
            key_id  TEXT NOT NULL,
            nonce   TEXT NOT NULL,
            used_at {int} NOT NULL,
            PRIMARY KEY (key_id, nonce)
        );
        CREATE INDEX login_nonces_used_at ON login_nonces(used_at);
        """
    ),
    # 9: assets the operator declared (`tradews asset add`) beyond those of listed instruments:
    # deposits and withdrawals take only known assets.
    Migration(
        """
        CREATE TABLE IF NOT EXISTS assets (
            name        TEXT PRIMARY KEY,
            created_at  {int} NOT NULL
        );
        """
    ),
    # 10: the RFQ desk's spread by size (`--spread-ladder 1:5,10:8`); NULL: spread_bps for
    # every size.
    Migration("ALTER TABLE instruments ADD COLUMN spread_ladder TEXT"),
    # 11: engine shards. Each instrument belongs to one; each shard but main keeps its trading
    # state in a schema of its own (``shard_<name>``, PostgreSQL only) and numbers its orders
    # and trades from ``number << 40``, so ids are unique across shards.
    Migration(
        """
        CREATE TABLE shards (
            name        TEXT PRIMARY KEY,
            number      {int} NOT NULL UNIQUE,
            created_at  {int} NOT NULL
        );
        INSERT INTO shards(name, number, created_at) VALUES ('main', 0, 0);
        ALTER TABLE instruments ADD COLUMN shard TEXT NOT NULL DEFAULT 'main'
        """
    ),
]

VERSION = len(MIGRATIONS)

# The tables of one engine's trading state: a shard's schema has its own of these, and sees the
# shared ones (accounts, keys, instruments, assets, reference prices, nonces, revision, shards)
# in ``public``.
SHARD_TABLES = frozenset(
    {
        "journal",
        "orders",
        "trades",
        "inbox",
        "snapshots",
        "account_events",
        "account_events_index",
        "account_events_indexed",
        "account_events_pruned",
    }
)
_TARGET = re.compile(
    r"^(?:CREATE TABLE(?: IF NOT EXISTS)?|ALTER TABLE|INSERT INTO"
    r"|CREATE (?:UNIQUE )?INDEX(?: IF NOT EXISTS)? \w+ ON)\s+(\w+)",
    re.IGNORECASE,
)

# Every table of the data, in an order that respects foreign keys, with its key (what a copy
# pages by). account_events_indexed (one row: how far the index goes) and PostgreSQL's revision
# and schema_version are not data: a copy sets the first and leaves the others.
TABLES: list[tuple[str, tuple[str, ...]]] = [
    ("accounts", ("id",)),
    ("api_keys", ("key_id",)),
    ("instruments", ("symbol",)),
    ("assets", ("name",)),
    ("reference_prices", ("symbol",)),
    ("inbox", ("id",)),
    ("journal", ("seq",)),
    ("snapshots", ("seq",)),
    ("orders", ("order_id",)),
    ("trades", ("trade_id",)),
    ("account_events", ("id",)),
    ("account_events_index", ("account_id", "seq")),
    ("account_events_pruned", ("account_id",)),
]
GENERATED_IDS = ("accounts", "inbox", "account_events")  # tables whose ``id`` is ``{id}``

# Serialises concurrent upgrades of one PostgreSQL database (pg_advisory_xact_lock's key).
_UPGRADE_LOCK = 0x7472616465777301


def statements(
    number: int, dialect_name: str, types: dict[str, str], *, shard: bool = False
) -> list[str]:
    """Migration ``number`` (1-based) as the statements to run on that dialect; ``shard``: only
    those on a shard's own tables (:data:`SHARD_TABLES`)."""
    migration = MIGRATIONS[number - 1]
    script = migration.script + ";" + migration.only.get(dialect_name, "")
    found = [s.strip() for s in script.format(**types).split(";") if s.strip()]
    if not shard:
        return found
    return [s for s in found if _target(s) in SHARD_TABLES]


def _target(statement: str) -> str:
    match = _TARGET.match(" ".join(statement.split()))
    if match is None:
        raise ValueError(f"a migration statement of unknown shape: {statement[:60]!r}")
    return match.group(1).lower()


def version(db: Database, schema: str | None = None) -> int:
    """The schema version the database (or a shard's ``schema``) is at (0: empty)."""
    if db.dialect.name == "sqlite":
        return int(db.scalar("PRAGMA user_version"))
    table = "schema_version" if schema is None else f"{schema}.schema_version"
    if db.scalar(f"SELECT to_regclass('{table}') IS NOT NULL"):
        return int(db.scalar(f"SELECT COALESCE(MAX(version), 0) FROM {table}"))
    return 0


def upgrade(db: Database, schema: str | None = None, *, shard: str = "main") -> list[int]:
    """Apply the migrations the database lacks, in one transaction; return their numbers.

    ``schema``: those of shard ``shard``'s own tables, in that schema (PostgreSQL; the shared
    schema must be up to date), and the shard gets its number."""
    with db.transaction():
        if db.dialect.name == "postgresql":
            db.execute("SELECT pg_advisory_xact_lock(?)", (_UPGRADE_LOCK,))
            if schema is not None:
                db.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
                db.execute(f"SET LOCAL search_path TO {schema}, public")
            table = "schema_version" if schema is None else f"{schema}.schema_version"
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {table} (version BIGINT PRIMARY KEY,"
                " applied_at BIGINT NOT NULL)"
            )
        current = version(db, schema)
        _refuse_newer(current)
        applied = list(range(current + 1, VERSION + 1))
        types = dict(db.dialect.types)
        for number in applied:
            for statement in statements(number, db.dialect.name, types, shard=schema is not None):
                db.execute(statement)
            if db.dialect.name == "sqlite":
                db.execute(f"PRAGMA user_version = {number}")
            else:
                db.execute(
                    f"INSERT INTO {table}(version, applied_at) VALUES (?, ?)",
                    (number, int(time.time() * 1000)),
                )
        if schema is not None:
            db.execute(
                "INSERT INTO public.shards(name, number, created_at)"
                " SELECT ?, (SELECT COALESCE(MAX(number), 0) + 1 FROM public.shards), ?"
                " WHERE NOT EXISTS (SELECT 1 FROM public.shards WHERE name = ?)",
                (shard, int(time.time() * 1000), shard),
            )
    return applied


def check(db: Database, shown_url: str, schema: str | None = None, *, shard: str = "main") -> None:
    """Refuse a database whose schema is not this release's, in one line that says what to do."""
    current = version(db, None if schema is None else "public")
    _refuse_newer(current)
    if current < VERSION:
        raise SchemaError(
            f"the database at {shown_url} is at schema v{current}, this tradews needs "
            f"v{VERSION}: run `tradews db upgrade --db {shown_url}`"
        )
    if schema is not None and version(db, schema) != VERSION:
        what = "is not set up" if version(db, schema) == 0 else "is at an older schema"
        shared = re.sub(r"[?&]shard=[^&]*$", "", shown_url)
        raise SchemaError(
            f"the shard {shard!r} {what} in the database at {shared}: "
            f"run `tradews db upgrade --db {shared} --shard {shard}`"
        )


def _refuse_newer(current: int) -> None:
    if current > VERSION:
        raise SchemaError(
            f"database schema version {current} is newer than this tradews supports "
            f"(v{VERSION}): upgrade tradews"
        )


class SchemaError(StoreError):
    """The database's schema is not the one this release works with."""
