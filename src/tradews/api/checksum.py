"""The order book checksum carried by every ``book.SYMBOL`` message.

Computed on the integer-scaled book, so that no decimal formatting can make two equal books
disagree: take the 10 best bids (highest first) and the 10 best asks (lowest first) as
``price_in_ticks:quantity_in_lots`` pairs, join each side with ``,``, join the sides with ``|``,
and take the CRC-32 of the ASCII bytes. For example bids 100.5 x 2 and asks 101.0 x 1.5 at tick
0.5 and lot 0.5 give ``"201:4|202:3"``, CRC-32 ``zlib.crc32(b"201:4|202:3")``.

A client that applies every delta to its copy of the book and gets the same checksum has the
same book as the server; a mismatch means a message was lost: resubscribe for a snapshot.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

DEPTH = 10


def book_checksum(bids: Iterable[tuple[int, int]], asks: Iterable[tuple[int, int]]) -> int:
    """``bids`` best (highest) first, ``asks`` best (lowest) first, both as (ticks, lots)."""

    def side(levels: Iterable[tuple[int, int]]) -> str:
        out: list[str] = []
        for price, qty in levels:
            if len(out) == DEPTH:
                break
            out.append(f"{price}:{qty}")
        return ",".join(out)

    return zlib.crc32(f"{side(bids)}|{side(asks)}".encode())
