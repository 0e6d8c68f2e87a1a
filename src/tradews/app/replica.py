"""A gateway's copy of the engine, kept by replaying the engine's durable log.

The engine is deterministic: the same commands in the same order make the same state, the same
events and the same results (that is how it recovers from its journal). So a gateway does not
need the engine's events shipped to it: it follows the log of journaled commands that the engine
publishes after each durable batch (``adapters/nats_bus.py``) and applies each entry to a replica
of its own. From the replica's events it feeds its view and streams exactly as the all-in-one
server feeds them from the engine; a request that this gateway sent is answered with the
replica's result for it, which is the engine's result, and only once the log shows the command
durable. The replica also answers what the session asks of the engine's memory (which symbol an
order is on, the book the RFQ desk prices from), with no round trip.

Start-up leaves no gap: the gateway follows the log *before* it recovers the replica from the
store (snapshot, then journal), holding what arrives meanwhile; every entry is journaled before it
is published, so each one is either in what the store gave or in what arrived after. A gap later
(the log's publisher failed over, or trimmed an entry) is filled from the journal.

The private streams' messages are numbered here as the engine's journal numbers them: from where
the archive says each stream stood before the entry, one more per message.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from tradews.api.errors import ApiError, ErrorCode
from tradews.domain.orders import Reject
from tradews.engine.commands import AnyCommand, ListInstrument, decoder, encoder
from tradews.engine.engine import Engine, Rejected, Result
from tradews.session.ports import StreamArchive
from tradews.session.streams import StreamRecord, records_of

log = logging.getLogger(__name__)

Reply = Callable[[Result | ApiError], None]

# A gateway's cancel-on-disconnect tags: its id (1 .. GATEWAY_IDS-1) above TAG_BITS random bits.
TAG_BITS = 32
GATEWAY_IDS = 1 << 30


def gateway_of(tag: int) -> int:
    """The id of the gateway whose session made ``tag`` (0: not a gateway's)."""
    return tag >> TAG_BITS


# (events, records) of one applied entry, to the view
Publish = Callable[[Sequence[object], Sequence[StreamRecord]], None]


class StreamNumbers:
    """Numbers the private stream messages of each applied entry, as the journal does."""

    def __init__(self, archive: StreamArchive) -> None:
        self._archive = archive
        self._heads: dict[tuple[int, str], int] = {}

    def number(self, before_seq: int, events: Sequence[object]) -> list[StreamRecord]:
        heads = self._heads
        records = []
        for account_id, channel, kind, event in records_of(events):
            stream = (account_id, channel)
            last = heads.get(stream)
            if last is None:
                last = self._archive.head(account_id, channel, before_seq)
            heads[stream] = last = last + 1
            records.append(StreamRecord(account_id, channel, last, kind, event))
        return records


class Replica:
    """Applies the log's entries, in order and each once, to the gateway's engine replica."""

    def __init__(
        self,
        *,
        resolved: Callable[[str, Result], None],
        on_fatal: Callable[[BaseException], None],
    ) -> None:
        self._resolved = resolved
        self._on_fatal = on_fatal
        self.engine: Engine | None = None
        self._read_journal: Callable[[int], Iterable[tuple[int, AnyCommand]]] = _nothing
        self._numbers: StreamNumbers | None = None
        self._publish: Publish = _ignore
        self._listed: Callable[[], None] = _none
        self.held: list[tuple[int, str, bytes]] | None = []  # arrivals before start()
        self.failed: BaseException | None = None
        self.applied = 0
        self.gaps_filled = 0

    def on_entry(self, seq: int, msg_id: str, blob: bytes) -> None:
        """One log entry, as delivered by the bus."""
        if self.held is not None:
            self.held.append((seq, msg_id, blob))
            return
        self._entry(seq, msg_id, blob)

    def start(
        self,
        engine: Engine,
        *,
        read_journal: Callable[[int], Iterable[tuple[int, AnyCommand]]],
        numbers: StreamNumbers,
        publish: Publish,
        listed: Callable[[], None],
    ) -> None:
        """The replica is recovered (``engine``): apply what arrived meanwhile, then go live.
        ``read_journal(after)`` fills gaps; ``listed`` is called after an instrument is listed."""
        self.engine = engine
        self._read_journal = read_journal
        self._numbers = numbers
        self._publish = publish
        self._listed = listed
        held, self.held = self.held or [], None
        for seq, msg_id, blob in held:
            self._entry(seq, msg_id, blob)

    def _entry(self, seq: int, msg_id: str, blob: bytes) -> None:
        assert self.engine is not None
        if self.failed is not None or seq <= self.engine.seq:
            return  # applied already (from the store at start, or a repeat)
        try:
            if seq > self.engine.seq + 1:
                self._fill(seq - 1)
            self._apply(decoder.decode(blob), seq, msg_id)
        except Exception as exc:
            self.failed = exc
            log.critical("replica: cannot apply log entry %d", seq, exc_info=True)
            self._on_fatal(exc)

    def _fill(self, upto: int) -> None:
        """Apply the journal's entries up to ``upto`` (the log skipped them)."""
        assert self.engine is not None
        start = self.engine.seq
        for seq, command in self._read_journal(start):
            if seq > upto:
                break
            self._apply(command, seq, "")
        if self.engine.seq != upto:
            raise RuntimeError(
                f"the log jumped to {upto + 1} and the journal holds only up to {self.engine.seq}"
            )
        self.gaps_filled += 1
        log.warning(
            "replica: filled a gap in the log from the journal (seq %d-%d)", start + 1, upto
        )

    def _apply(self, command: AnyCommand, seq: int, msg_id: str) -> None:
        engine = self.engine
        assert engine is not None and self._numbers is not None
        before = engine.seq
        listing = isinstance(command, ListInstrument) and command.symbol not in engine.markets
        result, events = engine.apply(command)
        if engine.seq != seq:
            raise RuntimeError(f"the replica reached seq {engine.seq} applying log entry {seq}")
        self.applied += 1
        if events:
            self._publish(events, self._numbers.number(before, events))
        if listing:  # a new one (the engine journals a known one's listing again at each start)
            self._listed()
        if msg_id:
            self._resolved(msg_id, result)


def _nothing(after: int) -> Iterable[tuple[int, AnyCommand]]:
    return ()


def _ignore(events: Sequence[object], records: Sequence[StreamRecord]) -> None:
    pass


def _none() -> None:
    pass


class BusTrading:
    """A gateway's way to the engine (the session's ``Trading`` port): a command goes into the
    commands stream with an id of its own; its reply is the replica's result when the log brings
    the command back durable. No answer within ``timeout_ms`` is an error that says the outcome is
    unknown (the command may still be applied: a client looks its order up by clientOrderId)."""

    def __init__(
        self,
        send: Callable[[str, bytes], Any],  # (msg_id, command) -> awaitable, stored by the bus
        replica: Replica,
        *,
        connected: Callable[[], bool],
        timeout_ms: int = 5_000,
    ) -> None:
        self._send = send
        self._replica = replica
        self._connected = connected
        self.timeout_ms = timeout_ms
        self._prefix = secrets.token_hex(6)  # unique per gateway process
        self._counter = itertools.count(1)
        self._pending: dict[str, tuple[Reply, float]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.halted = False
        self.batches = 0  # the engine's host counts journal batches; a gateway writes none
        self.timed_out = 0

    @property
    def commands(self) -> int:
        return self._replica.applied

    @property
    def busy(self) -> bool:
        return bool(self._pending)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def submit(self, command: AnyCommand, reply: Reply | None) -> bool:
        if self.halted or self._replica.failed is not None:
            return False
        if not self._connected():
            if reply is not None:
                reply(
                    ApiError(
                        ErrorCode.ENGINE_UNAVAILABLE,
                        "the engine cannot be reached (the bus is down); nothing was applied",
                    )
                )
            return True
        try:
            blob = encoder.encode(command)
        except (OverflowError, TypeError):
            if reply is not None:
                reply(Rejected(Reject.OUT_OF_RANGE, "a value is too large"))
            return True
        msg_id = f"{self._prefix}-{next(self._counter)}"
        loop = asyncio.get_running_loop()
        if reply is not None:
            self._pending[msg_id] = (reply, loop.time() + self.timeout_ms / 1000)
        task = loop.create_task(self._send(msg_id, blob))
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._sent(t, msg_id))
        return True

    def _sent(self, task: asyncio.Task[Any], msg_id: str) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            exc: BaseException | None = asyncio.CancelledError()
        else:
            exc = task.exception()
        if exc is None:
            return
        log.warning("bus: could not hand command %s to the engine: %r", msg_id, exc)
        pending = self._pending.pop(msg_id, None)
        if pending is not None:
            pending[0](
                ApiError(
                    ErrorCode.ENGINE_UNAVAILABLE,
                    "the engine could not be reached; the request may not have been applied "
                    "(look the order up by clientOrderId before retrying)",
                )
            )

    def resolved(self, msg_id: str, result: Result) -> None:
        pending = self._pending.pop(msg_id, None)
        if pending is not None:
            pending[0](result)

    def expire(self) -> None:
        """Answer the requests the engine has not confirmed in time."""
        if not self._pending:
            return
        now = asyncio.get_running_loop().time()
        late = [m for m, (_, deadline) in self._pending.items() if deadline <= now]
        for msg_id in late:
            reply, _ = self._pending.pop(msg_id)
            self.timed_out += 1
            reply(
                ApiError(
                    ErrorCode.ENGINE_UNAVAILABLE,
                    f"the engine did not confirm within {self.timeout_ms / 1000:g} s; the request "
                    "may still be applied (look the order up by clientOrderId before retrying)",
                )
            )

    def symbol_of(
        self, account_id: int, order_id: int | None, client_order_id: str | None
    ) -> str | None:
        engine = self._replica.engine
        if engine is None:
            return None
        return engine.symbol_of(account_id, order_id, client_order_id)

    async def flush(self) -> None:
        """Wait until every command submitted so far is stored by the bus (or failed)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self.halted = True
