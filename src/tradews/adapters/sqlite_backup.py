"""Copies of a SQLite database, online and consistent: SQLite's backup API copies every page in
one read transaction, so the copy is one point of the journal however busy the writer is."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tradews.adapters.sql import StoreError


class BackupError(StoreError):
    """A copy could not be made; the message is one line."""


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _open(path: Path, what: str) -> sqlite3.Connection:
    """A connection to an existing tradews SQLite file (checked: it has a journal)."""
    if not path.is_file():
        raise BackupError(f"{what} {path} does not exist")
    try:
        conn = sqlite3.connect(path, timeout=30)
        conn.execute("SELECT COUNT(*) FROM journal").fetchone()
    except sqlite3.Error as exc:
        raise BackupError(f"{what} {path} is not a tradews database: {_one_line(exc)}") from None
    return conn


def _copy(source: sqlite3.Connection, target: Path) -> int:
    """``source`` into the file ``target``; the copy's last journal seq."""
    conn = sqlite3.connect(target, timeout=30)
    try:
        source.backup(conn)
        row = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM journal").fetchone()
    finally:
        conn.close()
    return int(row[0])


def backup(database: Path, target: Path) -> int:
    """Copy ``database`` to the new file ``target``; the copy's journal seq."""
    if target.exists():
        raise BackupError(f"{target} already exists: give a new file")
    source = _open(database, "the database")
    partial = target.with_name(target.name + ".partial")
    try:
        seq = _copy(source, partial)
        partial.replace(target)
    except (OSError, sqlite3.Error) as exc:
        partial.unlink(missing_ok=True)
        raise BackupError(f"cannot write {target}: {_one_line(exc)}") from None
    finally:
        source.close()
    return seq


def restore(copy: Path, database: Path) -> int:
    """Replace ``database``'s content with the backup ``copy`` (the caller holds the engine's
    lease: no server runs on it); the restored journal seq."""
    source = _open(copy, "the backup")
    try:
        return _copy(source, database)
    except (OSError, sqlite3.Error) as exc:
        raise BackupError(f"cannot restore into {database}: {_one_line(exc)}") from None
    finally:
        source.close()
