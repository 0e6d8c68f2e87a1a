"""The quote desk's hand-assembled frames are byte for byte what msgspec would encode."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from tradews.api.messages import Quote
from tradews.app.demo import DEMO_INSTRUMENTS
from tradews.codecs.jsonrpc import encode_notification
from tradews.domain.instrument import Instrument
from tradews.domain.pricing import TwoWayPrice
from tradews.session.quote_desk import QUOTE_METHOD, QuoteDesk, QuoteStream


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
    ids = iter(f"abc-{n:x}" for n in range(1, 100))
    desk: QuoteDesk[str] = QuoteDesk(
        ttl_ms=3000, refresh_ms=1000, new_quote_id=lambda: next(ids), pricer=lambda i, q: price
    )
    lots = max(inst.min_size / inst.lot, 1) * size
    if inst.max_size is not None:
        lots = min(lots, inst.max_size / inst.lot)
    stream = QuoteStream("conn", "q42", 7, inst, int(lots))
    frames = [desk.open(stream, now)]
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
            quote_id=f"abc-{seq:x}",
            valid_until=t + 3000,
            seq=seq,
            timestamp=t,
        )
        assert frame == encode_notification(QUOTE_METHOD, expected)
        json.loads(frame)
    issued = desk.lookup(f"abc-{len(frames):x}", now)
    assert issued is not None and issued.account_id == 7 and issued.sell_ticks == buy + spread


@given(
    inst=st.sampled_from(DEMO_INSTRUMENTS),
    buy=st.integers(1, 10**12),
    spread=st.integers(0, 10**6),
    now=st.integers(0, 2**41),
    sub=st.sampled_from(["q1", "q42", "q123456789"]),
)
def test_protobuf_frames_equal_the_generated_encoding(
    inst: Instrument, buy: int, spread: int, now: int, sub: str
) -> None:
    from tradews.codecs.pb import tradews_pb2 as pb
    from tradews.codecs.protobuf import PROTOBUF

    price = TwoWayPrice(buy, buy + spread)
    desk: QuoteDesk[str] = QuoteDesk(
        ttl_ms=3000, refresh_ms=1000, new_quote_id=lambda: "abc-1", pricer=lambda i, q: price
    )
    stream = QuoteStream("conn", sub, 7, inst, inst.quote_size_lots, PROTOBUF)
    frame = desk.open(stream, now)
    expected = pb.ServerMessage(
        market_data=pb.MarketUpdate(
            quote=pb.Quote(
                subscription=sub, symbol=inst.symbol, buy_price=inst.format_price(buy),
                sell_price=inst.format_price(buy + spread), quantity=stream.quantity_text,
                quote_id="abc-1", valid_until=now + 3000, seq=1, timestamp=now,
            )
        )
    )  # fmt: skip
    assert frame == expected.SerializeToString()
