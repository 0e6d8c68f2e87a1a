"""The matching engine against its Python peers, on one seeded exchange-like stream.

The stream (``generate``) is what a liquid market looks like from the engine's side: about half
passive limit orders within 20 ticks of a slowly walking mid, a tenth limits crossing the spread
(their remainder rests), a tenth marketable limits far through the book (IOC) and three tenths
cancels of live orders. Buyers and sellers are different accounts, so no engine's self-trade
rule ever comes into play, and every order is accepted: order ids are the same everywhere.

It is replayed through

- ``tradews``: ``Engine.apply`` with everything the server does per command (funds checked and
  locked in the ledger, maker and taker fees, every event built), accounts funded first;
- ``matching-engine`` 0.1.1 and ``lightmatchingengine`` from PyPI (Python >= 3.12 for the
  first): run in a subprocess on the interpreter of ``bench/.venv-peers`` (``make
  bench-peers-env``), reading the same stream from a file. lightmatchingengine has no
  immediate-or-cancel, so an IOC order there is placed and its remainder cancelled at once;
- ``bare loop``: a dict + bisect + deque book written here, with nothing but matching (the
  floor for this work in Python; it also generates the stream).

Every engine's fills (taker, maker, price, quantity, in order) and final book (each level's
queue) must be identical, or the run fails. Commands are built before timing; the timed loop
only hands each one to the engine and drops what comes back. Each engine runs ``--repeat``
times on a fresh instance, interleaved with the others (the peers' process is driven round by
round); the best run counts.

    .venv/bin/python bench/engine_peers.py [--commands 50000] [--seed 9] [--repeat 5]
        [--events-alone]

``--events-alone`` also times building tradews' events by themselves (:class:`EventsAlone`):
the floor for an engine that returns them built eagerly, as ``Engine.apply`` does.

Results are printed and saved as JSON under ``bench/results/engine_peers-<commit>.json``.
"""

from __future__ import annotations

import argparse
import bisect
import gc
import hashlib
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
PEERS_PYTHON = BENCH / ".venv-peers" / "bin" / "python"
BUY, SELL = 1, 2
GTC, IOC = 1, 2
MID = 6_500_000  # ticks of 0.01: 65,000.00
BUYERS = range(1, 51)  # accounts that only buy ...
SELLERS = range(51, 101)  # ... and accounts that only sell: no self-trades anywhere

# A command: ("p", order_id, account, side, price, quantity, tif) or ("c", order_id, account).
Command = tuple[Any, ...]
Sink = Callable[[Any], object]  # what is done with each command's output
Fill = tuple[int, int, int, int]  # taker order id, maker order id, price, quantity
BookRow = tuple[int, int, int, int]  # side, price, order id, remaining (best level first)


# The floor: a bare dict + bisect + deque book ----------------------------------------------


class BareBook:
    """Price levels in a dict, their prices in a sorted list, each queue a deque.

    A cancel only zeroes the order (it is skipped when it reaches the head) and counts the level
    down; a level whose count reaches zero is dropped whole. Nothing else: no funds, no events.
    """

    def __init__(self) -> None:
        # price -> [live orders, deque of [order id, remaining]]
        self.levels: dict[int, dict[int, list[Any]]] = {BUY: {}, SELL: {}}
        self.prices: dict[int, list[int]] = {BUY: [], SELL: []}  # ascending
        self.orders: dict[int, tuple[int, int, list[int]]] = {}  # id -> (side, price, entry)

    def place(self, order_id: int, side: int, price: int, quantity: int, tif: int) -> list[Fill]:
        fills: list[Fill] = []
        if side == BUY:
            levels, prices = self.levels[SELL], self.prices[SELL]
            while quantity and prices and prices[0] <= price:
                quantity = self._take(order_id, levels, prices, 0, quantity, fills)
        else:
            levels, prices = self.levels[BUY], self.prices[BUY]
            while quantity and prices and prices[-1] >= price:
                quantity = self._take(order_id, levels, prices, -1, quantity, fills)
        if quantity and tif == GTC:
            own = self.levels[side]
            level = own.get(price)
            if level is None:
                level = own[price] = [0, deque()]
                bisect.insort(self.prices[side], price)
            entry = [order_id, quantity]
            level[0] += 1
            level[1].append(entry)
            self.orders[order_id] = (side, price, entry)
        return fills

    def _take(
        self,
        taker: int,
        levels: dict[int, list[Any]],
        prices: list[int],
        best: int,
        quantity: int,
        fills: list[Fill],
    ) -> int:
        price = prices[best]
        level = levels[price]
        queue = level[1]
        orders = self.orders
        while quantity and queue:
            entry = queue[0]
            left = entry[1]
            if not left:  # cancelled
                queue.popleft()
                continue
            take = left if left < quantity else quantity
            fills.append((taker, entry[0], price, take))
            quantity -= take
            entry[1] = left - take
            if left == take:
                queue.popleft()
                del orders[entry[0]]
                level[0] -= 1
        if not level[0]:
            del levels[price]
            del prices[best]
        return quantity

    def cancel(self, order_id: int) -> bool:
        found = self.orders.pop(order_id, None)
        if found is None:
            return False
        side, price, entry = found
        entry[1] = 0
        level = self.levels[side][price]
        level[0] -= 1
        if not level[0]:
            del self.levels[side][price]
            prices = self.prices[side]
            del prices[bisect.bisect_left(prices, price)]
        return True

    def rows(self) -> list[BookRow]:
        out: list[BookRow] = []
        for side, prices in ((BUY, reversed(self.prices[BUY])), (SELL, self.prices[SELL])):
            for price in prices:
                out.extend(
                    (side, price, oid, left) for oid, left in self.levels[side][price][1] if left
                )
        return out


def cancel_one(
    rng: random.Random, book: BareBook, live: list[int], owner: dict[int, int], out: list[Command]
) -> bool:
    """Add a cancel of a random live order to ``out``; False if none is left."""
    while live:
        i = rng.randrange(len(live))
        live[i], live[-1] = live[-1], live[i]
        order_id = live.pop()
        account = owner.pop(order_id)
        if book.cancel(order_id):
            out.append(("c", order_id, account))
            return True
    return False


def generate(n: int, seed: int) -> list[Command]:
    """The stream, generated against a :class:`BareBook` (cancels need live orders, crossing
    orders the touch)."""
    rng = random.Random(seed)
    book = BareBook()
    live: list[int] = []  # ids of resting orders (filled ones are dropped lazily)
    owner: dict[int, int] = {}
    out: list[Command] = []
    mid = MID
    next_id = 1
    for _ in range(n):
        if rng.random() < 0.5:  # the mid walks a tick every other command
            mid += 1 if rng.random() < 0.5 else -1
        roll = rng.random()
        if roll < 0.3 and cancel_one(rng, book, live, owner, out):
            continue
        side = BUY if rng.random() < 0.5 else SELL
        tif = GTC
        if roll < 0.8:  # passive, near the mid, never through the touch
            off = rng.randint(1, 20)
            touch = book.prices[SELL if side == BUY else BUY]
            if side == BUY:
                price = mid - off if not touch else min(mid - off, touch[0] - 1)
            else:
                price = mid + off if not touch else max(mid + off, touch[-1] + 1)
            quantity = rng.randint(1, 50)
        elif roll < 0.9:  # crossing the spread: at the touch or a tick or two through
            touch = book.prices[SELL if side == BUY else BUY]
            base = (touch[0] if side == BUY else touch[-1]) if touch else mid
            price = base + rng.randint(0, 2) if side == BUY else base - rng.randint(0, 2)
            quantity = rng.randint(1, 30)
        else:  # marketable, far through the book
            price = mid + 60 if side == BUY else mid - 60
            quantity = rng.randint(1, 30)
            tif = IOC
        account = rng.choice(BUYERS if side == BUY else SELLERS)
        out.append(("p", next_id, account, side, price, quantity, tif))
        book.place(next_id, side, price, quantity, tif)
        if next_id in book.orders:
            live.append(next_id)
            owner[next_id] = account
        next_id += 1
    return out


# Each engine: build, replay (timed), and report fills and the final book -------------------


class Runner:
    """One engine: ``fresh()`` makes a ready instance, ``prepare`` turns the stream into its
    own commands, ``replay`` hands them over (the timed part), ``fills``/``rows`` read back."""

    name = ""

    def fresh(self) -> Any:
        raise NotImplementedError

    def prepare(self, stream: list[Command]) -> list[Any]:
        return stream

    def replay(self, engine: Any, commands: list[Any]) -> Callable[[Sink], None]:
        raise NotImplementedError

    def fills(self, engine: Any, commands: list[Any], outputs: list[Any]) -> list[Fill]:
        raise NotImplementedError

    def rows(self, engine: Any) -> list[BookRow]:
        raise NotImplementedError


class BareRunner(Runner):
    name = "bare loop"

    def fresh(self) -> BareBook:
        return BareBook()

    def replay(self, engine: BareBook, commands: list[Command]) -> Callable[[Sink], None]:
        place, cancel = engine.place, engine.cancel

        def run(sink: Sink) -> None:
            for c in commands:
                if c[0] == "p":
                    sink(place(c[1], c[3], c[4], c[5], c[6]))
                else:
                    sink(cancel(c[1]))

        return run

    def fills(self, engine: BareBook, commands: list[Command], outputs: list[Any]) -> list[Fill]:
        return [f for out in outputs if out.__class__ is list for f in out]

    def rows(self, engine: BareBook) -> list[BookRow]:
        return engine.rows()


class TradewsRunner(Runner):
    name = "tradews"

    def __init__(self) -> None:
        from decimal import Decimal

        from tradews.domain.instrument import Instrument

        self.inst = Instrument(
            "BTC_USD", "BTC", "USD", Decimal("0.01"), Decimal("0.0001"), Decimal("0.0001"),
            None, Decimal("1"),
        )  # fmt: skip
        import tradews.engine.engine as module

        self.build = "compiled" if str(module.__file__).endswith(".so") else "pure Python"

    def fresh(self) -> Any:
        from tradews.domain.ledger import ATOMS_PER_UNIT
        from tradews.engine.commands import Deposit
        from tradews.engine.engine import Engine

        engine = Engine([self.inst], fee_account_id=999)
        for a in (*BUYERS, *SELLERS):
            engine.apply(Deposit(0, a, "USD", 10**10 * ATOMS_PER_UNIT, f"usd{a}"))
            engine.apply(Deposit(0, a, "BTC", 10**6 * ATOMS_PER_UNIT, f"btc{a}"))
        return engine

    def prepare(self, stream: list[Command]) -> list[Any]:
        from tradews.engine.commands import CancelOrder, PlaceOrder

        return [
            PlaceOrder(i, c[2], "BTC_USD", c[3], 1, c[4], c[5], c[6], False, None, 500, 1000)
            if c[0] == "p"
            else CancelOrder(i, c[2], c[1], None)
            for i, c in enumerate(stream, 1)
        ]

    def replay(self, engine: Any, commands: list[Any]) -> Callable[[Sink], None]:
        apply = engine.apply

        def run(sink: Sink) -> None:
            for c in commands:
                sink(apply(c))

        return run

    def fills(self, engine: Any, commands: list[Any], outputs: list[Any]) -> list[Fill]:
        from tradews.engine.engine import Rejected
        from tradews.engine.events import TradeExecuted

        out: list[Fill] = []
        for result, events in outputs:
            if isinstance(result, Rejected):
                raise SystemExit(f"tradews rejected a command: {result}")
            out.extend(
                (e.taker_order_id, e.maker_order_id, e.price, e.quantity)
                for e in events
                if isinstance(e, TradeExecuted)
            )
        return out

    def rows(self, engine: Any) -> list[BookRow]:
        from tradews.domain.orders import Side

        engine.validate()
        book = engine.books["BTC_USD"]
        return [
            (int(side), level.price, o.order_id, o.remaining)
            for side in (Side.BUY, Side.SELL)
            for level in book.levels(side)
            # a method since a level's queue is a list; a dict before (older commits as baselines)
            for o in (level.orders() if callable(level.orders) else level.orders.values())
        ]


class MatchingEngineRunner(Runner):
    """PyPI ``matching-engine`` 0.1.1 (in the peers' interpreter)."""

    name = "matching-engine"

    def fresh(self) -> Any:
        from matching_engine.engine import MatchingEngine

        return MatchingEngine()

    def prepare(self, stream: list[Command]) -> list[Any]:
        from matching_engine.domain import (
            CancelOrder,
            NewOrder,
            OrderType,
            SequencedCommand,
            Side,
            TimeInForce,
        )

        sides = {BUY: Side.BUY, SELL: Side.SELL}
        tifs = {GTC: TimeInForce.GTC, IOC: TimeInForce.IOC}
        return [
            SequencedCommand(
                i,
                i,
                NewOrder(c[1], c[2], sides[c[3]], c[4], c[5], OrderType.LIMIT, tifs[c[6]])
                if c[0] == "p"
                else CancelOrder(c[1], c[2]),
            )
            for i, c in enumerate(stream, 1)
        ]

    def replay(self, engine: Any, commands: list[Any]) -> Callable[[Sink], None]:
        process = engine.process

        def run(sink: Sink) -> None:
            for c in commands:
                sink(process(c))

        return run

    def fills(self, engine: Any, commands: list[Any], outputs: list[Any]) -> list[Fill]:
        from matching_engine.events import OrderRejected, Trade

        out: list[Fill] = []
        for events in outputs:
            for e in events:
                if isinstance(e, OrderRejected):
                    raise SystemExit(f"matching-engine rejected a command: {e}")
                if isinstance(e, Trade):
                    out.append((e.taker_order_id, e.maker_order_id, e.price, e.qty))
        return out

    def rows(self, engine: Any) -> list[BookRow]:
        return [
            (BUY if e.side == "buy" else SELL, e.price, e.order_id, e.qty)
            for e in engine.book.entries()
        ]


class LightRunner(Runner):
    """PyPI ``lightmatchingengine`` (order ids are its own counter: one per ``add_order``)."""

    name = "lightmatchingengine"

    def fresh(self) -> Any:
        from lightmatchingengine.lightmatchingengine import LightMatchingEngine

        return LightMatchingEngine()

    def replay(self, engine: Any, commands: list[Command]) -> Callable[[Sink], None]:
        add, cancel = engine.add_order, engine.cancel_order

        def run(sink: Sink) -> None:
            for c in commands:
                if c[0] == "p":
                    order, trades = add("BTC_USD", c[4], c[5], c[3])
                    if c[6] == IOC and order.leaves_qty:
                        cancel(order.order_id, "BTC_USD")
                    sink(trades)
                else:
                    sink(cancel(c[1], "BTC_USD"))

        return run

    def fills(self, engine: Any, commands: list[Command], outputs: list[Any]) -> list[Fill]:
        out: list[Fill] = []
        for c, trades in zip(commands, outputs, strict=True):
            if c[0] != "p":
                if trades is None:
                    raise SystemExit(f"lightmatchingengine could not cancel {c}")
                continue
            # One aggregate trade for the taker per level, then one per maker: keep the makers.
            out.extend((c[1], t.order_id, t.trade_price, t.trade_qty) for t in trades
                       if t.order_id != c[1])  # fmt: skip
        return out

    def rows(self, engine: Any) -> list[BookRow]:
        book = engine.order_books["BTC_USD"]
        out: list[BookRow] = []
        for side, levels, prices in (
            (BUY, book.bids, sorted(book.bids, reverse=True)),
            (SELL, book.asks, sorted(book.asks)),
        ):
            for price in prices:
                out.extend((side, price, o.order_id, o.leaves_qty) for o in levels[price])
        return out


def digest(items: Iterable[tuple[int, ...]]) -> str:
    h = hashlib.sha256()
    for item in items:
        h.update(repr(item).encode())
    return h.hexdigest()[:16]


DISCARD: Sink = deque(maxlen=0).append  # timed runs drop each output at once, as a server would


class Bench:
    """Engines in this interpreter: each checked once (fills, final book), then timed round by
    round on a fresh instance, so that engines here and in the peers' process interleave."""

    def __init__(self, runners: list[Runner], stream: list[Command]) -> None:
        self.runners = runners
        self.n = len(stream)
        self.prepared = {r.name: r.prepare(stream) for r in runners}
        self.results: dict[str, Any] = {}
        for r in runners:
            commands = self.prepared[r.name]
            engine = r.fresh()
            outputs: list[Any] = []
            r.replay(engine, commands)(outputs.append)
            fills = r.fills(engine, commands, outputs)
            rows = r.rows(engine)
            self.results[r.name] = {
                "fills": len(fills),
                "fills_digest": digest(fills),
                "resting": len(rows),
                "levels": len({(s, p) for s, p, _, _ in rows}),
                "book_digest": digest(rows),
                "runs": [],
            }
            del engine, outputs

    def round(self) -> dict[str, int]:
        """Time one replay of each engine; commands per second by engine."""
        out = {}
        for r in self.runners:
            run = r.replay(r.fresh(), self.prepared[r.name])
            gc.collect()
            t0 = time.perf_counter()
            run(DISCARD)
            out[r.name] = round(self.n / (time.perf_counter() - t0))
            self.results[r.name]["runs"].append(out[r.name])
        return out


def peers_worker(stream_file: str) -> None:
    """Inside the peers' interpreter: print the check as a JSON line, then time one round per
    line read from stdin."""
    stream = [tuple(c) for c in json.loads(Path(stream_file).read_text())]
    bench = Bench([MatchingEngineRunner(), LightRunner()], stream)
    print(json.dumps({"python": platform.python_version(), "results": bench.results}), flush=True)
    for _ in sys.stdin:
        print(json.dumps(bench.round()), flush=True)


class Peers:
    """The PyPI engines, in a subprocess on the peers' interpreter, driven round by round."""

    def __init__(self, stream: list[Command], tmp: Path) -> None:
        if not PEERS_PYTHON.exists():
            raise SystemExit(f"{PEERS_PYTHON} is missing: run `make bench-peers-env` first")
        path = tmp / "stream.json"
        path.write_text(json.dumps(stream))
        self.proc = subprocess.Popen(
            [str(PEERS_PYTHON), __file__, "--peers-worker", str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        first = json.loads(self._line())
        self.python: str = first["python"]
        self.results: dict[str, Any] = first["results"]

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the peers' process ended (exit code {self.proc.wait()})")
        return line

    def round(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        for name, rate in json.loads(self._line()).items():
            self.results[name]["runs"].append(rate)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


class EventsAlone:
    """The part of tradews' time that is building its events: the events one replay returned
    (five a command on this stream), built again from their field values, command by command,
    each command's in a new list as ``Engine.apply`` returns them. No matching, no ledger: what
    any engine that returns these events, built eagerly, pays at least. The same loop without
    building the events (each command's field tuples put in a new list) is timed too: the
    interpreter's share of that loop, which compiled code does not pay."""

    def __init__(self, runner: TradewsRunner, stream: list[Command]) -> None:
        import msgspec

        outputs: list[Any] = []
        runner.replay(runner.fresh(), runner.prepare(stream))(outputs.append)
        astuple = msgspec.structs.astuple
        self.commands = [[(type(e), astuple(e)) for e in events] for _, events in outputs]
        self.events = sum(len(c) for c in self.commands)
        self.runs: list[int] = []
        self.loop_runs: list[int] = []

    def round(self) -> None:
        commands = self.commands
        gc.collect()
        t0 = time.perf_counter()
        for events in commands:
            DISCARD([cls(*fields) for cls, fields in events])
        self.runs.append(round(len(commands) / (time.perf_counter() - t0)))
        gc.collect()
        t0 = time.perf_counter()
        for events in commands:
            DISCARD([fields for cls, fields in events])
        self.loop_runs.append(round(len(commands) / (time.perf_counter() - t0)))


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=BENCH, check=True,
            capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--commands", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-peers", action="store_true", help="tradews and the bare loop only")
    parser.add_argument(
        "--events-alone",
        action="store_true",
        help="also time building tradews' events alone, from their field values",
    )
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    parser.add_argument("--peers-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peers_worker:
        peers_worker(args.peers_worker)
        return

    stream = generate(args.commands, args.seed)
    kinds = {"place": 0, "cancel": 0, "ioc": 0}
    for c in stream:
        kinds["cancel" if c[0] == "c" else "ioc" if c[6] == IOC else "place"] += 1
    tradews = TradewsRunner()
    print(f"python {platform.python_version()}, tradews engine {tradews.build}, "
          f"{len(stream):,} commands (seed {args.seed}): {kinds}", flush=True)  # fmt: skip
    bench = Bench([tradews, BareRunner()], stream)
    results = bench.results
    alone = EventsAlone(tradews, stream) if args.events_alone else None
    peers_python = None
    with tempfile.TemporaryDirectory() as tmp:
        peers = None if args.no_peers else Peers(stream, Path(tmp))
        for _ in range(args.repeat):
            bench.round()
            if alone is not None:
                alone.round()
            if peers is not None:
                peers.round()
        if peers is not None:
            peers.close()
            peers_python = peers.python
            results.update(peers.results)
    for result in results.values():
        result["per_second"] = max(result["runs"])

    reference = results["bare loop"]
    agree = all(
        r["fills_digest"] == reference["fills_digest"]
        and r["book_digest"] == reference["book_digest"]
        for r in results.values()
    )
    tw = results["tradews"]["per_second"]
    print(f"\n| engine | commands/s (best of {args.repeat}) | runs | fills | resting orders "
          f"| levels | tradews / it |\n|---|---|---|---|---|---|---|")  # fmt: skip
    for name, r in results.items():
        label = f"tradews ({tradews.build})" if name == "tradews" else name
        runs = " / ".join(f"{x:,}" for x in r["runs"])
        print(f"| {label} | {r['per_second']:,} | {runs} | {r['fills']:,} | {r['resting']:,} "
              f"| {r['levels']} | {tw / r['per_second']:.2f}x |")  # fmt: skip
    events_alone = None
    if alone is not None:
        best, loop = max(alone.runs), max(alone.loop_runs)
        events_alone = {
            "events": alone.events, "runs": alone.runs, "per_second": best,
            "loop_runs": alone.loop_runs, "loop_per_second": loop,
        }  # fmt: skip
        print(f"\ntradews' {alone.events:,} events built alone: {best:,} commands/s "
              f"({' / '.join(f'{x:,}' for x in alone.runs)}), "
              f"{tw / best:.0%} of tradews' time; the same loop without building them "
              f"{loop:,} commands/s, so building them {1e9 / best - 1e9 / loop:,.0f} ns "
              f"a command, {tw / best - tw / loop:.0%} of tradews' time")  # fmt: skip
    print(f"\nall engines agree on fills and the final book: {'yes' if agree else 'NO'}")
    record = {
        "benchmark": "engine_peers",
        "commit": commit(),
        "python": platform.python_version(),
        "peers_python": peers_python,
        "tradews_build": tradews.build,
        "commands": len(stream),
        "seed": args.seed,
        "repeat": args.repeat,
        "mix": kinds,
        "agree": agree,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "results": results,
        "events_alone": events_alone,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if tradews.build == "compiled" else "-pure"
    path = args.out / f"engine_peers-{record['commit']}{suffix}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"saved {path}")
    if not agree:
        raise SystemExit("the engines disagree")


if __name__ == "__main__":
    main()
