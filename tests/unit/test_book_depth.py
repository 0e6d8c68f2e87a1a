"""Book channels by depth: a subscriber that applies its snapshot and deltas holds exactly the
book's best ``depth`` levels, whatever happens deeper, and each message is built once."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tradews.api.checksum import book_checksum
from tradews.app.catalog import Catalog
from tradews.app.demo import DEMO_INSTRUMENTS
from tradews.codecs.push import Push
from tradews.engine.events import BookChanged
from tradews.session.view import BUY, SELL, TradingView

INST = DEMO_INSTRUMENTS[0]  # BTC_USD: tick 0.01, lot 0.0001


def view_with(bids: dict[int, int], asks: dict[int, int]) -> TradingView[str]:
    view: TradingView[str] = TradingView(Catalog(DEMO_INSTRUMENTS))
    view.seed_book(INST.symbol, bids.items(), asks.items(), seq=1)
    return view


class Replica:
    """What a client holds: levels in ticks and lots, from snapshot and deltas."""

    def __init__(self) -> None:
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.seq = 0

    def apply(self, body: Any) -> None:
        ticks = {INST.format_price(t): t for t in range(1, 2000)}
        lots = {INST.format_quantity(q): q for q in range(0, 200)}
        if body.type == "snapshot":
            self.bids, self.asks = {}, {}
        else:
            assert body.prev_seq == self.seq, "a gap"
        for side, levels in ((self.bids, body.bids), (self.asks, body.asks)):
            for price, quantity in levels:
                if lots[quantity]:
                    side[ticks[price]] = lots[quantity]
                else:
                    side.pop(ticks[price], None)
        self.seq = body.seq
        bids = sorted(self.bids.items(), reverse=True)
        asks = sorted(self.asks.items())
        assert body.checksum == book_checksum(bids, asks)


def top(levels: dict[int, int], depth: int, best_high: bool) -> dict[int, int]:
    return dict(sorted(levels.items(), reverse=best_high)[:depth])


def test_deep_changes_send_nothing_and_one_message_serves_all() -> None:
    bids = {1000 - i: 1 for i in range(30)}
    asks = {1001 + i: 1 for i in range(30)}
    view = view_with(bids, asks)
    key = view.channel_key("book.BTC_USD", 1, 10)
    first = view.subscribe(key, 1, "a", 0)
    second = view.subscribe(key, 2, "b", 0)
    assert first[0] is second[0]  # built once for both
    assert len(first[0].body.bids) == 10 and len(first[0].body.asks) == 10
    sent: list[tuple[str, Push]] = []

    def send(conn: str, push: Push) -> None:
        sent.append((conn, push))

    view.apply([BookChanged(2, INST.symbol, BUY, 975, 5)], send)  # 26th bid: not seen
    assert sent == []
    view.apply([BookChanged(3, INST.symbol, SELL, 1001, 0)], send)  # best ask gone
    assert [conn for conn, _ in sent] == ["a", "b"] and sent[0][1] is sent[1][1]
    delta = sent[0][1].body
    assert delta.prev_seq == 1 and delta.seq == 3
    assert delta.asks == [[INST.format_price(1011), "0.0001"], [INST.format_price(1001), "0.0000"]]


changes = st.lists(
    st.tuples(st.sampled_from([BUY, SELL]), st.integers(1, 60), st.integers(0, 5)),
    min_size=1,
    max_size=8,
)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([10, 25]), st.lists(changes, min_size=1, max_size=25))
def test_a_replica_holds_exactly_the_best_levels(depth: int, steps: list[list[Any]]) -> None:
    # Bids at 1..60, asks at 1001..1060: the sides never cross. Every other price starts
    # empty, so new levels land between held ones and exactly at the depth's edge.
    bids = {p: 1 for p in range(2, 61, 2)}
    asks = {1000 + p: 1 for p in range(1, 60, 2)}
    view = view_with(dict(bids), dict(asks))
    key = view.channel_key("book.BTC_USD", 1, depth)
    replica = Replica()
    for push in view.subscribe(key, 1, "c", 0):
        replica.apply(push.body)

    def send(conn: str, push: Push) -> None:
        replica.apply(push.body)

    seq = 1
    for step in steps:
        seq += 1
        events = []
        for side, offset, quantity in step:
            price = offset if side == BUY else 1000 + offset
            book = bids if side == BUY else asks
            if quantity:
                book[price] = quantity
            else:
                book.pop(price, None)
            events.append(BookChanged(seq, INST.symbol, side, price, quantity))
        view.apply(events, send)
        assert replica.bids == top(bids, depth, True)
        assert replica.asks == top(asks, depth, False)


def test_depth_must_be_one_of_the_offered() -> None:
    view = view_with({}, {})
    for depth in (0, 7, 501, -1):
        try:
            view.channel_key("book.BTC_USD", 1, depth)
        except Exception as exc:  # ApiError -32602
            assert "depth must be one of 10, 25, 100, 500" in str(exc.args[0]) + str(
                getattr(exc, "data", "")
            )
        else:
            raise AssertionError(f"depth {depth} was accepted")
    assert Decimal(INST.lot) == Decimal("0.0001")
