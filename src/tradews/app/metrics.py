"""Prometheus metrics, served at ``GET /metrics`` on the WebSocket port.

The hot path only bumps plain integers on the server; this collector reads them when scraped, so
publishing metrics costs nothing between scrapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from tradews.app.server import Server

Family = GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily


class ServerCollector(Collector):
    def __init__(self, server: Server) -> None:
        self._server = server

    def collect(self) -> Iterator[Family]:
        s = self._server
        yield GaugeMetricFamily(
            "tradews_connections", "Open WebSocket connections.", value=len(s.connections)
        )
        yield GaugeMetricFamily(
            "tradews_sessions_authenticated",
            "Connections that have logged in.",
            value=sum(1 for c in s.connections if c.session.principal is not None),
        )
        yield GaugeMetricFamily(
            "tradews_quote_streams", "Open RFQ quote streams.", value=s.quotes.stream_count
        )
        yield GaugeMetricFamily(
            "tradews_market_data_subscribers",
            "Connections subscribed to market data.",
            value=len(s.market.subscribers),
        )
        yield CounterMetricFamily(
            "tradews_quotes", "Firm quotes made and sent.", value=s.quotes.quotes_made
        )
        yield GaugeMetricFamily(
            "tradews_engine_seq", "Sequence number of the last command applied.", value=s.engine.seq
        )
        yield CounterMetricFamily(
            "tradews_engine_commands", "Commands applied since start.", value=s.host.commands
        )
        yield CounterMetricFamily(
            "tradews_journal_batches",
            "Journal batches made durable since start.",
            value=s.host.batches,
        )
        yield GaugeMetricFamily(
            "tradews_open_orders", "Orders resting in the books.", value=len(s.engine.open_orders)
        )
        output = s.connections.output
        yield CounterMetricFamily(
            "tradews_slow_consumers_dropped",
            "Connections disconnected for leaving too much output unread.",
            value=output.dropped,
        )
        yield GaugeMetricFamily(
            "tradews_output_backlog_bytes",
            "Output queued for connections that are behind (an estimate that errs high).",
            value=output.estimate,
        )
        yield GaugeMetricFamily(
            "tradews_connections_behind",
            "Connections whose unread output is above the high-water mark.",
            value=len(output.backlogged),
        )
        yield CounterMetricFamily(
            "tradews_rate_limited",
            "Calls refused by a rate limit (error 3002).",
            value=s.services.rates.refused,
        )
        yield from _bus_metrics(s)
        yield from _request_metrics(s)
        yield CounterMetricFamily(
            "tradews_quotes_skipped_slow_reader",
            "Quotes not sent because the client's socket buffer was full.",
            value=s.quotes.skipped_slow,
        )


def _request_metrics(s: Server) -> Iterator[Family]:
    """Requests by method and encoding with their latency (receipt to reply: for a command,
    that includes making it durable), error replies by method and reason, the engine's queue
    and the journal's commit latency."""
    stats = s.services.stats
    latency = HistogramMetricFamily(
        "tradews_request_duration_seconds",
        "Requests by method and encoding: time from receipt to reply.",
        labels=["method", "encoding"],
    )
    for (method, encoding), hist in sorted(stats.latency.items()):
        latency.add_metric([method, encoding], hist.cumulative(), hist.sum_ns / 1e9)
    yield latency
    errors = CounterMetricFamily(
        "tradews_request_errors",
        "Error replies by method and reason (the error code's name; REJECTED:reason for an "
        "order the engine rejected).",
        labels=["method", "reason"],
    )
    for (method, reason), n in sorted(stats.errors.items()):
        errors.add_metric([method, reason], n)
    yield errors
    host = s.engine_host
    if host is not None:
        yield GaugeMetricFamily(
            "tradews_engine_queue_depth",
            "Commands applied and not yet durable (waiting for the journal or being written).",
            value=host.queue_depth,
        )
        commit = host.commit_latency
        yield HistogramMetricFamily(
            "tradews_journal_commit_seconds",
            "Journal batches: time from handing a batch to the journal until it is durable.",
            buckets=commit.cumulative(),
            sum_value=commit.sum_ns / 1e9,
        )


def _bus_metrics(s: Server) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
    """A distributed deployment's: the gateway's requests awaiting the engine and its replica's
    gap repairs; the engine's commands taken, duplicates dropped and log not yet published."""
    if s.gateway is not None and s.gateway.trading is not None:
        trading, replica = s.gateway.trading, s.gateway.replica
        yield GaugeMetricFamily(
            "tradews_bus_pending",
            "Commands sent to the engine and not yet seen durable in its log.",
            value=trading.pending,
        )
        yield CounterMetricFamily(
            "tradews_bus_timeouts",
            "Requests answered 4002 because the engine did not confirm in time.",
            value=trading.timed_out,
        )
        yield CounterMetricFamily(
            "tradews_replica_gaps_filled",
            "Times the replica read entries missing from the log from the journal.",
            value=replica.gaps_filled,
        )
    link = s.engine_link
    if link is not None:
        yield CounterMetricFamily(
            "tradews_bus_commands_taken", "Commands taken from the bus.", value=link.taken
        )
        yield CounterMetricFamily(
            "tradews_bus_duplicates",
            "Redelivered or repeated commands dropped (already applied).",
            value=link.duplicates,
        )
        yield GaugeMetricFamily(
            "tradews_log_unpublished",
            "Durable journal entries not yet published to the gateways.",
            value=link.unpublished,
        )


def render(server: Server) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServerCollector(server))
    return generate_latest(registry)
