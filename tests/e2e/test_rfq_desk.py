"""The RFQ desk under attack, over real sockets: what a client (or two) can do to the book, the
reference price and the house's inventory must never buy anything from the house below the
reference plus the markup, nor sell it anything above the reference minus the markup."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tradews.client import Client, RpcError
from tradews.testing import ServerProcess, run_cli

T = TypeVar("T")

SYMBOL = "BTC_USD"
REFERENCE = Decimal("65000")
MARKUP = Decimal("0.0005")  # the instrument's 5 bps
# The desk's prices with nothing in the book but the requester's own orders: the reference alone.
DESK_BUYS, DESK_SELLS = "64967.50", "65032.50"


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory, encoding: str) -> Iterator[ServerProcess]:
    """A server without --demo: one instrument, an attacker (``mallory``) and an accomplice
    (``mate``), a funded house, and no reference price until a test sets one."""
    db = tmp_path_factory.mktemp(f"desk-{encoding}") / "desk.db"
    run_cli(
        "instrument", "add", SYMBOL, "--base", "BTC", "--quote", "USD",
        "--tick", "0.01", "--lot", "0.0001", "--max-size", "100", db=db,
    )  # fmt: skip
    keys = {}
    for name in ("mallory", "mate"):
        run_cli("account", "create", name, "--tier", "enterprise", db=db)
        keys[name] = run_cli("key", "create", name, "--json", db=db)
        for asset, amount in (("USD", "1000000"), ("BTC", "10")):
            run_cli("deposit", name, asset, amount, "--ref", f"{name}-{asset}", db=db)
    for asset, amount in (("USD", "1000000"), ("BTC", "5")):
        run_cli("deposit", "house", asset, amount, "--ref", f"house-{asset}", db=db)
    args = ("--quote-ttl", "0.9", "--tick-interval", "0.05", "--price-max-age", "10m")
    with ServerProcess.start(db, demo=False, args=args) as proc:
        proc.keys = keys  # type: ignore[attr-defined]
        yield proc


@contextlib.asynccontextmanager
async def trader(desk: ServerProcess, name: str, encoding: str) -> AsyncIterator[Client]:
    """A logged-in client of account ``name``, which has no orders before or after."""
    key = desk.keys[name]  # type: ignore[attr-defined]
    async with await Client.connect(desk.url, encoding=encoding) as client:
        await client.login(key["apiKey"], key["apiSecret"])
        await client.call("order_cancel_all")
        yield client
        await client.call("order_cancel_all")


@pytest.fixture
async def mallory(desk: ServerProcess, encoding: str) -> AsyncIterator[Client]:
    async with trader(desk, "mallory", encoding) as client:
        yield client


@pytest.fixture
async def mate(desk: ServerProcess, encoding: str) -> AsyncIterator[Client]:
    async with trader(desk, "mate", encoding) as client:
        yield client


async def cli(desk: ServerProcess, *args: str, check: bool = True) -> Any:
    """The command line, run off the event loop so that the clients keep reading."""
    return await asyncio.to_thread(run_cli, *args, db=desk.db, check=check)


async def until(probe: Callable[[], Awaitable[T | None]], what: str, timeout: float = 10) -> T:
    """Poll ``probe`` until it returns something other than None; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        got = await probe()
        if got is not None:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def first_quote(client: Client, subscription: str) -> dict[str, Any]:
    while True:
        note = await client.next_notification(timeout=5)
        if note.method == "quote" and note.params["subscription"] == subscription:
            return dict(note.params)


async def quote_or_error(
    client: Client, quantity: str = "1"
) -> tuple[dict[str, Any] | None, RpcError | None]:
    """Ask for a stream and take its first quote, then stop it; or the error."""
    try:
        sub = await client.quote_request(SYMBOL, quantity=quantity)
    except RpcError as exc:
        return None, exc
    quote = await first_quote(client, sub["subscription"])
    await client.quote_cancel(sub["subscription"])
    return quote, None


async def set_reference(desk: ServerProcess, client: Client, price: str, *extra: str) -> None:
    """``tradews price set``, and wait until the running server quotes from it."""
    await cli(desk, "price", "set", SYMBOL, price, *extra)
    ref = Decimal(price)
    expected = (f"{ref * (1 - MARKUP):.2f}", f"{ref * (1 + MARKUP):.2f}")

    async def quoted() -> bool | None:
        quote, _ = await quote_or_error(client)
        return True if quote and (quote["buyPrice"], quote["sellPrice"]) == expected else None

    await until(quoted, f"quotes around the reference {price}")


async def clear_reference(desk: ServerProcess, client: Client) -> RpcError:
    await cli(desk, "price", "clear", SYMBOL, check=False)

    async def refused() -> RpcError | None:
        _, error = await quote_or_error(client)
        return error

    return await until(refused, "the desk to stop quoting")


# The attack ------------------------------------------------------------------------------------


async def rest_own_orders(client: Client) -> None:
    """On an empty book: a sell at 1.00 and a buy at 0.99, which a desk pricing from the whole
    book would quote at about 0.99 / 1.01."""
    await client.place_order(SYMBOL, "sell", "1", price="1.00")
    await client.place_order(SYMBOL, "buy", "1", price="0.99")


async def test_attack_without_a_reference_gets_no_quote(
    desk: ServerProcess, mallory: Client
) -> None:
    await clear_reference(desk, mallory)
    await rest_own_orders(mallory)
    with pytest.raises(RpcError) as info:
        await mallory.quote_request(SYMBOL, quantity="1")
    assert info.value.code == 2003
    assert info.value.message == f"no price for {SYMBOL}: the desk has no reference price for it"


async def test_attack_with_a_reference_is_priced_without_the_attackers_orders(
    desk: ServerProcess, mallory: Client
) -> None:
    await set_reference(desk, mallory, str(REFERENCE))
    await rest_own_orders(mallory)
    sub = await mallory.quote_request(SYMBOL, quantity="1")
    quote = await first_quote(mallory, sub["subscription"])
    assert (quote["buyPrice"], quote["sellPrice"]) == (DESK_BUYS, DESK_SELLS)
    await mallory.call("order_cancel_all")
    bought = await mallory.call("quote_accept", {"quoteId": quote["quoteId"], "side": "buy"})
    assert Decimal(bought["price"]) >= REFERENCE * (1 + MARKUP)
    assert bought["price"] == DESK_SELLS and bought["liquidity"] == "rfq"
    # And the other way round: rest orders, take a fresh quote, cancel, sell to the desk.
    await rest_own_orders(mallory)
    mallory.drain_notifications()
    quote = await first_quote(mallory, sub["subscription"])
    await mallory.call("order_cancel_all")
    sold = await mallory.call("quote_accept", {"quoteId": quote["quoteId"], "side": "sell"})
    assert Decimal(sold["price"]) <= REFERENCE * (1 - MARKUP)
    assert sold["price"] == DESK_BUYS
    await mallory.quote_cancel(sub["subscription"])


# Two accounts colluding ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "side, price, accept, desk_price",
    [("sell", "63700.00", "buy", DESK_SELLS), ("buy", "66300.00", "sell", DESK_BUYS)],
)
async def test_an_accomplices_cheap_asks_or_rich_bids_do_not_help_the_requester(
    desk: ServerProcess, mallory: Client, mate: Client, side: str, price: str, accept: str,
    desk_price: str,
) -> None:  # fmt: skip
    await set_reference(desk, mallory, str(REFERENCE))
    # 2 % from the reference, the client's way: inside the band, so the desk still quotes,
    # and from the reference, not from them.
    await mate.place_order(SYMBOL, side, "5", price=price)
    sub = await mallory.quote_request(SYMBOL, quantity="1")
    quote = await first_quote(mallory, sub["subscription"])
    assert (quote["buyPrice"], quote["sellPrice"]) == (DESK_BUYS, DESK_SELLS)
    await mate.call("order_cancel_all")
    filled = await mallory.call("quote_accept", {"quoteId": quote["quoteId"], "side": accept})
    assert filled["price"] == desk_price
    await mallory.quote_cancel(sub["subscription"])


async def test_a_book_the_accomplice_made_expensive_makes_the_desk_dearer(
    desk: ServerProcess, mallory: Client, mate: Client
) -> None:
    """Where others' orders are worse for the client than the reference, the desk prices from
    them: it never sells below what the book would cost it."""
    await set_reference(desk, mallory, str(REFERENCE))
    await mate.place_order(SYMBOL, "sell", "2", price="66000.00")  # 1.5 % above
    quote, _ = await quote_or_error(mallory)
    assert quote is not None
    assert quote["sellPrice"] == "66033.00" and quote["buyPrice"] == DESK_BUYS


@pytest.mark.parametrize(
    "side, price, book_side",
    [("sell", "60000.00", "asks"), ("buy", "69000.00", "bids"), ("sell", "1.00", "asks")],
)
async def test_a_book_far_from_the_reference_stops_the_desk(
    desk: ServerProcess, mallory: Client, mate: Client, side: str, price: str, book_side: str
) -> None:
    await set_reference(desk, mallory, str(REFERENCE))
    sub = await mallory.quote_request(SYMBOL, quantity="1")
    await first_quote(mallory, sub["subscription"])
    await mate.place_order(SYMBOL, side, "1", price=price)
    with pytest.raises(RpcError) as info:
        await mallory.quote_request(SYMBOL, quantity="1")
    assert info.value.code == 2003
    assert f"order book's {book_side}" in info.value.message
    assert "outside the desk's 5% band" in info.value.message
    # The accomplice's own stream leaves its own orders out: it is quoted from the reference.
    quote, _ = await quote_or_error(mate)
    assert quote is not None and (quote["buyPrice"], quote["sellPrice"]) == (DESK_BUYS, DESK_SELLS)
    # The open stream gets nothing while the book is out of the band, then carries on.
    last = last_seq(mallory, sub["subscription"], 1)
    await mate.call("order_cancel_all")
    quote = await first_quote(mallory, sub["subscription"])
    assert quote["seq"] == last + 1
    await mallory.quote_cancel(sub["subscription"])


def last_seq(client: Client, subscription: str, seen: int) -> int:
    """The highest seq of ``subscription`` among the quotes received and not read (``seen`` if
    none), forgetting them all."""
    seqs = [
        n.params["seq"]
        for n in client.drain_notifications()
        if n.method == "quote" and n.params["subscription"] == subscription
    ]
    return max(seqs, default=seen)


# The reference price ---------------------------------------------------------------------------


async def test_price_set_reaches_a_running_server_and_moves_open_streams(
    desk: ServerProcess, mallory: Client
) -> None:
    await set_reference(desk, mallory, str(REFERENCE))
    sub = await mallory.quote_request(SYMBOL, quantity="1")
    await first_quote(mallory, sub["subscription"])
    await cli(desk, "price", "set", SYMBOL, "66000")

    async def moved() -> dict[str, Any] | None:
        quote = await first_quote(mallory, sub["subscription"])
        return quote if quote["sellPrice"] == "66033.00" else None

    quote = await until(moved, "a quote at the new reference")
    assert quote["buyPrice"] == "65967.00"
    listed = await cli(desk, "price", "list", "--json")
    assert [(p["symbol"], p["price"], p["status"]) for p in listed] == [(SYMBOL, "66000", "fresh")]
    await mallory.quote_cancel(sub["subscription"])


async def test_a_stale_reference_price_is_refused_with_a_clear_error(
    desk: ServerProcess, mallory: Client
) -> None:
    await set_reference(desk, mallory, str(REFERENCE), "--max-age", "3s")

    async def refused() -> RpcError | None:
        _, error = await quote_or_error(mallory)
        return error

    error = await until(refused, "the reference price to go stale")
    assert error.code == 2003
    assert error.message == (
        f"no price for {SYMBOL}: the desk's reference price is stale (older than 3s)"
    )
    listed = await cli(desk, "price", "list", "--json")
    assert [(p["status"], p["maxAgeMs"]) for p in listed] == [("stale", 3000)]
    await set_reference(desk, mallory, str(REFERENCE))  # set again: quoting resumes


# The house's inventory -------------------------------------------------------------------------


async def test_no_quote_the_house_cannot_fill_and_the_stream_resumes_when_funded(
    desk: ServerProcess, mallory: Client
) -> None:
    await set_reference(desk, mallory, str(REFERENCE))
    held = Decimal(next(b["available"] for b in await desk_balances(desk) if b["asset"] == "BTC"))
    with pytest.raises(RpcError) as info:  # more BTC than the house holds
        await mallory.quote_request(SYMBOL, quantity=str(held + 1))
    assert info.value.code == 2008
    assert "inventory" in info.value.message
    sub = await mallory.quote_request(SYMBOL, quantity="1")
    await first_quote(mallory, sub["subscription"])
    # The house is left with half a BTC: no quote for one.
    await cli(desk, "withdraw", "house", "BTC", str(held - Decimal("0.5")), "--ref", "drain")

    async def desk_limited() -> RpcError | None:
        _, error = await quote_or_error(mallory)
        return error if error is not None and error.code == 2008 else None

    await until(desk_limited, "the desk to notice the house's inventory")
    # Quotes sent before that reply have arrived: take the last seq, then nothing more comes.
    last = last_seq(mallory, sub["subscription"], 1)
    await asyncio.sleep(1.5)  # more than a quote's life: a funded desk would have refreshed it
    assert [n for n in mallory.drain_notifications() if n.method == "quote"] == []
    await cli(desk, "deposit", "house", "BTC", "5", "--ref", "refill")
    quote = await first_quote(mallory, sub["subscription"])
    assert quote["seq"] == last + 1  # no gap for the quotes it could not make
    bought = await mallory.call("quote_accept", {"quoteId": quote["quoteId"], "side": "buy"})
    assert bought["price"] == DESK_SELLS
    await mallory.quote_cancel(sub["subscription"])


async def desk_balances(desk: ServerProcess) -> list[dict[str, str]]:
    """The house's balances, as the operator sees them (``GET /state`` has no per-account view;
    the house logs in like anyone)."""
    run = await cli(desk, "key", "create", "house", "--json")
    async with await Client.connect(desk.url) as house:
        await house.login(run["apiKey"], run["apiSecret"])
        rows: list[dict[str, str]] = await house.call("balances")
    return rows


# The command line ------------------------------------------------------------------------------


def test_price_commands(tmp_path: Path) -> None:
    db = tmp_path / "prices.db"
    run_cli(
        "instrument", "add", "ETH_USD", "--base", "ETH", "--quote", "USD",
        "--tick", "0.01", "--lot", "0.001", db=db,
    )  # fmt: skip
    assert run_cli("price", "list", "--json", db=db) == []
    done = run_cli("price", "set", "ETH_USD", "3200.005", "--max-age", "5m", "--json", db=db)
    assert (done["symbol"], done["price"], done["maxAgeMs"], done["status"]) == (
        "ETH_USD", "3200.005", 300_000, "fresh",
    )  # fmt: skip
    run_cli("price", "set", "ETH_USD", "3300", db=db)  # replaces it, with the default max age
    (row,) = run_cli("price", "list", "--json", db=db)
    assert (row["price"], row["maxAgeMs"], row["status"]) == ("3300", None, "fresh")
    table = run_cli("price", "list", db=db)
    assert "ETH_USD" in table.stdout and "3300" in table.stdout and "default" in table.stdout
    cleared = run_cli("price", "clear", "ETH_USD", db=db)
    assert cleared.returncode == 0 and "cleared" in cleared.stdout
    assert run_cli("price", "list", "--json", db=db) == []
    errors = [
        (("price", "set", "DOGE_USD", "1"), "no instrument 'DOGE_USD'"),
        (("price", "set", "ETH_USD", "abc"), "price must be a decimal number"),
        (("price", "set", "ETH_USD", "0"), "price must be greater than zero"),
        (("price", "set", "ETH_USD", "0.001"), "out of range"),
        (("price", "set", "ETH_USD", "1e30"), "out of range"),
        (("price", "set", "ETH_USD", "1." + "0" * 19 + "1"), "at most 18 decimal places"),
        (("price", "set", "ETH_USD", "3300", "--max-age", "soon"), "--max-age must look like"),
        (("price", "clear", "ETH_USD"), "no reference price for 'ETH_USD'"),
    ]
    for args, message in errors:
        failed = run_cli(*args, db=db, check=False)
        assert failed.returncode == 1, args
        assert message in failed.stderr and "Traceback" not in failed.stderr, failed.stderr


def test_serve_refuses_bad_desk_settings(tmp_path: Path) -> None:
    for args, message in [
        (("--rfq-band-bps", "10000"), "--rfq-band-bps must be above 0 and below 10000"),
        (("--rfq-band-bps", "0"), "--rfq-band-bps must be greater than zero"),
        (("--rfq-band-bps", "x"), "--rfq-band-bps must be a decimal number"),
        (("--price-max-age", "forever"), "--price-max-age must look like"),
    ]:
        failed = run_cli("serve", "--port", "0", *args, db=tmp_path / "s.db", check=False)
        assert failed.returncode == 1 and message in failed.stderr, failed.stderr
