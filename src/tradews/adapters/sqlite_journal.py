"""The engine's journal in SQLite, and the read models written in the same transaction.

Every command the engine applied is appended with its sequence number; replaying them in order
into a fresh engine rebuilds the exact state. The order and trade tables (what ``order_status``
and ``trades`` read) and the operator inbox's outcome are written in the *same* transaction as
the commands that produced them, so after any crash the journal and the read models agree.

The private streams' messages (``session/streams.py``) are numbered here, as their batch is
written, and stored in ``account_events`` in the same transaction: one row per message with its
account, channel, ``streamSeq``, engine seq, time, kind, and the engine event it is made from (a
msgpack array of the event's fields, in declaration order, like the journal's commands). Each
stream's counter is read from the table the first time the stream is written to after a start.
Rows older than the retention are pruned in chunks, inside a batch's transaction (the writer
owns the database's write lock, so a prune never makes a journal write wait for it), and the
last pruned ``streamSeq`` of each stream is kept in ``account_events_pruned``: counters never
go back, and a resume from before it is refused.

Durability: with ``synchronous=FULL`` (the default) a commit returns after the WAL is fsynced, so
an acknowledged fact survives power loss; ``NORMAL`` survives a killed process but not a power
cut, and is an order of magnitude faster per commit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from tradews.engine.commands import AnyCommand, decoder
from tradews.engine.events import BalanceChanged, OrderUpdated, TradeExecuted
from tradews.session.streams import PRIVATE_CHANNELS, Kind, StreamRecord, records_of

# account_events.channel: the stream's channel as a small integer (never renumbered)
CHANNEL_CODES = {"orders": 1, "balances": 2}
assert set(CHANNEL_CODES) == set(PRIVATE_CHANNELS)
PRUNE_CHUNK = 2000  # rows one batch's transaction prunes at most


# The stored form of an event: its fields as an array (a third of a map's size). Decoding into
# these array_like twins validates every field, and accepts rows written before a field with a
# default was appended to an event.
class _StoredOrder(OrderUpdated, frozen=True, array_like=True):
    pass


class _StoredTrade(TradeExecuted, frozen=True, array_like=True):
    pass


class _StoredBalance(BalanceChanged, frozen=True, array_like=True):
    pass


_event_decoders: dict[int, msgspec.msgpack.Decoder[Any]] = {
    Kind.ORDER: msgspec.msgpack.Decoder(_StoredOrder),
    Kind.FILL_AS_MAKER: msgspec.msgpack.Decoder(_StoredTrade),
    Kind.FILL_AS_TAKER: msgspec.msgpack.Decoder(_StoredTrade),
    Kind.BALANCE: msgspec.msgpack.Decoder(_StoredBalance),
}
_event_encoder = msgspec.msgpack.Encoder()


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One applied command: its sequence number, time, encoded form, and what it caused."""

    seq: int
    at: int
    blob: bytes  # the command, msgpack-encoded (``engine.commands.encoder``)
    events: Sequence[object]
    inbox_id: int | None = None
    inbox_result: str | None = None


def _connect(path: str | Path) -> sqlite3.Connection:
    # Used from the journal's writer thread, created on the loop's: hence the flag. Only one
    # thread uses a connection at a time (the host hands batches over one by one).
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA busy_timeout=5000")
    return db


def _head(db: sqlite3.Connection, account_id: int, code: int, upto_seq: int | None) -> int:
    """The last streamSeq of a stream (among commands up to ``upto_seq``), pruned included."""
    row = db.execute(
        "SELECT stream_seq FROM account_events WHERE account_id = ? AND channel = ?"
        " AND seq <= ? ORDER BY stream_seq DESC LIMIT 1",
        (account_id, code, (1 << 63) - 1 if upto_seq is None else upto_seq),
    ).fetchone()
    return max(0 if row is None else int(row[0]), _floor(db, account_id, code))


def _floor(db: sqlite3.Connection, account_id: int, code: int) -> int:
    row = db.execute(
        "SELECT through FROM account_events_pruned WHERE account_id = ? AND channel = ?",
        (account_id, code),
    ).fetchone()
    return 0 if row is None else int(row[0])


class SqliteJournal:
    def __init__(self, path: str | Path, *, synchronous: str = "FULL") -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be FULL or NORMAL")
        self._db = _connect(path)
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        # Each private stream's last streamSeq, read from account_events on first use.
        self._stream_heads: dict[tuple[int, str], int] = {}

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

    def _number(
        self, entries: Sequence[JournalEntry]
    ) -> tuple[list[list[StreamRecord]], list[tuple[object, ...]], dict[tuple[int, str], int]]:
        """Number each entry's private stream records; return them, their rows, and the
        streams' new heads (kept only once the batch is committed)."""
        known = self._stream_heads
        heads: dict[tuple[int, str], int] = {}
        numbered: list[list[StreamRecord]] = []
        rows: list[tuple[object, ...]] = []
        encode = _event_encoder.encode
        for entry in entries:
            records = []
            for account_id, channel, kind, event in records_of(entry.events):
                stream = (account_id, channel)
                last = heads.get(stream)
                if last is None:
                    last = known.get(stream)
                    if last is None:
                        last = _head(self._db, account_id, CHANNEL_CODES[channel], None)
                seq = heads[stream] = last + 1
                records.append(StreamRecord(account_id, channel, seq, kind, event))
                rows.append(
                    (account_id, CHANNEL_CODES[channel], seq, entry.seq, entry.at, int(kind),
                     encode(msgspec.structs.astuple(event)))
                )  # fmt: skip
            numbered.append(records)
        return numbered, rows, heads

    def append(
        self,
        entries: Sequence[JournalEntry],
        snapshot: tuple[int, int, str, bytes] | None = None,
        *,
        prune_before: int | None = None,
    ) -> list[list[StreamRecord]]:
        """Write a batch in one transaction (one fsync), with an engine snapshot taken at or
        before its last command if one is given, and a chunk of the private streams' rows
        older than ``prune_before`` (ms since the epoch) pruned if it is given. Returns each
        entry's private stream records, numbered. Raises on failure: nothing is written."""
        db = self._db
        numbered, stream_rows, heads = self._number(entries)
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
            if stream_rows:
                db.executemany(
                    "INSERT INTO account_events(account_id, channel, stream_seq, seq, at, kind,"
                    " event) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    stream_rows,
                )
            if inbox:
                db.executemany("UPDATE inbox SET status = 'done', result = ? WHERE id = ?", inbox)
            if snapshot is not None:
                self._store_snapshot(snapshot)
            if prune_before is not None:
                self._prune(prune_before)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        self._stream_heads.update(heads)
        return numbered

    def _prune(self, before: int) -> None:
        """Delete up to PRUNE_CHUNK of the oldest stream rows written before ``before``,
        recording each stream's last deleted streamSeq. Rows are in time order by rowid, so
        this reads a chunk from the start of the table and stops at the first one to keep."""
        db = self._db
        last = None
        oldest = db.execute(
            "SELECT rowid, at FROM account_events ORDER BY rowid LIMIT ?", (PRUNE_CHUNK,)
        ).fetchall()
        for rowid, at in oldest:
            if at >= before:
                break
            last = rowid
        if last is None:
            return
        db.execute(
            "INSERT INTO account_events_pruned(account_id, channel, through)"
            " SELECT account_id, channel, MAX(stream_seq) FROM account_events WHERE rowid <= ?"
            " GROUP BY account_id, channel"
            " ON CONFLICT(account_id, channel) DO UPDATE SET through = MAX(through, excluded.through)",
            (last,),
        )
        db.execute("DELETE FROM account_events WHERE rowid <= ?", (last,))


class SqliteStreamArchive:
    """Reads the private streams' stored messages (the ``StreamArchive`` port), on a connection
    of its own: it is used on the event loop while the journal writes on its thread."""

    def __init__(self, path: str | Path) -> None:
        self._db = _connect(path)

    def close(self) -> None:
        self._db.close()

    def head(self, account_id: int, channel: str, upto_seq: int) -> int:
        return _head(self._db, account_id, CHANNEL_CODES[channel], upto_seq)

    def floor(self, account_id: int, channel: str) -> int:
        return _floor(self._db, account_id, CHANNEL_CODES[channel])

    def read(
        self, account_id: int, channel: str, after: int, upto: int, limit: int
    ) -> list[StreamRecord]:
        rows = self._db.execute(
            "SELECT stream_seq, kind, event FROM account_events WHERE account_id = ?"
            " AND channel = ? AND stream_seq > ? AND stream_seq <= ? ORDER BY stream_seq LIMIT ?",
            (account_id, CHANNEL_CODES[channel], after, upto, limit),
        )
        return [
            StreamRecord(account_id, channel, seq, Kind(kind), _event_decoders[kind].decode(blob))
            for seq, kind, blob in rows
        ]

    def oldest_at(self) -> int | None:
        """When the oldest stored message was written (ms since the epoch); None if none is."""
        row = self._db.execute("SELECT at FROM account_events ORDER BY rowid LIMIT 1").fetchone()
        return None if row is None else int(row[0])
