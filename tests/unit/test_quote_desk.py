"""The quote desk's hand-assembled frames are byte for byte what msgspec would encode."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from tradews.api.messages import Quote
from tradews.app.demo import DEMO_INSTRUMENTS
from tradews.codecs.jsonrpc import encode_notification
from tradews.domain.instrument import Instrument
from tradews.domain.pricing import NoQuote, TwoWayPrice
from tradews.session.quote_desk import QUOTE_METHOD, QuoteDesk, QuoteStream, stream_tokens


class FixedPrice:
    """A pricer with one price for everything and no orders in any book."""

    def __init__(self, price: TwoWayPrice) -> None:
        self.fixed = price

    def price(
        self, instrument: Instrument, lots: int, exclude: int | None, now_ms: int
    ) -> TwoWayPrice | NoQuote:
        return self.fixed

    def accounts_in(self, symbol: str) -> frozenset[int]:
        return frozenset()


@given(
    inst=st.sampled_from(DEMO_INSTRUMENTS),
    buy=st.integers(1, 10**12),
    spread=st.integers(0, 10**6),
    size=st.integers(1, 1000),
    now=st.integers(0, 2**41),
    pulses=st.integers(1, 3),
)
def test_frames_equal_msgspec_encoding(
    inst: Instrument, buy: int, spread: int, size: int, now: int, pulses: int
) -> None:
    price = TwoWayPrice(buy, buy + spread)
    desk: QuoteDesk[str] = QuoteDesk(
        ttl_ms=3000, refresh_ms=1000, new_stream_token=lambda: "abc", pricer=FixedPrice(price)
    )
    lots = max(inst.min_size / inst.lot, 1) * size
    if inst.max_size is not None:
        lots = min(lots, inst.max_size / inst.lot)
    stream = QuoteStream("conn", "q42", 7, inst, int(lots))
    frames = [desk.open(stream, price, now)]
    for n in range(1, pulses):
        frames.extend(f for _, f in desk.due(now + n * 3000, lambda c: True))
    assert len(frames) == pulses  # a quote at open, then one per pulse as each expires
    for seq, frame in enumerate(frames, start=1):
        t = now + (seq - 1) * 3000
        expected = Quote(
            subscription="q42",
            symbol=inst.symbol,
            buy_price=inst.format_price(buy),
            sell_price=inst.format_price(buy + spread),
            quantity=inst.format_quantity(int(lots)),
            quote_id=f"abc-{seq}",
            valid_until=t + 3000,
            seq=seq,
            timestamp=t,
        )
        assert frame == encode_notification(QUOTE_METHOD, expected)
        json.loads(frame)
    issued = desk.lookup(f"abc-{len(frames)}", now)
    assert issued is not None and issued.account_id == 7 and issued.sell_ticks == buy + spread


@given(
    inst=st.sampled_from(DEMO_INSTRUMENTS),
    buy=st.integers(1, 10**12),
    spread=st.integers(0, 10**6),
    now=st.integers(0, 2**41),
    sub=st.sampled_from(["q1", "q42", "q123456789"]),
    later_seq=st.integers(1, 2**40),
)
def test_protobuf_frames_equal_the_generated_encoding(
    inst: Instrument, buy: int, spread: int, now: int, sub: str, later_seq: int
) -> None:
    from tradews.codecs.pb import tradews_pb2 as pb
    from tradews.codecs.protobuf import PROTOBUF

    price = TwoWayPrice(buy, buy + spread)
    desk: QuoteDesk[str] = QuoteDesk(
        ttl_ms=3000, refresh_ms=1000, new_stream_token=lambda: "abc", pricer=FixedPrice(price)
    )
    stream = QuoteStream("conn", sub, 7, inst, inst.quote_size_lots, PROTOBUF)
    frames = [(1, now, desk.open(stream, price, now))]
    stream.seq = later_seq - 1  # a later quote, its seq and id of any length
    ((_, frame),) = desk.due(now + 3000, lambda c: True)
    frames.append((later_seq, now + 3000, frame))
    for seq, t, frame in frames:
        expected = pb.ServerMessage(
            market_data=pb.MarketUpdate(
                quote=pb.Quote(
                    subscription=sub, symbol=inst.symbol, buy_price=inst.format_price(buy),
                    sell_price=inst.format_price(buy + spread), quantity=stream.quantity_text,
                    quote_id=f"abc-{seq}", valid_until=t + 3000, seq=seq, timestamp=t,
                )
            )
        )  # fmt: skip
        assert frame == expected.SerializeToString()


class BookLike:
    """A pricer whose book holds orders of ``owners``: a requester among them is priced without
    its own orders (here: a different price), everyone else shares one. Counts its calls."""

    def __init__(self, owners: set[int]) -> None:
        self.owners = owners
        self.calls: list[int | None] = []
        self.refusal: NoQuote | None = None

    def price(
        self, instrument: Instrument, lots: int, exclude: int | None, now_ms: int
    ) -> TwoWayPrice | NoQuote:
        self.calls.append(exclude)
        if self.refusal is not None:
            return self.refusal
        return TwoWayPrice(100, 110) if exclude is None else TwoWayPrice(100 - exclude, 120)

    def accounts_in(self, symbol: str) -> set[int]:
        return self.owners


BTC = DEMO_INSTRUMENTS[0]
TWO_WAY = TwoWayPrice(100, 110)


def quote_of(frame: bytes) -> dict[str, object]:
    params = json.loads(frame)["params"]
    assert isinstance(params, dict)
    return params


def test_only_accounts_with_orders_in_the_book_get_a_price_of_their_own() -> None:
    pricer = BookLike(owners={7})
    desk: QuoteDesk[str] = QuoteDesk(
        ttl_ms=3000, refresh_ms=1000, new_stream_token=stream_tokens(b"k"), pricer=pricer
    )
    for conn, account in (("a", 7), ("b", 8), ("c", 9), ("d", 7)):
        stream = QuoteStream(conn, f"q-{conn}", account, BTC, 10)
        price = desk.price(BTC, 10, account, 0)
        assert isinstance(price, TwoWayPrice)
        desk.open(stream, price, 0)
    pricer.calls.clear()
    frames = dict(desk.due(5_000, lambda c: True))
    # One price shared by every account without orders, one for the account with some.
    assert sorted(pricer.calls, key=str) == [7, None]
    assert {c: quote_of(f)["buyPrice"] for c, f in frames.items()} == {
        "a": "0.93", "b": "1.00", "c": "1.00", "d": "0.93",
    }  # fmt: skip


def test_no_quote_while_the_desk_cannot_and_the_stream_resumes_without_a_gap() -> None:
    pricer = BookLike(owners=set())
    desk: QuoteDesk[str] = QuoteDesk(
        ttl_ms=3000, refresh_ms=1000, new_stream_token=stream_tokens(b"k"), pricer=pricer
    )
    stream = QuoteStream("a", "q1", 8, BTC, 10)
    desk.open(stream, TwoWayPrice(100, 110), 0)
    pricer.refusal = NoQuote("the desk cannot quote", desk_limit=True)
    assert list(desk.due(2_500, lambda c: True)) == []  # owed a refresh, but nothing to send
    assert list(desk.due(9_000, lambda c: True)) == []
    pricer.refusal = None
    ((conn, frame),) = desk.due(9_100, lambda c: True)
    assert quote_of(frame)["seq"] == 2


def test_quote_ids_are_a_stream_token_and_the_stream_seq() -> None:
    desk: QuoteDesk[str] = QuoteDesk(
        ttl_ms=3000,
        refresh_ms=1000,
        new_stream_token=stream_tokens(b"k"),
        pricer=FixedPrice(TwoWayPrice(100, 110)),
    )
    ids: dict[str, list[str]] = {"a": [], "b": []}
    streams = [QuoteStream(c, f"q-{c}", 8, BTC, 10) for c in ids]
    for s in streams:
        ids[s.conn].append(str(quote_of(desk.open(s, TwoWayPrice(100, 110), 0))["quoteId"]))
    for n in range(1, 4):
        for conn, frame in desk.due(n * 5_000, lambda c: True):
            ids[conn].append(str(quote_of(frame)["quoteId"]))
    token_a, token_b = (i[0].rpartition("-")[0] for i in ids.values())
    assert token_a != token_b and len(token_a) == 16
    assert ids["a"] == [f"{token_a}-{n}" for n in range(1, 5)]
    assert ids["b"] == [f"{token_b}-{n}" for n in range(1, 5)]
    terms = desk.lookup(ids["b"][-1], 15_000)
    assert terms is not None and terms.sell_ticks == 110


def test_stream_tokens_never_repeat_and_depend_on_the_key() -> None:
    tokens = stream_tokens(b"key one")
    seen = [tokens() for _ in range(20_000)]
    assert len(set(seen)) == len(seen)
    assert all(len(t) == 16 and int(t, 16) >= 0 for t in seen)
    # Consecutive streams' tokens look unrelated, and another key gives other tokens.
    assert sorted(seen[:100]) != seen[:100]
    other = stream_tokens(b"key two")
    assert [other() for _ in range(100)] != seen[:100]


def test_a_quote_is_known_by_its_exact_id_until_a_lifetime_past_expiry() -> None:
    desk: QuoteDesk[str] = QuoteDesk(
        ttl_ms=3000, refresh_ms=1000, new_stream_token=lambda: "tok", pricer=FixedPrice(TWO_WAY)
    )
    stream = QuoteStream("a", "q1", 8, BTC, 10)
    desk.open(stream, TWO_WAY, 0)
    # Kept one lifetime past its expiry (accepting it then says "expired"), then forgotten.
    assert desk.lookup("tok-1", 6_000) is not None
    assert desk.lookup("tok-1", 6_001) is None
    for n in range(1, 4):  # seq 2, 3, 4 at 3 s, 6 s, 9 s
        assert len(list(desk.due(n * 3_000, lambda c: True))) == 1
    terms = desk.lookup("tok-3", 9_000)
    assert terms is not None
    assert (terms.quote_id, terms.account_id, terms.symbol, terms.quantity_lots) == (
        "tok-3", 8, "BTC_USD", 10,
    )  # fmt: skip
    assert (terms.buy_ticks, terms.sell_ticks, terms.valid_until) == (100, 110, 9_000)
    # Only the id as it was sent: no other spelling of the seq, no other token, no seq not sent.
    for other in ("tok-03", "tok-+3", "tok- 3", "tok-3 ", "tok-3.0", "tok-0", "tok-5", "tok-",
                  "tok", "-3", "tak-3", "tok-\u0663", "tok-" + "9" * 5000, "tok--3"):  # fmt: skip
        assert desk.lookup(other, 9_000) is None, other
    assert desk.lookup("tok-4", 15_000) is not None
    assert desk.lookup("tok-4", 15_001) is None


def test_a_closed_streams_quotes_stay_known_until_they_are_forgotten() -> None:
    desk: QuoteDesk[str] = QuoteDesk(
        ttl_ms=3000,
        refresh_ms=1000,
        new_stream_token=stream_tokens(b"k"),
        pricer=FixedPrice(TWO_WAY),
    )
    stream = QuoteStream("a", "q1", 8, BTC, 10)
    quote_id = str(quote_of(desk.open(stream, TWO_WAY, 0))["quoteId"])
    desk.close(stream)
    assert desk.stream_count == 0
    assert list(desk.due(1_000, lambda c: True)) == []
    assert desk.lookup(quote_id, 5_000) is not None
    # The next pulse after the quote is a lifetime past expiry lets go of the stream entirely.
    assert list(desk.due(6_001, lambda c: True)) == []
    assert desk.lookup(quote_id, 5_000) is None
