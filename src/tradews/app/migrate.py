"""``tradews db migrate``: move a whole installation from one database to another (a SQLite
file into PostgreSQL), and prove the copy by recovering the engine from each.

Nothing may change the source while it is copied: the source's engine lease is taken for the
whole run, so a running server makes this refuse (stop it first), and a server started
meanwhile is refused. The target's lease is held too, and the target must be empty (it is
brought to this release's schema first). The copy is one read transaction on the source and one
write transaction on the target (``adapters/sql_copy.py``).

API secrets stay sealed as they are: they open only with the master key they were sealed with,
so the key file goes along, to where the target's processes will read it (``--to-key-file``;
for PostgreSQL ``./tradews.key`` by default).

The proof: an engine is recovered from each database (snapshot, then the journal after it,
``app/engine_host.recover``), and their sequence, state hash and every balance must be equal.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tradews.adapters import registry
from tradews.adapters.sql_copy import copy_rows
from tradews.adapters.sql_store import SqlStore, StoreError
from tradews.app.reports import engine_state
from tradews.engine.engine import Engine


class MigrateError(Exception):
    """The migration was refused or failed; the message says why, in one line."""


@dataclass(frozen=True, slots=True)
class Migrated:
    counts: dict[str, int]
    seq: int
    state_hash: str
    balances: dict[str, int]  # atoms per asset, summed over accounts
    key_file: Path | None  # where the target's key file is (None: the source had none)


def migrate(
    source_url: str,
    target_url: str,
    *,
    key_file: str | Path | None = None,
    to_key_file: str | Path | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> Migrated:
    """Copy everything at ``source_url`` into the empty database at ``target_url``."""
    source, target = registry.parse_db_url(source_url), registry.parse_db_url(target_url)
    if source.text == target.text:
        raise MigrateError("the source and the target are the same database")
    if source.path is not None and not source.path.is_file():
        raise MigrateError(f"no database at {source.path}")
    source_lease = registry.open_lease(source)
    if not source_lease.try_acquire():
        raise MigrateError(
            f"a tradews server is running on {source.shown} (it holds "
            f"{source_lease.describe()}): stop it first"
        )
    target_lease = registry.open_lease(target)
    try:
        if not target_lease.try_acquire():
            raise MigrateError(f"a tradews server is running on {target.shown}: stop it first")
        before, applied = registry.upgrade_database(target)
        if applied:
            say(f"{target.shown}: schema v{before} -> v{applied[-1]}")
        from_store = registry.open_store(source, key_file=key_file)
        try:
            to_key = _place_key_file(from_store, target, to_key_file, say)
            counts = _copy(from_store, target)
            for table, n in counts.items():
                say(f"  {table:<22} {n:>10,} rows")
            to_store = registry.open_store(target, key_file=to_key)
            try:
                engine = _verify(from_store, to_store)
                problem = to_store.key_file_problem() if to_key is not None else None
            finally:
                to_store.close()
        finally:
            from_store.close()
        if problem is not None:
            raise MigrateError(f"the copy is complete, but {problem}")
        return Migrated(counts, engine.seq, engine.state_hash(), engine.ledger.sums(), to_key)
    except StoreError as exc:
        raise MigrateError(str(exc)) from None
    finally:
        target_lease.release()
        source_lease.release()


def _copy(from_store: SqlStore, target: registry.DbUrl) -> dict[str, int]:
    db = registry.connect(target, purpose="migrate")
    try:
        return copy_rows(from_store.db, db)
    finally:
        db.close()


def _place_key_file(
    from_store: SqlStore,
    target: registry.DbUrl,
    to_key_file: str | Path | None,
    say: Callable[[str], None],
) -> Path | None:
    """Put the source's key file where the target's processes will look for it; None if the
    source has none (no secret is sealed)."""
    source_key = from_store.key_file
    if not source_key.exists():
        return None
    if to_key_file is not None:
        destination = Path(to_key_file)
    elif target.path is not None:
        destination = Path(f"{target.path}.key")
    else:
        destination = registry.DEFAULT_PG_KEY_FILE
    if destination.exists():
        if destination.read_bytes() != source_key.read_bytes():
            raise MigrateError(
                f"{destination} exists and is not the key file {source_key}: the copied secrets "
                "would not open with it (give --to-key-file another path)"
            )
        say(f"key file: {destination} is already the source's ({source_key})")
    elif destination.resolve() != source_key.resolve():
        shutil.copyfile(source_key, destination)
        destination.chmod(0o600)
        say(f"key file: copied {source_key} to {destination}")
    return destination


def _recovered(store: SqlStore) -> Engine:
    engine = engine_state(store)
    engine.validate()
    return engine


def _verify(from_store: SqlStore, to_store: SqlStore) -> Engine:
    """Recover an engine from each; they must agree on seq, state hash and every balance."""
    before, after = _recovered(from_store), _recovered(to_store)
    if (before.seq, before.state_hash()) != (after.seq, after.state_hash()):
        raise MigrateError(
            f"the copy does not recover the same engine: seq {before.seq} hash "
            f"{before.state_hash()[:16]} at the source, seq {after.seq} hash "
            f"{after.state_hash()[:16]} at the target"
        )
    if dict(before.ledger.items()) != dict(after.ledger.items()):
        raise MigrateError("the copy does not recover the same balances")
    return after
