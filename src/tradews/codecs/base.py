"""What every wire codec provides, and the call shapes they decode to.

A codec turns one WebSocket frame into :class:`Frame` (calls with their params, or an error to
answer on its own) and turns replies and pushes back into frames. The session above it speaks
only in method names, params structs and API result structs, so no trading or session logic
knows which encoding a client chose.
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from tradews.api.errors import ApiError
from tradews.codecs.push import Push

Id = str | int | float | None


# Structs, not frozen dataclasses: one Call and one Frame are made per request, and a frozen
# dataclass's __init__ (object.__setattr__ per field) takes five times as long. ``gc=False``:
# they hold only the request's own values, which never refer back to them.


class Call(msgspec.Struct, frozen=True, gc=False):
    """One well-formed request. ``params`` is ``msgspec.Raw`` JSON, a ``dict`` in the API's
    camelCase field names, or None; the session converts it to the method's params struct.
    ``is_notification`` calls must get no reply."""

    method: str
    params: Any
    id: Id
    is_notification: bool = False


class Invalid(msgspec.Struct, frozen=True):
    """A message that is not a valid request: answer with ``error``."""

    error: ApiError
    id: Id = None


class Frame(msgspec.Struct, frozen=True, gc=False):
    """What one frame held. ``items`` is empty only when ``error`` is set."""

    items: list[Call | Invalid]
    is_batch: bool
    error: ApiError | None = None


class Codec(Protocol):
    name: str
    binary: bool  # True: frames are binary; False: text

    def decode(self, data: bytes, *, max_batch: int) -> Frame: ...

    def result(self, call: Call, value: Any) -> Any:
        """A success reply to ``call`` (not yet bytes: see :meth:`pack`)."""
        ...

    def error(self, call_id: Id, err: ApiError) -> Any: ...

    def with_budget(self, reply: Any, budget: Any) -> Any:
        """``reply`` (from :meth:`result` or :meth:`error`) carrying the caller's remaining
        rate-limit budget (an ``api.messages.RateBudget``)."""
        ...

    def pack(self, replies: list[Any], is_batch: bool) -> bytes: ...

    def push(self, push: Push) -> bytes: ...
