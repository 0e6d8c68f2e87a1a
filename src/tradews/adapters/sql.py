"""The seam between the storage code and the SQL database under it: SQLite or PostgreSQL.

The store, the journal and the stream archive are written once, in the SQL both databases
accept (``INSERT ... ON CONFLICT``, ``RETURNING``, partial indexes), against :class:`Database`.
What differs is said here, in one :class:`Dialect` per database, and nowhere else:

- placeholders: the code writes ``?``; PostgreSQL's driver wants ``%s`` (translated once per
  statement text and cached);
- how a write transaction begins: SQLite's ``BEGIN IMMEDIATE`` takes the write lock at once, so
  a transaction never fails half-way for want of it; PostgreSQL's ``BEGIN`` locks rows as it goes;
- the greatest of two values (``MAX(a, b)`` vs ``GREATEST(a, b)``), and the column types of the
  schema (``BLOB``/``BYTEA``, ``INTEGER``/``BIGINT``, rowid vs identity columns);
- the error a broken constraint raises, which :meth:`Database.transaction` turns into
  :class:`IntegrityError` so callers catch one class whatever the database;
- how another process's writes are noticed (:meth:`Database.data_version`) and how durable a
  commit is (:meth:`Database.set_durability`).

A database server can go away and come back (PostgreSQL restarted, the network to it cut); a
SQLite file cannot. A connection made with ``reconnect`` (PostgreSQL's) therefore replaces
itself when it finds it was lost: a call that finds it so makes *one* new connection (bounded
by the connect timeout) and, for a read outside a transaction, runs again on it. While the
database stays unreachable every call raises :class:`DatabaseUnavailable` at once, trying to
connect again at most once per :data:`RECONNECT_EVERY_S`: the callers run on the event loop,
which must not wait on an unreachable server more than once in a while. A write transaction is
never run twice: if its connection is lost its outcome is unknown, and the caller is told so.

This module imports no database driver but SQLite's (in the standard library): PostgreSQL's
dialect and connections are made in ``adapters/postgres.py``, imported only for a
``postgresql://`` URL, so the default install never loads psycopg.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from tradews.session.ports import Unavailable

Row = tuple[Any, ...]
T = TypeVar("T")

RECONNECT_EVERY_S = 1.0  # after a failed reconnection, calls fail at once for this long

# The sqlite3 module binds int, float and str at once, but sends every bytes and None through
# its adaptation protocol first, which (finding no adapter) looks ``__adapt__`` up on its
# protocol class and so raises and clears an AttributeError each time: about 0.75 us a value,
# and the journal writes six of them a command (blobs, NULLs). An adapter that returns the value
# as it is makes them bind as before (a BLOB, a NULL), by a lookup and a call in C.
sqlite3.register_adapter(bytes, bytes)  # bytes(b) is b itself
_AS_NULL = cast(Callable[[None], None], {}.get)  # {}.get(None) is None, bound as NULL
sqlite3.register_adapter(type(None), _AS_NULL)


class StoreError(Exception):
    """A request the store refuses (duplicate name, unknown account, a database this tradews
    cannot use as it is, ...). The message says why, in one line."""


class DatabaseUnavailable(StoreError, Unavailable):
    """The database cannot be reached now (stopped, restarting, the network to it down); a
    later call reconnects by itself once it is back.

    ``str()`` is "the database is unreachable", all a client is told; :attr:`detail` is the
    driver's reason in one line (it names the host, never a password), for the operator."""

    MESSAGE = "the database is unreachable"

    def __init__(self, detail: str) -> None:
        super().__init__(self.MESSAGE)
        self.detail = " ".join(detail.split())

    def __repr__(self) -> str:
        return f"DatabaseUnavailable({self.detail!r})"


class IntegrityError(Exception):
    """A write broke a constraint (a unique or primary key, a foreign key, a check); nothing of
    its transaction was written."""


@dataclass(frozen=True, slots=True)
class Dialect:
    """What one database does its own way. Every field is SQL text or a driver's class."""

    name: str  # "sqlite" or "postgresql": the URL scheme
    begin: str  # starts a write transaction
    begin_read: str  # starts a read-only transaction that sees one consistent state
    greatest: str  # the function giving the greater of two values
    integrity_errors: tuple[type[Exception], ...]
    # DDL tokens of the schema (``{int}``, ``{blob}``, ``{id}``, ``{without_rowid}``).
    types: Mapping[str, str]
    data_version: str  # a query whose value changes when another connection commits
    bump_revision: str | None  # run in every store write transaction, if the above needs it
    durability: Mapping[str, str]  # "FULL"/"NORMAL" -> the statement that sets it
    qmark: bool  # True: the driver takes ``?`` placeholders as written
    pipeline: bool  # True: a transaction's statements are sent as one pipeline
    # After rows were written with ids given (a copy), make the next generated id follow them
    # (``{table}``: a table with an ``{id}`` column); None where nothing needs doing.
    follow_ids: str | None


SQLITE = Dialect(
    name="sqlite",
    begin="BEGIN IMMEDIATE",
    begin_read="BEGIN",  # deferred: the snapshot is taken at the first read (WAL)
    greatest="MAX",
    integrity_errors=(sqlite3.IntegrityError,),
    types={
        "int": "INTEGER",
        "blob": "BLOB",
        "id": "INTEGER PRIMARY KEY",  # the rowid: the next id is the largest one + 1
        "without_rowid": "WITHOUT ROWID",
    },
    # A counter SQLite bumps whenever *another* connection commits: one cheap read, no table.
    data_version="PRAGMA data_version",
    bump_revision=None,
    durability={"FULL": "PRAGMA synchronous=FULL", "NORMAL": "PRAGMA synchronous=NORMAL"},
    qmark=True,
    pipeline=False,
    follow_ids=None,  # a rowid's next value is the largest one + 1 anyway
)


@dataclass(eq=False)
class Database:
    """One DB-API connection in autocommit mode, and its dialect.

    Reads run on their own; writes go inside :meth:`transaction`. A store's connection is made
    with ``revision=True``: each of its write transactions then also bumps the revision counter
    where the dialect keeps one (PostgreSQL), which is what :meth:`data_version` reads there.
    """

    connection: Any
    dialect: Dialect
    revision: bool = False
    # Makes a new connection (raising DatabaseUnavailable if it cannot); None: never lost.
    reconnect: Callable[[], Any] | None = None
    _texts: dict[str, str] = field(default_factory=dict, repr=False)
    _setup: list[str] = field(default_factory=list, repr=False)  # run on each new connection
    _retry_at: float = 0.0
    _down: str = ""  # why the last reconnection failed
    _in_transaction: bool = False
    _closed: bool = False
    # One user at a time: the journal's connection is written on the writer thread while the
    # loop may read it (a redelivered command's id, the log's tail at start); neither driver
    # lets two threads use one connection at once (psycopg's pipeline says "another command is
    # already in progress"). Reentrant: a transaction's statements take it again.
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def sql(self, text: str) -> str:
        """``text`` with the dialect's placeholders (cached: statements are a fixed set)."""
        if self.dialect.qmark:
            return text
        translated = self._texts.get(text)
        if translated is None:
            translated = self._texts[text] = text.replace("%", "%%").replace("?", "%s")
        return translated

    # Connection loss ---------------------------------------------------------------------------

    def _lost(self) -> bool:
        """Whether the connection is gone (psycopg marks a connection closed once broken;
        a SQLite connection never is)."""
        return bool(getattr(self.connection, "closed", False)) and not self._closed

    def _live(self) -> Any:
        """The connection, made anew first if it was lost: one attempt, and none at all within
        RECONNECT_EVERY_S of a failed one."""
        if not self._lost():
            return self.connection
        if self.reconnect is None or self._in_transaction:
            raise DatabaseUnavailable("the connection to the database was lost")
        now = time.monotonic()
        if now < self._retry_at:
            raise DatabaseUnavailable(self._down)
        try:
            connection = self.reconnect()
            for statement in self._setup:
                connection.execute(statement)
        except DatabaseUnavailable as exc:
            self._retry_at, self._down = now + RECONNECT_EVERY_S, exc.detail
            raise
        self.connection = connection
        return connection

    def _read(self, run: Callable[[Any], T]) -> T:
        """``run(connection)``; outside a transaction, once more on a new connection if the
        first one turns out to be lost (a read is safe to repeat)."""
        with self._lock:
            connection = self._live()
            try:
                return run(connection)
            except Exception as exc:
                if not self._lost():
                    raise
                if self._in_transaction or self.reconnect is None:
                    raise DatabaseUnavailable(str(exc)) from exc
            return run(self._live())

    # Statements --------------------------------------------------------------------------------

    def execute(self, text: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement; return the driver's cursor (``rowcount``, ``fetchall``)."""
        statement = self.sql(text)
        return self._read(lambda c: c.execute(statement, params))

    def executemany(self, text: str, rows: Iterable[Sequence[Any]]) -> None:
        with self._lock:
            connection = self._live()
            if self.dialect.qmark:
                connection.executemany(text, rows)
            else:
                with connection.cursor() as cursor:
                    cursor.executemany(self.sql(text), rows)

    def one(self, text: str, params: Sequence[Any] = ()) -> Row | None:
        statement = self.sql(text)
        row = self._read(lambda c: c.execute(statement, params).fetchone())
        return None if row is None else tuple(row)

    def all(self, text: str, params: Sequence[Any] = ()) -> list[Row]:
        statement = self.sql(text)
        return [tuple(r) for r in self._read(lambda c: c.execute(statement, params).fetchall())]

    def scalar(self, text: str, params: Sequence[Any] = ()) -> Any:
        row = self.one(text, params)
        assert row is not None, text
        return row[0]

    def insert_id(self, text: str, params: Sequence[Any]) -> int:
        """Run an ``INSERT ... RETURNING id`` and return the id. (All rows are fetched: SQLite
        cannot commit while a statement still has rows to give.)"""
        rows = self.execute(text, params).fetchall()
        return int(rows[0][0])

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Database]:
        """A write transaction: committed if the block ends normally, else rolled back. A
        broken constraint raises :class:`IntegrityError` (the driver's error is its cause).

        Where the driver can (psycopg), the transaction is sent as one pipeline: ``BEGIN``,
        the writes and ``COMMIT`` go out together and their results come back together, one
        network round trip instead of one per statement (a read inside waits for its own
        result). A lone journal write commits in about 210 µs instead of 330 µs on this
        machine's PostgreSQL (``bench/pg_drivers.py``)."""
        with self._lock:
            yield from self._transaction()

    def _transaction(self) -> Iterator[Database]:
        connection = self._live()
        pipeline = connection.pipeline() if self.dialect.pipeline else contextlib.nullcontext()
        self._in_transaction = True
        try:
            with pipeline:
                connection.execute(self.dialect.begin)
                yield self
                if self.revision and self.dialect.bump_revision is not None:
                    connection.execute(self.dialect.bump_revision)
                connection.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(Exception):  # a dead connection: the first error matters
                connection.execute("ROLLBACK")
            if isinstance(exc, self.dialect.integrity_errors):
                raise IntegrityError(str(exc).strip()) from exc
            if self._lost() and not isinstance(exc, DatabaseUnavailable):
                raise DatabaseUnavailable(str(exc)) from exc  # committed or not: unknown
            raise
        finally:
            self._in_transaction = False

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Database]:
        """A read-only transaction: every read inside sees the same committed state."""
        with self._lock:
            connection = self._live()
            connection.execute(self.dialect.begin_read)
            self._in_transaction = True
            try:
                yield self
            finally:
                self._in_transaction = False
                with contextlib.suppress(Exception):
                    connection.execute("ROLLBACK")

    def data_version(self) -> int:
        """A number that changes when another connection has committed a change."""
        return int(self.scalar(self.dialect.data_version))

    def set_durability(self, level: str) -> None:
        """``FULL``: a commit returns once it would survive a power cut; ``NORMAL``: once it
        would survive the process being killed."""
        statement = self.dialect.durability.get(level)
        if statement is None:
            raise ValueError(f"durability must be FULL or NORMAL, not {level!r}")
        self.connection.execute(statement)
        self._setup.append(statement)  # a new connection commits as durably

    def close(self) -> None:
        self._closed = True
        self.connection.close()


def connect_sqlite(path: str | Path, *, store: bool = False) -> Database:
    """A connection to a SQLite file in WAL mode, so the CLI and a running server share it.

    ``check_same_thread=False``: the journal's connection is made on the event loop's thread and
    also used by its writer thread, one at a time (the engine host hands batches over in turn).
    A store's connection also checks foreign keys and commits with ``synchronous=NORMAL`` (its
    writes are the operator's, not acknowledgements to clients)."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA busy_timeout=5000")
    if store:
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA foreign_keys=ON")
    return Database(connection, SQLITE, revision=store)
