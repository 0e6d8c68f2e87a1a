"""The live terminal: ``tradews book``, ``tradews ticker`` and ``tradews order ...``, clients of
a running server built on the SDK (:class:`tradews.client.TradewsClient`), drawn with rich.

Credentials come from the command's flags, else the environment (``TRADEWS_URL``,
``TRADEWS_API_KEY``, ``TRADEWS_API_SECRET``, ``TRADEWS_PRIVATE_KEY``), else a profile file:
``$XDG_CONFIG_HOME/tradews/profile.toml`` (``~/.config/tradews/profile.toml``), or the file
``TRADEWS_PROFILE_FILE`` names, one table per profile (``--profile``, default ``default``)::

    [default]
    url = "ws://127.0.0.1:8765"
    api_key = "tw_..."
    api_secret = "..."          # or private_key = "..." for an ed25519 key
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
import tomllib
from asyncio import FIRST_COMPLETED
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, NoReturn

import msgspec
import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from tradews.api.signing import KeyFormatError
from tradews.client import (
    ClientError,
    Order,
    OrderBook,
    OrderRejected,
    RpcError,
    Ticker,
    Trade,
    TradewsClient,
)

DEFAULT_URL = "ws://127.0.0.1:8765"

out = Console(soft_wrap=True, highlight=False)
BOOK_DEPTHS = (10, 25, 100, 500)  # the depths a book channel follows


def _fail(message: str) -> NoReturn:
    from tradews.app.cli import fail

    fail(message)


# Credentials ----------------------------------------------------------------------------------


def profile_path() -> Path:
    """Where the profile file is looked for."""
    named = os.environ.get("TRADEWS_PROFILE_FILE")
    if named:
        return Path(named)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tradews" / "profile.toml"


@dataclass(frozen=True)
class Credentials:
    url: str
    api_key: str | None
    api_secret: str | None
    private_key: str | None


def resolve_credentials(
    url: str | None,
    key: str | None,
    secret: str | None,
    private_key: str | None,
    profile: str,
    *,
    required: bool = True,
) -> Credentials:
    """Flags and environment (given here, typer reads both) first, then the profile file."""
    path = profile_path()
    table: dict[str, Any] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            _fail(f"cannot read the profile file {path}: {exc}")
        entry = data.get(profile)
        if entry is None and profile != "default":
            _fail(f"the profile file {path} has no [{profile}] table")
        table = entry if isinstance(entry, dict) else {}
    elif profile != "default":
        _fail(f"--profile {profile}: there is no profile file at {path}")

    def pick(value: str | None, name: str) -> str | None:
        if value is not None:
            return value
        found = table.get(name)
        if found is not None and not isinstance(found, str):
            _fail(f"{path}: [{profile}] {name} must be a string")
        return found

    creds = Credentials(
        pick(url, "url") or DEFAULT_URL,
        pick(key, "api_key"),
        pick(secret, "api_secret"),
        pick(private_key, "private_key"),
    )
    if required and creds.api_key is None:
        _fail(f"no API key: give --key, set TRADEWS_API_KEY, or add api_key to {path}")
    if creds.api_key is not None and (creds.api_secret is None) == (creds.private_key is None):
        _fail("give --secret (hmac key) or --private-key (ed25519 key), not both or neither")
    return creds


UrlOption = Annotated[
    str | None, typer.Option(envvar="TRADEWS_URL", help=f"Server URL [default: {DEFAULT_URL}].")
]
KeyOption = Annotated[str | None, typer.Option(envvar="TRADEWS_API_KEY", help="API key.")]
SecretOption = Annotated[
    str | None, typer.Option(envvar="TRADEWS_API_SECRET", help="API secret (hmac keys).")
]
PrivateKeyOption = Annotated[
    str | None,
    typer.Option(
        envvar="TRADEWS_PRIVATE_KEY", help="Private key of an ed25519 key (base64 or PEM)."
    ),
]
ProfileOption = Annotated[
    str,
    typer.Option(
        envvar="TRADEWS_PROFILE",
        help="Table of the profile file (~/.config/tradews/profile.toml) for what is not given.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def run_client(creds: Credentials, body: Callable[[TradewsClient], Awaitable[None]]) -> None:
    """Connect (signed login), run ``body``; errors are one line and exit 1, Ctrl-C exits 0."""

    async def main() -> None:
        try:
            async with TradewsClient(
                creds.url,
                api_key=creds.api_key,
                api_secret=creds.api_secret,
                private_key=creds.private_key,
            ) as tw:
                await body(tw)
        except OrderRejected as exc:
            _fail(f"rejected: {exc.message} ({exc.reason})")
        except RpcError as exc:
            _fail(f"{exc.message} (error {exc.code})")
        except ClientError as exc:
            _fail(str(exc))
        except KeyFormatError as exc:
            _fail(str(exc))
        except OSError as exc:
            _fail(f"cannot connect to {creds.url}: {exc}")

    from tradews.app.cli import _run_async

    with contextlib.suppress(KeyboardInterrupt):
        _run_async(main())


def _text(value: Decimal | None) -> str:
    return "-" if value is None else str(value)


# tradews book --------------------------------------------------------------------------------


async def _show(
    render: Callable[[], Group],
    streams: list[Coroutine[Any, Any, None]],
    changed: asyncio.Event,
) -> None:
    """Draw ``render()`` in place, again whenever ``changed`` is set, while the streams run; the
    error that ends one of them ends the display and is raised."""
    tasks = [asyncio.create_task(stream) for stream in streams]
    try:
        with Live(render(), console=out, auto_refresh=False) as live:
            while True:
                waiter = asyncio.create_task(changed.wait())
                done, _ = await asyncio.wait([waiter, *tasks], return_when=FIRST_COMPLETED)
                if waiter not in done:
                    waiter.cancel()
                    break
                changed.clear()
                live.update(render(), refresh=True)
        for task in tasks:
            if task.done():
                task.result()
    finally:
        for task in tasks:
            task.cancel()


def _ladder(tape: deque[Trade], symbol: str, depth: int, book: OrderBook | None) -> Group:
    ladder = Table(title=f"{symbol} book" + (f"  seq {book.seq}" if book else ""), expand=False)
    ladder.add_column("bid size", justify="right", style="green")
    ladder.add_column("price", justify="right")
    ladder.add_column("ask size", justify="right", style="red")
    if book is not None:
        for level in reversed(book.asks[:depth]):
            ladder.add_row("", str(level.price), str(level.quantity), style="red")
        if book.best_bid and book.best_ask:
            spread = book.best_ask.price - book.best_bid.price
            ladder.add_row("", Text(f"spread {spread}", style="dim"), "")
        for level in book.bids[:depth]:
            ladder.add_row(str(level.quantity), str(level.price), "", style="green")
    trades = Table(title="trades", expand=False)
    for name in ("time", "side", "price", "size"):
        trades.add_column(name, justify="right")
    for t in tape:
        clock = time.strftime("%H:%M:%S", time.localtime(t.timestamp / 1000))
        style = "green" if t.taker_side == "buy" else "red"
        trades.add_row(clock, t.taker_side, str(t.price), str(t.quantity), style=style)
    grid = Table.grid(padding=(0, 4))
    grid.add_row(ladder, trades)
    return Group(grid, Text("Ctrl-C to quit", style="dim"))


def book(
    symbol: str,
    depth: Annotated[int, typer.Option(help="Levels shown on each side.")] = 10,
    tape: Annotated[int, typer.Option(help="Trades shown in the tape.")] = 15,
    url: UrlOption = None,
    key: KeyOption = None,
    secret: SecretOption = None,
    private_key: PrivateKeyOption = None,
    profile: ProfileOption = "default",
) -> None:
    """A live depth ladder of SYMBOL with its trade tape (Ctrl-C to quit)."""
    creds = resolve_credentials(url, key, secret, private_key, profile)

    async def body(tw: TradewsClient) -> None:
        if symbol not in tw.instruments:
            _fail(f"no instrument {symbol} (listed: {', '.join(tw.instruments)})")
        recent: deque[Trade] = deque(maxlen=tape)
        state: dict[str, OrderBook] = {}
        changed = asyncio.Event()

        async def follow_trades() -> None:
            async for trade in tw.trades(symbol):
                recent.appendleft(trade)
                changed.set()

        async def follow_book() -> None:
            follow = next((d for d in BOOK_DEPTHS if d >= depth), BOOK_DEPTHS[-1])
            async for b in tw.book(symbol, depth=follow):
                state["book"] = b
                changed.set()

        render = functools.partial(_ladder, recent, symbol, depth)
        await _show(lambda: render(state.get("book")), [follow_trades(), follow_book()], changed)

    run_client(creds, body)


# tradews ticker ------------------------------------------------------------------------------


def _tickers(rows: dict[str, Ticker | None]) -> Group:
    table = Table(title="tickers", expand=False)
    for name in ("symbol", "last", "bid", "ask", "24h change", "24h %", "24h high", "24h low"):
        table.add_column(name, justify="left" if name == "symbol" else "right")
    table.add_column("24h volume", justify="right")
    for symbol, t in rows.items():
        if t is None:
            table.add_row(symbol, *["-"] * 8)
            continue
        style = "green" if (t.change24h or 0) >= 0 else "red"
        table.add_row(
            symbol, _text(t.last), _text(t.bid), _text(t.ask),
            Text(_text(t.change24h), style=style), Text(_text(t.change24h_pct), style=style),
            _text(t.high24h), _text(t.low24h), str(t.volume24h),
        )  # fmt: skip
    stamp = time.strftime("%H:%M:%S")
    return Group(table, Text(f"updated {stamp}  Ctrl-C to quit", style="dim"))


def ticker(
    symbols: Annotated[
        list[str] | None, typer.Argument(help="Instruments to show (default: all listed).")
    ] = None,
    url: UrlOption = None,
    key: KeyOption = None,
    secret: SecretOption = None,
    private_key: PrivateKeyOption = None,
    profile: ProfileOption = "default",
) -> None:
    """Live tickers of every listed instrument, or of SYMBOLS (Ctrl-C to quit)."""
    creds = resolve_credentials(url, key, secret, private_key, profile)

    async def body(tw: TradewsClient) -> None:
        wanted = symbols or list(tw.instruments)
        unknown = [s for s in wanted if s not in tw.instruments]
        if unknown:
            _fail(f"no instrument {', '.join(unknown)} (listed: {', '.join(tw.instruments)})")
        rows: dict[str, Ticker | None] = dict.fromkeys(wanted)
        changed = asyncio.Event()

        async def follow(symbol: str) -> None:
            async for t in tw.ticker(symbol):
                rows[symbol] = t
                changed.set()

        await _show(lambda: _tickers(rows), [follow(s) for s in wanted], changed)

    run_client(creds, body)


# tradews order ... ---------------------------------------------------------------------------

order_app = typer.Typer(
    help="Your orders on a running server: place, cancel, list (an API key's own account).",
    no_args_is_help=True,
)


def _print_orders(orders: list[Order], as_json: bool) -> None:
    if as_json:
        out.print_json(msgspec.json.encode(orders).decode())
        return
    table = Table()
    for name in ("order", "symbol", "side", "type", "price", "quantity", "filled", "status"):
        table.add_column(name, no_wrap=True)
    for o in orders:
        table.add_row(
            str(o.order_id), o.symbol, o.side, o.type, _text(o.price), str(o.quantity),
            str(o.filled_quantity), o.status + (f" ({o.reason})" if o.reason else ""),
        )  # fmt: skip
    out.print(table)


@order_app.command("place")
def order_place(
    symbol: str,
    side: Annotated[str, typer.Argument(help="buy or sell.")],
    quantity: str,
    price: Annotated[str | None, typer.Option(help="Limit price (none: a market order).")] = None,
    tif: Annotated[str, typer.Option(help="Time in force: GTC, IOC or FOK.")] = "GTC",
    post_only: Annotated[bool, typer.Option(help="Reject it if it would trade at once.")] = False,
    client_order_id: Annotated[str | None, typer.Option(help="Your id for it.")] = None,
    url: UrlOption = None,
    key: KeyOption = None,
    secret: SecretOption = None,
    private_key: PrivateKeyOption = None,
    profile: ProfileOption = "default",
    as_json: JsonOption = False,
) -> None:
    """Place an order; prints it once the server has made it durable."""
    creds = resolve_credentials(url, key, secret, private_key, profile)

    async def body(tw: TradewsClient) -> None:
        order = await tw.place_order(
            symbol, side, quantity, price=price, time_in_force=tif.upper(),
            post_only=post_only, client_order_id=client_order_id,
        )  # fmt: skip
        _print_orders([order], as_json)

    run_client(creds, body)


@order_app.command("cancel")
def order_cancel(
    order_id: Annotated[int | None, typer.Argument(help="The order's id.")] = None,
    client_order_id: Annotated[str | None, typer.Option(help="Or its client order id.")] = None,
    all_orders: Annotated[
        bool, typer.Option("--all", help="Cancel every open order (of --symbol).")
    ] = False,
    symbol: Annotated[str | None, typer.Option(help="With --all: only this one's.")] = None,
    url: UrlOption = None,
    key: KeyOption = None,
    secret: SecretOption = None,
    private_key: PrivateKeyOption = None,
    profile: ProfileOption = "default",
    as_json: JsonOption = False,
) -> None:
    """Cancel an order (ORDER_ID or --client-order-id), or every open one (--all)."""
    given = (order_id is not None) + (client_order_id is not None) + all_orders
    if given != 1:
        _fail("give an ORDER_ID, --client-order-id or --all")
    creds = resolve_credentials(url, key, secret, private_key, profile)

    async def body(tw: TradewsClient) -> None:
        if all_orders:
            ids = await tw.cancel_all(symbol)
            if as_json:
                out.print_json(data={"cancelled": ids})
            else:
                out.print(f"cancelled {len(ids)} order(s)" + (f": {ids}" if ids else ""))
            return
        _print_orders([await tw.cancel_order(order_id, client_order_id=client_order_id)], as_json)

    run_client(creds, body)


@order_app.command("list")
def order_list(
    symbol: Annotated[str | None, typer.Option(help="Only this instrument's.")] = None,
    url: UrlOption = None,
    key: KeyOption = None,
    secret: SecretOption = None,
    private_key: PrivateKeyOption = None,
    profile: ProfileOption = "default",
    as_json: JsonOption = False,
) -> None:
    """Your open orders."""
    creds = resolve_credentials(url, key, secret, private_key, profile)

    async def body(tw: TradewsClient) -> None:
        _print_orders(await tw.open_orders(symbol), as_json)

    run_client(creds, body)


def register(app: typer.Typer) -> None:
    """Add the terminal's commands to the ``tradews`` command line."""
    app.command()(book)
    app.command()(ticker)
    app.add_typer(order_app, name="order")
