"""The engine and its gateways joined over NATS JetStream.

Two streams per deployment (``<ns>`` is the bus URL's path, ``tradews`` by default):

- ``<NS>_COMMANDS`` (subjects ``<ns>.cmd.<shard>``): what gateways ask an engine to do. Each
  message is one command (``engine.commands.encoder``) with a ``Nats-Msg-Id`` header unique to
  the request; JetStream drops a repeat of an id within its duplicate window, and the engine
  drops a redelivery of one it already journaled (the id is journaled with the command), so a
  command retried after any fault is applied once. The engine reads it through a durable pull
  consumer and acknowledges a message only once its command is durable, so a command an engine
  took and died on is delivered again to the next one.
- ``<NS>_LOG`` (subjects ``<ns>.log.<shard>``): the journal's tail, published by the engine after
  each durable batch, in sequence order: one message per batch, ``[[seq, msg_id, command],
  ...]``, ``Nats-Msg-Id`` ``<shard>:<first seq>-<last seq>``. Gateways replay it into a replica
  of the engine (see ``app/replica.py``), skipping any seq they have already applied.

Everything here is transport. What a message means is decided by the app layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import msgspec

log = logging.getLogger(__name__)

MSG_ID = "Nats-Msg-Id"
DUPLICATE_WINDOW_S = 120.0  # JetStream's de-duplication window for command ids
# How long the log keeps entries (a gateway reads older ones from the store).
LOG_MAX_AGE_S = 24 * 3600.0
ACK_WAIT_S = 30.0  # a command taken and not acknowledged within this is delivered again
# At close, how long the subscriptions' callbacks get to finish the messages already received
# (the client library's default is 30 s, far longer than a stop should take).
DRAIN_TIMEOUT_S = 2.0
FETCH_BATCH = 256

_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
_log_encoder = msgspec.msgpack.Encoder()
_log_decoder = msgspec.msgpack.Decoder(list[tuple[int, str, bytes]])
# A log message carries a durable batch's entries, up to this many bytes of commands (NATS
# refuses messages over its max_payload, 1 MiB by default).
LOG_MESSAGE_BYTES = 256 * 1024
_prices_encoder = msgspec.msgpack.Encoder()
_prices_decoder = msgspec.msgpack.Decoder(dict[str, tuple[int, int]])


class BusError(Exception):
    """The bus URL is wrong, or NATS cannot be reached or refused a request."""


@dataclass(frozen=True, slots=True)
class BusUrl:
    servers: str  # nats://host:port
    namespace: str

    @property
    def commands_stream(self) -> str:
        return f"{self.namespace.upper()}_COMMANDS"

    @property
    def log_stream(self) -> str:
        return f"{self.namespace.upper()}_LOG"

    def command_subject(self, shard: str) -> str:
        return f"{self.namespace}.cmd.{shard}"

    def log_subject(self, shard: str) -> str:
        return f"{self.namespace}.log.{shard}"


def parse_bus_url(text: str) -> BusUrl:
    """``nats://host:port[/namespace]`` (the namespace separates deployments on one NATS)."""
    parts = urlsplit(text)
    if parts.scheme == "memory":  # within one process (adapters/memory_bus.py)
        return BusUrl("memory://", _namespace(parts.netloc + parts.path))
    if parts.scheme not in ("nats", "tls") or not parts.hostname:
        raise BusError(f"a bus URL looks like nats://host:4222[/namespace], got {text!r}")
    return BusUrl(f"{parts.scheme}://{parts.netloc}", _namespace(parts.path))


def _namespace(text: str) -> str:
    namespace = text.strip("/") or "tradews"
    if not _NAME.fullmatch(namespace):
        raise BusError(f"the bus namespace must be 1-32 of A-Z a-z 0-9 _ -, got {namespace!r}")
    return namespace


def open_bus(text: str, *, name: str) -> Any:
    """The bus at ``text``: ``nats://host:4222[/namespace]``, or ``memory://namespace`` (one
    process). Returns an ``app.bus.MessageBus``."""
    url = parse_bus_url(text)
    if url.servers == "memory://":
        from tradews.adapters.memory_bus import MemoryBus

        return MemoryBus(url, name=name)
    return Bus(url, name=name)


def check_shard(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise BusError(f"a shard name is 1-32 of A-Z a-z 0-9 _ -, got {name!r}")
    return name


def encode_log(entries: Sequence[tuple[int, str | None, bytes]]) -> bytes:
    """One log message: ``[[seq, msg_id, command], ...]``, in seq order."""
    return _log_encoder.encode([(seq, msg_id or "", blob) for seq, msg_id, blob in entries])


def decode_log(data: bytes) -> list[tuple[int, str, bytes]]:
    return _log_decoder.decode(data)


def log_messages(
    entries: Sequence[tuple[int, str | None, bytes]],
) -> list[Sequence[tuple[int, str | None, bytes]]]:
    """Split a batch into messages of at most LOG_MESSAGE_BYTES of commands each."""
    messages: list[Sequence[tuple[int, str | None, bytes]]] = []
    start, size = 0, 0
    for i, (_, _, blob) in enumerate(entries):
        if size and size + len(blob) > LOG_MESSAGE_BYTES:
            messages.append(entries[start:i])
            start, size = i, 0
        size += len(blob)
    if start < len(entries):
        messages.append(entries[start:])
    return messages


@dataclass(slots=True)
class Command:
    """A command message taken by the engine; ``ack`` once it is durable (or a duplicate)."""

    data: bytes
    msg_id: str
    redelivered: bool
    ack: Callable[[], Awaitable[None]]


class Bus:
    """One NATS connection and the JetStream streams of a deployment."""

    def __init__(self, url: BusUrl, *, name: str, ack_wait_s: float = ACK_WAIT_S) -> None:
        self.url = url
        self._name = name
        self._ack_wait = ack_wait_s
        self._nc: Any = None
        self._js: Any = None
        self.connected = asyncio.Event()
        self._closing = False
        self._pulls: list[Any] = []  # the pull consumers' subscriptions (take_commands)

    async def connect(self, *, wait: bool = True) -> None:
        """Connect, retrying every second while NATS is unreachable (``wait``), then make sure
        the streams exist. Later disconnections are retried for ever by the client library."""
        try:
            import nats  # imported here: only a deployment with a bus needs the client library
        except ImportError:
            raise BusError(
                "the bus needs the NATS client: pip install 'tradews[nats]' (nats-py)"
            ) from None

        async def disconnected() -> None:
            self.connected.clear()
            if self._closing:
                return
            log.warning("bus: lost NATS at %s; reconnecting", self.url.servers)

        async def reconnected() -> None:
            self.connected.set()
            log.warning("bus: NATS at %s is back", self.url.servers)

        async def error(exc: Exception) -> None:
            log.debug("bus: %r", exc)

        announced = False
        while True:
            try:
                self._nc = await nats.connect(
                    servers=[self.url.servers],
                    name=self._name,
                    connect_timeout=2,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    disconnected_cb=disconnected,
                    reconnected_cb=reconnected,
                    error_cb=error,
                    drain_timeout=DRAIN_TIMEOUT_S,
                )
                break
            except Exception as exc:
                if not wait:
                    raise BusError(f"cannot reach NATS at {self.url.servers}: {exc}") from None
                if not announced:
                    log.warning("bus: waiting for NATS at %s (%s)", self.url.servers, exc)
                    announced = True
                await asyncio.sleep(1.0)
        self._js = self._nc.jetstream()
        await self._ensure_streams()
        self.connected.set()

    async def _ensure_streams(self) -> None:
        from nats.js.api import RetentionPolicy, StorageType, StreamConfig

        url = self.url
        configs = [
            StreamConfig(
                name=url.commands_stream,
                subjects=[f"{url.namespace}.cmd.>"],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                duplicate_window=DUPLICATE_WINDOW_S,
            ),
            StreamConfig(
                name=url.log_stream,
                subjects=[f"{url.namespace}.log.>"],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                duplicate_window=DUPLICATE_WINDOW_S,
                max_age=LOG_MAX_AGE_S,
            ),
        ]
        for config in configs:
            try:
                await self._js.stream_info(config.name)
            except Exception:
                try:
                    await self._js.add_stream(config)
                except Exception as exc:
                    raise BusError(
                        f"cannot create the JetStream stream {config.name}: {exc}"
                    ) from None

    async def close(self) -> None:
        """Leave: drop the pull consumers' subscriptions, then drain the others and close.

        A pull subscription is dropped, not drained: what it holds is never read again (the
        status reply to a pull request that expired arrives after ``fetch`` has returned, and
        draining would wait for it to be read until the drain timeout), and a command fetched
        but not acknowledged is delivered again to the next engine."""
        self._closing = True
        for sub in self._pulls:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._pulls = []
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.drain()
            self._nc = None

    async def delete_streams(self) -> None:
        """Remove this namespace's streams (tests, and `tradews bus reset`)."""
        for name in (self.url.commands_stream, self.url.log_stream):
            with contextlib.suppress(Exception):
                await self._js.delete_stream(name)

    # Gateway side ------------------------------------------------------------------------------

    async def send_command(self, shard: str, msg_id: str, data: bytes) -> None:
        """Store a command in the commands stream (returns once JetStream has it)."""
        await self._js.publish(
            self.url.command_subject(shard), data, timeout=5.0, headers={MSG_ID: msg_id}
        )

    async def follow_log(
        self, shard: str, on_entry: Callable[[int, str, bytes], None]
    ) -> Callable[[], Awaitable[None]]:
        """Deliver every log entry published from now on, in order, to ``on_entry``. An ordered
        consumer: after a NATS outage it resumes where it stopped, so nothing is skipped.
        Returns a function that stops following."""
        from nats.js.api import DeliverPolicy

        async def deliver(msg: Any) -> None:
            try:
                entries = decode_log(msg.data)
            except msgspec.DecodeError:
                log.error("bus: an undecodable log message on %s", msg.subject)
                return
            for seq, msg_id, command in entries:
                on_entry(seq, msg_id, command)

        sub = await self._js.subscribe(
            self.url.log_subject(shard),
            stream=self.url.log_stream,
            cb=deliver,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
            idle_heartbeat=1.0,
            pending_msgs_limit=1_000_000,
            pending_bytes_limit=1 << 30,
        )
        return sub.unsubscribe  # type: ignore[no-any-return]

    # Reference prices -------------------------------------------------------------------------

    async def publish_prices(self, shard: str, prices: dict[str, tuple[int, int]]) -> None:
        """Publish reference prices (symbol -> ticks as numerator, denominator) on the plain
        NATS subject ``<ns>.prices.<shard>``: a feed, perishable, so no stream keeps it."""
        if self._nc is not None and self.connected.is_set():
            await self._nc.publish(
                f"{self.url.namespace}.prices.{shard}", _prices_encoder.encode(prices)
            )

    async def follow_prices(
        self, shard: str, on_prices: Callable[[dict[str, tuple[int, int]]], None]
    ) -> None:
        async def deliver(msg: Any) -> None:
            try:
                prices = _prices_decoder.decode(msg.data)
            except msgspec.DecodeError:
                log.error("bus: an undecodable price message on %s", msg.subject)
                return
            on_prices(prices)

        await self._nc.subscribe(f"{self.url.namespace}.prices.{shard}", cb=deliver)
        # and the current ones now, rather than at the next pulse
        try:
            reply = await self._nc.request(
                f"{self.url.namespace}.prices_now.{shard}", b"", timeout=1.0
            )
        except Exception:
            return  # no engine answering (yet): the next pulse brings them
        await deliver(reply)

    async def answer_prices(
        self, shard: str, current: Callable[[], dict[str, tuple[int, int]]]
    ) -> None:
        """Answer a gateway's request for the current reference prices."""

        async def answer(msg: Any) -> None:
            await msg.respond(_prices_encoder.encode(current()))

        await self._nc.subscribe(f"{self.url.namespace}.prices_now.{shard}", cb=answer)
        await self._nc.flush()  # answering from now on: a gateway asking next gets the prices

    # Gateway liveness --------------------------------------------------------------------------

    async def publish_heartbeat(self, gateway_id: int) -> None:
        """A gateway says it is alive (plain NATS, ``<ns>.gateways``, about once a second)."""
        if self._nc is not None and self.connected.is_set():
            await self._nc.publish(f"{self.url.namespace}.gateways", str(gateway_id).encode())

    async def follow_heartbeats(self, on_beat: Callable[[int], None]) -> None:
        async def deliver(msg: Any) -> None:
            try:
                on_beat(int(msg.data))
            except ValueError:
                log.error("bus: a malformed heartbeat on %s", msg.subject)

        await self._nc.subscribe(f"{self.url.namespace}.gateways", cb=deliver)
        await self._nc.flush()  # following from now on

    # Engine side -------------------------------------------------------------------------------

    async def take_commands(self, shard: str) -> Any:
        """The engine's durable consumer of its shard's commands (one per shard: a standby that
        takes over continues from the same consumer)."""
        from nats.js.api import AckPolicy, ConsumerConfig

        consumer = await self._js.pull_subscribe(
            self.url.command_subject(shard),
            durable=f"engine-{shard}",
            stream=self.url.commands_stream,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT, ack_wait=self._ack_wait, max_ack_pending=100_000
            ),
        )
        self._pulls.append(consumer)
        return consumer

    async def fetch(self, consumer: Any, timeout: float = 1.0) -> list[Command]:
        """The commands waiting (up to a batch), or an empty list after ``timeout``."""
        import nats.errors

        try:
            msgs = await consumer.fetch(FETCH_BATCH, timeout=timeout)
        except (TimeoutError, nats.errors.TimeoutError):
            return []
        return [
            Command(
                m.data,
                (m.headers or {}).get(MSG_ID, ""),
                m.metadata.num_delivered > 1,
                m.ack,
            )
            for m in msgs
        ]

    async def last_logged(self, shard: str) -> int:
        """The engine seq of the newest entry in the shard's log (0 if it has none)."""
        try:
            msg = await self._js.get_last_msg(self.url.log_stream, self.url.log_subject(shard))
        except Exception as exc:
            if "no message found" in str(exc).lower() or "not found" in str(exc).lower():
                return 0
            raise
        entries = decode_log(msg.data)
        return entries[-1][0] if entries else 0

    async def publish_log(
        self, shard: str, entries: Sequence[tuple[int, str | None, bytes]]
    ) -> None:
        """Publish journaled entries in order, a durable batch in one message (or a few, when
        large): one publish and one acknowledgement per batch, not per command. Returns once
        JetStream has stored every one. The message id names the batch's seqs, so a batch
        published twice is stored once; a republished entry in a batch cut differently may
        reach followers again, and they skip seqs they have applied."""
        subject = self.url.log_subject(shard)
        js = self._js
        acks = [
            await js.publish_async(
                subject,
                encode_log(batch),
                headers={MSG_ID: f"{shard}:{batch[0][0]}-{batch[-1][0]}"},
            )
            for batch in log_messages(entries)
        ]
        await asyncio.gather(*acks)
