"""The all-in-one server process: storage, engine, price feed, streams and the WebSocket port.

Start-up: take the database's engine lock, list the instruments, replay the journal into a fresh
engine (checking every invariant), seed the durable view from it, end the cancel-on-disconnect
sessions of the previous run (all their connections died with it) and fire the dead-man's
switches that came due meanwhile, then listen. A clean stop ends the live sessions likewise.

Timers live here; every decision they trigger is made by the pure layers:

- the *pulse* (every ``tick_interval``) steps the demo price walk, sends each quote stream the
  quote it is owed, and publishes tickers that changed;
- the *market data* timer sends one snapshot to every ``market_data`` subscriber;
- the *watcher* polls ``PRAGMA data_version``: it lists new instruments, takes the operator's
  reference prices, hands the operator's inbox (deposits, withdrawals) to the engine, and closes
  connections whose API key was revoked or has expired. While the database is unreachable it
  says so once, keeps what it has, and reads everything again once it is back;
- the *lease watch* (engine and all-in-one, on a thread of its own) checks once a second that
  this process still holds the engine's lease, and halts trading if not: another engine may be
  writing now;
- the *deadline* timer (as often as the watcher) fires the dead-man's switches that are due
  (``ExpireDeadlines``); the engine says when the next one is, so it scans nothing;
  connections whose API key was revoked or has expired; once a second (more often while there
  is more to prune) it has the private streams' newest messages indexed and those older than
  the retention pruned, a chunk at a time, with a journal batch;
- private stream subscribers catching up (``subscribe`` with ``since``) are sent a page at a
  time, between other work, while their connection is writable (``_pump_streams``);
- in demo mode, the simulated market makers requote and a taker trades now and then.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import secrets
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from http import HTTPStatus
from typing import TYPE_CHECKING

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST

from tradews.adapters import clock
from tradews.adapters.price_feed import FeedPrice, PriceFeed, parse_feed_url
from tradews.adapters.registry import Lease, open_archive, open_journal, parse_db_url
from tradews.adapters.sql_store import DatabaseUnavailable, Operations, SqlStore, StoreError
from tradews.adapters.ws_server import (
    PING_INTERVAL,
    PING_TIMEOUT,
    CloseCode,
    Connection,
    ConnectionCaps,
    Connections,
    HttpAnswer,
    HttpRoutes,
    OriginPolicy,
    OutputLimits,
    create_admin_server,
    create_server,
    listener_factory,
)
from tradews.api.errors import ApiError
from tradews.app.catalog import Catalog
from tradews.app.console import Console
from tradews.app.demo import start_ticks
from tradews.app.demo_market import MAKER, TAKER, DemoMarket, funding
from tradews.app.engine_host import EngineHost, recover
from tradews.app.metrics import render as render_metrics
from tradews.app.openrpc import openrpc_raw
from tradews.app.pricing import DEFAULT_MAX_AGE_MS, DeskPricer, ReferencePrices
from tradews.app.replica import BusTrading
from tradews.codecs.push import Push
from tradews.domain.invariants import InvariantViolation
from tradews.domain.ledger import format_atoms
from tradews.domain.orders import Side
from tradews.domain.pricing import DEFAULT_BAND_BPS
from tradews.domain.random_walk import RandomWalk
from tradews.engine.commands import (
    AnyCommand,
    EndSession,
    ExpireDeadlines,
    ListInstrument,
    decoder,
)
from tradews.engine.engine import Rejected, Result
from tradews.session.limits import RateLimiter, RateLimits
from tradews.session.login import DEFAULT_WINDOW_MS, LoginPolicy
from tradews.session.market_data import MarketDataDesk
from tradews.session.quote_desk import QuoteDesk, stream_tokens
from tradews.session.session import FeeSchedule, Services, SessionLimits
from tradews.session.streams import (
    BUFFER_PER_STREAM,
    BUFFER_TOTAL,
    PrivateStreams,
    StreamRecord,
)
from tradews.session.view import TradingView

if TYPE_CHECKING:
    from tradews.app.engine_node import EngineLink
    from tradews.app.gateway import GatewayLink

log = logging.getLogger(__name__)

DAY_MS = 24 * 60 * 60 * 1000
STREAM_UPKEEP_MS = 1000
LEASE_CHECK_S = 1.0


class LeaseLost(Exception):
    """This engine no longer holds its lease: another one may take it and write."""


_PRUNE_NOTHING = 0  # a time before every message: index them, prune none


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8765
    demo: bool = False
    seed: int = 1
    tick_interval: float = 0.1
    quote_ttl_ms: int = 3000
    quote_refresh_ms: int = 1000
    market_data_interval: float = 1.0
    watch_interval: float = 0.1
    volatility: float = 0.02
    durability: str = "FULL"
    snapshot_every: int = 100_000  # commands between engine snapshots
    demo_traders: bool = True
    rfq_band_bps: Decimal = DEFAULT_BAND_BPS  # no quote when the book is further than this
    price_max_age_ms: int = DEFAULT_MAX_AGE_MS  # operator and feed prices older are stale
    price_feed: str | None = None  # ws://... or nats://host:port/subject (adapters/price_feed.py)
    fees: FeeSchedule = field(default_factory=FeeSchedule)
    limits: SessionLimits = field(default_factory=SessionLimits)
    rates: RateLimits = field(default_factory=RateLimits)
    output: OutputLimits = field(default_factory=OutputLimits)
    caps: ConnectionCaps = field(default_factory=ConnectionCaps)
    # The admin listener: /metrics, /state and /healthz, loopback-only by default.
    admin: bool = True
    admin_host: str = "127.0.0.1"
    admin_port: int = 8766
    admin_token: str | None = None
    # Browser pages (Origin header) that may connect, besides the server's own origin.
    allowed_origins: tuple[str, ...] = ()
    tls: ssl.SSLContext | None = None  # wss:// when set
    login_window_ms: int = DEFAULT_WINDOW_MS  # signed logins: how far off a timestamp may be
    plain_login: bool = True  # accept rpc.login with apiSecret at all
    # Auto-ping: a peer silent this long (s) is pinged, and closed if it has not answered within
    # the timeout (at most the interval).
    ping_interval: float = PING_INTERVAL
    ping_timeout: float = PING_TIMEOUT
    # Private streams (orders, balances): how long their messages are kept to resume from, and
    # how many of the latest are also kept in memory per stream and in all.
    stream_retention_ms: int = 7 * DAY_MS
    stream_buffer: int = BUFFER_PER_STREAM
    stream_buffer_total: int = BUFFER_TOTAL
    # False for the engine role of a distributed deployment: its clients are the gateways'.
    serve_clients: bool = True


def result_text(result: Result) -> str:
    """How the operator's inbox records an outcome (JSON, read by the CLI)."""
    if isinstance(result, Rejected):
        return json.dumps({"ok": False, "reason": result.reason.value, "message": result.message})
    return json.dumps({"ok": True, "detail": getattr(result, "value", None)})


class Server:
    def __init__(
        self,
        settings: ServerSettings,
        store: SqlStore,
        *,
        gateway: GatewayLink | None = None,
        now_ms: Callable[[], int] = clock.now_ms,
    ) -> None:
        self.settings = settings
        self.store = store
        self.ops = Operations(store)
        self._now_ms = now_ms
        now = now_ms()
        self.house_id, self.fee_id = self.ops.system_accounts(now)
        self.catalog = Catalog(store.list_instruments(), store.instrument_shards())
        self.journal = open_journal(store.url, durability=settings.durability)
        started = time.perf_counter()
        self.engine, self.replayed, self.snapshot_seq = recover(
            self.catalog.all(),
            self.journal,
            fee_account_id=self.fee_id,
            shard_number=store.shard_number(),
        )
        self.engine.validate()
        self.replay_seconds = time.perf_counter() - started
        self._snapshot_at = self.snapshot_seq or 0
        self.state_hash_at_start = self.engine.state_hash()
        self.archive = open_archive(store.url)
        streams: PrivateStreams[Connection] = PrivateStreams(
            self.catalog,
            self.archive,
            buffer_per_stream=settings.stream_buffer,
            buffer_total=settings.stream_buffer_total,
        )
        self.view: TradingView[Connection] = TradingView(self.catalog, streams)
        self._seed_view(now)
        self.view.streams.wake = self._wake_streams
        self._streams_pumping = False
        self._streams_kept_at = 0
        self.references: dict[str, Fraction] = {}  # the demo walks' prices, in ticks
        self.reference_prices = ReferencePrices(
            self.references, default_max_age_ms=settings.price_max_age_ms
        )
        self.reference_prices.set_operator_prices(store.reference_prices())
        self.price_feed: PriceFeed | None = None
        if settings.price_feed is not None and settings.serve_clients:
            self.price_feed = PriceFeed(parse_feed_url(settings.price_feed), self._feed_prices)
        self.quotes: QuoteDesk[Connection] = QuoteDesk(
            ttl_ms=settings.quote_ttl_ms,
            refresh_ms=settings.quote_refresh_ms,
            new_stream_token=stream_tokens(secrets.token_bytes(32)),
            pricer=DeskPricer(
                self.engine,
                self.view,
                self.reference_prices,
                house_account_id=self.house_id,
                band_bps=settings.rfq_band_bps,
            ),
        )
        self.market: MarketDataDesk[Connection] = MarketDataDesk(self.view, self.catalog.all)
        # All-in-one and engine role: the engine host applies and journals. Gateway role: the
        # commands go to the engine over the bus, and a replica follows its log.
        self.gateway = gateway
        self.engine_link: EngineLink | None = None  # set by the engine role's link
        self.engine_host: EngineHost | None = None
        self.host: EngineHost | BusTrading
        if gateway is None:
            self.host = self.engine_host = EngineHost(
                self.engine, self.journal, self._publish, self._fatal
            )
            self.engine_host.after_batch = self._snapshot_if_due
        else:
            self.host = gateway.attach(self)
        self.services: Services[Connection] = Services(
            authenticator=store,
            instruments=self.catalog,
            quotes=self.quotes,
            market=self.market,
            view=self.view,
            market_interval_ms=int(settings.market_data_interval * 1000),
            trading=self.host,
            history=self.ops,
            house_account_id=self.house_id,
            fees=settings.fees,
            limits=settings.limits,
            rates=RateLimiter(settings.rates),
            openrpc=openrpc_raw,
            login=LoginPolicy(window_ms=settings.login_window_ms, plain_login=settings.plain_login),
        )
        if gateway is not None:
            # Several gateways accept logins for this store: a nonce used on one must be
            # refused on all (kept for twice the window, as the local cache keeps it).
            keep_ms = 2 * settings.login_window_ms
            self.services.login.shared = lambda key, nonce, now: store.claim_nonce(
                key, nonce, now, keep_ms
            )
        self.connections = Connections(settings.caps, settings.output)
        self.connections.on_drained = self._wake_streams_if_behind
        self._check: tuple[int, dict[str, object]] | None = None  # (seq, full state check)
        self._walks: dict[str, RandomWalk] = {}
        self._demo: DemoMarket | None = None
        self._server: asyncio.Server | None = None
        self._admin: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._data_version = store.data_version()
        self._store_unreachable = False
        self._lease_watch: threading.Event | None = None  # set: stop watching
        self._inbox_in_flight: set[int] = set()
        self._pruned_at = 0
        self.fatal = asyncio.Event()
        if gateway is None and self.replayed >= settings.snapshot_every:
            self.take_snapshot()  # spare the next start this replay

    def _seed_view(self, now: int) -> None:
        engine = self.engine
        self.view.seed_seq(engine.seq)
        for symbol, book in engine.books.items():
            self.view.seed_book(symbol, book.depth(Side.BUY), book.depth(Side.SELL), engine.seq)
        for (account_id, asset), (available, locked) in engine.ledger.items():
            self.view.seed_balance(account_id, asset, available, locked)
        for order in engine.open_orders.values():
            self.view.seed_order(order.state)
        for t in self.ops.trades_since(now - DAY_MS):
            self.view.seed_trade(t.symbol, t.price, t.quantity, t.at)

    @property
    def role(self) -> str:
        if self.gateway is not None:
            return "gateway"
        return "all" if self.settings.serve_clients else "engine"

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def admin_port(self) -> int | None:
        if self._admin is None:
            return None
        return int(self._admin.sockets[0].getsockname()[1])

    async def start(self) -> None:
        if self.engine_host is not None:
            if self.settings.demo:
                self._start_demo()
            # Every connection of the previous run is gone: cancel its sessions' orders, and
            # fire the switches that came due while it was down, before any client is served.
            # (Not in the engine role: the connections are the gateways', and live on; the
            # engine link ends the sessions of gateways that died.)
            if self.settings.serve_clients:
                self.end_sessions()
            self.expire_deadlines()
            # Journal the listing of any instrument the store has and the engine has not. The
            # engine role journals every one: it listed the store's instruments when it was
            # built, outside the journal, and a gateway whose replica was built before they
            # were in the store learns of them only from the log.
            self._reload_instruments(relist=not self.settings.serve_clients)
            await self.engine_host.drain()  # so is the desk's demo inventory
        if self.gateway is not None:
            await self.gateway.start()
        if self.price_feed is not None:
            self.price_feed.start()
        healthz = (b"/healthz", lambda query: (b"ok\n", "text/plain; charset=utf-8"))
        probes: HttpRoutes = dict([healthz, (b"/readyz", self._readyz)])
        if self.settings.admin:
            self._admin = await self._listen_admin(probes)
        tls = self.settings.tls
        if self.settings.serve_clients:
            self._server = await create_server(
                listener_factory(
                    self.services,
                    self.connections,
                    self._now_ms,
                    probes,
                    OriginPolicy(self.settings.allowed_origins, secure=tls is not None),
                    Console(secure=tls is not None).page,
                ),
                self.settings.host,
                self.settings.port,
                tls=tls,
                ping_interval=self.settings.ping_interval,
                ping_timeout=self.settings.ping_timeout,
            )
        loops: list[tuple[Callable[[], None], float]] = [
            (self._pulse, self.settings.tick_interval),
            (self._publish_market_data, self.settings.market_data_interval),
            (self._watch, self.settings.watch_interval),
        ]
        if self.engine_host is not None:
            loops.append((self.expire_deadlines, self.settings.watch_interval))
        if self.gateway is not None:
            loops.append((self.gateway.expire, 0.25))
        if self._demo is not None and self.settings.demo_traders:
            loops.append((self._demo_requote, 0.5))
            loops.append((self._demo_take, 1.0))
        self._tasks = [asyncio.create_task(self._every(fn, dt)) for fn, dt in loops]
        # Everything built so far (catalog, engine state after replay, code) lives for the whole
        # process: move it out of the collector's sight, and let the youngest generation grow
        # before a collection, so that a pulse of thousands of short-lived quotes does not
        # trigger collections over long-lived state.
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 20)

    def not_ready(self) -> str | None:
        """Why this process cannot serve trading now, or None when it can (``GET /readyz``)."""
        if self.fatal.is_set():
            return "trading halted; the process is stopping"
        if self._store_unreachable:
            return "the database is unreachable"
        gateway = self.gateway
        if gateway is not None:
            if not gateway.bus.connected.is_set():
                return "the bus (NATS) is unreachable"
            if gateway.replica.held is not None:
                return "the replica is recovering"
        link = self.engine_link
        if link is not None and not link.bus.connected.is_set():
            return "the bus (NATS) is unreachable"
        return None

    def _readyz(self, query: dict[str, str]) -> HttpAnswer:
        reason = self.not_ready()
        if reason is None:
            return b"ready\n", "text/plain; charset=utf-8"
        return (
            f"not ready: {reason}\n".encode(),
            "text/plain; charset=utf-8",
            HTTPStatus.SERVICE_UNAVAILABLE,
        )

    async def _listen_admin(self, probes: HttpRoutes) -> asyncio.Server:
        settings = self.settings
        try:
            return await create_admin_server(
                {
                    **probes,
                    b"/metrics": lambda q: (render_metrics(self), CONTENT_TYPE_LATEST),
                    b"/state": lambda q: (self.state_report(q), "application/json"),
                },
                settings.admin_token,
                settings.admin_host,
                settings.admin_port,
            )
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"admin listener {settings.admin_host}:{settings.admin_port}: "
                f"{exc.strerror or exc} (--admin-port, or --no-admin)",
            ) from None

    def watch_lease(self, lease: Lease, interval: float = LEASE_CHECK_S) -> None:
        """Halt trading as soon as ``lease`` is no longer held (checked every ``interval`` s on
        a daemon thread: the check blocks, and must not hold up the loop or the exit)."""
        loop = asyncio.get_running_loop()
        stop = self._lease_watch = threading.Event()

        def check() -> None:
            while not stop.wait(interval):
                if not lease.held() and not stop.is_set():
                    lost = LeaseLost(f"this engine no longer holds {lease.describe()}")
                    with contextlib.suppress(RuntimeError):  # the loop has closed meanwhile
                        loop.call_soon_threadsafe(self._fatal, lost)
                    return

        threading.Thread(target=check, name="lease-watch", daemon=True).start()

    async def stop(self) -> None:
        """Stop accepting, finish what is being made durable, tell clients we are going away."""
        if self._lease_watch is not None:
            self._lease_watch.set()
        if self.price_feed is not None:
            await self.price_feed.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            self._server.close()
        if self._admin is not None:
            self._admin.close()
        host = self.engine_host
        if host is not None:
            # Every connection is about to close: their cancel-on-disconnect sessions end now,
            # so that the cancels are journaled before the last snapshot, not at the next start.
            if self.settings.serve_clients:
                self.end_sessions()
            await host.drain()
            self._tasks = []
            if host.failed is None:
                self.take_snapshot()
            host.close()  # the sessions closing below have nothing left to submit
        else:
            self._tasks = []
        for conn in list(self.connections):
            conn.close(CloseCode.GOING_AWAY, "server shutting down")
        if self._server is not None:
            await self._server.wait_closed()
        if self.gateway is not None:
            # The closed connections' sessions have ended over the bus (cancel-on-disconnect):
            # let those commands reach the engine, then leave.
            await self.gateway.stop()
        self.journal.close()
        self.archive.close()

    async def _every(self, fn: Callable[[], None], interval: float) -> None:
        """Run ``fn`` every ``interval`` seconds on a fixed schedule, catching up without bursts."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            try:
                fn()
            except Exception:
                log.exception("periodic task %s failed", getattr(fn, "__name__", fn))
            next_at += interval
            delay = next_at - loop.time()
            if delay < 0:  # fell behind: skip missed beats rather than bunching them up
                next_at = loop.time()
                delay = 0
            await asyncio.sleep(delay)

    def _snapshot_if_due(self) -> None:
        if self.engine_host is None:
            return
        if self.engine.seq - self._snapshot_at >= self.settings.snapshot_every:
            self.take_snapshot()

    def take_snapshot(self) -> None:
        """Snapshot the engine. At start-up and shutdown nothing is in flight and it is written
        at once; while serving, the engine host stores it with the batch that completes it, so
        a stored snapshot never runs ahead of the journal however busy the engine is."""
        engine = self.engine
        if engine.seq == self._snapshot_at or self.engine_host is None:
            return
        started = time.perf_counter()
        if self._tasks:  # serving
            self.engine_host.snapshot(self._now_ms())
        else:
            self.journal.save_snapshot(
                engine.seq, self._now_ms(), engine.state_hash(), engine.snapshot()
            )
        self._snapshot_at = engine.seq
        log.info("snapshot at seq %d in %.3f s", engine.seq, time.perf_counter() - started)

    def state_report(self, query: dict[str, str]) -> bytes:
        """``GET /state`` (admin listener): the engine's sequence, whether everything applied is
        durable, open orders and net deposits per asset, all cheap to read.

        ``?check=1`` adds the full check (O(open orders), once per engine sequence however often
        it is asked): the state hash, every invariant, and balances summed per asset, which
        must equal the net deposits. After a restart the replayed engine must report the same
        sequence and hash as the one that stopped."""
        engine = self.engine
        report: dict[str, object] = {
            "role": self.role,
            "seq": engine.seq,
            "durable": not self.host.busy,
            "openOrders": len(engine.open_orders),
            "netDeposits": {a: format_atoms(v) for a, v in sorted(engine.ledger.totals().items())},
        }
        if query.get("check") in ("1", "true"):
            if self._check is None or self._check[0] != engine.seq:
                self._check = (engine.seq, self._full_check())
            report.update(self._check[1])
        return json.dumps(report).encode()

    def _full_check(self) -> dict[str, object]:
        engine = self.engine
        try:
            engine.validate()
            problem = None
        except InvariantViolation as exc:
            problem = str(exc)
        return {
            "stateHash": engine.state_hash(),
            "valid": problem is None,
            "problem": problem,
            "balanceSums": {a: format_atoms(v) for a, v in sorted(engine.ledger.sums().items())},
        }

    # Engine output --------------------------------------------------------------------------

    def _publish(self, events: Sequence[object], records: Sequence[StreamRecord]) -> None:
        self.view.apply(events, _send, records)

    view_publish = _publish  # what a gateway's replica feeds its applied entries to

    def instruments_changed(self) -> None:
        """An instrument was listed (a gateway's replica applied the engine's listing). With
        the store unreachable the catalog waits: the watcher reads it again once it is back."""
        try:
            self._reload_instruments()
        except DatabaseUnavailable as exc:
            self._store_lost(exc)

    def halt(self, error: BaseException) -> None:
        """Stop trading for good: the process exits and its restart rebuilds the state."""
        self._fatal(error)

    def _wake_streams(self) -> None:
        """A private stream subscriber has messages to catch up on: pump soon."""
        if not self._streams_pumping:
            self._streams_pumping = True
            asyncio.get_running_loop().call_soon(self._pump_streams)

    def _wake_streams_if_behind(self) -> None:
        """A connection caught up on its reading: a replay paused for it can go on now rather
        than at the next pulse."""
        if self.view.streams.behind:
            self._wake_streams()

    def _pump_streams(self) -> None:
        """Send catching-up subscribers a few pages, then let the loop do other work; go on at
        once while a writable one has more, else at the next pulse (or when woken)."""
        self._streams_pumping = False
        if not self._tasks:  # stopped (the archive is closed): nothing more is sent
            return
        try:
            more = self.view.streams.pump(_writable, _send, _stream_lost)
        except DatabaseUnavailable as exc:  # the archive: go on at a pulse once it is back
            self._store_lost(exc)
            return
        if more:
            self._wake_streams()

    def _maintain_streams(self, now: int) -> None:
        """Have the journal index the private streams' newest messages and prune a chunk of
        those older than the retention; not while a subscriber is catching up (it may be
        reading the oldest). With nothing to do, the batch writes nothing."""
        if self.engine_host is None:
            return
        before = now - self.settings.stream_retention_ms
        self.engine_host.maintain_streams(_PRUNE_NOTHING if self.view.streams.behind else before)

    def _fatal(self, error: BaseException) -> None:
        host = self.engine_host
        if host is not None and host.failed is None:
            host.failed = error  # no command more: what it applied could not be made durable
        log.critical("trading halted (%r): the restart rebuilds the state from the journal", error)
        self.fatal.set()

    def submit(self, command: AnyCommand) -> None:
        """Submit an internal command (demo, funding); failures are logged, not raised."""
        assert self.engine_host is not None
        self.engine_host.submit(command, _log_rejection)

    # Liveness -------------------------------------------------------------------------------

    def end_sessions(self) -> None:
        """Cancel the orders of every cancel-on-disconnect session the engine knows: at start-up
        those of the previous run, whose connections all died with it; at a stop, the live
        ones, whose connections are about to close."""
        now = self._now_ms()
        sessions = self.engine.sessions()
        for account_id, tag in sessions:
            self.submit(EndSession(now, account_id, tag, True))
        if sessions:
            log.info("cancel-on-disconnect: ended %d sessions", len(sessions))

    def expire_deadlines(self) -> None:
        """Fire the dead-man's switches that are due; the engine decides which from ``at``."""
        due = self.engine.next_deadline()
        if due is None:
            return
        now = self._now_ms()
        if due <= now:
            self.submit(ExpireDeadlines(now))

    # Demo -----------------------------------------------------------------------------------

    def _start_demo(self) -> None:
        now = self._now_ms()
        ids = {}
        for name in ("demo", "house", MAKER, TAKER):
            account = self.store.get_account(name)
            if account is None:
                try:
                    account = self.store.create_account(name, "enterprise", now)
                except StoreError:
                    account = self.store.get_account(name)
            assert account is not None
            ids[name] = account.id
        self._sync_walks()
        for deposit in funding(ids, self.catalog.all()):
            self.submit(msgspec.structs.replace(deposit, at=now))
        self._demo = DemoMarket(
            ids[MAKER], ids[TAKER], self.references, self.catalog.all, seed=self.settings.seed
        )

    def _sync_walks(self) -> None:
        for inst in self.catalog.all():
            if inst.symbol not in self._walks:
                walk = RandomWalk(
                    start_ticks(inst),
                    seed=self.settings.seed * 1_000_003 + sum(map(ord, inst.symbol)),
                    volatility=self.settings.volatility,
                )
                self._walks[inst.symbol] = walk
                self.references[inst.symbol] = walk.price

    def _demo_requote(self) -> None:
        assert self._demo is not None
        for command in self._demo.requote(self._now_ms()):
            self.submit(command)

    def _demo_take(self) -> None:
        assert self._demo is not None
        for command in self._demo.maybe_take(self._now_ms()):
            self.submit(command)

    # Timers ---------------------------------------------------------------------------------

    def _pulse(self) -> None:
        now = self._now_ms()
        if self._walks:
            dt = self.settings.tick_interval
            for symbol, walk in self._walks.items():
                self.references[symbol] = walk.step(dt)
        for conn, frames in self.quotes.due_per_connection(now, _writable):
            conn.send_quotes(frames)
        self.view.publish_tickers(now, _send)
        if self.view.streams.behind:  # some may have become writable since
            self._wake_streams()
        self.connections.output.recount()

    def _publish_market_data(self) -> None:
        subscribers = self.market.subscribers
        if not subscribers:
            return
        push = self.market.snapshot(self._now_ms())
        for conn in subscribers:
            if conn.writable:
                conn.send_push(push)

    def _feed_prices(self, prices: list[FeedPrice]) -> None:
        """Prices from ``--price-feed``: the desk's reference for the instruments listed here
        (a feed may carry more than this server trades)."""
        catalog = self.catalog
        for p in prices:
            if catalog.get(p.symbol) is not None and p.timestamp is not None:
                self.reference_prices.set_feed_price(p.symbol, p.price, p.timestamp)

    def _watch(self) -> None:
        now = self._now_ms()
        self.connections.expire_logins(now)
        if now - self._pruned_at >= 10_000:
            self.services.rates.prune(now)
            self._pruned_at = now
        if self.engine_host is not None and (
            now - self._streams_kept_at >= STREAM_UPKEEP_MS or self.journal.prune_pending
        ):
            self._streams_kept_at = now
            self._maintain_streams(now)
        live = {c: c.session.principal for c in self.connections if c.session.principal is not None}
        revoked: set[str] = set()
        try:
            if self._store_changed():
                self._reload_instruments()
                self.reference_prices.set_operator_prices(self.store.reference_prices())
                if self.engine_host is not None:
                    self._take_inbox()
                if live:
                    revoked = self.store.invalid_keys({p.key_id for p in live.values()}, now)
        except DatabaseUnavailable as exc:
            self._store_lost(exc)
        expired = {c for c, p in live.items() if p.expires_at is not None and p.expires_at <= now}
        for conn, principal in live.items():
            if conn in expired:
                conn.close(CloseCode.POLICY_VIOLATION, "api key expired")
            elif principal.key_id in revoked:
                conn.close(CloseCode.POLICY_VIOLATION, "api key revoked")

    def _store_changed(self) -> bool:
        """Whether another process has written to the store since the last look. After an
        outage, True: what was written meanwhile is read again."""
        version = self.store.data_version()
        changed = version != self._data_version or self._store_unreachable
        self._data_version = version
        if self._store_unreachable:
            self._store_unreachable = False
            log.warning("the database at %s is reachable again", self._shown_url)
        return changed

    def _store_lost(self, exc: DatabaseUnavailable) -> None:
        """Say once that the store is unreachable (each call meanwhile is refused with 4002)."""
        if not self._store_unreachable:
            self._store_unreachable = True
            log.warning(
                "the database at %s is unreachable (%s): logins and history reads are refused "
                "until it is back",
                self._shown_url,
                exc.detail,
            )

    @property
    def _shown_url(self) -> str:
        return parse_db_url(self.store.url).shown

    def _reload_instruments(self, *, relist: bool = False) -> None:
        """List the store's new instruments (``relist``: journal the listing of every one, a
        no-op for the engine where listed). The engine journals each listing (so a replica
        lists it at the same point); a gateway's catalog shows what its replica has listed."""
        instruments = self.store.list_instruments()
        if self.engine_host is not None:
            for inst in instruments:
                if relist or inst.symbol not in self.engine.markets:
                    self.submit(ListInstrument.of(self._now_ms(), inst))
                    if inst.symbol not in self.engine.markets:
                        log.error("cannot list %s (see the log)", inst.symbol)
        self.catalog.replace(
            [i for i in instruments if i.symbol in self.engine.markets],
            self.store.instrument_shards(),
        )
        if self.settings.demo:
            self._sync_walks()

    def _take_inbox(self) -> None:
        for inbox_id, blob in self.ops.inbox_pending():
            if inbox_id in self._inbox_in_flight:
                continue
            try:
                command = decoder.decode(blob)
            except Exception as exc:
                self.ops.inbox_fail(inbox_id, json.dumps({"ok": False, "message": str(exc)}))
                continue
            command = msgspec.structs.replace(command, at=self._now_ms())  # the engine's time
            self._inbox_in_flight.add(inbox_id)
            assert self.engine_host is not None
            self.engine_host.submit(
                command,
                lambda _r, i=inbox_id: self._inbox_in_flight.discard(i),  # type: ignore[misc]
                inbox_id=inbox_id,
                inbox_result=result_text,
            )


def _send(conn: Connection, push: Push) -> None:
    conn.send_push(push)


def _writable(conn: Connection) -> bool:
    return conn.writable


def _stream_lost(conn: Connection, reason: str) -> None:
    """A subscriber's stream lost messages it was catching up on (pruned meanwhile): close the
    connection; its client reconnects, is told the resume is unavailable, and starts afresh."""
    conn.close(CloseCode.INTERNAL_ERROR, reason)


def _log_rejection(result: Result | ApiError) -> None:
    if isinstance(result, Rejected):
        log.debug("internal command rejected: %s %s", result.reason.value, result.message)
