"""Runs the engine on the event loop and makes its output durable before anyone sees it.

:meth:`EngineHost.submit` applies a command at once (the engine is fast and single-threaded, so
the loop's thread *is* the single writer) and parks the result. Parked results are written to the
journal in batches, on the loop's thread (up to :data:`INLINE_BATCH` commands) or else by one
writer thread: one transaction, one fsync, for every command that arrived while the previous
batch was being written (group commit). Only when a batch is durable
are its replies sent and its events published, in sequence order. A client is therefore never
told of anything a crash could take back.

If the journal cannot be written, the engine's memory is ahead of the disk and nothing can be
trusted: the host stops taking commands and calls ``on_fatal`` so the process exits and restarts
from the journal. The requests of the failed batch are answered ENGINE_UNAVAILABLE: whether
their batch was committed (a connection lost during a commit leaves that unknown) is known from
the journal after the restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tradews.adapters.sql_journal import JournalEntry, SqlJournal
from tradews.api.errors import ApiError, ErrorCode
from tradews.domain.instrument import Instrument
from tradews.domain.orders import Reject
from tradews.engine.commands import AnyCommand, encoder
from tradews.engine.engine import Engine, Rejected, Result
from tradews.session.stats import Histogram
from tradews.session.streams import StreamRecord

log = logging.getLogger(__name__)

Reply = Callable[[Result | ApiError], None]  # an ApiError: the outcome is not known

HALTED = (
    "trading is halted: the journal could not be written; whether this request was applied is "
    "known once the server has restarted (look the order up by clientOrderId)"
)
# Publishes one durable command: its events, and its private stream messages as numbered.
Publish = Callable[[Sequence[object], Sequence[StreamRecord]], None]

# Batches up to this size are written on the event loop's thread (see EngineHost._flush).
INLINE_BATCH = 256


@dataclass(slots=True)
class _Parked:
    entry: JournalEntry | None  # None for a read that only waits for earlier writes
    result: Any
    reply: Callable[[Any], None] | None
    snapshot: tuple[int, int, str, bytes] | None = None  # (seq, at, state hash, state)


class EngineHost:
    def __init__(
        self,
        engine: Engine,
        journal: SqlJournal,
        publish: Publish,
        on_fatal: Callable[[BaseException], None],
    ) -> None:
        self.engine = engine
        self._journal = journal
        self._publish = publish
        self._on_fatal = on_fatal
        self._parked: list[_Parked] = []
        self._writing = False
        self._flush_scheduled = False
        self._maintain: int | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="journal")
        self.failed: BaseException | None = None
        self.closed = False  # after close(): no more commands
        # Called after each durable batch (the server uses it to decide when to snapshot).
        self.after_batch: Callable[[], None] | None = None
        # Called with each durable batch's entries, in order (the engine role publishes them).
        self.after_durable: Callable[[list[JournalEntry]], None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self.batches = 0
        self.commands = 0
        self.commit_latency = Histogram()  # journal batches: from handed over to durable
        self._in_flight = 0  # commands in the batch being written
        self._write_started = 0

    def submit(
        self,
        command: AnyCommand,
        reply: Reply | None,
        *,
        inbox_id: int | None = None,
        inbox_result: Callable[[Result], str] | None = None,
        msg_id: str | None = None,
    ) -> bool:
        """Apply ``command``; ``reply`` gets its result once it is durable.

        Returns False (and applies nothing) once the host has failed or been closed.
        """
        if self.failed is not None or self.closed:
            return False
        try:
            # Encoded before it is applied: a command the journal could not store must not
            # change the engine (and could not be replayed).
            blob = encoder.encode(command)
        except (OverflowError, TypeError) as exc:
            log.warning("refused a command the journal cannot store: %r (%s)", command, exc)
            if reply is not None:
                reply(Rejected(Reject.OUT_OF_RANGE, "a value is too large"))
            return True
        try:
            result, events = self.engine.apply(command)
        except Exception as exc:
            # A broken invariant: memory may be half-changed and ahead of the journal. Stop,
            # and let the restart rebuild the state from what is durable.
            log.critical("engine failed on %r", command, exc_info=True)
            self.failed = exc
            self._on_fatal(exc)
            return False
        outcome = None if inbox_result is None else inbox_result(result)
        entry = JournalEntry(
            self.engine.seq, command.at, blob, events, inbox_id, outcome, msg_id=msg_id
        )
        self._parked.append(_Parked(entry, result, reply))
        self.commands += 1
        self._schedule()
        return True

    def symbol_of(
        self, account_id: int, order_id: int | None, client_order_id: str | None
    ) -> str | None:
        return self.engine.symbol_of(account_id, order_id, client_order_id)

    def snapshot(self, at: int) -> int:
        """Snapshot the engine now and store it in the same transaction as the journal batch
        that holds its last command, so a stored snapshot never runs ahead of the journal,
        however busy the engine is. Returns the snapshot's seq."""
        engine = self.engine
        taken = (engine.seq, at, engine.state_hash(), engine.snapshot())
        self._parked.append(_Parked(None, None, None, taken))
        self._schedule()
        return engine.seq

    def maintain_streams(self, before: int) -> None:
        """Have the next batch (one is written for it if nothing else is waiting) index the
        private streams' newest messages and prune a chunk of those written before ``before``
        (ms since the epoch): ``SqlJournal.append(maintain=...)``."""
        if self.failed is not None:
            return
        self._maintain = before
        if not self._parked:
            self._parked.append(_Parked(None, None, None))
        self._schedule()

    def after_writes(self, read: Callable[[], Any], reply: Callable[[Any], None]) -> None:
        """Answer a read now, but deliver it only after every earlier command is durable,
        so a query never reveals what has not been acknowledged."""
        if not self._parked and not self._writing:
            reply(read())
            return
        self._parked.append(_Parked(None, read(), reply))
        self._schedule()

    def _schedule(self) -> None:
        self._idle.clear()
        if not self._flush_scheduled and not self._writing:
            self._flush_scheduled = True
            # Run after everything else ready in this loop iteration: that is the group.
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._writing or not self._parked:
            return
        batch, self._parked = self._parked, []
        entries = [p.entry for p in batch if p.entry is not None]
        snapshots = [p.snapshot for p in batch if p.snapshot is not None]
        snapshot = snapshots[-1] if snapshots else None
        maintain, self._maintain = self._maintain, None
        self._writing = True
        self._in_flight = len(batch)
        self._write_started = time.perf_counter_ns()
        if len(entries) <= INLINE_BATCH and maintain is None:
            # Written on the loop's own thread. Handing a batch to the writer thread and back
            # costs two thread wake-ups (about 90 us here) and, under load, a tug of war for the
            # GIL between the writer (which takes it back after every SQLite call) and the loop:
            # the commit takes longer and the loop spends more CPU per request. While the loop
            # writes, new requests queue in their sockets and make the next batch bigger (group
            # commit as before). Only huge batches (a burst) and maintenance, which can take
            # milliseconds of CPU, go to the writer thread.
            error: BaseException | None = None
            numbered: list[list[StreamRecord]] = []
            try:
                numbered = self._journal.append(entries, snapshot)
            except Exception as exc:
                error = exc
            self._written(batch, error, numbered)
            return
        loop = asyncio.get_running_loop()
        append = functools.partial(self._journal.append, maintain=maintain)
        future = loop.run_in_executor(self._executor, append, entries, snapshot)
        future.add_done_callback(
            lambda f: self._written(batch, f.exception(), None if f.exception() else f.result())
        )

    def _written(
        self,
        batch: list[_Parked],
        error: BaseException | None,
        numbered: list[list[StreamRecord]] | None,
    ) -> None:
        self._writing = False
        self._in_flight = 0
        if error is not None or numbered is None:
            error = error or RuntimeError("the journal returned nothing")
            self.failed = error
            log.critical("journal write failed; stopping the engine: %r", error)
            self._on_fatal(error)
            for parked in batch:
                if parked.reply is not None and parked.entry is not None:
                    with contextlib.suppress(Exception):
                        parked.reply(ApiError(ErrorCode.ENGINE_UNAVAILABLE, HALTED))
            return
        if numbered:  # upkeep and reads alone are not counted as journal batches
            self.batches += 1
            self.commit_latency.observe(time.perf_counter_ns() - self._write_started)
        publish = self._publish
        records = iter(numbered)  # one list per entry, in the batch's order
        for parked in batch:
            if parked.reply is not None:
                try:
                    parked.reply(parked.result)
                except Exception:
                    log.exception("reply callback failed")
            if parked.entry is None:
                continue
            stream = next(records)
            if parked.entry.events:
                try:
                    publish(parked.entry.events, stream)
                except Exception:
                    log.exception("publishing events failed")
        if self.after_durable is not None:
            durable = [p.entry for p in batch if p.entry is not None]
            if durable:
                try:
                    self.after_durable(durable)
                except Exception:
                    log.exception("after-durable hook failed")
        if self.after_batch is not None:
            try:
                self.after_batch()
            except Exception:
                log.exception("after-batch hook failed")
        if self._parked:
            self._flush()
        else:
            self._idle.set()

    @property
    def queue_depth(self) -> int:
        """Commands applied and not yet durable: waiting for the journal, or being written."""
        return len(self._parked) + self._in_flight

    @property
    def busy(self) -> bool:
        """True while some applied command is not yet durable."""
        return not self._idle.is_set()

    async def drain(self) -> None:
        """Wait until everything submitted so far is durable (or the host has failed)."""
        while not self._idle.is_set() and self.failed is None:
            await self._idle.wait()

    def close(self) -> None:
        """Take no more commands (drain first: what is parked is not written)."""
        self.closed = True
        self._executor.shutdown(wait=True)


# A shard's order and trade ids start above its number shifted this far: 2^40 ids each, and
# ids stay below 2^53 (exact in JSON's numbers) for up to 8,192 shards.
SHARD_ID_BITS = 40


def recover(
    instruments: Iterable[Instrument],
    journal: SqlJournal,
    *,
    fee_account_id: int,
    shard_number: int = 0,
) -> tuple[Engine, int, int | None]:
    """Rebuild the engine: the newest snapshot (checked against its state hash), then the
    journal after it. Returns the engine, how many commands were replayed, and the snapshot's
    seq (None without one). ``shard_number``: the engine's shard (its ids start above
    ``shard_number << SHARD_ID_BITS``)."""
    instruments = list(instruments)
    snapshot = journal.latest_snapshot()
    if snapshot is None:
        engine = Engine(
            instruments, fee_account_id=fee_account_id, id_base=shard_number << SHARD_ID_BITS
        )
        start = None
    else:
        start, digest, state = snapshot
        engine = Engine.restore(instruments, state, fee_account_id=fee_account_id)
        if engine.state_hash() != digest:
            raise RuntimeError(f"the snapshot at seq {start} does not match its state hash")
    return engine, replay(engine, journal), start


def replay(engine: Engine, journal: SqlJournal) -> int:
    """Apply every journaled command to ``engine`` (fresh); return how many were applied."""
    count = 0
    for seq, command in journal.read(engine.seq):
        engine.apply(command)
        if engine.seq != seq:
            raise RuntimeError(f"journal gap or reordering: expected seq {engine.seq}, found {seq}")
        count += 1
    return count
