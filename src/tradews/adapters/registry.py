"""Storage chosen by URL: a SQLite file (the default) or a PostgreSQL database.

    parse_db_url("tradews.db")                      # a path: SQLite
    parse_db_url("sqlite:///var/lib/tradews.db")    # absolute path
    parse_db_url("sqlite:data/tradews.db")          # relative path
    parse_db_url("postgresql://user@host/tradews")  # or postgres://

``sqlite:///`` followed by a path is absolute, as in ``file:///``: the host part (between
``//`` and the next ``/``) is empty. (Releases before PostgreSQL support read
``sqlite:///x.db`` as a relative path, SQLAlchemy's way; ``sqlite:x.db`` says that now.)

The PostgreSQL adapter (and so psycopg) is imported only when a ``postgresql://`` URL is opened.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tradews.adapters import sql_schema
from tradews.adapters.process_lock import ProcessLock
from tradews.adapters.sql import Database, StoreError, connect_sqlite
from tradews.adapters.sql_journal import SqlJournal, SqlStreamArchive
from tradews.adapters.sql_store import SqlStore

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
MAIN_SHARD = "main"
_SHARD_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
DEFAULT_PG_KEY_FILE = Path("tradews.key")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


class Lease(Protocol):
    """Who may run the engine on a database: one holder at a time, released when the holder
    dies (SQLite: a lock file beside the database; PostgreSQL: an advisory lock)."""

    def try_acquire(self) -> bool:
        """Take the lease if nobody holds it; False if someone does."""
        ...

    def held(self) -> bool:
        """Whether the lease is still ours (the engine checks about once a second, and halts
        if not). Blocking: call it off the event loop."""
        ...

    def release(self) -> None: ...

    def describe(self) -> str:
        """What the lease is, for messages ("the lock file /srv/tradews.db.lock")."""
        ...


@dataclass(frozen=True, slots=True)
class DbUrl:
    """A parsed database URL. ``text`` is as given (for re-opening it elsewhere);
    :attr:`shown` hides a password, for messages and logs."""

    scheme: str  # SQLITE or POSTGRESQL
    text: str
    path: Path | None = None  # the SQLite file
    # The engine shard whose trading state (journal, snapshots, read models, inbox) this URL
    # reaches: on PostgreSQL a schema of its own beside the shared tables (accounts, keys,
    # instruments), written ``?shard=NAME`` in the URL's text so it travels with it.
    shard: str = MAIN_SHARD

    @property
    def shown(self) -> str:
        if self.scheme == SQLITE:
            return self.text
        parts = urlsplit(self.text)
        if parts.password is None:
            return self.text
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))

    @property
    def dsn(self) -> str:
        """What the driver is given: the URL without tradews's own ``shard`` parameter."""
        parts = urlsplit(self.text)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "shard"]
        return urlunsplit(parts._replace(query=urlencode(query)))

    @property
    def schema(self) -> str | None:
        """The PostgreSQL schema of the shard's trading state (None: the main shard's, in the
        shared schema)."""
        return None if self.shard == MAIN_SHARD else shard_schema(self.shard)

    def for_shard(self, shard: str) -> DbUrl:
        """The same database, reaching shard ``shard``'s trading state."""
        check_shard_name(shard)
        if shard == self.shard:
            return self
        if self.scheme == SQLITE:
            if shard == MAIN_SHARD:
                return self
            raise ValueError(
                f"shard {shard!r}: engine shards other than main need a PostgreSQL store "
                "(a SQLite file holds one engine's state)"
            )
        parts = urlsplit(self.text)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "shard"]
        if shard != MAIN_SHARD:
            query.append(("shard", shard))
        text = urlunsplit(parts._replace(query=urlencode(query)))
        return DbUrl(self.scheme, text, self.path, shard)


def check_shard_name(name: str) -> str:
    if not _SHARD_NAME.fullmatch(name):
        raise ValueError(f"a shard name is 1-32 of A-Z a-z 0-9 _ -, got {name!r}")
    return name


def shard_schema(shard: str) -> str:
    """The schema holding a shard's trading state, as a quoted SQL identifier."""
    return f'"shard_{check_shard_name(shard)}"'


def parse_db_url(text: str) -> DbUrl:
    """A path or a database URL; ValueError (one line saying what is accepted) otherwise."""
    accepted = "use a path, sqlite:///ABSOLUTE/PATH, sqlite:RELATIVE/PATH or postgresql://..."
    text = text.strip()
    if not text:
        raise ValueError(f"no database given: {accepted}")
    match = _SCHEME.match(text)
    if match is None or (len(match.group(1)) == 1 and "://" not in text):
        return DbUrl(SQLITE, text, Path(text))  # a plain path (a drive letter counts as one)
    scheme = match.group(1).lower()
    rest = text[match.end() :]
    if scheme in ("postgresql", "postgres"):
        if not rest.startswith("//"):
            raise ValueError(f"not a PostgreSQL URL {text!r}: {accepted}")
        shards = [v for k, v in parse_qsl(urlsplit(text).query) if k == "shard"]
        url = DbUrl(POSTGRESQL, text)
        return url if not shards else DbUrl(POSTGRESQL, text, None, check_shard_name(shards[-1]))
    if scheme == "sqlite":
        if rest.startswith("//"):  # sqlite://HOST/PATH: only an empty host is a file here
            host, slash, path = rest[2:].partition("/")
            if host or not slash or not path.strip("/"):
                raise ValueError(f"not a SQLite URL {text!r}: {accepted}")
            return DbUrl(SQLITE, text, Path("/" + path.lstrip("/")))
        if not rest:
            raise ValueError(f"no path in the SQLite URL {text!r}: {accepted}")
        return DbUrl(SQLITE, text, Path(rest))
    raise ValueError(f"unsupported database URL {text!r}: {accepted}")


def _url(url: str | DbUrl) -> DbUrl:
    return url if isinstance(url, DbUrl) else parse_db_url(url)


def connect(url: str | DbUrl, *, purpose: str, store: bool = False) -> Database:
    """A new connection to the database at ``url``."""
    parsed = _url(url)
    if parsed.scheme == POSTGRESQL:
        from tradews.adapters import postgres

        return postgres.connect(parsed.dsn, purpose=purpose, store=store, schema=parsed.schema)
    assert parsed.path is not None
    return connect_sqlite(parsed.path, store=store)


def open_store(url: str | DbUrl, key_file: str | Path | None = None) -> SqlStore:
    """The store. A SQLite file is created and migrated if need be; a PostgreSQL database must
    be at this release's schema (``tradews db upgrade``), or StoreError says so.

    ``key_file`` holds the master key sealing HMAC secrets: by default the SQLite file's path +
    ``.key``; for PostgreSQL ``./tradews.key``, and every process that uses the database (the
    server, each gateway, the CLI) must be given the same file."""
    parsed = _url(url)
    if parsed.scheme == SQLITE:
        assert parsed.path is not None
        if parsed.path.parent and not parsed.path.parent.exists():
            raise StoreError(f"directory {parsed.path.parent} does not exist")
        default_key = Path(f"{parsed.path}.key")
    else:
        default_key = DEFAULT_PG_KEY_FILE
    return SqlStore(
        connect(parsed, purpose="store", store=True),
        url=parsed.text,
        key_file=default_key if key_file is None else key_file,
        path=parsed.path,
        migrate=parsed.scheme == SQLITE,
        shown_url=parsed.shown,
        shard=parsed.shard,
        schema=parsed.schema,
    )


def open_journal(url: str | DbUrl, *, durability: str = "FULL") -> SqlJournal:
    """The engine's journal on a connection of its own, committing with ``durability``
    (``FULL`` or ``NORMAL``)."""
    return SqlJournal(connect(url, purpose="journal"), durability=durability)


def open_archive(url: str | DbUrl) -> SqlStreamArchive:
    """The private streams' stored messages, read on a connection of its own."""
    return SqlStreamArchive(connect(url, purpose="archive"))


def open_lease(url: str | DbUrl, name: str = "engine") -> Lease:
    """The lease ``name`` on the database: held by at most one process at a time. Each shard
    has its own engine lease."""
    parsed = _url(url)
    if parsed.scheme == POSTGRESQL:
        from tradews.adapters import postgres

        if parsed.shard != MAIN_SHARD:
            name = f"{name}:{parsed.shard}"
        return postgres.AdvisoryLease(parsed.dsn, name, shown_url=parsed.shown)
    assert parsed.path is not None
    suffix = "" if name == "engine" else f".{name}"
    return ProcessLock(parsed.path.with_name(parsed.path.name + suffix))


def upgrade_database(url: str | DbUrl) -> tuple[int, list[int]]:
    """Bring the database's schema up to this release's: ``(version before, applied)``. For a
    shard's URL, the shared schema first, then the shard's own (made if need be, and the shard
    given its number)."""
    parsed = _url(url)
    if parsed.schema is not None:
        upgrade_database(parsed.for_shard(MAIN_SHARD))
    db = connect(parsed, purpose="upgrade")
    try:
        before = sql_schema.version(db, parsed.schema)
        return before, sql_schema.upgrade(db, parsed.schema, shard=parsed.shard)
    finally:
        db.close()
