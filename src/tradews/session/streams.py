"""Private streams (``orders``, ``balances``): numbered, kept, and resumable after a reconnect.

Every message on a private stream carries ``streamSeq``, consecutive from 1 per (account,
channel) for the life of the database, so a client sees a gap by itself. The numbers are given
where they stay deterministic and durable: the journal numbers each command's *records* as it
writes the batch, and stores them in the same transaction as the command (``account_events``,
``adapters/sql_journal.py``). A record is one engine event as one account's stream sees it;
this module says which records a command's events make (:func:`records_of`) and turns a record
into the message a client gets (:func:`message`), a pure function of the event and the
instrument, which never changes once listed.

:class:`PrivateStreams` serves the subscribers: it keeps the last published ``streamSeq`` of
each stream (its *head*), a bounded buffer of each stream's latest records, and readers that
catch up from a cursor (``subscribe`` with ``since``) in pages, from the buffer when it reaches
back far enough, else from storage (:class:`~tradews.session.ports.StreamArchive`).

The boundary between replay and live is the head: what the view has *published*, not what
storage holds (a batch is committed before it is published, so storage can be one batch
ahead). A reader replays ``(cursor, head]`` and, in the step that reaches the head, becomes a
live subscriber; both happen on the one thread that publishes, so every message reaches it
exactly once.

A reader starts gated: it is registered when ``subscribe`` is handled, but is served only once
:meth:`PrivateStreams.start` is called, after the reply (and a fresh ``balances`` snapshot) has
been sent; what is published in between is replayed from the buffer. So a reply always comes
before the messages that follow it, even when it waits for a batch to be durable.
"""

from __future__ import annotations

import enum
import itertools
import logging
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, NamedTuple, TypeVar

import msgspec

from tradews.api.errors import ApiError, ErrorCode
from tradews.api.messages import Balance
from tradews.codecs.push import Push
from tradews.domain.ledger import format_atoms
from tradews.engine.events import BalanceChanged, OrderUpdated, TradeExecuted
from tradews.session.formats import fills_for, order_state
from tradews.session.ports import InstrumentCatalog, StreamArchive

C = TypeVar("C")

log = logging.getLogger(__name__)

ORDERS = "orders"
BALANCES = "balances"
PRIVATE_CHANNELS = (ORDERS, BALANCES)

# What a stream holds by default: the latest records of each stream, and of all together.
BUFFER_PER_STREAM = 500
BUFFER_TOTAL = 50_000
PAGE = 100  # records a reader is sent per step; a step waits until its connection is writable


class Kind(enum.IntEnum):
    """What a record is: stored with it (``account_events``), so the numbers never change."""

    ORDER = 1  # an OrderUpdated: an ``orders`` message
    FILL_AS_MAKER = 2  # a TradeExecuted, the maker's side: a ``fills`` message
    FILL_AS_TAKER = 3  # a TradeExecuted, the taker's side
    BALANCE = 4  # a BalanceChanged: a ``balances`` message


CHANNEL_OF_KIND = {
    Kind.ORDER: ORDERS,
    Kind.FILL_AS_MAKER: ORDERS,
    Kind.FILL_AS_TAKER: ORDERS,
    Kind.BALANCE: BALANCES,
}


StreamEvent = OrderUpdated | TradeExecuted | BalanceChanged

# Read for every event (see session.py, _CLOSING: a member read through its enum class is slow).
_ORDER, _FILL_AS_MAKER, _FILL_AS_TAKER, _BALANCE = (
    Kind.ORDER, Kind.FILL_AS_MAKER, Kind.FILL_AS_TAKER, Kind.BALANCE,
)  # fmt: skip


class StreamRecord(NamedTuple):
    """One message of one account's private stream, as stored: the event it is made from."""

    account_id: int
    channel: str
    stream_seq: int
    kind: Kind
    event: StreamEvent


def stream_key(channel: str, account_id: int) -> str:
    """The key a private stream's subscribers are filed under (``orders#42``)."""
    return f"{channel}#{account_id}"


def records_of(events: Sequence[object]) -> Iterator[tuple[int, str, Kind, StreamEvent]]:
    """``(account_id, channel, kind, event)`` for each private message one command's events
    make, in the order they are numbered and sent."""
    for e in events:
        if isinstance(e, OrderUpdated):
            yield e.account_id, ORDERS, _ORDER, e
        elif isinstance(e, TradeExecuted):
            yield e.maker_account_id, ORDERS, _FILL_AS_MAKER, e
            yield e.taker_account_id, ORDERS, _FILL_AS_TAKER, e
        elif isinstance(e, BalanceChanged):
            yield e.account_id, BALANCES, _BALANCE, e


def message(record: StreamRecord, catalog: InstrumentCatalog) -> Push:
    """The message a subscriber gets for ``record``, live or replayed alike."""
    e, seq = record.event, record.stream_seq
    if isinstance(e, BalanceChanged):
        body = Balance(
            asset=e.asset,
            available=format_atoms(e.available),
            locked=format_atoms(e.locked),
            stream_seq=seq,
        )
        return Push("balances", body)
    inst = catalog.get(e.symbol)
    assert inst is not None  # instruments are never delisted
    if isinstance(e, OrderUpdated):
        return Push("orders", msgspec.structs.replace(order_state(e, inst), stream_seq=seq))
    # One account on both sides of a trade gets two fills, maker's first (as fills_for makes).
    fills = fills_for(record.account_id, e, inst)
    fill = fills[-1] if record.kind is Kind.FILL_AS_TAKER else fills[0]
    return Push("fills", msgspec.structs.replace(fill, stream_seq=seq))


class _Reader(Generic[C]):
    """A subscriber catching up: it has been sent everything up to ``cursor``."""

    __slots__ = ("account_id", "channel", "conn", "cursor", "key", "started", "sub_id")

    def __init__(self, account_id: int, channel: str, sub_id: int, conn: C, cursor: int) -> None:
        self.account_id = account_id
        self.channel = channel
        self.key = stream_key(channel, account_id)
        self.sub_id = sub_id
        self.conn = conn
        self.cursor = cursor
        self.started = False


Send = Callable[[C, Push], None]


class PrivateStreams(Generic[C]):
    """Heads, buffers, live subscribers and catching-up readers of every private stream.

    Call :meth:`publish` with each record as its batch is published, :meth:`subscribe` then
    :meth:`start` for a new subscriber, and :meth:`pump` whenever :attr:`wake` is called (and
    now and then, for readers whose connection was not writable): it sends readers their next
    page and tells whether more is ready to send.
    """

    def __init__(
        self,
        catalog: InstrumentCatalog,
        archive: StreamArchive | None = None,
        *,
        buffer_per_stream: int = BUFFER_PER_STREAM,
        buffer_total: int = BUFFER_TOTAL,
        page: int = PAGE,
    ) -> None:
        self._catalog = catalog
        self._archive = archive
        self._buffer_per_stream = buffer_per_stream
        self._buffer_total = buffer_total
        self._page = page
        self._heads: dict[str, int] = {}
        self._buffers: OrderedDict[str, deque[StreamRecord]] = OrderedDict()  # oldest use first
        self._buffered = 0
        self._live: dict[str, dict[int, C]] = {}
        self._readers: dict[str, dict[int, _Reader[C]]] = {}
        self._behind: dict[tuple[str, int], _Reader[C]] = {}  # started, not caught up: the pump's
        # The engine seq of the last published command: storage may hold records of later
        # commands (committed, not yet published), which a head read from storage must not count.
        self.seq = 0
        # Called when a reader has something to catch up on: the I/O layer then calls pump soon.
        self.wake: Callable[[], None] | None = None

    # Publishing ---------------------------------------------------------------------------

    def publish(self, record: StreamRecord, send: Send[C]) -> None:
        """Move a stream's head to ``record`` and send it to the stream's live subscribers."""
        key = stream_key(record.channel, record.account_id)
        head = self._heads.get(key)
        if head is not None and record.stream_seq != head + 1:
            # The journal numbers, the view counts: they cannot disagree unless there is a bug.
            # Forget the buffer rather than serve a stream with a hole in it.
            log.error("%s: record %d published after %d", key, record.stream_seq, head)
            self._forget_buffer(key)
        self._heads[key] = record.stream_seq
        self.seq = record.event.seq
        self._remember(key, record)
        live = self._live.get(key)
        if live:
            push = message(record, self._catalog)
            for conn in live.values():
                send(conn, push)

    def _remember(self, key: str, record: StreamRecord) -> None:
        buffers = self._buffers
        buffer = buffers.get(key)
        if buffer is None:
            buffer = buffers[key] = deque(maxlen=self._buffer_per_stream)
        else:
            buffers.move_to_end(key)
            if len(buffer) == buffer.maxlen:
                self._buffered -= 1
        buffer.append(record)
        self._buffered += 1
        while self._buffered > self._buffer_total:  # drop the least recently used stream's
            _, oldest = buffers.popitem(last=False)
            self._buffered -= len(oldest)

    def _forget_buffer(self, key: str) -> None:
        buffer = self._buffers.pop(key, None)
        if buffer is not None:
            self._buffered -= len(buffer)

    # Subscribing --------------------------------------------------------------------------

    def head(self, channel: str, account_id: int) -> int:
        """The streamSeq of the stream's last published message (0: none yet)."""
        key = stream_key(channel, account_id)
        head = self._heads.get(key)
        if head is None:
            archive = self._archive
            head = 0 if archive is None else archive.head(account_id, channel, self.seq)
            self._heads[key] = head
        return head

    def subscribe(
        self, channel: str, account_id: int, sub_id: int, conn: C, since: int | None
    ) -> int:
        """Register a subscriber (not served until :meth:`start`) that gets every message after
        ``since``, or from now on without it. Returns the stream's head.

        Raises ApiError: INVALID_PARAMS if ``since`` is ahead of the head, RESUME_UNAVAILABLE if
        the messages right after it are no longer kept."""
        head = self.head(channel, account_id)
        if since is None:
            since = head
        elif since > head:
            raise ApiError(
                ErrorCode.INVALID_PARAMS,
                data=f"since {since} is ahead of the {channel} stream, whose last message is "
                f"streamSeq {head}",
            )
        elif since < head and not self._buffered_from(stream_key(channel, account_id), since):
            floor = 0 if self._archive is None else self._archive.floor(account_id, channel)
            if self._archive is None or since < floor:
                kept = f"from {floor + 1} to {head}" if floor < head else "none before the next"
                state = "orders_open" if channel == ORDERS else "balances"
                raise ApiError(
                    ErrorCode.RESUME_UNAVAILABLE,
                    f"the {channel} stream no longer keeps the messages after streamSeq {since} "
                    f"(it keeps {kept}): subscribe without since and read {state}",
                )
        reader = _Reader(account_id, channel, sub_id, conn, since)
        self._readers.setdefault(reader.key, {})[sub_id] = reader
        return head

    def start(self, channel: str, account_id: int, sub_id: int) -> None:
        """The subscriber's reply has been sent: serve it from now on."""
        key = stream_key(channel, account_id)
        reader = self._readers.get(key, {}).get(sub_id)
        if reader is None or reader.started:
            return
        reader.started = True
        if reader.cursor == self._heads[key]:
            self._go_live(reader)
            return
        self._behind[(key, sub_id)] = reader
        if self.wake is not None:
            self.wake()

    def unsubscribe(self, channel: str, account_id: int, sub_id: int) -> bool:
        key = stream_key(channel, account_id)
        live = self._live.get(key)
        if live is not None and live.pop(sub_id, None) is not None:
            if not live:
                del self._live[key]
            return True
        return self._drop_reader(key, sub_id)

    def _drop_reader(self, key: str, sub_id: int) -> bool:
        readers = self._readers.get(key)
        if readers is None or readers.pop(sub_id, None) is None:
            return False
        if not readers:
            del self._readers[key]
        self._behind.pop((key, sub_id), None)
        return True

    def _go_live(self, reader: _Reader[C]) -> None:
        self._drop_reader(reader.key, reader.sub_id)
        self._live.setdefault(reader.key, {})[reader.sub_id] = reader.conn

    def subscriber_count(self) -> int:
        return sum(map(len, self._live.values())) + sum(map(len, self._readers.values()))

    @property
    def behind(self) -> int:
        """How many subscribers are catching up."""
        return len(self._behind)

    # Catching up --------------------------------------------------------------------------

    def pump(
        self,
        writable: Callable[[C], bool],
        send: Send[C],
        fail: Callable[[C, str], None],
        *,
        budget: int = 8,
    ) -> bool:
        """Send at most ``budget`` pages, one per reader in turn, to readers whose connection is
        writable. ``fail`` is called for a reader whose stream lost the messages it needed while
        it was catching up (pruned meanwhile): its connection should be closed, and its client
        resubscribes. Returns whether a writable reader still has more to get."""
        for ident in list(self._behind):
            reader = self._behind.get(ident)
            if reader is None or not writable(reader.conn):
                continue
            if budget == 0:
                return True
            budget -= 1
            del self._behind[ident]  # served last, back in line at the end if still behind
            if self._step(reader, send, fail):
                self._behind[ident] = reader
        return any(writable(r.conn) for r in self._behind.values())

    def _step(self, reader: _Reader[C], send: Send[C], fail: Callable[[C, str], None]) -> bool:
        """Send one page; return whether the reader is still behind."""
        head = self._heads[reader.key]
        after = reader.cursor
        count = min(self._page, head - after)
        records = self._buffered_page(reader.key, after, count)
        if records is None and self._archive is not None:
            records = self._archive.read(reader.account_id, reader.channel, after, head, count)
        if not records or any(r.stream_seq != after + i for i, r in enumerate(records, 1)):
            self._drop_reader(reader.key, reader.sub_id)
            fail(reader.conn, f"{reader.channel} messages after {after} were pruned; resubscribe")
            return False
        catalog = self._catalog
        for record in records:
            send(reader.conn, message(record, catalog))
        reader.cursor = records[-1].stream_seq
        if reader.cursor < head:
            return True
        self._go_live(reader)
        return False

    def _buffered_from(self, key: str, after: int) -> bool:
        buffer = self._buffers.get(key)
        return buffer is not None and buffer[0].stream_seq <= after + 1

    def _buffered_page(self, key: str, after: int, count: int) -> list[StreamRecord] | None:
        """Up to ``count`` records after ``after`` from the buffer, or None if it does not
        reach back that far."""
        if not self._buffered_from(key, after):
            return None
        buffer = self._buffers[key]
        start = after + 1 - buffer[0].stream_seq
        return list(itertools.islice(buffer, start, start + count))
