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

This module imports no database driver but SQLite's (in the standard library): PostgreSQL's
dialect and connections are made in ``adapters/postgres.py``, imported only for a
``postgresql://`` URL, so the default install never loads psycopg.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Row = tuple[Any, ...]


class StoreError(Exception):
    """A request the store refuses (duplicate name, unknown account, a database this tradews
    cannot use as it is, ...). The message says why, in one line."""


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
    _texts: dict[str, str] = field(default_factory=dict, repr=False)

    def sql(self, text: str) -> str:
        """``text`` with the dialect's placeholders (cached: statements are a fixed set)."""
        if self.dialect.qmark:
            return text
        translated = self._texts.get(text)
        if translated is None:
            translated = self._texts[text] = text.replace("%", "%%").replace("?", "%s")
        return translated

    def execute(self, text: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement; return the driver's cursor (``rowcount``, ``fetchall``)."""
        return self.connection.execute(self.sql(text), params)

    def executemany(self, text: str, rows: Iterable[Sequence[Any]]) -> None:
        if self.dialect.qmark:
            self.connection.executemany(text, rows)
        else:
            with self.connection.cursor() as cursor:
                cursor.executemany(self.sql(text), rows)

    def one(self, text: str, params: Sequence[Any] = ()) -> Row | None:
        row = self.execute(text, params).fetchone()
        return None if row is None else tuple(row)

    def all(self, text: str, params: Sequence[Any] = ()) -> list[Row]:
        return [tuple(r) for r in self.execute(text, params).fetchall()]

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
        connection = self.connection
        pipeline = connection.pipeline() if self.dialect.pipeline else contextlib.nullcontext()
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
            raise

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Database]:
        """A read-only transaction: every read inside sees the same committed state."""
        self.connection.execute(self.dialect.begin_read)
        try:
            yield self
        finally:
            with contextlib.suppress(Exception):
                self.connection.execute("ROLLBACK")

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

    def close(self) -> None:
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
