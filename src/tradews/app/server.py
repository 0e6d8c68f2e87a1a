"""The all-in-one server process: storage, price feed, quote and market data streams, WebSocket.

Timers live here; every decision they trigger is made by the sans-I/O session layer.

- the *pulse* (every ``tick_interval``) steps the demo price walk and sends each quote stream the
  quote it is owed (price moved, or the last one is about to expire);
- the *market data* timer sends one snapshot to every ``market_data`` subscriber;
- the *watcher* polls ``PRAGMA data_version`` and reloads instruments when the CLI changed them,
  and closes connections whose API key was revoked or has expired.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from picows import WSCloseCode, ws_create_server
from prometheus_client import CONTENT_TYPE_LATEST

from tradews.adapters import clock
from tradews.adapters.sqlite_store import SqliteStore
from tradews.adapters.ws_server import MAX_MESSAGE_BYTES, Connection, listener_factory
from tradews.app.catalog import Catalog
from tradews.app.demo import start_ticks
from tradews.app.metrics import render as render_metrics
from tradews.app.openrpc import openrpc_document
from tradews.domain.random_walk import RandomWalk
from tradews.session.market_data import MarketDataDesk
from tradews.session.quote_desk import QuoteDesk
from tradews.session.session import Services, SessionLimits

log = logging.getLogger(__name__)


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
    watch_interval: float = 0.5
    volatility: float = 0.02
    limits: SessionLimits = SessionLimits()


def quote_id_factory() -> Callable[[], str]:
    """Ids unique within the process and, by their random prefix, across restarts."""
    prefix = secrets.token_hex(4)
    counter = itertools.count(1)
    return lambda: f"{prefix}-{next(counter):x}"


class Server:
    def __init__(
        self,
        settings: ServerSettings,
        store: SqliteStore,
        *,
        now_ms: Callable[[], int] = clock.now_ms,
    ) -> None:
        self.settings = settings
        self.store = store
        self._now_ms = now_ms
        self.catalog = Catalog(store.list_instruments())
        self.quotes: QuoteDesk[Connection] = QuoteDesk(
            ttl_ms=settings.quote_ttl_ms,
            refresh_ms=settings.quote_refresh_ms,
            new_quote_id=quote_id_factory(),
        )
        self.market: MarketDataDesk[Connection] = MarketDataDesk(self.quotes, self.catalog.all)
        self.services: Services[Connection] = Services(
            authenticator=store,
            instruments=self.catalog,
            quotes=self.quotes,
            market=self.market,
            market_interval_ms=int(settings.market_data_interval * 1000),
            limits=settings.limits,
            openrpc=openrpc_document,
        )
        self.connections: set[Connection] = set()
        self._walks: dict[str, RandomWalk] = {}
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._data_version = store.data_version()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        if self.settings.demo:
            self._sync_walks()
        self._server = await ws_create_server(
            listener_factory(
                self.services,
                self.connections,
                self._now_ms,
                {
                    b"/metrics": lambda: (render_metrics(self), CONTENT_TYPE_LATEST),
                    b"/healthz": lambda: (b"ok\n", "text/plain; charset=utf-8"),
                },
            ),
            self.settings.host,
            self.settings.port,
            max_frame_size=MAX_MESSAGE_BYTES,
            websocket_handshake_timeout=5,
            enable_auto_ping=True,
            auto_ping_idle_timeout=30,
            auto_ping_reply_timeout=10,
        )
        loops: list[tuple[Callable[[], None], float]] = [
            (self._pulse, self.settings.tick_interval),
            (self._publish_market_data, self.settings.market_data_interval),
            (self._watch, self.settings.watch_interval),
        ]
        self._tasks = [asyncio.create_task(self._every(fn, dt)) for fn, dt in loops]

    async def stop(self) -> None:
        """Stop accepting, tell every client we are going away, and release everything."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.close(WSCloseCode.GOING_AWAY, "server shutting down")
        if self._server is not None:
            await self._server.wait_closed()

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

    # Timers --------------------------------------------------------------------------------

    def _sync_walks(self) -> None:
        for inst in self.catalog.all():
            if inst.symbol not in self._walks:
                walk = RandomWalk(
                    start_ticks(inst),
                    seed=self.settings.seed * 1_000_003 + sum(map(ord, inst.symbol)),
                    volatility=self.settings.volatility,
                )
                self._walks[inst.symbol] = walk
                self.quotes.set_reference(inst.symbol, walk.price)

    def _pulse(self) -> None:
        now = self._now_ms()
        if self._walks:
            dt = self.settings.tick_interval
            for symbol, walk in self._walks.items():
                self.quotes.set_reference(symbol, walk.step(dt))
            self.market.observe(now)
        for conn, frame in self.quotes.due(now, _writable):
            conn.send(frame)

    def _publish_market_data(self) -> None:
        subscribers = self.market.subscribers
        if not subscribers:
            return
        frame = self.market.snapshot(self._now_ms())
        for conn in subscribers:
            if conn.writable:
                conn.send(frame)

    def _watch(self) -> None:
        now = self._now_ms()
        version = self.store.data_version()
        changed = version != self._data_version
        self._data_version = version
        if changed:
            self.catalog.replace(self.store.list_instruments())
            if self.settings.demo:
                self._sync_walks()
        live = {c: c.session.principal for c in self.connections if c.session.principal is not None}
        if not live:
            return
        expired = {c for c, p in live.items() if p.expires_at is not None and p.expires_at <= now}
        revoked: set[str] = set()
        if changed:
            revoked = self.store.invalid_keys({p.key_id for p in live.values()}, now)
        for conn, principal in live.items():
            if conn in expired:
                conn.close(WSCloseCode.POLICY_VIOLATION, "api key expired")
            elif principal.key_id in revoked:
                conn.close(WSCloseCode.POLICY_VIOLATION, "api key revoked")


def _writable(conn: Connection) -> bool:
    return conn.writable
