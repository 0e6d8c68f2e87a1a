"""Bytes per message and encode + decode cost of both wire encodings, in process.

For three representative server messages (a quote, a book delta of three levels, an order
acknowledgement) it encodes each with the server's codec for JSON-RPC and for protobuf, then
decodes it as a client would (JSON: msgspec into Python objects; protobuf: ServerMessage
parsing into the generated classes), and reports the frame size and the time per message.

    .venv/bin/python bench/codec_cost.py [--n 50000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import msgspec

from tradews.api.messages import BookUpdate, OrderState, Quote
from tradews.codecs.base import Call
from tradews.codecs.jsonrpc import JSON
from tradews.codecs.pb import tradews_pb2 as pb
from tradews.codecs.protobuf import PROTOBUF
from tradews.codecs.push import Push

QUOTE = Quote(
    subscription="q12", symbol="BTC_USD", buy_price="64991.93", sell_price="65056.97",
    quantity="1.0000", quote_id="fa7004d1-2a", valid_until=1763779229123, seq=1042,
    timestamp=1763779226123,
)  # fmt: skip
BOOK = BookUpdate(
    channel="book.BTC_USD", type="delta", symbol="BTC_USD", seq=228_114, prev_seq=228_113,
    bids=[["65012.83", "1.0000"], ["64999.82", "0"]], asks=[["65051.86", "2.5000"]],
    checksum=3_054_418_871,
)  # fmt: skip
ORDER = OrderState(
    order_id=91_233, client_order_id="my-order-42", symbol="ETH_USD", side="buy", type="limit",
    price="3001.00", quantity="2.500", filled_quantity="0.000", remaining_quantity="2.500",
    time_in_force="GTC", post_only=False, status="new", reason=None, created_at=1763779226123,
    updated_at=1763779226123, seq=228_115,
)  # fmt: skip

json_decoder = msgspec.json.Decoder()


def per_message_us(fn: Callable[[], object], n: int) -> float:
    for _ in range(1000):
        fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    args = parser.parse_args()
    cases = {
        "quote": lambda codec: codec.push(Push("quote", QUOTE)),
        "book delta": lambda codec: codec.push(Push("book", BOOK)),
        "order ack": lambda codec: codec.pack(
            [codec.result(Call("order_place", None, 17), ORDER)], False
        ),
    }
    decode = {
        "json": json_decoder.decode,
        "proto": pb.ServerMessage.FromString,
    }
    print(
        f"{'message':<12} {'encoding':<9} {'bytes':>6} {'encode us':>10} {'decode us':>10} {'total us':>9}"
    )
    for label, make in cases.items():
        for name, codec in (("json", JSON), ("proto", PROTOBUF)):
            frame = make(codec)
            encode_us = per_message_us(lambda make=make, codec=codec: make(codec), args.n)
            decode_us = per_message_us(lambda frame=frame, name=name: decode[name](frame), args.n)
            print(f"{label:<12} {name:<9} {len(frame):>6} {encode_us:>10.2f} {decode_us:>10.2f} "
                  f"{encode_us + decode_us:>9.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
