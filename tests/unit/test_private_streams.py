"""Private streams without I/O: where replay ends and live begins, buffers, pages, limits.

A fake archive stands in for storage. It may hold records the streams have not published yet,
as the database does between a batch's commit and its publication."""

from __future__ import annotations

import pytest

from tradews.api.errors import ApiError, ErrorCode
from tradews.app.catalog import Catalog
from tradews.app.demo import DEMO_INSTRUMENTS
from tradews.codecs.push import Push
from tradews.engine.events import BalanceChanged, TradeExecuted
from tradews.session.streams import (
    BALANCES,
    ORDERS,
    Kind,
    PrivateStreams,
    StreamRecord,
    message,
    records_of,
)

CATALOG = Catalog(DEMO_INSTRUMENTS)
ACCOUNT = 7


def record(n: int, account: int = ACCOUNT, engine_seq: int | None = None) -> StreamRecord:
    """The ``n``th message of ``account``'s balances stream (its available balance is ``n``)."""
    seq = n if engine_seq is None else engine_seq
    event = BalanceChanged(seq, account, "USD", n, 0)
    return StreamRecord(account, BALANCES, n, Kind.BALANCE, event)


class FakeArchive:
    def __init__(self) -> None:
        self.rows: list[StreamRecord] = []
        self.pruned = 0  # the last streamSeq no longer kept

    def head(self, account_id: int, channel: str, upto_seq: int) -> int:
        seqs = [
            r.stream_seq
            for r in self.rows
            if (r.account_id, r.channel) == (account_id, channel) and r.event.seq <= upto_seq
        ]
        return max(seqs, default=self.pruned)

    def floor(self, account_id: int, channel: str) -> int:
        return self.pruned

    def read(
        self, account_id: int, channel: str, after: int, upto: int, limit: int
    ) -> list[StreamRecord]:
        rows = [
            r
            for r in self.rows
            if (r.account_id, r.channel) == (account_id, channel) and after < r.stream_seq <= upto
        ]
        return rows[:limit]

    def prune(self, through: int) -> None:
        self.rows = [r for r in self.rows if r.stream_seq > through]
        self.pruned = through


class Conn:
    def __init__(self, name: str) -> None:
        self.name = name
        self.writable = True
        self.got: list[int] = []  # streamSeq of every message sent to it, in order
        self.failed: str | None = None

    def __repr__(self) -> str:
        return self.name


def send(conn: Conn, push: Push) -> None:
    conn.got.append(push.body.stream_seq)


def fail(conn: Conn, reason: str) -> None:
    conn.failed = reason


def pump_all(streams: PrivateStreams[Conn], budget: int = 8) -> int:
    """Pump until nothing writable is left to send; return how many pump calls it took."""
    calls = 1
    while streams.pump(lambda c: c.writable, send, fail, budget=budget):
        calls += 1
        assert calls < 1000, "the pump never finishes"
    return calls


def publish(streams: PrivateStreams[Conn], *numbers: int, archive: FakeArchive | None = None):
    for n in numbers:
        r = record(n)
        if archive is not None and r not in archive.rows:
            archive.rows.append(r)  # stored (committed) before it is published
        streams.publish(r, send)


def subscribe(streams: PrivateStreams[Conn], conn: Conn, since: int | None, sub: int = 1) -> int:
    return streams.subscribe(BALANCES, ACCOUNT, sub, conn, since)


def test_a_fresh_subscriber_gets_what_is_published_after_its_reply_once() -> None:
    streams: PrivateStreams[Conn] = PrivateStreams(CATALOG)
    woken: list[int] = []
    streams.wake = lambda: woken.append(1)
    publish(streams, 1, 2, 3)
    conn = Conn("a")
    assert subscribe(streams, conn, None) == 3  # the reply says where the stream stands
    publish(streams, 4)  # published while the reply waits for its batch: not sent yet
    assert conn.got == []
    streams.start(BALANCES, ACCOUNT, 1)  # the reply went out
    assert woken and streams.behind == 1
    pump_all(streams)
    publish(streams, 5)
    assert conn.got == [4, 5] and streams.behind == 0


def test_a_subscriber_already_at_the_head_goes_live_at_once() -> None:
    streams: PrivateStreams[Conn] = PrivateStreams(CATALOG)
    streams.wake = lambda: pytest.fail("nothing to catch up on")
    publish(streams, 1, 2)
    conn = Conn("a")
    assert subscribe(streams, conn, 2) == 2
    streams.start(BALANCES, ACCOUNT, 1)
    publish(streams, 3)
    assert conn.got == [3]


def test_resuming_from_the_buffer_interleaved_with_live_messages_misses_and_doubles_nothing() -> (
    None
):
    streams: PrivateStreams[Conn] = PrivateStreams(CATALOG, page=3)
    publish(streams, *range(1, 11))
    conn = Conn("a")
    assert subscribe(streams, conn, 4) == 10
    streams.start(BALANCES, ACCOUNT, 1)
    next_live = 11
    while streams.pump(lambda c: True, send, fail, budget=1):
        publish(streams, next_live)  # the stream moves on between pages
        next_live += 1
    publish(streams, next_live)
    assert conn.got == list(range(5, next_live + 1))


def test_storage_serves_what_the_buffer_no_longer_holds_and_stops_at_the_published_head() -> None:
    archive = FakeArchive()
    streams: PrivateStreams[Conn] = PrivateStreams(CATALOG, archive, buffer_per_stream=2, page=4)
    publish(streams, *range(1, 9), archive=archive)
    # Records 9 and 10 are committed but not yet published: no subscriber may see them yet.
    archive.rows += [record(9), record(10)]
    conn = Conn("a")
    assert subscribe(streams, conn, 0) == 8
    streams.start(BALANCES, ACCOUNT, 1)
    pump_all(streams)
    assert conn.got == list(range(1, 9))
    publish(streams, 9, 10)  # their batch is published: they come live, once
    assert conn.got == list(range(1, 11))


def test_a_head_read_from_storage_ignores_records_of_unpublished_commands() -> None:
    archive = FakeArchive()
    archive.rows += [record(n) for n in range(1, 6)]  # engine seqs 1..5
    streams: PrivateStreams[Conn] = PrivateStreams(CATALOG, archive)
    streams.seq = 3  # the view has published up to engine seq 3; 4 and 5 are being written
    assert streams.head(BALANCES, ACCOUNT) == 3
    conn = Conn("a")
    subscribe(streams, conn, None)
    streams.start(BALANCES, ACCOUNT, 1)
    publish(streams, 4, 5)
    assert conn.got == [4, 5]


def test_since_ahead_of_the_stream_or_no_longer_kept_is_refused() -> None:
    archive = FakeArchive()
    streams: PrivateStreams[Conn] = PrivateStreams(CATALOG, archive, buffer_per_stream=3)
    publish(streams, *range(1, 11), archive=archive)
    archive.prune(5)
    conn = Conn("a")
    with pytest.raises(ApiError) as ahead:
        subscribe(streams, conn, 11)
    assert ahead.value.code is ErrorCode.INVALID_PARAMS and "ahead" in str(ahead.value.data)
    with pytest.raises(ApiError) as gone:
        subscribe(streams, conn, 4)  # 5 is no longer kept
    assert gone.value.code is ErrorCode.RESUME_UNAVAILABLE
    assert "from 6 to 10" in gone.value.message
    assert streams.subscriber_count() == 0
    subscribe(streams, conn, 5)  # 6 onwards is kept
    streams.start(BALANCES, ACCOUNT, 1)
    pump_all(streams)
    assert conn.got == [6, 7, 8, 9, 10]


def test_without_storage_only_the_buffer_can_be_resumed_from() -> None:
    streams: PrivateStreams[Conn] = PrivateStreams(CATALOG, buffer_per_stream=3)
    publish(streams, *range(1, 6))
    with pytest.raises(ApiError) as gone:
        subscribe(streams, Conn("a"), 1)
    assert gone.value.code is ErrorCode.RESUME_UNAVAILABLE
    conn = Conn("b")
    subscribe(streams, conn, 2)  # 3, 4, 5 are in the buffer
    streams.start(BALANCES, ACCOUNT, 1)
    pump_all(streams)
    assert conn.got == [3, 4, 5]


def test_pages_go_only_to_writable_readers_a_few_at_a_time_in_turn() -> None:
    streams: PrivateStreams[Conn] = PrivateStreams(CATALOG, page=2)
    publish(streams, *range(1, 11))
    slow, fast, other = Conn("slow"), Conn("fast"), Conn("other")
    for sub, conn in enumerate((slow, fast, other), 1):
        subscribe(streams, conn, 0, sub)
        streams.start(BALANCES, ACCOUNT, sub)
    slow.writable = False

    def writable(c: Conn) -> bool:
        return c.writable

    # A page per reader and pump call; nothing for a reader that does not read.
    assert streams.pump(writable, send, fail, budget=3) is True
    assert (slow.got, fast.got, other.got) == ([], [1, 2], [1, 2])
    # With room for one page per call, they take turns.
    assert streams.pump(writable, send, fail, budget=1) is True
    assert (fast.got, other.got) == ([1, 2, 3, 4], [1, 2])
    assert streams.pump(writable, send, fail, budget=1) is True
    assert (fast.got, other.got) == ([1, 2, 3, 4], [1, 2, 3, 4])
    pump_all(streams)
    assert fast.got == other.got == list(range(1, 11)) and slow.got == []
    assert streams.behind == 1
    slow.writable = True
    pump_all(streams)
    assert slow.got == list(range(1, 11)) and streams.behind == 0


def test_messages_pruned_during_a_catch_up_end_that_subscriber() -> None:
    archive = FakeArchive()
    streams: PrivateStreams[Conn] = PrivateStreams(CATALOG, archive, buffer_per_stream=1, page=2)
    publish(streams, *range(1, 8), archive=archive)
    conn = Conn("a")
    subscribe(streams, conn, 0)
    streams.start(BALANCES, ACCOUNT, 1)
    streams.pump(lambda c: True, send, fail, budget=1)
    assert conn.got == [1, 2]
    archive.prune(4)  # 3 and 4 go before they were sent
    pump_all(streams)
    assert conn.got == [1, 2] and conn.failed is not None and "after 2" in conn.failed
    assert streams.behind == 0 and streams.subscriber_count() == 0
    assert streams.unsubscribe(BALANCES, ACCOUNT, 1) is False


def test_unsubscribing_before_the_reply_is_sent_leaves_nothing_behind() -> None:
    streams: PrivateStreams[Conn] = PrivateStreams(CATALOG)
    publish(streams, 1, 2)
    conn = Conn("a")
    subscribe(streams, conn, 0)
    assert streams.unsubscribe(BALANCES, ACCOUNT, 1) is True
    streams.start(BALANCES, ACCOUNT, 1)  # the reply goes out after all: nothing to start
    publish(streams, 3)
    assert conn.got == [] and streams.subscriber_count() == 0 and streams.behind == 0


def test_buffers_are_bounded_in_all_and_the_least_recently_used_stream_goes_first() -> None:
    archive = FakeArchive()
    streams: PrivateStreams[Conn] = PrivateStreams(
        CATALOG, archive, buffer_per_stream=4, buffer_total=10
    )
    for account in (1, 2, 3):
        for n in range(1, 5):
            r = record(n, account)
            archive.rows.append(r)
            streams.publish(r, send)
    # 12 records do not fit in 10: the buffer of account 1, used least recently, went whole.
    counts = {key: len(buffer) for key, buffer in streams._buffers.items()}
    assert counts == {"balances#2": 4, "balances#3": 4} and streams._buffered == 8
    conn = Conn("a")
    streams.subscribe(BALANCES, 1, 1, conn, 0)  # from storage instead
    streams.start(BALANCES, 1, 1)
    pump_all(streams)
    assert conn.got == [1, 2, 3, 4]


def test_a_number_out_of_line_is_not_served_from_the_buffer() -> None:
    archive = FakeArchive()
    streams: PrivateStreams[Conn] = PrivateStreams(CATALOG, archive)
    publish(streams, 1, 2, archive=archive)
    publish(streams, 5, archive=archive)  # a bug elsewhere: 3 and 4 never published
    conn = Conn("a")
    subscribe(streams, conn, 1)  # the buffer was dropped: storage is asked, and has a hole
    streams.start(BALANCES, ACCOUNT, 1)
    pump_all(streams)
    assert conn.got == [] and conn.failed is not None


def test_one_account_on_both_sides_of_a_trade_gets_both_fills_in_order() -> None:
    trade = TradeExecuted(
        9, 1, "BTC_USD", 6_500_000, 100, 1, 11, 12, ACCOUNT, ACCOUNT, 5, 10, None, 1_000
    )
    records = list(records_of([trade]))
    assert [(a, c, k) for a, c, k, _ in records] == [
        (ACCOUNT, ORDERS, Kind.FILL_AS_MAKER),
        (ACCOUNT, ORDERS, Kind.FILL_AS_TAKER),
    ]
    fills = [
        message(StreamRecord(ACCOUNT, ORDERS, n, kind, trade), CATALOG).body
        for n, (_, _, kind, _) in enumerate(records, 1)
    ]
    assert [(f.liquidity, f.order_id, f.side, f.stream_seq) for f in fills] == [
        ("maker", 11, "sell", 1),
        ("taker", 12, "buy", 2),
    ]
