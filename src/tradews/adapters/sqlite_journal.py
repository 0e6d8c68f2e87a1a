"""The engine's journal in SQLite, and the read models written in the same transaction.

Every command the engine applied is appended with its sequence number; replaying them in order
into a fresh engine rebuilds the exact state. The order and trade tables (what ``order_status``
and ``trades`` read) and the operator inbox's outcome are written in the *same* transaction as
the commands that produced them, so after any crash the journal and the read models agree.

Durability: with ``synchronous=FULL`` (the default) a commit returns after the WAL is fsynced, so
an acknowledged fact survives power loss; ``NORMAL`` survives a killed process but not a power
cut, and is an order of magnitude faster per commit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tradews.engine.commands import AnyCommand, decoder
from tradews.engine.events import OrderUpdated, TradeExecuted


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One applied command: its sequence number, time, encoded form, and what it caused."""

    seq: int
    at: int
    blob: bytes  # the command, msgpack-encoded (``engine.commands.encoder``)
    events: Sequence[object]
    inbox_id: int | None = None
    inbox_result: str | None = None


class SqliteJournal:
    def __init__(self, path: str | Path, *, synchronous: str = "FULL") -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be FULL or NORMAL")
        # Used from the journal's writer thread, created on the loop's: hence the flag. Only
        # one thread uses it at a time (the host hands batches over one by one).
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute("PRAGMA busy_timeout=5000")

    def close(self) -> None:
        self._db.close()

    def last_seq(self) -> int:
        (seq,) = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM journal").fetchone()
        return int(seq)

    def read(self, after: int = 0) -> Iterator[tuple[int, AnyCommand]]:
        rows = self._db.execute(
            "SELECT seq, command FROM journal WHERE seq > ? ORDER BY seq", (after,)
        )
        for seq, blob in rows:
            yield seq, decoder.decode(blob)

    def latest_snapshot(self) -> tuple[int, str, bytes] | None:
        """``(seq, state_hash, state)`` of the newest engine snapshot, if any."""
        row = self._db.execute(
            "SELECT seq, state_hash, state FROM snapshots ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]), bytes(row[2]))

    def save_snapshot(self, seq: int, at: int, state_hash: str, state: bytes) -> None:
        """Store a snapshot taken when everything up to ``seq`` is journaled."""
        self.append([], (seq, at, state_hash, state))

    def _store_snapshot(self, snapshot: tuple[int, int, str, bytes]) -> None:
        db = self._db
        db.execute(
            "INSERT OR REPLACE INTO snapshots(seq, at, state_hash, state) VALUES (?, ?, ?, ?)",
            snapshot,
        )
        db.execute(  # the newest three are enough
            "DELETE FROM snapshots WHERE seq NOT IN"
            " (SELECT seq FROM snapshots ORDER BY seq DESC LIMIT 3)"
        )

    def append(
        self,
        entries: Sequence[JournalEntry],
        snapshot: tuple[int, int, str, bytes] | None = None,
    ) -> None:
        """Write a batch in one transaction (one fsync), with an engine snapshot taken at or
        before its last command if one is given. Raises on failure: nothing is written."""
        db = self._db
        journal_rows = []
        orders: dict[int, tuple[object, ...]] = {}
        trades = []
        inbox = []
        for entry in entries:
            journal_rows.append((entry.seq, entry.at, entry.blob))
            for e in entry.events:
                if isinstance(e, OrderUpdated):
                    orders[e.order_id] = (
                        e.order_id, e.account_id, e.client_order_id, e.symbol, e.side, e.type,
                        e.price, e.quantity, e.remaining, e.tif, int(e.post_only), e.status,
                        e.reason, e.created_at, e.at, e.seq,
                    )  # fmt: skip
                elif isinstance(e, TradeExecuted):
                    trades.append(
                        (
                            e.trade_id, e.symbol, e.price, e.quantity, e.taker_side,
                            e.maker_order_id, e.taker_order_id, e.maker_account_id,
                            e.taker_account_id, e.maker_fee, e.taker_fee, e.quote_id, e.at, e.seq,
                        )
                    )  # fmt: skip
            if entry.inbox_id is not None:
                inbox.append((entry.inbox_result, entry.inbox_id))
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT INTO journal(seq, at, command) VALUES (?, ?, ?)", journal_rows)
            if orders:
                db.executemany(
                    "INSERT OR REPLACE INTO orders VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    orders.values(),
                )
            if trades:
                db.executemany("INSERT INTO trades VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", trades)
            if inbox:
                db.executemany("UPDATE inbox SET status = 'done', result = ? WHERE id = ?", inbox)
            if snapshot is not None:
                self._store_snapshot(snapshot)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
