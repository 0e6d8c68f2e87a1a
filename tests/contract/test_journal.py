"""The journal's contract, on every backend: commands in order, snapshots, msg_id lookups, the
read models written with them, and the private streams (numbered as their batch is written,
read back, pruned)."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import pytest

from tradews.adapters.registry import open_archive, open_journal, open_store
from tradews.adapters.sql import IntegrityError
from tradews.adapters.sql_journal import PRUNE_ROWS, READ_PAGE, JournalEntry, SqlJournal
from tradews.adapters.sql_store import Operations
from tradews.engine.commands import Deposit, encoder
from tradews.engine.events import BalanceChanged, BookChanged, OrderUpdated, TradeExecuted
from tradews.session.streams import BALANCES, ORDERS, Kind, StreamRecord

MAKER, TAKER = 1, 2


@pytest.fixture
def db(db_url: str) -> str:
    return db_url


@pytest.fixture
def journal(db_url: str) -> Iterator[SqlJournal]:
    j = open_journal(db_url)
    yield j
    j.close()


def order(
    seq: int, account: int, order_id: int, status: str = "new", client_order_id: str | None = None
) -> OrderUpdated:
    return OrderUpdated(
        seq, account, order_id, client_order_id, "BTC_USD", 1, 1, 100, 10, 10, 1, False, status,
        None, 5, 6,
    )  # fmt: skip


def balance(seq: int, account: int, available: int) -> BalanceChanged:
    return BalanceChanged(seq, account, "USD", available, 0)


def trade(seq: int) -> TradeExecuted:
    return TradeExecuted(seq, seq, "BTC_USD", 100, 10, 1, 1, 2, MAKER, TAKER, 3, 4, None, 7)


def entry(seq: int, *events: object, at: int = 1_000, msg_id: str | None = None) -> JournalEntry:
    return JournalEntry(seq, at, deposit(seq), events, msg_id=msg_id)


def deposit(seq: int) -> bytes:
    return encoder.encode(Deposit(seq, MAKER, "USD", seq, f"ref-{seq}"))


def numbers(records: list[list[StreamRecord]]) -> list[list[tuple[int, str, int]]]:
    return [[(r.account_id, r.channel, r.stream_seq) for r in rs] for rs in records]


def test_records_are_numbered_per_stream_in_order_and_numbering_survives_a_restart(
    db: str,
) -> None:
    journal = open_journal(db)
    first = journal.append(
        [
            entry(
                1, order(1, MAKER, 1), balance(1, MAKER, 90), BookChanged(1, "BTC_USD", 1, 100, 10)
            ),
            entry(2, order(2, TAKER, 2), trade(2), balance(2, TAKER, 5), balance(2, MAKER, 80)),
        ]
    )
    assert numbers(first) == [
        [(MAKER, ORDERS, 1), (MAKER, BALANCES, 1)],
        [(TAKER, ORDERS, 1), (MAKER, ORDERS, 2), (TAKER, ORDERS, 2), (TAKER, BALANCES, 1),
         (MAKER, BALANCES, 2)],
    ]  # fmt: skip
    assert journal.append([entry(3)]) == [[]]  # a command with no private message
    journal.close()
    again = open_journal(db)  # a restart: the counters come back from the table
    assert numbers(again.append([entry(4, order(4, MAKER, 1, "cancelled"))])) == [
        [(MAKER, ORDERS, 3)]
    ]
    again.close()


def test_a_batch_that_fails_to_write_gives_no_number_away(db: str) -> None:
    journal = open_journal(db)
    journal.append([entry(1, balance(1, MAKER, 1))])
    with pytest.raises(IntegrityError):
        journal.append([entry(1, balance(1, MAKER, 2))])  # seq 1 is taken: nothing is written
    assert numbers(journal.append([entry(2, balance(2, MAKER, 3))])) == [[(MAKER, BALANCES, 2)]]
    journal.close()


def test_stored_records_read_back_as_they_were_written(db: str) -> None:
    journal = open_journal(db)
    written = journal.append([entry(1, order(1, MAKER, 1)), entry(2, trade(2))])
    archive = open_archive(db)
    read = archive.read(MAKER, ORDERS, 0, 10, 10)
    assert [(r.stream_seq, r.kind) for r in read] == [(1, Kind.ORDER), (2, Kind.FILL_AS_MAKER)]
    assert [msgspec.structs.astuple(r.event) for r in read] == [
        msgspec.structs.astuple(r.event) for rs in written for r in rs if r.account_id == MAKER
    ]
    assert [r.stream_seq for r in archive.read(MAKER, ORDERS, 1, 10, 10)] == [2]
    assert archive.read(MAKER, ORDERS, 0, 1, 10)[-1].stream_seq == 1  # up to ``upto`` only
    # A head read as of engine seq 1 does not count the records of command 2.
    assert (archive.head(MAKER, ORDERS, 1), archive.head(MAKER, ORDERS, 2)) == (1, 2)
    assert archive.head(TAKER, BALANCES, 2) == 0
    archive.close()
    journal.close()


def test_a_stream_is_found_from_any_message_indexed_or_not(db: str) -> None:
    """A stream's message is found among the account's rows by a binary search over the index,
    whatever lies between (other accounts' rows, rows of the account's other stream), and in
    the tail the index does not cover yet."""
    journal = open_journal(db)
    seq = 0
    for n in range(1, 301):
        seq += 1 + n % 7  # other accounts' commands in between
        events: list[object] = [balance(seq, MAKER, n)]
        if n % 3:  # some commands touch only the balances stream
            events.insert(0, order(seq, MAKER, n))
        if n % 5 == 0:
            events.append(balance(seq, TAKER, n))
        journal.append([entry(seq, *events)])
        if n == 200:
            journal.append([], maintain=0)  # index the first 200; the rest is the tail
    archive = open_archive(db)
    orders = archive.head(MAKER, ORDERS, seq)
    assert (orders, archive.head(MAKER, BALANCES, seq)) == (200, 300)
    assert archive.head(MAKER, BALANCES, seq - 1) == 299  # a bound in the tail
    for channel, head in ((ORDERS, orders), (BALANCES, 300)):
        for after in range(head + 1):
            got = archive.read(MAKER, channel, after, head, 4)
            expected = list(range(after + 1, min(after + 4, head) + 1))
            assert [r.stream_seq for r in got] == expected, (channel, after)
            assert all(r.channel == channel for r in got)
    assert [r.stream_seq for r in archive.read(TAKER, BALANCES, 0, 100, 100)] == list(range(1, 61))
    journal.append([], maintain=0)  # all indexed now: the same answers
    assert [r.stream_seq for r in archive.read(MAKER, BALANCES, 250, 300, 100)] == list(
        range(251, 301)
    )
    archive.close()
    journal.close()


def test_pruning_goes_a_chunk_at_a_time_and_numbers_never_go_back(db: str) -> None:
    journal = open_journal(db)
    old = PRUNE_ROWS + 10
    journal.append([entry(n, balance(n, MAKER, n), at=n) for n in range(1, old + 1)])
    journal.append([entry(old + 1, order(old + 1, TAKER, 1), at=2)])
    journal.append([entry(old + 2, balance(old + 2, TAKER, 1), at=10_000)])
    archive = open_archive(db)
    journal.append([], maintain=5_000)
    assert archive.floor(MAKER, BALANCES) == PRUNE_ROWS  # as many rows as one prune takes
    assert archive.floor(TAKER, ORDERS) == 0 and journal.prune_pending
    journal.append([], maintain=5_000)
    assert archive.floor(MAKER, BALANCES) == old  # the rest
    assert (archive.floor(TAKER, ORDERS), archive.floor(TAKER, BALANCES)) == (1, 0)
    assert not journal.prune_pending
    assert archive.read(MAKER, BALANCES, 0, old, 10) == []
    assert archive.read(TAKER, ORDERS, 0, 1, 10) == []
    assert [r.stream_seq for r in archive.read(TAKER, BALANCES, 0, 5, 5)] == [1]  # newer: kept
    # Every message of MAKER's stream is gone; its head and its next number are still known.
    assert archive.head(MAKER, BALANCES, old + 2) == old
    journal.append([], maintain=5_000)  # nothing more to prune
    assert archive.floor(TAKER, BALANCES) == 0
    journal.close()
    again = open_journal(db)
    assert numbers(again.append([entry(old + 3, balance(old + 3, MAKER, 0))])) == [
        [(MAKER, BALANCES, old + 1)]
    ]
    assert numbers(again.append([entry(old + 4, order(old + 4, TAKER, 1, "cancelled"))])) == [
        [(TAKER, ORDERS, 2)]
    ]
    again.close()
    archive.close()


def test_a_table_pruned_empty_goes_on_from_where_its_streams_stood(db: str) -> None:
    journal = open_journal(db)
    journal.append([entry(n, balance(n, MAKER, n), at=n) for n in range(1, 4)])
    journal.append([], maintain=5_000)  # everything goes: new rows number from 1 again
    journal.append([entry(4, balance(4, MAKER, 4), at=6_000)])
    archive = open_archive(db)
    assert archive.head(MAKER, BALANCES, 4) == 4 and archive.floor(MAKER, BALANCES) == 3
    assert [r.stream_seq for r in archive.read(MAKER, BALANCES, 3, 4, 10)] == [4]  # the tail
    journal.append([], maintain=5_000)  # indexed, not pruned
    assert [r.stream_seq for r in archive.read(MAKER, BALANCES, 3, 4, 10)] == [4]
    assert archive.head(MAKER, BALANCES, 4) == 4
    archive.close()
    journal.close()


# Commands, snapshots, msg_ids, read models ---------------------------------------------------


def test_commands_read_back_in_order_from_any_point(journal: SqlJournal) -> None:
    assert journal.last_seq() == 0 and list(journal.read()) == []
    journal.append([entry(n) for n in range(1, 4)])
    journal.append([entry(n) for n in range(4, READ_PAGE + 10)])  # more than a page
    assert journal.last_seq() == READ_PAGE + 9
    seqs = [seq for seq, _ in journal.read()]
    assert seqs == list(range(1, READ_PAGE + 10))
    assert [(seq, c.ref) for seq, c in journal.read(READ_PAGE + 7)] == [
        (READ_PAGE + 8, f"ref-{READ_PAGE + 8}"), (READ_PAGE + 9, f"ref-{READ_PAGE + 9}"),
    ]  # fmt: skip


def test_snapshots_keep_the_newest_three(journal: SqlJournal) -> None:
    assert journal.latest_snapshot() is None
    for seq in (10, 20, 30, 40):
        journal.save_snapshot(seq, seq * 100, f"hash-{seq}", bytes([seq]) * 3)
    journal.save_snapshot(40, 4001, "hash-40b", b"again")  # the same seq again: replaced
    assert journal.latest_snapshot() == (40, "hash-40b", b"again")
    (count,) = journal._db.one("SELECT COUNT(*) FROM snapshots") or (0,)
    assert count == 3
    journal.append([entry(1)], (1, 1, "hash-1", b"old"))  # an older one is kept, not the newest
    assert journal.latest_snapshot() == (40, "hash-40b", b"again")


def test_msg_ids_are_unique_and_looked_up_with_their_reply(journal: SqlJournal) -> None:
    journal.append(
        [
            JournalEntry(1, 1, deposit(1), [], msg_id="m-1", reply=b"\x00reply-1"),
            JournalEntry(2, 1, deposit(2), [], msg_id="m-2"),
            JournalEntry(3, 1, deposit(3), []),
        ]
    )
    assert journal.lookup_msg_ids([]) == {}
    assert journal.lookup_msg_ids(["m-1", "m-2", "m-3", "m-1"]) == {
        "m-1": (1, b"\x00reply-1"), "m-2": (2, None),
    }  # fmt: skip
    with pytest.raises(IntegrityError):  # a msg_id journaled twice is refused, whole batch
        journal.append([entry(4), entry(5, msg_id="m-1")])
    assert journal.last_seq() == 3
    many = [f"m-{n}" for n in range(1, 1300)]  # more than one statement's worth
    assert set(journal.lookup_msg_ids(many)) == {"m-1", "m-2"}


def test_read_models_are_written_with_the_batch(db: str, journal: SqlJournal) -> None:
    store = open_store(db)
    ops = Operations(store)
    inbox_id = ops.inbox_add(deposit(1), 5)
    journal.append(
        [
            JournalEntry(
                1, 7, deposit(1), [order(1, MAKER, 11, client_order_id="c-11")],
                inbox_id=inbox_id, inbox_result='{"ok": true}',
            ),
            entry(2, order(2, MAKER, 11, "filled", "c-11"), order(2, TAKER, 12), trade(2)),
            entry(3, trade(3)),
        ]
    )  # fmt: skip
    assert ops.inbox_outcome(inbox_id) == '{"ok": true}' and ops.inbox_pending() == []
    closed = ops.closed_order(MAKER, 11, None)
    assert closed is not None and (closed.status, closed.seq, closed.post_only) == (
        "filled", 2, False,
    )  # fmt: skip
    assert ops.closed_order(MAKER, None, "c-11") == closed
    assert ops.closed_order(TAKER, 11, None) is None  # another account's order
    assert ops.closed_order(MAKER, None, "c-none") is None
    assert [t.trade_id for t in ops.trades_of(MAKER, symbol=None, before=None, limit=10)] == [3, 2]
    assert [t.trade_id for t in ops.trades_of(TAKER, symbol="BTC_USD", before=3, limit=10)] == [2]
    assert ops.trades_of(TAKER, symbol="ETH_USD", before=None, limit=10) == []
    assert ops.trades_of(MAKER, symbol=None, before=None, limit=1)[0] == trade(3)
    assert [t.trade_id for t in ops.trades_since(7)] == [2, 3]
    store.close()
