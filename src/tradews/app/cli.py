"""The ``tradews`` command line: run the server and administer its database.

Every admin command works on the same database as a running server (a SQLite file or a
PostgreSQL database, by ``--db``), which notices changes within a second (new instruments are
listed, reference prices used, revoked keys disconnected).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import ipaddress
import json
import logging
import os
import re
import shlex
import shutil
import signal
import ssl
import sys
import time
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from tradews import __version__
from tradews.adapters import clock, registry
from tradews.adapters.price_feed import parse_feed_url
from tradews.adapters.sql_store import TIERS, ApiKey, DatabaseUnavailable, SqlStore, StoreError
from tradews.adapters.ws_server import (
    PING_INTERVAL,
    PING_TIMEOUT,
    ConnectionCaps,
    OutputLimits,
    tls_context,
)
from tradews.app.logs import LOG_FORMATS
from tradews.app.logs import configure as configure_logging
from tradews.app.pricing import DEFAULT_MAX_AGE_MS, format_duration
from tradews.app.terminal import (
    KeyOption,
    PrivateKeyOption,
    ProfileOption,
    SecretOption,
    UrlOption,
    resolve_credentials,
)
from tradews.app.terminal import register as register_terminal
from tradews.domain.instrument import (
    Instrument,
    InvalidDecimal,
    OffStep,
    format_ladder,
    parse_decimal,
    parse_ladder,
)
from tradews.domain.ledger import format_atoms
from tradews.domain.pricing import DEFAULT_BAND_BPS, ReferencePrice
from tradews.engine.engine import Market
from tradews.session.limits import Rate, RateLimits
from tradews.session.session import FeeSchedule, SessionLimits
from tradews.session.streams import BUFFER_PER_STREAM, BUFFER_TOTAL

app = typer.Typer(
    help="tradews: a self-hosted real-time trading server (JSON-RPC 2.0 over WebSocket).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
account_app = typer.Typer(help="Accounts: their tiers, and freezing them.", no_args_is_help=True)
key_app = typer.Typer(
    help="API keys: create (secret or private key shown once), list, revoke.",
    no_args_is_help=True,
)
instrument_app = typer.Typer(help="Listed instruments.", no_args_is_help=True)
asset_app = typer.Typer(
    help="Assets deposits and withdrawals may use: those of listed instruments, and those "
    "declared here.",
    no_args_is_help=True,
)
price_app = typer.Typer(
    help="Reference prices: the anchor of RFQ quotes (no reference, no quote).",
    no_args_is_help=True,
)
app.add_typer(account_app, name="account")
app.add_typer(key_app, name="key")
app.add_typer(instrument_app, name="instrument")
app.add_typer(asset_app, name="asset")
db_app = typer.Typer(
    help="The database itself: schema upgrades, moving from SQLite to PostgreSQL.",
    no_args_is_help=True,
)
app.add_typer(price_app, name="price")
app.add_typer(db_app, name="db")
config_app = typer.Typer(
    help="Settings: flags, TRADEWS_* environment variables and a TOML file (--config).",
    no_args_is_help=True,
)
app.add_typer(config_app, name="config")
shard_app = typer.Typer(
    help="Engine shards: each engine owns the instruments listed on its shard.",
    no_args_is_help=True,
)
app.add_typer(shard_app, name="shard")

out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)

DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        envvar="TRADEWS_DB",
        help="The database: a SQLite file's path (or sqlite:///ABS/PATH, sqlite:REL/PATH) or "
        "postgresql://USER@HOST/NAME.",
    ),
]
LadderOption = Annotated[
    str | None,
    typer.Option(
        help="The RFQ spread by size, QUANTITY:BPS ascending: '1:5,10:8' quotes up to 1 at 5 bps, "
        "up to 10 at 8 bps, and no larger size (instead of --spread-bps)."
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ShardOption = Annotated[
    str,
    typer.Option(
        "--shard",
        help="The engine shard whose ledger and orders this reaches (PostgreSQL; see `tradews "
        "shard list`).",
    ),
]
KeyFileOption = Annotated[
    str | None,
    typer.Option(
        "--key-file",
        envvar="TRADEWS_KEY_FILE",
        help="Master key that seals HMAC secrets (default: the SQLite file's path + .key; "
        "./tradews.key for PostgreSQL, the same file for every process). Keep it out of "
        "database backups.",
    ),
]


def fail(message: str, code: int = 1) -> NoReturn:
    # The message quotes what the user typed and usage like ``host[:port]``: not markup.
    err.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


def one_line(exc: BaseException) -> str:
    """A driver's error message, which may span lines, as one line."""
    return " ".join(str(exc).split())


def parse_db(db: str, shard: str | None = None) -> registry.DbUrl:
    """The database URL; ``shard``: reaching that shard's trading state."""
    try:
        url = registry.parse_db_url(db)
        return url if shard is None else url.for_shard(shard)
    except ValueError as exc:
        fail(str(exc))


def open_store(db: str, key_file: str | None = None, shard: str | None = None) -> SqlStore:
    url = parse_db(db, shard)
    try:
        return registry.open_store(url, key_file=key_file)
    except DatabaseUnavailable as exc:
        fail(unreachable(url, exc))
    except StoreError as exc:
        fail(str(exc))
    except Exception as exc:  # the driver's and the OS's errors: say what, not where
        fail(f"cannot open the database {url.shown}: {one_line(exc)}")


def unreachable(url: registry.DbUrl, exc: DatabaseUnavailable) -> str:
    """One line: which database (its password hidden) and why it cannot be reached."""
    return f"the database at {url.shown} is unreachable: {exc.detail}"


def wait_for_store(db: str, key_file: str | None, shard: str | None = None) -> SqlStore:
    """The store, once the database answers: a server started before its database (a machine
    booting, a container starting) waits for it, saying so once, instead of failing."""
    url = parse_db(db, shard)
    waiting = False
    while True:
        try:
            return registry.open_store(url, key_file=key_file)
        except DatabaseUnavailable as exc:
            if not waiting:
                waiting = True
                err.print(f"waiting for the database at {url.shown} ({exc.detail})")
            time.sleep(WAIT_FOR_DB_S)
        except StoreError as exc:
            fail(str(exc))
        except Exception as exc:
            fail(f"cannot open the database {url.shown}: {one_line(exc)}")


def take_lease(lease: registry.Lease, url: registry.DbUrl, role: str) -> None:
    """Take the engine's lease. Held by another: ``serve`` fails, ``engine`` waits as a
    standby. While the database cannot be reached it retries, saying so once, so a standby
    outlives an outage and takes over once the database is back."""
    standby = down = False
    while True:
        try:
            if lease.try_acquire():
                if standby:
                    err.print("standby: the engine lease is ours; recovering")
                return
        except DatabaseUnavailable as exc:
            if not down:
                down = True
                err.print(f"{unreachable(url, exc)}; retrying")
        else:
            if down:
                down = False
                err.print(f"the database at {url.shown} is reachable again")
            if role == "all":
                fail(f"another tradews server is running on this database: it holds "
                     f"{lease.describe()}")  # fmt: skip
            if not standby:
                standby = True
                err.print(
                    f"standby: another engine holds {lease.describe()}; taking over when it stops"
                )
        time.sleep(0.25)


WAIT_FOR_DB_S = 1.0


def fmt_ms(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000).astimezone().isoformat(timespec="seconds")


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


def print_table(table: Table) -> None:
    """A table at its natural width, however narrow the terminal (or 80 columns when output
    goes to a pipe): no cell, an id above all, is ever cut or wrapped."""
    natural = Measurement.get(out, out.options.update(max_width=100_000), table).maximum
    width = out.width
    out.width = max(width, natural)
    try:
        out.print(table, crop=False)
    finally:
        out.width = width


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
    config_file: Annotated[
        str | None,
        typer.Option(
            "--config",
            envvar="TRADEWS_CONFIG",
            help="A TOML file of settings for every command (given anywhere on the command "
            "line); flags and TRADEWS_* variables override it. See `tradews config show`.",
        ),
    ] = None,
) -> None:
    del config_file  # main() has read it already: here for --help and the variable's name
    if version:
        out.print(__version__)
        raise typer.Exit()


# serve ----------------------------------------------------------------------------------------


@app.command()
def serve(
    db: DbOption = "tradews.db",
    demo: Annotated[
        bool,
        typer.Option(help="List demo instruments, run simulated prices and create a demo account."),
    ] = False,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0 picks a free one).")] = 8765,
    seed: Annotated[int, typer.Option(help="Seed of the demo price walks.")] = 1,
    tick_interval: Annotated[float, typer.Option(help="Seconds between price/quote pulses.")] = 0.1,
    quote_ttl: Annotated[float, typer.Option(help="Seconds a quote stays firm.")] = 3.0,
    volatility: Annotated[
        float, typer.Option(help="Demo walk volatility per hour (0.02 = 2 %; 0 = still).")
    ] = 0.02,
    durability: Annotated[
        str,
        typer.Option(
            help="full: acknowledged facts survive power loss (fsync per batch); "
            "normal: they survive a crashed process, not a power cut."
        ),
    ] = "full",
    fees: Annotated[
        str,
        typer.Option(
            help="Maker:taker fees in basis points per tier, e.g. 'enterprise=5:10,standard=10:20'."
        ),
    ] = "enterprise=5:10,standard=10:20",
    demo_traders: Annotated[
        bool, typer.Option(help="In demo mode, run simulated market makers and takers.")
    ] = True,
    snapshot_every: Annotated[
        int, typer.Option(help="Snapshot the engine every N commands (start-up replays the rest).")
    ] = 100_000,
    rfq_band_bps: Annotated[
        str,
        typer.Option(
            help="No RFQ quote when the order book's price for the quantity is further than "
            "this from the reference price, in basis points."
        ),
    ] = str(DEFAULT_BAND_BPS),
    price_max_age: Annotated[
        str,
        typer.Option(
            help="An operator's or the feed's reference price older than this is stale (no "
            "quotes), unless set with its own --max-age: e.g. 30s, 5m."
        ),
    ] = format_duration(DEFAULT_MAX_AGE_MS),
    price_feed: Annotated[
        str | None,
        typer.Option(
            help="Follow reference prices from a feed: ws://host:port/path or "
            "nats://host:port/subject, publishing {symbol, price, timestamp?} as JSON "
            "(docs/operations.md)."
        ),
    ] = None,
    key_file: KeyFileOption = None,
    login_window: Annotated[
        float,
        typer.Option(
            help="Seconds a signed login's timestamp may be off the server's clock, either way."
        ),
    ] = 5.0,
    plain_login: Annotated[
        bool,
        typer.Option(
            help="Accept plain logins (apiKey + apiSecret); --no-plain-login accepts only "
            "signed ones."
        ),
    ] = True,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    log_format: Annotated[
        str, typer.Option(help="text, or json: one object per line, for a log pipeline.")
    ] = "text",
    admin: Annotated[
        bool, typer.Option(help="Serve /metrics, /state and /healthz on the admin listener.")
    ] = True,
    admin_host: Annotated[
        str, typer.Option(help="Admin listener address (anything but loopback needs a token).")
    ] = "127.0.0.1",
    admin_port: Annotated[int, typer.Option(help="Admin listener port (0 picks one).")] = 8766,
    admin_token: Annotated[
        str | None,
        typer.Option(
            envvar="TRADEWS_ADMIN_TOKEN",
            help="Require 'Authorization: Bearer TOKEN' on the admin listener.",
        ),
    ] = None,
    max_connections: Annotated[int, typer.Option(help="Open connections at most.")] = 10_000,
    max_connections_per_address: Annotated[
        int, typer.Option(help="Open connections from one IP address at most.")
    ] = 100,
    max_sessions_per_key: Annotated[
        int, typer.Option(help="Logged-in sessions of one API key at most.")
    ] = 100,
    login_timeout: Annotated[
        float, typer.Option(help="Seconds a connection may stay open without logging in.")
    ] = 10.0,
    rate_limit_connection: Annotated[
        str, typer.Option(help="Cost units a second per connection, and burst: RATE/BURST.")
    ] = "200/400",
    rate_limit_key: Annotated[
        str, typer.Option(help="Cost units a second per API key (all its connections).")
    ] = "400/800",
    rate_limit_address: Annotated[
        str, typer.Option(help="Cost units a second for an address's connections before login.")
    ] = "200/1000",
    max_unread_mib: Annotated[
        float, typer.Option(help="Unread output (MiB) at which a client is disconnected.")
    ] = 8.0,
    output_budget_mib: Annotated[
        float, typer.Option(help="Unread output (MiB) all clients together may hold.")
    ] = 256.0,
    allow_origin: Annotated[
        list[str] | None,
        typer.Option(
            help="A web origin (https://desk.example.com) whose pages may connect; repeat for "
            "more, '*' for any. Clients that are not browsers send none and always may."
        ),
    ] = None,
    tls_cert: Annotated[
        str | None, typer.Option(help="PEM certificate chain: serve wss:// (with --tls-key).")
    ] = None,
    tls_key: Annotated[str | None, typer.Option(help="PEM private key of --tls-cert.")] = None,
    ping_interval: Annotated[
        float, typer.Option(help="Seconds a client may stay silent before it is pinged.")
    ] = PING_INTERVAL,
    ping_timeout: Annotated[
        float,
        typer.Option(help="Seconds a ping may go unanswered before the connection is closed."),
    ] = PING_TIMEOUT,
    stream_retention: Annotated[
        str,
        typer.Option(
            help="How long the orders and balances streams' messages are kept for clients to "
            "resume from after a reconnect: e.g. 7d, 12h."
        ),
    ] = "7d",
    stream_buffer: Annotated[
        int,
        typer.Option(
            help="The latest messages of each orders or balances stream also kept in memory."
        ),
    ] = BUFFER_PER_STREAM,
    bus: Annotated[
        str | None,
        typer.Option(
            envvar="TRADEWS_BUS",
            help="NATS JetStream URL joining the engine and its gateways: nats://HOST:4222, "
            "optionally with /NAMESPACE; for `tradews engine` and `tradews gateway` only.",
        ),
    ] = None,
    shard: Annotated[
        str, typer.Option(help="The engine's shard (set of instruments) this process serves.")
    ] = "main",
    role: Annotated[str, typer.Option(hidden=True)] = "all",
) -> None:
    """Run the WebSocket server: engine and API in one process (the default deployment)."""
    from tradews.app.demo import seed_demo
    from tradews.app.server import Server, ServerSettings

    if log_level.lower() not in ("debug", "info", "warning", "error"):
        fail("--log-level must be debug, info, warning or error")
    if log_format not in LOG_FORMATS:
        fail("--log-format must be text or json")
    configure_logging(log_level, log_format)
    if not 0 <= port <= 65535:
        fail("port must be between 0 and 65535")
    if volatility < 0:
        fail("--volatility must not be negative")
    if tick_interval <= 0 or quote_ttl <= 0:
        fail("--tick-interval and --quote-ttl must be positive")
    ttl_ms = int(quote_ttl * 1000)
    refresh_ms = max(1, ttl_ms // 3)
    if refresh_ms <= tick_interval * 1000:
        fail("--quote-ttl must be at least three pulses long so quotes are refreshed in time")
    if durability not in ("full", "normal"):
        fail("--durability must be full or normal")
    if not 0 < login_window <= 3600:
        fail("--login-window must be more than 0 and at most 3600 seconds")
    schedule = parse_fees(fees)
    if admin and admin_token is None and not is_loopback(admin_host):
        fail("--admin-host is not a loopback address: set --admin-token (or TRADEWS_ADMIN_TOKEN)")
    if min(max_connections, max_connections_per_address, max_sessions_per_key) < 1:
        fail(
            "--max-connections, --max-connections-per-address and --max-sessions-per-key must be positive"
        )
    if login_timeout <= 0:
        fail("--login-timeout must be positive")
    if not 0 < ping_timeout <= ping_interval:
        fail("--ping-timeout must be positive and at most --ping-interval")
    rates = RateLimits(
        connection=parse_rate(rate_limit_connection, "--rate-limit-connection"),
        key=parse_rate(rate_limit_key, "--rate-limit-key"),
        address=parse_rate(rate_limit_address, "--rate-limit-address"),
    )
    if not 0 < max_unread_mib <= output_budget_mib:
        fail("--max-unread-mib must be positive and at most --output-budget-mib")
    output = OutputLimits(
        max=int(max_unread_mib * (1 << 20)),
        warn=int(max_unread_mib * (1 << 19)),
        total=int(output_budget_mib * (1 << 20)),
    )
    band = _decimal_option(rfq_band_bps, "--rfq-band-bps")
    assert band is not None
    if band <= 0 or band >= 10_000:
        fail("--rfq-band-bps must be above 0 and below 10000")
    max_age_ms = parse_duration_ms(price_max_age, "--price-max-age")
    if price_feed is not None:
        try:
            parse_feed_url(price_feed)
        except ValueError as exc:
            fail(str(exc))
    tls = None
    if (tls_cert is None) != (tls_key is None):
        fail("--tls-cert and --tls-key go together")
    if tls_cert is not None and tls_key is not None:
        try:
            tls = tls_context(tls_cert, tls_key)
        except (OSError, ssl.SSLError) as exc:
            fail(f"cannot load --tls-cert/--tls-key: {exc}")
    for origin in allow_origin or []:
        if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
            fail(f"--allow-origin must look like https://host[:port] or '*', got {origin!r}")
    retention_ms = parse_duration_ms(stream_retention, "--stream-retention")
    if stream_buffer < 1:
        fail("--stream-buffer must be positive")
    bus_url = None
    if role == "all" and bus is not None:
        fail(
            "--bus is for `tradews engine` and `tradews gateway`; `serve` runs both in one process"
        )
    if role != "all":
        from tradews.adapters.nats_bus import BusError, check_shard, parse_bus_url

        if bus is None:
            fail(f"`tradews {role}` needs --bus nats://host:4222 (or TRADEWS_BUS)")
        try:
            bus_url = parse_bus_url(bus)
            check_shard(shard)
        except BusError as exc:
            fail(str(exc))
        if bus_url.servers == "memory://":
            fail(
                "a memory:// bus joins an engine and gateways within one process (tests): "
                "between processes use nats://HOST:4222"
            )
    if role == "gateway" and demo:
        fail("--demo goes to the engine (`tradews engine --demo`), which owns the demo market")
    if role == "all" and shard != registry.MAIN_SHARD:
        fail("--shard is for `tradews engine` and `tradews gateway`: `serve` is one engine")
    if demo and shard != registry.MAIN_SHARD:
        fail("--demo lists the demo market on the main shard: run it on the main shard's engine")
    store = wait_for_store(db, key_file, shard)
    url = parse_db(store.url)
    lease = registry.open_lease(url)
    if role != "gateway":
        take_lease(lease, url, role)
    try:
        creds = seed_demo(store, clock.now_ms()) if demo else None
    except StoreError as exc:
        fail(f"cannot make the demo key: {exc}")
    problem = store.key_file_problem()
    if problem is not None:
        logging.getLogger("tradews").warning("%s", problem)
    settings = replace(
        ServerSettings(),
        host=host,
        port=port,
        demo=demo,
        seed=seed,
        tick_interval=tick_interval,
        quote_ttl_ms=ttl_ms,
        quote_refresh_ms=refresh_ms,
        volatility=volatility,
        durability=durability.upper(),
        demo_traders=demo_traders,
        snapshot_every=max(1, snapshot_every),
        rfq_band_bps=band,
        price_max_age_ms=max_age_ms,
        price_feed=price_feed,
        fees=schedule,
        rates=rates,
        limits=SessionLimits(max_sessions_per_key=max_sessions_per_key),
        output=output,
        caps=ConnectionCaps(
            total=max_connections,
            per_address=max_connections_per_address,
            login_deadline_ms=int(login_timeout * 1000),
        ),
        admin=admin,
        admin_host=admin_host,
        admin_port=admin_port,
        admin_token=admin_token,
        login_window_ms=max(1, round(login_window * 1000)),
        plain_login=plain_login,
        allowed_origins=tuple(allow_origin or ()),
        tls=tls,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        stream_retention_ms=retention_ms,
        stream_buffer=stream_buffer,
        stream_buffer_total=max(stream_buffer, BUFFER_TOTAL),
        serve_clients=role != "engine",
    )

    def build(gateway: Any = None) -> Server:
        try:
            server = Server(settings, store, gateway=gateway)
        except Exception as exc:  # a journal that does not replay is not something to serve
            logging.getLogger("tradews").exception("start-up failed")
            fail(f"cannot start: {exc}")
        since = (
            ""
            if server.snapshot_seq is None
            else f" after the snapshot at seq {server.snapshot_seq}"
        )
        what = "replica" if gateway is not None else "engine"
        err.print(
            f"{what}: replayed {server.replayed} commands{since} in "
            f"{server.replay_seconds:.2f} s, seq {server.engine.seq}, "
            f"state {server.state_hash_at_start[:16]}"
        )
        return server

    async def run() -> None:
        link: Any = None
        if bus_url is not None:
            from tradews.adapters.nats_bus import Bus

            bus_link = Bus(bus_url, name=f"tradews-{role}-{shard}")
            if role == "gateway":
                from tradews.app.gateway import GatewayLink

                link = GatewayLink(bus_link, shard)
                try:
                    await link.follow()
                except BusError as exc:
                    fail(str(exc))
            else:
                from tradews.app.engine_node import EngineLink

        server = build(link if role == "gateway" else None)
        try:
            await server.start()
        except OSError as exc:
            where = "" if "admin listener" in str(exc) else f"{host}:{port}: "
            fail(f"cannot listen on {where}{exc.strerror or exc}")
        if role != "gateway":
            server.watch_lease(lease)
        engine_link = None
        if role == "engine":
            engine_link = EngineLink(server, bus_link, shard, now_ms=clock.now_ms)
            try:
                await engine_link.start()
            except BusError as exc:
                fail(str(exc))
        instruments = ", ".join(i.symbol for i in server.catalog.all()) or "none"
        if role == "engine":
            url = bus or ""
            out.print(
                f"[bold green]tradews {__version__}[/bold green] engine for shard {shard} on {url}"
            )
        else:
            url = f"{'wss' if tls else 'ws'}://{host}:{server.port}"
            out.print(f"[bold green]tradews {__version__}[/bold green] listening on {url}")
            out.print(
                f"console: {'https' if tls else 'http'}://{host}:{server.port}/ (in a browser)"
            )
        out.print(f"database: {parse_db(store.url).shown}  instruments: {instruments}")
        if server.admin_port is not None:
            out.print(f"admin: http://{admin_host}:{server.admin_port} (/metrics, /state)")
        if creds is not None and role == "engine":
            out.print("\n[bold]Demo account[/bold] 'demo': log in on any gateway with")
            out.print(f"  apiKey:    {creds.api_key}")
            out.print(f"  apiSecret: {creds.api_secret}")
        if creds is not None and role == "all":
            out.print("\n[bold]Demo account[/bold] 'demo' (enterprise tier). A new key each start:")
            out.print(f"  apiKey:    {creds.api_key}")
            out.print(f"  apiSecret: {creds.api_secret}")
            if not plain_login:
                out.print(
                    "Plain login is off (--no-plain-login): sign logins as docs/protocol.md "
                    "shows; `tradews quotes` and the Python client sign for you."
                )
            out.print("\nStream BTC_USD quotes from the command line:")
            out.print(
                f"  {command_name()} quotes BTC_USD --url {url} --key {creds.api_key} "
                f"--secret {creds.api_secret}"
            )
            out.print("\nOr from any WebSocket client, send these two text frames:")
            login = {
                "jsonrpc": "2.0",
                "method": "rpc.login",
                "id": 1,
                "params": {"apiKey": creds.api_key, "apiSecret": creds.api_secret},
            }
            quote = {
                "jsonrpc": "2.0",
                "method": "quote_request",
                "id": 2,
                "params": {"symbol": "BTC_USD", "type": "RFQ"},
            }
            out.print(f"  {json.dumps(login)}")
            out.print(f"  {json.dumps(quote)}")
            out.print(
                "\nProtobuf clients: ask for the subprotocol tradews.v1.proto "
                "(schema: proto/tradews/v1/tradews.proto)."
            )
        out.print("\nPress Ctrl+C to stop.", style="dim")
        sys.stdout.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        stopping = asyncio.create_task(stop.wait())
        fatal = asyncio.create_task(server.fatal.wait())
        await asyncio.wait({stopping, fatal}, return_when=asyncio.FIRST_COMPLETED)
        if server.fatal.is_set():
            if role == "gateway":
                err.print(
                    "[red]gateway stopped: its replica could not apply the engine's log (see "
                    "the log); restart it to recover from the store[/red]"
                )
            else:
                err.print(
                    "[red]trading halted: the journal could not be written, the engine lost "
                    "its lease, or it found a broken invariant (see the log); restart to "
                    "rebuild from the journal[/red]"
                )
            raise typer.Exit(3)
        err.print("stopping: finishing journal writes, closing connections")
        if engine_link is not None:
            await engine_link.stop()
        await server.stop()
        err.print(f"stopped at seq {server.engine.seq}, state {server.engine.state_hash()[:16]}")

    _run_async(run())
    store.close()
    if role != "gateway":
        lease.release()


def _role_command(role: str, doc: str) -> None:
    """``tradews engine`` and ``tradews gateway``: ``serve`` with its role set (same options)."""
    import inspect
    import typing

    # The annotations resolved (this module postpones them): typer reads each option's
    # settings (help, envvar) from its Annotated metadata.
    hints = typing.get_type_hints(serve, include_extras=True)
    signature = inspect.signature(serve)
    params = [
        p.replace(annotation=hints[p.name])
        for p in signature.parameters.values()
        if p.name != "role"
    ]

    def command(**kwargs: Any) -> None:
        serve(**kwargs, role=role)

    command.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=params, return_annotation=None
    )
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = doc
    app.command(name=role)(command)


_role_command(
    "engine",
    "Run the engine of a distributed deployment: the single writer of its shard, taking "
    "commands from the bus (--bus) and publishing its journal to the gateways. A second one "
    "started on the same database waits as a standby.",
)
_role_command(
    "gateway",
    "Run a gateway of a distributed deployment: the WebSocket API, sending commands to the "
    "engine over the bus (--bus). Run as many as you need.",
)


def command_name() -> str:
    """How to run this ``tradews`` from a new shell: ``tradews`` when that is the one on PATH,
    else its full path (e.g. ``.venv/bin/tradews`` of a checkout that was never activated)."""
    script = Path(sys.argv[0])
    if script.name != "tradews":  # python -m tradews
        return f"{shlex.quote(sys.executable)} -m tradews"
    found = shutil.which("tradews")
    if found is not None and Path(found).resolve() == script.resolve():
        return "tradews"
    return shlex.quote(str(script.absolute()))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_rate(text: str, option: str) -> Rate:
    try:
        return Rate.parse(text)
    except ValueError:
        fail(f"{option}: expected RATE/BURST in cost units, e.g. 200/400, got {text!r}")


def parse_fees(text: str) -> FeeSchedule:
    """``enterprise=5:10,standard=10:20`` (bps, up to two decimals) -> rates in 1/100 bps."""
    rates: dict[str, tuple[int, int]] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        tier, _, pair = part.partition("=")
        maker, _, taker = pair.partition(":")
        try:
            m, t = Decimal(maker) * 100, Decimal(taker) * 100
            if tier not in TIERS or not (0 <= m <= 10**6 and 0 <= t <= 10**6):
                raise ValueError(part)  # at most 10,000 bps: a fee never exceeds what it is on
            if m != int(m) or t != int(t):
                raise ValueError(part)
        except (ArithmeticError, ValueError):
            fail(f"--fees: expected TIER=MAKER:TAKER in bps (up to 2 decimals), got {part!r}")
        rates[tier] = (int(m), int(t))
    return FeeSchedule({**FeeSchedule().rates, **rates})


def _run_async(coro: Any) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop
        asyncio.run(coro)
    else:
        uvloop.run(coro)


# accounts -------------------------------------------------------------------------------------


@account_app.command("create")
def account_create(
    name: str,
    tier: Annotated[str, typer.Option(help="enterprise or standard.")] = "standard",
    db: DbOption = "tradews.db",
    as_json: JsonOption = False,
) -> None:
    """Create an account. Only enterprise-tier accounts may use the WebSocket API."""
    if tier not in TIERS:
        fail(f"--tier must be one of: {', '.join(TIERS)}")
    store = open_store(db)
    try:
        account = store.create_account(name, tier, clock.now_ms())
    except StoreError as exc:
        fail(str(exc))
    if as_json:
        print_json({"id": account.id, "name": account.name, "tier": account.tier})
    else:
        out.print(f"created account [bold]{account.name}[/bold] (tier {account.tier})")


@account_app.command("list")
def account_list(db: DbOption = "tradews.db", as_json: JsonOption = False) -> None:
    """List accounts, and whether each is frozen (as the engine's journal leaves it)."""
    from tradews.app.reports import engine_state

    store = open_store(db)
    accounts = store.list_accounts()
    engine = engine_state(store)
    if as_json:
        print_json(
            [
                {"id": a.id, "name": a.name, "tier": a.tier, "createdAt": a.created_at,
                 "frozen": engine.is_frozen(a.id)}
                for a in accounts
            ]
        )  # fmt: skip
        return
    table = Table("id", "name", "tier", "created", "frozen")
    for a in accounts:
        frozen = "yes" if engine.is_frozen(a.id) else "-"
        table.add_row(str(a.id), a.name, a.tier, fmt_ms(a.created_at), frozen)
    print_table(table)


def _freeze(account: str, frozen: bool, db: str, as_json: bool) -> None:
    """Freeze on every shard's engine (each keeps its own ledger and orders)."""
    from tradews.app.funds import FundsError, freeze_account

    store = open_store(db)
    shards = sorted(store.shards(), key=lambda s: (s != registry.MAIN_SHARD, s))
    state = "frozen" if frozen else "not frozen"
    outcomes: dict[str, Any] = {}
    for shard in shards:
        shard_store = store if shard == store.shard else open_store(db, shard=shard)
        try:
            outcome = freeze_account(shard_store, account, frozen)
        except FundsError as exc:
            fail(str(exc))
        if not outcome["ok"]:
            fail(f"{outcome.get('reason')}: {outcome.get('message')}")
        outcomes[shard] = outcome
        if as_json:
            continue
        note = "" if outcome.get("changed") else " (it already was)"
        where = "" if len(shards) == 1 else f" on shard {shard}"
        out.print(f"{account} is {state}{where}{note} \\[{outcome['via']}]")
    if as_json:  # one shard: its outcome, as before shards; several: each one's
        only = outcomes.get(registry.MAIN_SHARD) if len(outcomes) == 1 else None
        print_json(
            {"account": account, **only} if only else {"account": account, "shards": outcomes}
        )


@account_app.command("freeze")
def account_freeze(account: str, db: DbOption = "tradews.db", as_json: JsonOption = False) -> None:
    """Freeze an account: it may log in and read, but not trade or withdraw.

    Placing or amending orders, accepting quotes and withdrawals are refused (API error 4003)
    until it is unfrozen; cancels still work. Goes through the engine, whether or not a server
    is running, so it survives restarts.
    """
    _freeze(account, True, db, as_json)


@account_app.command("unfreeze")
def account_unfreeze(
    account: str, db: DbOption = "tradews.db", as_json: JsonOption = False
) -> None:
    """Lift a freeze: the account trades and withdraws again."""
    _freeze(account, False, db, as_json)


# keys -----------------------------------------------------------------------------------------

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration_ms(text: str, option: str) -> int:
    match = _DURATION.match(text.strip())
    if match is None or int(match.group(1)) == 0:
        fail(f"{option} must look like 30s, 15m, 12h or 90d, got {text!r}")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def _public_key_option(value: str) -> bytes:
    """``--public-key``: base64 of the raw key, or a file holding PEM or that base64."""
    from tradews.api.signing import KeyFormatError, parse_public_key

    path = Path(value)
    try:
        text = path.read_text() if path.is_file() else value
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"--public-key: cannot read {value}: {exc}")
    try:
        return parse_public_key(text)
    except KeyFormatError as exc:
        fail(f"--public-key: {exc}")


@key_app.command("create")
def key_create(
    account: str,
    db: DbOption = "tradews.db",
    as_json: JsonOption = False,
    expires_in: Annotated[str | None, typer.Option(help="Expire after e.g. 90d, 12h, 30m.")] = None,
    label: Annotated[str | None, typer.Option(help="A note to tell keys apart.")] = None,
    key_type: Annotated[
        str,
        typer.Option(
            "--type",
            help="hmac: a secret (plain or HMAC-signed login); ed25519: a key pair (signed "
            "login only, the server keeps only the public key).",
        ),
    ] = "hmac",
    public_key: Annotated[
        str | None,
        typer.Option(
            help="ed25519: register this public key (base64 of the raw 32 bytes, or a PEM "
            "file) instead of generating a pair."
        ),
    ] = None,
    scopes: Annotated[
        str, typer.Option(help="Permissions: read (data, streams, own orders) and/or trade.")
    ] = "read,trade",
    allow_ip: Annotated[
        list[str] | None,
        typer.Option(
            help="Accept logins only from this address or network (repeatable, IPv4 or IPv6)."
        ),
    ] = None,
    plain_login: Annotated[
        bool,
        typer.Option(help="hmac: also accept plain logins (the secret sent as apiSecret)."),
    ] = True,
    key_file: KeyFileOption = None,
) -> None:
    """Create an API key. The secret (or generated private key) is printed once."""
    from tradews.api.signing import generate_ed25519

    if key_type not in ("hmac", "ed25519"):
        fail(f"--type must be hmac or ed25519, got {key_type!r}")
    if public_key is not None and key_type != "ed25519":
        fail("--public-key is for --type ed25519 keys")
    store = open_store(db, key_file)
    now = clock.now_ms()
    expires_at = now + parse_duration_ms(expires_in, "--expires-in") if expires_in else None
    options: dict[str, Any] = {
        "expires_at": expires_at,
        "label": label,
        "scopes": scopes.split(","),
        "allowed_ips": allow_ip or [],
    }
    secret = private = None
    try:
        if key_type == "hmac":
            key, secret = store.create_key(account, now, plain_login=plain_login, **options)
        else:
            if public_key is not None:
                raw = _public_key_option(public_key)
            else:
                private, raw = generate_ed25519()
            key = store.create_ed25519_key(account, raw, now, **options)
    except StoreError as exc:
        fail(str(exc))
    (created,) = [k for k in store.list_keys(account) if k.key_id == key]
    if as_json:
        print_json(
            {
                "apiKey": key,
                **({"apiSecret": secret} if secret is not None else {}),
                **({"privateKey": private} if private is not None else {}),
                **({"publicKey": base64.b64encode(raw).decode()} if key_type == "ed25519" else {}),
                "account": account,
                "expiresAt": expires_at,
                **_key_fields(created),
            }
        )
        return
    out.print(f"apiKey:     {key}")
    if secret is not None:
        out.print(f"apiSecret:  {secret}")
    if private is not None:
        out.print(f"privateKey: {private}")
    out.print(f"type:       {key_type}  scopes: {','.join(created.scopes)}")
    out.print(f"allowed IP: {', '.join(created.allowed_ips) or 'any'}")
    if expires_at is not None:
        out.print(f"expires:    {fmt_ms(expires_at)}")
    if secret is not None:
        err.print("[yellow]Store the secret now: it cannot be shown again.[/yellow]")
    if private is not None:
        err.print(
            "[yellow]Store the private key now: the server keeps only the public key and it "
            "cannot be shown again.[/yellow]\nSign logins with it: in Python "
            "Client.login(api_key, private_key=...), from the terminal tradews quotes SYMBOL "
            "--key ... --private-key ... (or TRADEWS_PRIVATE_KEY); the signed message is in "
            "docs/protocol.md (rpc.login)."
        )


def _key_fields(k: ApiKey) -> dict[str, Any]:
    return {
        "type": k.key_type,
        "scopes": list(k.scopes),
        "allowIps": list(k.allowed_ips),
        "plainLogin": k.plain_login,
        "signedLogin": k.signed_login,
    }


@key_app.command("list")
def key_list(account: str, db: DbOption = "tradews.db", as_json: JsonOption = False) -> None:
    """List an account's keys (never their secrets): type, scopes, allowed addresses, logins."""
    store = open_store(db)
    try:
        keys = store.list_keys(account)
    except StoreError as exc:
        fail(str(exc))
    now = clock.now_ms()
    if as_json:
        print_json(
            [
                {
                    "apiKey": k.key_id,
                    "label": k.label,
                    "status": k.status(now),
                    "createdAt": k.created_at,
                    "expiresAt": k.expires_at,
                    "revokedAt": k.revoked_at,
                    **_key_fields(k),
                }
                for k in keys
            ]
        )
        return
    # The key id is what an operator copies: never shortened, whatever the terminal's width.
    table = Table("apiKey", "label", "status", "type", "scopes", "allowed IPs", "login",
                  "created", "expires")  # fmt: skip
    for k in keys:
        logins = [name for name, ok in (("signed", k.signed_login), ("plain", k.plain_login)) if ok]
        table.add_row(
            k.key_id, k.label or "", k.status(now), k.key_type, ",".join(k.scopes),
            " ".join(k.allowed_ips) or "any", "+".join(logins), fmt_ms(k.created_at),
            fmt_ms(k.expires_at),
        )  # fmt: skip
    print_table(table)


@key_app.command("revoke")
def key_revoke(key: str, db: DbOption = "tradews.db") -> None:
    """Revoke a key. A running server disconnects its sessions within a second."""
    store = open_store(db)
    try:
        changed = store.revoke_key(key, clock.now_ms())
    except StoreError as exc:
        fail(str(exc))
    out.print(f"revoked {key}" if changed else f"{key} was already revoked")


# instruments ----------------------------------------------------------------------------------


def _decimal_option(text: str | None, what: str) -> Decimal | None:
    if text is None:
        return None
    try:
        return parse_decimal(text, what=what)
    except InvalidDecimal as exc:
        fail(str(exc))


@instrument_app.command("add")
def instrument_add(
    symbol: str,
    base: Annotated[str, typer.Option(help="Asset bought and sold, e.g. BTC.")],
    quote: Annotated[str, typer.Option(help="Asset prices are in, e.g. USD.")],
    tick: Annotated[str, typer.Option(help="Price increment, e.g. 0.01.")],
    lot: Annotated[str, typer.Option(help="Quantity increment, e.g. 0.0001.")],
    min_size: Annotated[
        str | None, typer.Option(help="Smallest quantity (default: one lot).")
    ] = None,
    max_size: Annotated[str | None, typer.Option(help="Largest quantity (default: none).")] = None,
    quote_size: Annotated[
        str | None,
        typer.Option(
            help="Quantity an RFQ stream quotes by default (default: 1 if allowed, else min size)."
        ),
    ] = None,
    spread_bps: Annotated[str, typer.Option(help="Half-spread of RFQ quotes, basis points.")] = "5",
    spread_ladder: LadderOption = None,
    shard: Annotated[
        str,
        typer.Option(help="The engine shard that trades it (set up with `tradews db upgrade`)."),
    ] = registry.MAIN_SHARD,
    db: DbOption = "tradews.db",
) -> None:
    """List a new instrument."""
    if not re.fullmatch(r"[A-Z0-9]{1,12}_[A-Z0-9]{1,12}", symbol):
        fail("symbol must look like BASE_QUOTE in capitals, e.g. BTC_USD")
    tick_d = _decimal_option(tick, "--tick")
    lot_d = _decimal_option(lot, "--lot")
    assert tick_d is not None and lot_d is not None
    min_d = _decimal_option(min_size, "--min-size") or lot_d
    max_d = _decimal_option(max_size, "--max-size")
    size_d = _decimal_option(quote_size, "--quote-size")
    if size_d is None:
        one = Decimal(1)
        fits = one % lot_d == 0 and one >= min_d and (max_d is None or one <= max_d)
        size_d = one if fits else min_d
    try:
        spread = Decimal(spread_bps)
        ladder = parse_ladder(spread_ladder or "")
        inst = Instrument(symbol, base, quote, tick_d, lot_d, min_d, max_d, size_d, spread, ladder)
        Market.of(inst)  # the engine must be able to settle it exactly
    except (OffStep, ValueError, ArithmeticError) as exc:
        fail(str(exc))
    store = open_store(db)
    try:
        store.add_instrument(inst, clock.now_ms(), shard)
    except StoreError as exc:
        fail(str(exc))
    where = "" if shard == registry.MAIN_SHARD else f" on shard {shard}"
    out.print(f"listed [bold]{symbol}[/bold]{where}")


@instrument_app.command("spread")
def instrument_spread(
    symbol: str,
    spread_bps: Annotated[
        str | None, typer.Option(help="Half-spread of RFQ quotes, basis points.")
    ] = None,
    spread_ladder: LadderOption = None,
    db: DbOption = "tradews.db",
) -> None:
    """Change an instrument's RFQ spread, flat or by size; running servers quote with it
    within a second. --spread-ladder '' removes the ladder."""
    store = open_store(db)
    inst = next((i for i in store.list_instruments(every_shard=True) if i.symbol == symbol), None)
    if inst is None:
        fail(f"no instrument {symbol!r}")
    try:
        spread = inst.spread_bps if spread_bps is None else Decimal(spread_bps)
        ladder = inst.spread_ladder if spread_ladder is None else parse_ladder(spread_ladder)
        changed = dataclasses.replace(inst, spread_bps=spread, spread_ladder=ladder)
    except (OffStep, ValueError, ArithmeticError) as exc:
        fail(str(exc))
    store.set_spread(symbol, changed.spread_bps, changed.spread_ladder)
    shown = format_ladder(changed.spread_ladder) or f"{changed.spread_bps} bps at every size"
    out.print(f"[bold]{symbol}[/bold] RFQ spread: {shown}")


@instrument_app.command("list")
def instrument_list(db: DbOption = "tradews.db", as_json: JsonOption = False) -> None:
    """List instruments."""
    store = open_store(db)
    instruments = store.list_instruments(every_shard=True)
    shards = store.instrument_shards()
    rows = [
        {
            "symbol": i.symbol,
            "shard": shards.get(i.symbol, registry.MAIN_SHARD),
            "base": i.base,
            "quote": i.quote,
            "tick": str(i.tick),
            "lot": str(i.lot),
            "minSize": str(i.min_size),
            "maxSize": None if i.max_size is None else str(i.max_size),
            "quoteSize": str(i.quote_size),
            "spreadBps": str(i.spread_bps),
            "spreadLadder": format_ladder(i.spread_ladder) or None,
        }
        for i in instruments
    ]
    if as_json:
        print_json(rows)
        return
    table = Table(*rows[0].keys()) if rows else Table("symbol")
    for r in rows:
        table.add_row(*(v or "-" for v in r.values()))
    print_table(table)


# assets ---------------------------------------------------------------------------------------

_ASSET = re.compile(r"[A-Z0-9]{1,12}")


@asset_app.command("add")
def asset_add(name: str, db: DbOption = "tradews.db") -> None:
    """Declare an asset no listed instrument trades (yet), so that it can be deposited."""
    if not _ASSET.fullmatch(name):
        fail("asset must be 1-12 capital letters or digits, e.g. USD")
    added = open_store(db).add_asset(name, clock.now_ms())
    out.print(f"declared {name}" if added else f"{name} was already declared")


@asset_app.command("list")
def asset_list(db: DbOption = "tradews.db", as_json: JsonOption = False) -> None:
    """List the assets deposits and withdrawals may use, and where each comes from."""
    rows = [{"asset": a, "from": where} for a, where in open_store(db).known_assets().items()]
    if as_json:
        print_json(rows)
        return
    table = Table("asset", "from")
    for r in rows:
        table.add_row(r["asset"], r["from"])
    print_table(table)


# reference prices -----------------------------------------------------------------------------

# Far beyond any real price, and keeps every RFQ price the engine settles inside 64 bits.
_MAX_REFERENCE_TICKS = 10**15


@price_app.command("set")
def price_set(
    symbol: str,
    price: str,
    max_age: Annotated[
        str | None,
        typer.Option(
            help="Stale after this long (e.g. 30s, 5m, 1h); default: the server's "
            f"--price-max-age ({format_duration(DEFAULT_MAX_AGE_MS)} unless set)."
        ),
    ] = None,
    db: DbOption = "tradews.db",
    as_json: JsonOption = False,
) -> None:
    """Set an instrument's reference price. A running server quotes from it within a second.

    The desk sells at no less than the reference plus the instrument's markup and buys at no
    more than the reference minus it. Set it again before it goes stale, or quoting stops.
    """
    value = _decimal_option(price, "price")
    assert value is not None
    max_age_ms = None if max_age is None else parse_duration_ms(max_age, "--max-age")
    store = open_store(db)
    inst = next((i for i in store.list_instruments(every_shard=True) if i.symbol == symbol), None)
    if inst is None:
        fail(f"no instrument {symbol!r}")
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # finite: parse_decimal said so
    if exponent < -18:
        fail(f"price {price}: at most 18 decimal places")
    if not inst.tick <= value <= inst.tick * _MAX_REFERENCE_TICKS:
        fail(f"price {price} is out of range for {symbol} (one tick to 10^15 ticks)")
    reference = ReferencePrice(symbol, value, clock.now_ms(), max_age_ms)
    try:
        store.set_reference_price(symbol, value, reference.set_at, max_age_ms=max_age_ms)
    except StoreError as exc:
        fail(str(exc))
    if as_json:
        print_json(_price_row(reference, reference.set_at))
        return
    age = "the server's default" if max_age_ms is None else format_duration(max_age_ms)
    out.print(f"reference price of [bold]{symbol}[/bold]: {value} (max age {age})")


@price_app.command("list")
def price_list(db: DbOption = "tradews.db", as_json: JsonOption = False) -> None:
    """List reference prices, their age and whether they are stale."""
    now = clock.now_ms()
    rows = [_price_row(p, now) for p in open_store(db).reference_prices()]
    if as_json:
        print_json(rows)
        return
    table = Table("symbol", "price", "set", "max age", "status")
    for r in rows:
        age = "default" if r["maxAgeMs"] is None else format_duration(r["maxAgeMs"])
        table.add_row(r["symbol"], r["price"], fmt_ms(r["setAt"]), age, r["status"])
    print_table(table)


@price_app.command("clear")
def price_clear(symbol: str, db: DbOption = "tradews.db") -> None:
    """Remove an instrument's reference price: the desk stops quoting it (in demo mode it goes
    back to the simulated price)."""
    if not open_store(db).clear_reference_price(symbol):
        fail(f"no reference price for {symbol!r}")
    out.print(f"cleared the reference price of {symbol}")


def _price_row(p: ReferencePrice, now: int) -> dict[str, Any]:
    """``status`` judges a price without a max age of its own by the default one: a server
    started with another ``--price-max-age`` judges it by that."""
    return {
        "symbol": p.symbol,
        "price": str(p.price),
        "setAt": p.set_at,
        "maxAgeMs": p.max_age_ms,
        "status": "stale" if p.is_stale(now, DEFAULT_MAX_AGE_MS) else "fresh",
    }


# the database itself ---------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(
    db: DbOption = "tradews.db",
    shard: Annotated[
        str | None,
        typer.Option(
            help="Also set up (or upgrade) this engine shard's own tables, in a schema of its "
            "own (PostgreSQL)."
        ),
    ] = None,
) -> None:
    """Bring the database's schema up to this release's (PostgreSQL needs this before any other
    command; a SQLite file is upgraded when opened). Safe to repeat."""
    url = parse_db(db, shard)
    try:
        before, applied = registry.upgrade_database(url)
    except StoreError as exc:
        fail(str(exc))
    except Exception as exc:
        fail(f"cannot upgrade the database {url.shown}: {one_line(exc)}")
    if not applied:
        out.print(f"{url.shown}: already at schema v{before}, nothing to do")
        return
    numbers = ", ".join(f"v{n}" for n in applied)
    out.print(f"{url.shown}: schema v{before} -> v{applied[-1]} (applied {numbers})")


@db_app.command("migrate")
def db_migrate(
    source: Annotated[
        str,
        typer.Option(
            "--from",
            "--db",
            envvar="TRADEWS_DB",
            help="The database to copy: a SQLite path or URL.",
        ),
    ],
    target: Annotated[
        str, typer.Option("--to", help="The empty database to copy into: postgresql://...")
    ],
    key_file: KeyFileOption = None,
    to_key_file: Annotated[
        str | None,
        typer.Option(
            help="Where the target's processes will read the key file (copied there from the "
            "source's; default ./tradews.key for PostgreSQL)."
        ),
    ] = None,
) -> None:
    """Copy a whole installation into an empty database (SQLite to PostgreSQL), then check the
    copy by recovering the engine from both. Stop the server first."""
    from tradews.app.migrate import MigrateError, migrate

    shown = parse_db(target).shown
    out.print(f"copying {parse_db(source).shown} into {shown}")
    try:
        done = migrate(source, target, key_file=key_file, to_key_file=to_key_file, say=out.print)
    except (MigrateError, ValueError) as exc:
        fail(str(exc))
    except Exception as exc:
        fail(f"the migration failed, the target is unchanged: {one_line(exc)}")
    total = {asset: format_atoms(v) for asset, v in sorted(done.balances.items())}
    out.print(f"balances: {', '.join(f'{a} {v}' for a, v in total.items()) or 'none'}")
    out.print(f"verified: seq {done.seq}, state hash {done.state_hash}")
    if done.key_file is not None:
        out.print(
            f"every process using {shown} must read the key file {done.key_file} "
            "(--key-file or TRADEWS_KEY_FILE)"
        )


# funds ----------------------------------------------------------------------------------------


def _move_funds(kind: str, account: str, asset: str, amount: str, ref: str, db: str,
                as_json: bool, shard: str = "main",
                collect: dict[str, Any] | None = None) -> None:  # fmt: skip
    """A deposit or withdrawal; ``collect``: keep its JSON outcome there instead of printing
    it (a transfer prints both steps as one document)."""
    from tradews.app.funds import FundsError, move_funds

    if not _ASSET.fullmatch(asset):
        fail("asset must be 1-12 capital letters or digits, e.g. USD")
    if not ref or len(ref) > 128:
        fail("--ref must be 1-128 characters")
    value = _decimal_option(amount, "amount")
    assert value is not None
    if value <= 0:
        fail(f"amount must be positive, got {amount}")
    store = open_store(db, shard=shard)
    if asset not in store.known_assets():
        fail(
            f"unknown asset {asset!r}: no listed instrument trades it (list one, or declare it "
            f"with `tradews asset add {asset}`)"
        )
    try:
        outcome = move_funds(store, kind, account, asset, value, ref)
    except FundsError as exc:
        fail(str(exc))
    if collect is not None:
        collect[kind] = {"shard": shard, **outcome}
    elif as_json:
        print_json(outcome)
    if not as_json and outcome["ok"]:
        note = " (already done: same ref)" if outcome.get("duplicate") else ""
        where = "" if shard == registry.MAIN_SHARD else f" on shard {shard}"
        out.print(
            f"{kind} of {amount} {asset} for {account}{where}: done{note} \\[{outcome['via']}]"
        )
    if not outcome["ok"]:
        fail(f"{outcome.get('reason')}: {outcome.get('message')}")


# "-5" is the amount (refused as not positive), not an unknown option.
_AMOUNT_ARGS = {"ignore_unknown_options": True}


@app.command(context_settings=_AMOUNT_ARGS)
def deposit(
    account: str,
    asset: str,
    amount: str,
    ref: Annotated[str, typer.Option(help="Your unique reference; repeating it is harmless.")],
    db: DbOption = "tradews.db",
    shard: ShardOption = "main",
    as_json: JsonOption = False,
) -> None:
    """Credit an account. Goes through the engine, whether or not a server is running.

    The asset must be one of a listed instrument, or declared with `tradews asset add`.
    """
    _move_funds("deposit", account, asset, amount, ref, db, as_json, shard)


@app.command(context_settings=_AMOUNT_ARGS)
def withdraw(
    account: str,
    asset: str,
    amount: str,
    ref: Annotated[str, typer.Option(help="Your unique reference; repeating it is harmless.")],
    db: DbOption = "tradews.db",
    shard: ShardOption = "main",
    as_json: JsonOption = False,
) -> None:
    """Debit an account's available funds. Goes through the engine, like deposits."""
    _move_funds("withdraw", account, asset, amount, ref, db, as_json, shard)


@app.command(context_settings=_AMOUNT_ARGS)
def transfer(
    account: str,
    asset: str,
    amount: str,
    from_shard: Annotated[str, typer.Option("--from", help="The shard the funds leave.")],
    to_shard: Annotated[str, typer.Option("--to", help="The shard the funds go to.")],
    ref: Annotated[
        str,
        typer.Option(help="Your unique reference; repeating it finishes a transfer cut short."),
    ],
    db: DbOption = "tradews.db",
    as_json: JsonOption = False,
) -> None:
    """Move an account's funds between engine shards: a withdrawal on one, then a deposit on
    the other, both journaled under the same ref.

    Each shard's engine keeps its own ledger. If this is cut short between the two steps, the
    same command again finishes it: the withdrawal is not made twice.
    """
    if from_shard == to_shard:
        fail("--from and --to must be different shards")
    open_store(db, shard=to_shard)  # both shards exist before anything moves
    steps: dict[str, Any] = {}
    _move_funds("withdraw", account, asset, amount, ref, db, as_json, from_shard, steps)
    _move_funds("deposit", account, asset, amount, ref, db, as_json, to_shard, steps)
    if as_json:
        print_json(steps)


@shard_app.command("list")
def shard_list(db: DbOption = "tradews.db", as_json: JsonOption = False) -> None:
    """The shards set up in the database, with their number and instruments."""
    store = open_store(db)
    by_shard: dict[str, list[str]] = {}
    for symbol, shard in sorted(store.instrument_shards().items()):
        by_shard.setdefault(shard, []).append(symbol)
    shards = sorted(store.shards().items(), key=lambda s: s[1])
    if as_json:
        print_json(
            [{"shard": n, "number": k, "instruments": by_shard.get(n, [])} for n, k in shards]
        )
        return
    table = Table("shard", "number", "instruments")
    for name, number in shards:
        table.add_row(name, str(number), ", ".join(by_shard.get(name, [])) or "-")
    print_table(table)


# what the engine did: balances, orders, trades -------------------------------------------------


def parse_since(text: str) -> int:
    """``--since``: milliseconds since the epoch, or an ISO 8601 time (local time without an
    offset)."""
    if re.fullmatch(r"\d{1,15}", text.strip()):
        return int(text)
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        fail(f"--since must be an ISO 8601 time (2026-01-31T12:00:00Z) or epoch ms, got {text!r}")
    if when.tzinfo is None:
        when = when.astimezone()
    return int(when.timestamp() * 1000)


def _report(read: Any) -> list[dict[str, Any]]:
    from tradews.app.reports import ReportError

    try:
        rows: list[dict[str, Any]] = read()
    except (ReportError, StoreError) as exc:
        fail(str(exc))
    return rows


@app.command()
def balances(
    account: Annotated[str | None, typer.Argument(help="Only this account.")] = None,
    db: DbOption = "tradews.db",
    shard: ShardOption = "main",
    as_json: JsonOption = False,
) -> None:
    """Balances of every account, or of one: available, locked, total, and frozen or not.

    The engine's state as of its last durable write, read from the database.
    """
    from tradews.app import reports

    store = open_store(db, shard=shard)
    rows = _report(lambda: reports.balances(store, account))
    if as_json:
        print_json(rows)
        return
    table = Table("account", "asset", "available", "locked", "total", "frozen")
    for r in rows:
        frozen = "frozen" if r["frozen"] else ""
        table.add_row(r["account"], r["asset"], r["available"], r["locked"], r["total"], frozen)
    print_table(table)


@app.command()
def orders(
    account: str,
    open_only: Annotated[
        bool, typer.Option("--open", help="Only open orders (new or partially filled).")
    ] = False,
    db: DbOption = "tradews.db",
    shard: ShardOption = "main",
    as_json: JsonOption = False,
) -> None:
    """An account's orders, oldest first, each as last changed.

    With --json, each order as `order_status` shows it.
    """
    from tradews.app import reports

    store = open_store(db, shard=shard)
    rows = _report(lambda: reports.orders(store, account, open_only=open_only))
    if as_json:
        print_json(rows)
        return
    table = Table("orderId", "clientOrderId", "symbol", "side", "type", "price", "quantity",
                  "filled", "status", "reason", "updated")  # fmt: skip
    for r in rows:
        table.add_row(
            str(r["orderId"]), r.get("clientOrderId") or "", r["symbol"], r["side"], r["type"],
            r.get("price") or "market", r["quantity"], r["filledQuantity"], r["status"],
            r.get("reason") or "", fmt_ms(r["updatedAt"]),
        )  # fmt: skip
    print_table(table)


@app.command()
def trades(
    account: Annotated[
        str | None, typer.Option(help="Only trades this account was a side of.")
    ] = None,
    symbol: Annotated[str | None, typer.Option(help="Only this instrument's trades.")] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Only trades at or after this time: ISO 8601 or epoch milliseconds."),
    ] = None,
    db: DbOption = "tradews.db",
    shard: ShardOption = "main",
    as_json: JsonOption = False,
) -> None:
    """Trades, oldest first, with both sides' accounts and fees.

    Each fee is in the asset that side received.
    """
    from tradews.app import reports

    since_ms = None if since is None else parse_since(since)
    store = open_store(db, shard=shard)
    rows = _report(lambda: reports.trades(store, account=account, symbol=symbol, since=since_ms))
    if as_json:
        print_json(rows)
        return
    table = Table("tradeId", "time", "symbol", "takerSide", "price", "quantity", "maker",
                  "taker", "makerFee", "takerFee", "quoteId")  # fmt: skip
    for r in rows:
        table.add_row(
            str(r["tradeId"]), fmt_ms(r["timestamp"]), r["symbol"], r["takerSide"], r["price"],
            r["quantity"], r["maker"], r["taker"], r["makerFee"], r["takerFee"],
            r["quoteId"] or "",
        )  # fmt: skip
    print_table(table)


# backups --------------------------------------------------------------------------------------


def _sqlite_path(db: str, what: str) -> Path:
    url = parse_db(db)
    if url.path is None:
        fail(
            f"{what} copies SQLite files; for PostgreSQL ({url.shown}) use pg_dump and "
            "pg_restore (docs/operations.md, Backups)"
        )
    return url.path


@app.command()
def backup(
    path: Annotated[str, typer.Argument(help="The new file to write (must not exist).")],
    db: DbOption = "tradews.db",
) -> None:
    """Copy the database to PATH while the server runs: a consistent copy.

    One point of the journal (SQLite's online backup). The key file is not in it: keep a copy
    of it too, apart from the backups. PostgreSQL: use pg_dump.
    """
    from tradews.adapters import sqlite_backup

    source = _sqlite_path(db, "tradews backup")
    try:
        seq = sqlite_backup.backup(source, Path(path))
    except sqlite_backup.BackupError as exc:
        fail(str(exc))
    out.print(f"backed up {source} to {path} (journal seq {seq})")


@app.command()
def restore(
    path: Annotated[str, typer.Argument(help="A backup made by `tradews backup`.")],
    db: DbOption = "tradews.db",
) -> None:
    """Replace the database with a backup. Refused while a server runs on it.

    Stop the server, restore, start it again: it recovers from the backup's journal.
    """
    from tradews.adapters import sqlite_backup

    target = _sqlite_path(db, "tradews restore")
    lease = registry.open_lease(parse_db(db))
    try:
        if not lease.try_acquire():
            fail(
                f"a tradews server is running on {db} (it holds {lease.describe()}): stop it first"
            )
        seq = sqlite_backup.restore(Path(path), target)
    except sqlite_backup.BackupError as exc:
        fail(str(exc))
    finally:
        lease.release()
    out.print(f"restored {target} from {path} (journal seq {seq})")


# configuration --------------------------------------------------------------------------------

_config_file: str | None = None  # --config (main takes it off the command line) or TRADEWS_CONFIG


@config_app.command("show")
def config_show(as_json: JsonOption = False) -> None:
    """The effective settings, each with its source; secrets masked.

    A setting's source is the environment, the config file or the default; flags override
    them per command.
    """
    from tradews.app import config

    command = typer.main.get_command(app)
    config.name_settings(command)
    known = config.settings(command)
    path = _config_file or os.environ.get(config.CONFIG_ENV) or None
    try:
        values = {} if path is None else config.load(path, known)
        rows = config.effective(known, values, os.environ)
    except config.ConfigError as exc:
        fail(str(exc))
    shown = [
        {
            "key": r.key,
            "value": config.shown(known[r.key], r.value),
            "source": r.source,
            "env": r.envvar,
        }
        for r in rows
    ]
    if as_json:
        print_json({"configFile": path, "settings": shown})
        return
    out.print(f"config file: {path or 'none (--config PATH or TRADEWS_CONFIG)'}")
    table = Table("setting", "value", "source", "environment variable")
    for r in shown:
        value = "-" if r["value"] is None else json.dumps(r["value"])
        table.add_row(r["key"], value, r["source"], r["env"])
    print_table(table)


# a tiny client for the terminal ---------------------------------------------------------------


@app.command()
def quotes(
    symbol: str,
    key: KeyOption = None,
    secret: SecretOption = None,
    private_key: PrivateKeyOption = None,
    url: UrlOption = None,
    quantity: Annotated[str | None, typer.Option(help="Quantity to quote.")] = None,
    count: Annotated[int, typer.Option(help="Stop after this many quotes (0: never).")] = 0,
    profile: ProfileOption = "default",
) -> None:
    """Log in (signed, so the secret stays here) and print a stream of firm RFQ quotes."""
    from tradews.api.signing import KeyFormatError
    from tradews.client import Client, ClientError, RpcError, login_signed

    creds = resolve_credentials(url, key, secret, private_key, profile)
    assert creds.api_key is not None

    async def login(client: Client) -> None:
        assert creds.api_key is not None
        if creds.private_key is not None:
            await client.login(creds.api_key, private_key=creds.private_key)
        else:
            assert creds.api_secret is not None
            await login_signed(client, creds.api_key, creds.api_secret, on_fallback=plain)

    def plain(exc: RpcError) -> None:
        # Keys older than signed login, or a server without its key file: the secret is all
        # they can be verified with.
        err.print(f"signed login refused ({exc.message}); logging in with the secret")

    async def run() -> None:
        try:
            async with await Client.connect(creds.url) as client:
                await login(client)
                sub = await client.quote_request(symbol, quantity=quantity)
                out.print(f"subscribed {sub['subscription']}: {sub['symbol']} x {sub['quantity']}")
                n = 0
                async for note in client.notifications():
                    if note.method != "quote":
                        continue
                    q = note.params
                    out.print(
                        f"{q['seq']:>6} {q['symbol']} buy {q['buyPrice']} sell "
                        f"{q['sellPrice']} qty {q['quantity']} id {q['quoteId']}"
                    )
                    n += 1
                    if count and n >= count:
                        break
        except (ClientError, KeyFormatError) as exc:
            fail(str(exc))
        except OSError as exc:
            fail(f"cannot connect to {creds.url}: {exc}")

    with contextlib.suppress(KeyboardInterrupt):
        _run_async(run())


register_terminal(app)


def main() -> None:
    from tradews.app import config

    global _config_file
    command = typer.main.get_command(app)
    config.name_settings(command)
    try:
        argv, _config_file = config.config_path(sys.argv[1:])
        values = {}
        if _config_file is not None:  # the settings are only needed to check a file
            values = config.load(_config_file, config.settings(command))
    except config.ConfigError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(1)
    try:
        code = command(argv, standalone_mode=False, default_map=config.default_map(command, values))
    except DatabaseUnavailable as exc:  # an admin command whose database went away meanwhile
        err.print(f"[red]error:[/red] the database is unreachable: {exc.detail}")
        sys.exit(1)
    except Exception as exc:
        sys.exit(usage_error(exc))
    sys.exit(code if isinstance(code, int) else 0)


def usage_error(exc: Exception) -> int:
    """What the command line's parser refused (an unknown option, a missing argument, a value
    of the wrong type), as one line and exit status 1; anything else is raised again."""
    message = getattr(exc, "format_message", None)
    if message is None or not hasattr(exc, "exit_code"):  # not the parser's
        raise exc
    if type(exc).__name__ == "NoArgsIsHelpError":  # a group run alone: its help, as ever
        out.print(message(), end="")
        return 0
    ctx = getattr(exc, "ctx", None)
    where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
    err.print(f"[red]error:[/red] {escape(one_line(Exception(message())))}{where}")
    return 1
