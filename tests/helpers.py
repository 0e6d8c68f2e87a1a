"""Waiting in tests: on an event where there is one, else polling a condition with a deadline
that fails loudly with the last value seen. Never a bare sleep, never a silent timeout."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TypeVar

from tradews.client import Client, Notification

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    what: str,
    timeout: float = 10.0,
    interval: float = 0.05,
) -> T:
    """Call ``probe`` until ``done(value)`` holds and return that value; fail the test with the
    last value seen if it does not hold within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if done(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not reached within {timeout} s; last seen: {value!r}")
        await asyncio.sleep(interval)


async def server_time_passes(client: Client, at_ms: int) -> None:
    """Wait until the server's clock (``time``) reads ``at_ms`` or later: expiries are judged by
    the server's clock, not this process's."""
    await eventually(client.time, lambda now: now >= at_ms, what=f"server time >= {at_ms}")


async def take(
    client: Client, n: int, methods: set[str], *, timeout: float = 5
) -> list[Notification]:
    """The next ``n`` notifications whose method is one of ``methods`` (others are skipped);
    each must arrive within ``timeout`` seconds."""
    out: list[Notification] = []
    while len(out) < n:
        try:
            note = await client.next_notification(timeout=timeout)
        except TimeoutError:
            got = [(o.method, o.params) for o in out]
            raise AssertionError(
                f"{len(out)} of {n} {sorted(methods)} notifications in time: {got}"
            ) from None
        if note.method in methods:
            out.append(note)
    return out


def balance(rows: list[dict[str, str]], asset: str) -> tuple[Decimal, Decimal]:
    """``(available, locked)`` of ``asset`` in a ``balances`` reply (zero if absent)."""
    for row in rows:
        if row["asset"] == asset:
            return Decimal(row["available"]), Decimal(row["locked"])
    return Decimal(0), Decimal(0)
