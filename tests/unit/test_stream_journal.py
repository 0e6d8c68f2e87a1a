"""The private streams in SQLite: numbered as their batch is written, read back, pruned."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec
import pytest

from tradews.adapters.sqlite_journal import (
    PRUNE_ROWS,
    JournalEntry,
    SqliteJournal,
    SqliteStreamArchive,
)
from tradews.adapters.sqlite_store import SqliteStore
from tradews.engine.events import BalanceChanged, BookChanged, OrderUpdated, TradeExecuted
from tradews.session.streams import BALANCES, ORDERS, Kind, StreamRecord

MAKER, TAKER = 1, 2


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "streams.db"
    SqliteStore(path).close()  # the schema
    return path


def order(seq: int, account: int, order_id: int, status: str = "new") -> OrderUpdated:
    return OrderUpdated(
        seq, account, order_id, None, "BTC_USD", 1, 1, 100, 10, 10, 1, False, status, None, 5, 6
    )


def balance(seq: int, account: int, available: int) -> BalanceChanged:
    return BalanceChanged(seq, account, "USD", available, 0)


def trade(seq: int) -> TradeExecuted:
    return TradeExecuted(seq, seq, "BTC_USD", 100, 10, 1, 1, 2, MAKER, TAKER, 3, 4, None, 7)


def entry(seq: int, *events: object, at: int = 1_000) -> JournalEntry:
    return JournalEntry(seq, at, b"command", events)


def numbers(records: list[list[StreamRecord]]) -> list[list[tuple[int, str, int]]]:
    return [[(r.account_id, r.channel, r.stream_seq) for r in rs] for rs in records]


def test_records_are_numbered_per_stream_in_order_and_numbering_survives_a_restart(
    db: Path,
) -> None:
    journal = SqliteJournal(db)
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
    again = SqliteJournal(db)  # a restart: the counters come back from the table
    assert numbers(again.append([entry(4, order(4, MAKER, 1, "cancelled"))])) == [
        [(MAKER, ORDERS, 3)]
    ]
    again.close()


def test_a_batch_that_fails_to_write_gives_no_number_away(db: Path) -> None:
    journal = SqliteJournal(db)
    journal.append([entry(1, balance(1, MAKER, 1))])
    with pytest.raises(sqlite3.IntegrityError):
        journal.append([entry(1, balance(1, MAKER, 2))])  # seq 1 is taken: nothing is written
    assert numbers(journal.append([entry(2, balance(2, MAKER, 3))])) == [[(MAKER, BALANCES, 2)]]
    journal.close()


def test_stored_records_read_back_as_they_were_written(db: Path) -> None:
    journal = SqliteJournal(db)
    written = journal.append([entry(1, order(1, MAKER, 1)), entry(2, trade(2))])
    archive = SqliteStreamArchive(db)
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


def test_a_stream_is_found_from_any_message_indexed_or_not(db: Path) -> None:
    """A stream's message is found among the account's rows by a binary search over the index,
    whatever lies between (other accounts' rows, rows of the account's other stream), and in
    the tail the index does not cover yet."""
    journal = SqliteJournal(db)
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
    archive = SqliteStreamArchive(db)
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


def test_pruning_goes_a_chunk_at_a_time_and_numbers_never_go_back(db: Path) -> None:
    journal = SqliteJournal(db)
    old = PRUNE_ROWS + 10
    journal.append([entry(n, balance(n, MAKER, n), at=n) for n in range(1, old + 1)])
    journal.append([entry(old + 1, order(old + 1, TAKER, 1), at=2)])
    journal.append([entry(old + 2, balance(old + 2, TAKER, 1), at=10_000)])
    archive = SqliteStreamArchive(db)
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
    again = SqliteJournal(db)
    assert numbers(again.append([entry(old + 3, balance(old + 3, MAKER, 0))])) == [
        [(MAKER, BALANCES, old + 1)]
    ]
    assert numbers(again.append([entry(old + 4, order(old + 4, TAKER, 1, "cancelled"))])) == [
        [(TAKER, ORDERS, 2)]
    ]
    again.close()
    archive.close()


def test_a_table_pruned_empty_goes_on_from_where_its_streams_stood(db: Path) -> None:
    journal = SqliteJournal(db)
    journal.append([entry(n, balance(n, MAKER, n), at=n) for n in range(1, 4)])
    journal.append([], maintain=5_000)  # everything goes: new rows number from 1 again
    journal.append([entry(4, balance(4, MAKER, 4), at=6_000)])
    archive = SqliteStreamArchive(db)
    assert archive.head(MAKER, BALANCES, 4) == 4 and archive.floor(MAKER, BALANCES) == 3
    assert [r.stream_seq for r in archive.read(MAKER, BALANCES, 3, 4, 10)] == [4]  # the tail
    journal.append([], maintain=5_000)  # indexed, not pruned
    assert [r.stream_seq for r in archive.read(MAKER, BALANCES, 3, 4, 10)] == [4]
    assert archive.head(MAKER, BALANCES, 4) == 4
    archive.close()
    journal.close()
