"""A server push (a stream message) that each codec encodes at most once, however many
connections it goes to."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Push:
    """``kind`` names the stream ("quote", "book", "orders", ...) and is the JSON-RPC
    notification method; ``body`` is the API struct. ``encoded(codec)`` caches per codec."""

    __slots__ = ("_cache", "body", "kind")

    def __init__(self, kind: str, body: Any) -> None:
        self.kind = kind
        self.body = body
        self._cache: dict[str, bytes] = {}

    def encoded(self, name: str, encode: Callable[[Push], bytes]) -> bytes:
        data = self._cache.get(name)
        if data is None:
            data = self._cache[name] = encode(self)
        return data
