"""In-process micro-benchmark of one quote pulse: ``QuoteDesk.due`` over N streams, no sockets.

It isolates what tradews does in Python per quote (pricing lookup, formatting, encoding), which
``quote_fanout.py`` measures together with the kernel's cost of sending. Prints microseconds per
quote for the whole of ``due()`` and for its parts, and for a hand-written lower bound that
builds the same bytes from a per-pulse template.

    .venv/bin/python bench/quote_desk_micro.py [--streams 1000] [--pulses 200]

To measure a commit rather than the working tree, put an export of it first on PYTHONPATH
(``quote_fanout.py --tradews-ref`` does the same for the server).
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from tradews.api.messages import Quote
from tradews.app.demo import DEMO_INSTRUMENTS, start_ticks
from tradews.codecs.jsonrpc import encode_notification
from tradews.domain import pricing
from tradews.domain.instrument import Instrument
from tradews.domain.pricing import TwoWayPrice
from tradews.domain.random_walk import RandomWalk
from tradews.session import quote_desk
from tradews.session.quote_desk import QuoteDesk, QuoteStream

# Versions differ in how a desk takes prices and makes quote ids; this runs against any of them.
PER_STREAM_IDS = "new_stream_token" in inspect.signature(QuoteDesk).parameters


def reference_price(reference: Fraction, inst: Instrument) -> TwoWayPrice:
    if hasattr(pricing, "rfq_prices"):
        price = pricing.rfq_prices(None, None, reference, inst.spread_bps)
        assert isinstance(price, TwoWayPrice)
        return price
    return pricing.quote_prices(reference, inst.spread_bps)  # type: ignore[attr-defined]


def id_source() -> Callable[[], str]:
    if PER_STREAM_IDS:
        return quote_desk.stream_tokens(b"bench")  # type: ignore[no-any-return]
    from tradews.app import server

    return server.quote_id_factory()  # type: ignore[attr-defined,no-any-return]


class ReferencePricer:
    """The desk's pricing over an empty book: the reference alone."""

    def __init__(self, reference: list[Fraction]) -> None:
        self.reference = reference

    def price(self, instrument: Instrument, lots: int, exclude: int | None, now_ms: int) -> Any:
        return reference_price(self.reference[0], instrument)

    def accounts_in(self, symbol: str) -> frozenset[int]:
        return frozenset()


def make_desk(inst: Instrument, reference: list[Fraction]) -> QuoteDesk[object]:
    """A desk pricing ``inst`` around ``reference[0]``, whichever way this version takes prices."""
    kwargs: dict[str, Any] = {"ttl_ms": 3000, "refresh_ms": 1000}
    params = inspect.signature(QuoteDesk).parameters
    if PER_STREAM_IDS:
        kwargs["new_stream_token"] = id_source()
        kwargs["pricer"] = ReferencePricer(reference)
    else:
        kwargs["new_quote_id"] = id_source()
        if "pricer" in params:
            kwargs["pricer"] = lambda instrument, lots: reference_price(reference[0], instrument)
    return QuoteDesk(**kwargs)


def open_stream(
    desk: QuoteDesk[object], stream: QuoteStream[object], reference: Fraction, now: int
) -> None:
    if PER_STREAM_IDS:
        desk.open(stream, reference_price(reference, stream.instrument), now)
    else:
        desk.open(stream, now)  # type: ignore[call-arg]


def per_quote_us(fn: Callable[[], object], quotes: int, pulses: int) -> float:
    start = time.perf_counter()
    for _ in range(pulses):
        fn()
    return (time.perf_counter() - start) / (quotes * pulses) * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--pulses", type=int, default=200)
    args = parser.parse_args(argv)
    n, pulses = args.streams, args.pulses

    inst = next(i for i in DEMO_INSTRUMENTS if i.symbol == "BTC_USD")
    walk = RandomWalk(start_ticks(inst), seed=1, volatility=0.02)
    reference = [walk.price]
    desk = make_desk(inst, reference)
    set_reference = getattr(desk, "set_reference", None)
    now = [time.time_ns() // 1_000_000]

    def step() -> None:
        reference[0] = walk.step(0.0002)
        now[0] += 1
        if set_reference is not None:
            set_reference(inst.symbol, reference[0])

    step()
    for i in range(n):
        stream = QuoteStream(object(), f"q{i + 1}", 1, inst, inst.quote_size_lots)
        open_stream(desk, stream, reference[0], now[0])
    # What the server calls each pulse: per connection where the desk groups by connection.
    due = getattr(desk, "due_per_connection", desk.due)

    def pulse() -> None:
        step()
        for _conn, _frames in due(now[0], lambda conn: True):
            pass

    sent = sum(1 for _ in desk.due(now[0] + 10_000, lambda conn: True))
    assert sent == n, f"expected a quote per stream, got {sent}"
    results: dict[str, float] = {}
    results["QuoteDesk.due, whole (per quote)"] = per_quote_us(pulse, n, pulses)
    results["  step + reference only (per quote)"] = per_quote_us(step, n, pulses)
    if "codec" in inspect.signature(QuoteStream).parameters:
        from tradews.codecs.protobuf import PROTOBUF

        proto_desk = make_desk(inst, reference)
        proto_due = getattr(proto_desk, "due_per_connection", proto_desk.due)
        for i in range(n):
            stream = QuoteStream(object(), f"q{i + 1}", 1, inst, inst.quote_size_lots, PROTOBUF)
            open_stream(proto_desk, stream, reference[0], now[0])

        def proto_pulse() -> None:
            step()
            for _conn, _frames in proto_due(now[0], lambda conn: True):
                pass

        results["QuoteDesk.due, protobuf (per quote)"] = per_quote_us(proto_pulse, n, pulses)

    price = reference_price(reference[0], inst)
    new_id = id_source()
    results["  Instrument.format_price x2"] = per_quote_us(
        lambda: (inst.format_price(price.buy_ticks), inst.format_price(price.sell_ticks)), 1, 50_000
    )
    what = "stream token (once per stream)" if PER_STREAM_IDS else "quote id"
    results[f"  {what}"] = per_quote_us(new_id, 1, 50_000)
    buy, sell = inst.format_price(price.buy_ticks), inst.format_price(price.sell_ticks)
    results["  Quote(...) + encode_notification"] = per_quote_us(
        lambda: encode_notification(
            "quote",
            Quote(
                subscription="q1",
                symbol=inst.symbol,
                buy_price=buy,
                sell_price=sell,
                quantity="1.0000",
                quote_id="0123abcd-1",
                valid_until=now[0] + 3000,
                seq=1,
                timestamp=now[0],
            ),
        ),
        1,
        50_000,
    )

    # A lower bound for the same bytes: prices formatted and the common part encoded once per
    # pulse, then one bytes formatting per stream for subscription, quote id and seq.
    subs = [f"q{i + 1}".encode() for i in range(n)]
    seqs = [0] * n
    counter = itertools.count(1)

    def template_pulse() -> None:
        step()
        p = reference_price(reference[0], inst)
        t = now[0]
        head = b'{"jsonrpc":"2.0","method":"quote","params":{"subscription":"'
        middle = (
            f'","symbol":"{inst.symbol}","buyPrice":"{inst.format_price(p.buy_ticks)}",'
            f'"sellPrice":"{inst.format_price(p.sell_ticks)}","quantity":"1.0000","quoteId":"'
        ).encode()
        tail = f',"timestamp":{t}}}}}'.encode()
        valid = f'","validUntil":{t + 3000},"seq":'.encode()
        for i in range(n):
            seqs[i] += 1
            b"%s%s%s0123abcd-%x%s%d%s" % (
                head,
                subs[i],
                middle,
                next(counter),
                valid,
                seqs[i],
                tail,
            )

    results["hand-written template, whole (per quote)"] = per_quote_us(template_pulse, n, pulses)

    print(f"{n} streams of BTC_USD, {pulses} pulses, price moving every pulse")
    for name, us in results.items():
        print(f"{name:<45} {us:6.2f} µs")


if __name__ == "__main__":
    main()
