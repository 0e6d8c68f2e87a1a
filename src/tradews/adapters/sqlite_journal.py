"""The engine's journal in SQLite, and the read models written in the same transaction.

Every command the engine applied is appended with its sequence number; replaying them in order
into a fresh engine rebuilds the exact state. The order and trade tables (what ``order_status``
and ``trades`` read) and the operator inbox's outcome are written in the *same* transaction as
the commands that produced them, so after any crash the journal and the read models agree.

The private streams' messages (``session/streams.py``) are numbered here, as their batch is
written, and stored in ``account_events`` in the same transaction: one row per account and
command, clustered by account (``WITHOUT ROWID``, keyed by account and engine seq), holding that
command's messages for the account (kind, ``streamSeq``, and the engine event each is made from,
as a msgpack array of its fields like the journal's commands) and where each of the account's
streams stands after it. One row, on the account's own page, is what a command adds to its
batch's write for each account it touches: separate rows per message, or an index by stream,
would write two or three more pages per commit, and on the acknowledgement path each page
written costs tens of microseconds. Each account's counters are read from its last row the
first time it is written to after a start.

Rows older than the retention are pruned inside a batch's transaction (the writer owns the
database's write lock, so a prune never makes a journal write wait for it), account by account,
a bounded number at a time; where each stream stood at its last pruned row is kept in
``account_events_pruned``, so counters never go back and a resume from before it is refused.

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
from tradews.session.streams import (
    BALANCES,
    CHANNEL_OF_KIND,
    ORDERS,
    PRIVATE_CHANNELS,
    Kind,
    StreamRecord,
    records_of,
)

# The account_events (and account_events_pruned) column holding each stream's streamSeq.
COLUMNS = {ORDERS: "orders_seq", BALANCES: "balances_seq"}
assert set(COLUMNS) == set(PRIVATE_CHANNELS)
PRUNE_ROWS = 2000  # rows one batch's transaction prunes at most
PRUNE_ACCOUNTS = 100  # accounts it looks at, at most
_LAST = (1 << 63) - 1


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
_encoder = msgspec.msgpack.Encoder()
# account_events.messages: [[kind, streamSeq, [the event's fields...]], ...]
_messages_decoder = msgspec.msgpack.Decoder(list[tuple[int, int, msgspec.Raw]])


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


def _heads(db: sqlite3.Connection, account_id: int, upto_seq: int = _LAST) -> dict[str, int]:
    """Where each of an account's streams stands (its last streamSeq) as of engine seq
    ``upto_seq``, pruned messages included."""
    row = db.execute(
        "SELECT orders_seq, balances_seq FROM account_events WHERE account_id = ? AND seq <= ?"
        " ORDER BY seq DESC LIMIT 1",
        (account_id, upto_seq),
    ).fetchone()
    return _floors(db, account_id) if row is None else {ORDERS: row[0], BALANCES: row[1]}


def _floors(db: sqlite3.Connection, account_id: int) -> dict[str, int]:
    """Where each of an account's streams stood at its last pruned row (0: none pruned)."""
    row = db.execute(
        "SELECT orders_seq, balances_seq FROM account_events_pruned WHERE account_id = ?",
        (account_id,),
    ).fetchone()
    return {ORDERS: 0, BALANCES: 0} if row is None else {ORDERS: row[0], BALANCES: row[1]}


class SqliteJournal:
    def __init__(self, path: str | Path, *, synchronous: str = "FULL") -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be FULL or NORMAL")
        self._db = _connect(path)
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        # Each private stream's last streamSeq, read from account_events on first use.
        self._stream_heads: dict[tuple[int, str], int] = {}
        self._prune_after = 0  # the account the next prune starts after

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
        """Number each entry's private stream records; return them, the account_events rows
        to write, and the streams' new heads (kept only once the batch is committed)."""
        known = self._stream_heads
        heads: dict[tuple[int, str], int] = {}
        numbered: list[list[StreamRecord]] = []
        rows: list[tuple[object, ...]] = []
        encode = _encoder.encode
        for entry in entries:
            records = []
            messages: dict[int, list[tuple[int, int, tuple[Any, ...]]]] = {}
            for account_id, channel, kind, event in records_of(entry.events):
                stream = (account_id, channel)
                last = heads.get(stream)
                if last is None:
                    if stream not in known:
                        for name, head in _heads(self._db, account_id).items():
                            known[(account_id, name)] = head
                    last = known[stream]
                seq = heads[stream] = last + 1
                records.append(StreamRecord(account_id, channel, seq, kind, event))
                messages.setdefault(account_id, []).append(
                    (int(kind), seq, msgspec.structs.astuple(event))
                )
            for account_id, mine in messages.items():
                # where each of the account's streams stands after this command
                stands = [heads.get((account_id, c), known[(account_id, c)]) for c in COLUMNS]
                rows.append((account_id, entry.seq, entry.at, *stands, encode(mine)))
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
                    "INSERT INTO account_events(account_id, seq, at, orders_seq, balances_seq,"
                    " messages) VALUES (?, ?, ?, ?, ?, ?)",
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
        """Delete rows written before ``before``: an account's oldest rows, for up to
        PRUNE_ACCOUNTS accounts from where the last prune stopped and PRUNE_ROWS rows, and
        record where each stream stood at the last row deleted. An account's rows are in time
        order, so what is read is what is deleted, and one row more."""
        db = self._db
        left = PRUNE_ROWS
        account = self._prune_after
        for _ in range(PRUNE_ACCOUNTS):
            row = db.execute(
                "SELECT account_id FROM account_events WHERE account_id > ?"
                " ORDER BY account_id LIMIT 1",
                (account,),
            ).fetchone()
            if row is None:
                account = 0  # the next prune starts from the first account again
                break
            account = int(row[0])
            oldest = db.execute(
                "SELECT seq, at, orders_seq, balances_seq FROM account_events"
                " WHERE account_id = ? ORDER BY seq LIMIT ?",
                (account, left),
            )
            last, count = None, 0
            for seq, at, orders_seq, balances_seq in oldest:
                if at >= before:
                    break
                last, count = (seq, orders_seq, balances_seq), count + 1
            oldest.close()
            if last is None:
                continue
            seq, orders_seq, balances_seq = last
            db.execute(
                "INSERT INTO account_events_pruned(account_id, orders_seq, balances_seq)"
                " VALUES (?, ?, ?) ON CONFLICT(account_id) DO UPDATE SET"
                " orders_seq = MAX(orders_seq, excluded.orders_seq),"
                " balances_seq = MAX(balances_seq, excluded.balances_seq)",
                (account, orders_seq, balances_seq),
            )
            db.execute(
                "DELETE FROM account_events WHERE account_id = ? AND seq <= ?", (account, seq)
            )
            left -= count
            if left <= 0:
                account -= 1  # it may have more: the next prune starts with it
                break
        self._prune_after = account


class SqliteStreamArchive:
    """Reads the private streams' stored messages (the ``StreamArchive`` port), on a connection
    of its own: it is used on the event loop while the journal writes on its thread."""

    def __init__(self, path: str | Path) -> None:
        self._db = _connect(path)

    def close(self) -> None:
        self._db.close()

    def head(self, account_id: int, channel: str, upto_seq: int) -> int:
        return _heads(self._db, account_id, upto_seq)[channel]

    def floor(self, account_id: int, channel: str) -> int:
        return _floors(self._db, account_id)[channel]

    def read(
        self, account_id: int, channel: str, after: int, upto: int, limit: int
    ) -> list[StreamRecord]:
        out: list[StreamRecord] = []
        start = self._first_row_after(account_id, COLUMNS[channel], after)
        while start is not None and len(out) < limit:
            rows = self._db.execute(
                "SELECT seq, messages FROM account_events WHERE account_id = ? AND seq >= ?"
                " ORDER BY seq LIMIT ?",
                (account_id, start, limit),
            ).fetchall()
            start = rows[-1][0] + 1 if len(rows) == limit else None
            for _, blob in rows:
                for kind, stream_seq, event in _messages_decoder.decode(blob):
                    if CHANNEL_OF_KIND[Kind(kind)] != channel or stream_seq <= after:
                        continue
                    if stream_seq > upto or len(out) == limit:
                        return out
                    record = _event_decoders[kind].decode(event)
                    out.append(StreamRecord(account_id, channel, stream_seq, Kind(kind), record))
        return out

    def _first_row_after(self, account_id: int, column: str, after: int) -> int | None:
        """The seq of the account's first row where ``column`` (a stream's streamSeq after the
        row) is above ``after``: the row with message ``after + 1``. A binary search over the
        rows' seqs, along which ``column`` never goes down; each probe is one index seek.
        (``column`` is one of COLUMNS, never a client's text.)"""
        db = self._db
        last = db.execute(
            f"SELECT seq, {column} FROM account_events WHERE account_id = ?"
            " ORDER BY seq DESC LIMIT 1",
            (account_id,),
        ).fetchone()
        if last is None or last[1] <= after:
            return None
        probe = (
            f"SELECT seq, {column} FROM account_events WHERE account_id = ? AND seq >= ?"
            " ORDER BY seq LIMIT 1"
        )
        # Invariant: ``found`` is a row above ``after``; rows before ``low`` are not, and there
        # is no row between ``high`` and ``found``.
        found, low, high = int(last[0]), 0, int(last[0]) - 1
        while low <= high:
            middle = (low + high) // 2
            row = db.execute(probe, (account_id, middle)).fetchone()
            seq, value = int(row[0]), int(row[1])
            if seq > high:  # no row from middle to high
                high = middle - 1
            elif value > after:
                found, high = seq, middle - 1
            else:
                low = seq + 1
        return found
