"""The engine's journal, and the read models written in the same transaction; SQLite or
PostgreSQL, one implementation (``adapters/sql.py`` holds what differs).

Every command the engine applied is appended with its sequence number; replaying them in order
into a fresh engine rebuilds the exact state. The order and trade tables (what ``order_status``
and ``trades`` read) and the operator inbox's outcome are written in the *same* transaction as
the commands that produced them, so after any crash the journal and the read models agree.

The private streams' messages (``session/streams.py``) are numbered here, as their batch is
written, and stored in ``account_events`` in the same transaction: one row per account and
command, holding that command's messages for the account (kind, ``streamSeq``, and the engine
event each is made from, as a msgpack array of its fields like the journal's commands) and where
each of the account's streams stands after it. The table only grows at its end (rows in write
order, by rowid), so a batch adds its rows to one or two pages, whatever accounts it touches.

What finds an account's rows, ``account_events_index`` (account, engine seq -> row), is written
a second behind, by the upkeep that ``append(maintain=...)`` does: kept per batch, an index by
account would write a page for every account in the batch, and on the acknowledgement path each
page written costs tens of microseconds (with ``synchronous=FULL`` every one is synced). Rows
not yet indexed (the *tail*, after ``account_events_indexed.through``, a second's worth) are
found by reading the tail. Each account's counters are read the first time it is written to
after a start.

Rows older than the retention are pruned from the start of the table (write order is time
order), by the same upkeep, inside a batch's transaction on the writer's thread, so a prune
never makes a journal write wait for the database's lock; where each stream stood at an
account's last pruned row is kept in ``account_events_pruned``, so counters never go back and a
resume from before it is refused.

Commands that arrive over a bus carry their sender's id (``msg_id``, unique in the table) and
are stored with the reply they got, so a command sent again after a lost reply is answered from
the journal (:meth:`SqlJournal.lookup_msg_ids`) rather than applied twice.

Durability: with ``FULL`` (the default) a commit returns once it is on disk (SQLite
``synchronous=FULL``: the WAL is fsynced; PostgreSQL ``synchronous_commit=on``: its WAL is
flushed), so an acknowledged fact survives power loss; ``NORMAL`` survives a killed process but
not a power cut (SQLite ``synchronous=NORMAL``; PostgreSQL ``synchronous_commit=off``, whose
last few hundred milliseconds of commits may be lost if the database server itself crashes),
and is much faster per commit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import msgspec

from tradews.adapters.sql import Database, Row
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
assert list(COLUMNS) == [ORDERS, BALANCES]  # _number writes the heads in this order
PRUNE_ROWS = 2000  # rows one maintenance prunes at most
READ_PAGE = 5000  # journal rows read at once in a replay: memory stays bounded
LOOKUP_CHUNK = 500  # msg_ids looked up per statement
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


class JournalEntry(msgspec.Struct, frozen=True, gc=False):
    """One applied command: its sequence number, time, encoded form, and what it caused.
    (A struct: one is made per command, and a frozen dataclass's ``__init__`` costs several
    times a struct's. It holds only values that never refer back to it: ``gc=False``.)"""

    seq: int
    at: int
    blob: bytes  # the command, msgpack-encoded (``engine.commands.encoder``)
    events: Sequence[object]
    inbox_id: int | None = None
    inbox_result: str | None = None
    msg_id: str | None = None  # the sender's id of the command, unique (None: not given)
    reply: bytes | None = None  # what its sender was answered, encoded by the caller


def _indexed_through(db: Database) -> int:
    """The last account_events row that account_events_index covers; later ones are the tail."""
    return int(db.scalar("SELECT through FROM account_events_indexed"))


def _heads(db: Database, account_id: int, upto_seq: int = _LAST) -> dict[str, int]:
    """Where each of an account's streams stands (its last streamSeq) as of engine seq
    ``upto_seq``, pruned messages included: from its last row in the tail, or else in the
    index, or else where it stood when pruned."""
    row = db.one(
        "SELECT orders_seq, balances_seq FROM account_events WHERE id > ? AND account_id = ?"
        " AND seq <= ? ORDER BY id DESC LIMIT 1",
        (_indexed_through(db), account_id, upto_seq),
    )
    if row is None:
        row = db.one(
            "SELECT orders_seq, balances_seq FROM account_events_index WHERE account_id = ?"
            " AND seq <= ? ORDER BY seq DESC LIMIT 1",
            (account_id, upto_seq),
        )
    return _floors(db, account_id) if row is None else {ORDERS: row[0], BALANCES: row[1]}


def _floors(db: Database, account_id: int) -> dict[str, int]:
    """Where each of an account's streams stood at its last pruned row (0: none pruned)."""
    row = db.one(
        "SELECT orders_seq, balances_seq FROM account_events_pruned WHERE account_id = ?",
        (account_id,),
    )
    return {ORDERS: 0, BALANCES: 0} if row is None else {ORDERS: row[0], BALANCES: row[1]}


_ORDER_COLUMNS = (
    "order_id, account_id, client_order_id, symbol, side, type, price, quantity, remaining, tif,"
    " post_only, status, reason, created_at, updated_at, seq"
)
# An order's row as its latest update has it (orders are written as they change).
_UPSERT_ORDER = (
    f"INSERT INTO orders({_ORDER_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
    " ON CONFLICT(order_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _ORDER_COLUMNS.replace(" ", "").split(",")[1:])
)


class SqlJournal:
    def __init__(self, db: Database, *, durability: str = "FULL") -> None:
        """Journal into ``db`` (a connection of its own, made by ``adapters/registry.py``),
        committing with ``durability`` ``FULL`` or ``NORMAL``."""
        self._db = db
        db.set_durability(durability)
        # Each private stream's last streamSeq, read from account_events on first use.
        self._stream_heads: dict[tuple[int, str], int] = {}
        # Set by a maintenance that pruned as much as it may: more is waiting.
        self.prune_pending = False

    def close(self) -> None:
        self._db.close()

    def last_seq(self) -> int:
        """The newest journaled seq (0: none): one seek at the end of the primary key."""
        return int(self._db.scalar("SELECT COALESCE(MAX(seq), 0) FROM journal"))

    def read(self, after: int = 0) -> Iterator[tuple[int, AnyCommand]]:
        """Every command after seq ``after``, in order, a page at a time."""
        while True:
            rows = self._db.all(
                "SELECT seq, command FROM journal WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, READ_PAGE),
            )
            for seq, blob in rows:
                yield seq, decoder.decode(blob)
            if len(rows) < READ_PAGE:
                return
            after = rows[-1][0]

    def msg_ids_after(self, after: int) -> dict[int, str]:
        """seq -> msg_id of the entries after ``after`` that have one (a short tail)."""
        rows = self._db.all(
            "SELECT seq, msg_id FROM journal WHERE seq > ? AND msg_id IS NOT NULL", (after,)
        )
        return {int(seq): str(msg_id) for seq, msg_id in rows}

    def lookup_msg_ids(self, ids: Sequence[str]) -> dict[str, tuple[int, bytes | None]]:
        """Of ``ids``, those journaled: msg_id -> (seq, stored reply)."""
        found: dict[str, tuple[int, bytes | None]] = {}
        wanted = list(dict.fromkeys(ids))
        for start in range(0, len(wanted), LOOKUP_CHUNK):
            chunk = wanted[start : start + LOOKUP_CHUNK]
            rows = self._db.all(
                "SELECT msg_id, seq, reply FROM journal WHERE msg_id IN"
                f" ({','.join('?' * len(chunk))})",
                chunk,
            )
            for msg_id, seq, reply in rows:
                found[msg_id] = (int(seq), None if reply is None else bytes(reply))
        return found

    def latest_snapshot(self) -> tuple[int, str, bytes] | None:
        """``(seq, state_hash, state)`` of the newest engine snapshot, if any."""
        row = self._db.one("SELECT seq, state_hash, state FROM snapshots ORDER BY seq DESC LIMIT 1")
        return None if row is None else (int(row[0]), str(row[1]), bytes(row[2]))

    def save_snapshot(self, seq: int, at: int, state_hash: str, state: bytes) -> None:
        """Store a snapshot taken when everything up to ``seq`` is journaled."""
        self.append([], (seq, at, state_hash, state))

    def _store_snapshot(self, snapshot: tuple[int, int, str, bytes]) -> None:
        db = self._db
        db.execute(
            "INSERT INTO snapshots(seq, at, state_hash, state) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(seq) DO UPDATE SET at = excluded.at, state_hash = excluded.state_hash,"
            " state = excluded.state",
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
        astuple = msgspec.structs.astuple
        for entry in entries:
            records = []
            messages: dict[int, list[tuple[Kind, int, tuple[Any, ...]]]] = {}
            for account_id, channel, kind, event in records_of(entry.events):
                stream = (account_id, channel)
                last = heads.get(stream)
                if last is None:
                    last = known.get(stream)
                    if last is None:
                        for name, head in _heads(self._db, account_id).items():
                            known[(account_id, name)] = head
                        last = known[stream]
                seq = heads[stream] = last + 1
                records.append(StreamRecord(account_id, channel, seq, kind, event))
                mine = messages.get(account_id)
                if mine is None:
                    mine = messages[account_id] = []
                mine.append((kind, seq, astuple(event)))
            for account_id, mine in messages.items():
                # where each of the account's streams stands after this command, in the
                # order of COLUMNS (orders_seq, balances_seq); a head numbered here is >= 1
                o, b = (account_id, ORDERS), (account_id, BALANCES)
                stands_o = heads.get(o) or known[o]
                stands_b = heads.get(b) or known[b]
                rows.append((account_id, entry.seq, entry.at, stands_o, stands_b, encode(mine)))
            numbered.append(records)
        return numbered, rows, heads

    def append(
        self,
        entries: Sequence[JournalEntry],
        snapshot: tuple[int, int, str, bytes] | None = None,
        *,
        maintain: int | None = None,
    ) -> list[list[StreamRecord]]:
        """Write a batch in one transaction (one fsync), with an engine snapshot taken at or
        before its last command if one is given, and the private streams' upkeep if
        ``maintain`` is given (see :meth:`_maintain`; the time before which messages go).
        Returns each entry's private stream records, numbered. Raises on failure: nothing is
        written."""
        db = self._db
        numbered, stream_rows, heads = self._number(entries)
        journal_rows = []
        orders: dict[int, tuple[object, ...]] = {}
        trades = []
        inbox = []
        for entry in entries:
            journal_rows.append((entry.seq, entry.at, entry.blob, entry.msg_id, entry.reply))
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
        with db.transaction():
            db.executemany(
                "INSERT INTO journal(seq, at, command, msg_id, reply) VALUES (?, ?, ?, ?, ?)",
                journal_rows,
            )
            if orders:
                db.executemany(_UPSERT_ORDER, orders.values())
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
            if maintain is not None:
                self._maintain(maintain)
        self._stream_heads.update(heads)
        return numbered

    def _maintain(self, before: int) -> None:
        """Index the tail of account_events, then prune up to PRUNE_ROWS of its oldest rows
        written before ``before`` (ms since the epoch), recording where each stream stood at
        its account's last pruned row. Writes nothing when there is nothing to do."""
        db = self._db
        through = _indexed_through(db)
        last = int(db.scalar("SELECT COALESCE(MAX(id), 0) FROM account_events"))
        if last > through:
            db.execute(
                "INSERT INTO account_events_index(account_id, seq, id, orders_seq, balances_seq)"
                " SELECT account_id, seq, id, orders_seq, balances_seq FROM account_events"
                " WHERE id > ? AND id <= ?",
                (through, last),
            )
            db.execute("UPDATE account_events_indexed SET through = ?", (last,))
        oldest = db.all("SELECT id, at FROM account_events ORDER BY id LIMIT ?", (PRUNE_ROWS,))
        end = None
        for row_id, at in oldest:
            if at >= before:
                break
            end = row_id
        self.prune_pending = end == oldest[-1][0] if oldest and end is not None else False
        if end is None:
            return
        greatest = db.dialect.greatest
        pruned = db.all(
            "SELECT account_id, MAX(seq), MAX(orders_seq), MAX(balances_seq) FROM account_events"
            " WHERE id <= ? GROUP BY account_id",
            (end,),
        )
        for account_id, seq, orders_seq, balances_seq in pruned:
            db.execute(
                "INSERT INTO account_events_pruned(account_id, orders_seq, balances_seq)"
                " VALUES (?, ?, ?) ON CONFLICT(account_id) DO UPDATE SET"
                f" orders_seq = {greatest}(account_events_pruned.orders_seq,"
                " excluded.orders_seq),"
                f" balances_seq = {greatest}(account_events_pruned.balances_seq,"
                " excluded.balances_seq)",
                (account_id, orders_seq, balances_seq),
            )
            db.execute(
                "DELETE FROM account_events_index WHERE account_id = ? AND seq <= ?",
                (account_id, seq),
            )
        db.execute("DELETE FROM account_events WHERE id <= ?", (end,))
        if end == last:  # emptied: every new row is the tail (SQLite numbers them from 1 again)
            db.execute("UPDATE account_events_indexed SET through = 0")


class SqlStreamArchive:
    """Reads the private streams' stored messages (the ``StreamArchive`` port), on a connection
    of its own: it is used on the event loop while the journal writes on its thread."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def close(self) -> None:
        self._db.close()

    def head(self, account_id: int, channel: str, upto_seq: int) -> int:
        return _heads(self._db, account_id, upto_seq)[channel]

    def floor(self, account_id: int, channel: str) -> int:
        return _floors(self._db, account_id)[channel]

    def read(
        self, account_id: int, channel: str, after: int, upto: int, limit: int
    ) -> list[StreamRecord]:
        """Indexed rows from the first that holds message ``after + 1``, then the tail."""
        db = self._db
        through = _indexed_through(db)
        out: list[StreamRecord] = []
        seq = self._first_indexed_after(account_id, COLUMNS[channel], after)
        while seq is not None:
            rows = db.all(
                "SELECT i.seq, e.messages FROM account_events_index AS i"
                " JOIN account_events AS e ON e.id = i.id"
                " WHERE i.account_id = ? AND i.seq >= ? ORDER BY i.seq LIMIT ?",
                (account_id, seq, limit),
            )
            if self._take(rows, account_id, channel, after, upto, limit, out):
                return out
            seq = rows[-1][0] + 1 if len(rows) == limit else None
            after = out[-1].stream_seq if out else after
        rows = db.all(
            "SELECT seq, messages FROM account_events WHERE id > ? AND account_id = ? ORDER BY id",
            (through, account_id),
        )
        self._take(rows, account_id, channel, after, upto, limit, out)
        return out

    @staticmethod
    def _take(
        rows: list[Row],
        account_id: int,
        channel: str,
        after: int,
        upto: int,
        limit: int,
        out: list[StreamRecord],
    ) -> bool:
        """Add the channel's messages after ``after`` in ``rows`` to ``out``; return True once
        ``out`` is full or has reached ``upto``."""
        for _, blob in rows:
            for kind, stream_seq, event in _messages_decoder.decode(blob):
                if CHANNEL_OF_KIND[Kind(kind)] != channel or stream_seq <= after:
                    continue
                if stream_seq > upto or len(out) == limit:
                    return True
                record = _event_decoders[kind].decode(event)
                out.append(StreamRecord(account_id, channel, stream_seq, Kind(kind), record))
        return len(out) == limit

    def _first_indexed_after(self, account_id: int, column: str, after: int) -> int | None:
        """The seq of the account's first indexed row where ``column`` (a stream's streamSeq
        after the row) is above ``after``: the row with message ``after + 1``; None if that
        is not indexed yet. A binary search over the rows' seqs, along which ``column`` never
        goes down; each probe is one index seek. (``column`` is one of COLUMNS.)"""
        db = self._db
        last = db.one(
            f"SELECT seq, {column} FROM account_events_index WHERE account_id = ?"
            " ORDER BY seq DESC LIMIT 1",
            (account_id,),
        )
        if last is None or last[1] <= after:
            return None
        probe = (
            f"SELECT seq, {column} FROM account_events_index WHERE account_id = ? AND seq >= ?"
            " ORDER BY seq LIMIT 1"
        )
        # Invariant: ``found`` is a row above ``after``; rows before ``low`` are not, and there
        # is no row between ``high`` and ``found``.
        found, low, high = int(last[0]), 0, int(last[0]) - 1
        while low <= high:
            middle = (low + high) // 2
            row = db.one(probe, (account_id, middle))
            assert row is not None  # ``found`` is at or after ``middle``
            seq, value = int(row[0]), int(row[1])
            if seq > high:  # no row from middle to high
                high = middle - 1
            elif value > after:
                found, high = seq, middle - 1
            else:
                low = seq + 1
        return found
