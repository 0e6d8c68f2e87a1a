"""Waiting in tests: on an event where there is one, else polling a condition with a deadline
that fails loudly with the last value seen. Never a bare sleep, never a silent timeout."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

from tradews.client import Client, Notification
from tradews.testing import run_cli_many

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


def funded_accounts(db: Path | str, names: Iterable[str]) -> dict[str, dict[str, str]]:
    """ETH_USD (tick 0.01, lot 0.001) and, per name, an enterprise account with an API key and
    10,000,000 USD and 10,000 ETH; all made before any server runs, so the deposits take the
    offline path (the command's process is the engine for one command). Returns the keys by
    name."""
    names = list(names)
    commands: list[tuple[str, ...]] = [
        ("instrument", "add", "ETH_USD", "--base", "ETH", "--quote", "USD",
         "--tick", "0.01", "--lot", "0.001"),
    ]  # fmt: skip
    for name in names:
        commands.append(("account", "create", name, "--tier", "enterprise"))
        commands.append(("key", "create", name, "--json"))
        for asset, amount in (("USD", "10000000"), ("ETH", "10000")):
            commands.append(("deposit", name, asset, amount, "--ref", f"{name}-{asset}", "--json"))
    done = run_cli_many(*commands, db=db)
    keys = {}
    for args, out in zip(commands, done, strict=True):
        if args[:2] == ("key", "create"):
            keys[args[2]] = out
        elif args[0] == "deposit":
            assert out["ok"] and out["via"] == "offline", out
    return keys


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """A plain GET: (status, body), whatever the status."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def readyz(base_url: str) -> tuple[int, bytes]:
    """``GET /readyz`` of a server (its ws:// or http:// URL), off the event loop."""
    return await asyncio.to_thread(http_get, base_url.replace("ws://", "http://") + "/readyz")


def rfq_desk(db: Path, *instrument: str, trader: str = "alice") -> dict[str, str]:
    """A database with BTC_USD listed (``instrument``: more `instrument add` options), a funded
    house and one enterprise trader with no funds; returns the trader's key."""
    done = run_cli_many(
        ("instrument", "add", "BTC_USD", "--base", "BTC", "--quote", "USD",
         "--tick", "0.01", "--lot", "0.0001", "--max-size", "100", *instrument),
        ("account", "create", trader, "--tier", "enterprise"),
        ("key", "create", trader, "--json"),
        *(("deposit", "house", asset, amount, "--ref", f"house-{asset}")
          for asset, amount in (("USD", "10000000"), ("BTC", "100"))),
        db=db,
    )  # fmt: skip
    key: dict[str, str] = done[2]
    return key
