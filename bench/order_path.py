"""The server's work per durable order request, in process: no sockets, no load generator.

    .venv/bin/python bench/order_path.py [--ref 8780029 --ref HEAD] [--clients 32]
        [--rounds 300] [--instructions] [--instruction-rounds 40]

A real ``Server`` (its catalog, engine host, SQLite journal with ``synchronous=NORMAL`` so no
fsync is counted, trading view and private streams, the garbage collector set up as
``Server.start`` sets it) and ``--clients`` logged-in sessions. Each round, every session
receives an ``order_place`` frame (a resting limit, as ``bench/order_ack.py`` sends), the loop
writes them as one journal batch and sends the replies; then the same with ``order_cancel``.
What the ``bench/order_ack.py`` server does for a request minus the sockets: the frame's
parsing, limits and dispatch, the engine, the journal, the replies and the view.

Prints, per request: CPU time (``time.process_time``), and by phase the CPU of the session's
``receive`` (with the engine host's ``submit``), the journal's ``append`` (with the private
streams' numbering) and the durable batch's replies and view (``_written``, with the view's
``apply``). ``--instructions``: also the CPU instructions per request, counted by callgrind
(valgrind) as the difference between a run of ``--instruction-rounds`` rounds and one of none,
which does not depend on what else runs on the machine, so commits compare exactly.
``--ref``: run tradews as of each commit (exported with ``git archive``, with this install's
compiled engine where its sources are the same; see ``order_ack.export``).

Writes ``bench/results/order_path-<commits>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ORDER_ID = re.compile(rb'"orderId":"?(\d+)')
WARMUP_ROUNDS = 50


def phase_timer(cpu: collections.Counter[str], cls: Any, name: str, label: str) -> None:
    """Wrap ``cls.name`` so that the thread CPU time spent in it adds up in ``cpu[label]``."""
    inner = getattr(cls, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time_ns()
        try:
            return inner(*args, **kwargs)
        finally:
            cpu[label] += time.thread_time_ns() - started

    setattr(cls, name, timed)


async def drive(db: Path, clients: int, rounds: int, phases: bool) -> dict[str, Any]:
    """Run ``rounds`` rounds (after WARMUP_ROUNDS) and return the CPU figures."""
    import gc

    import order_ack
    from tradews.adapters.registry import open_store
    from tradews.app.server import Server, ServerSettings
    from tradews.session.limits import Rate, RateLimits
    from tradews.session.session import Session

    keys = order_ack.prepare(db)
    unlimited = Rate(1e12, 1e12)
    settings = ServerSettings(
        durability="NORMAL", admin=False, rates=RateLimits(unlimited, unlimited, unlimited)
    )
    server = Server(settings, open_store(str(db)))
    host = server.engine_host
    assert host is not None
    await host.drain()
    sessions: list[Session[object]] = []
    outs: list[list[bytes]] = []
    for n in range(clients):
        out: list[bytes] = []
        session: Session[object] = Session(server.services, object(), out.append, peer="::1")
        key = keys[n % len(keys)]
        login = {"jsonrpc": "2.0", "method": "rpc.login", "id": 0,
                 "params": {"apiKey": key["apiKey"], "apiSecret": key["apiSecret"]}}  # fmt: skip
        assert b'"result":true' in session.receive(json.dumps(login).encode(), 0)[0]
        sessions.append(session)
        outs.append(out)

    async def one_round(i: int) -> None:
        now = server._now_ms()
        for n, session in enumerate(sessions):
            session.receive(
                b'{"jsonrpc":"2.0","method":"order_place","params":{"symbol":"BTC_USD",'
                b'"side":"buy","type":"limit","quantity":"0.0001","price":"%d.%02d"},"id":%d}'
                % (1000 + i % 500, n % 100, 2 * i + 1),
                now,
            )
        await host.drain()
        ids = []
        for out in outs:
            found = ORDER_ID.search(out[-1])
            assert found is not None, out
            ids.append(found.group(1))
            out.clear()
        for n, session in enumerate(sessions):
            session.receive(
                b'{"jsonrpc":"2.0","method":"order_cancel","params":{"orderId":%s},"id":%d}'
                % (ids[n], 2 * i + 2),
                now,
            )
        await host.drain()
        for out in outs:
            assert b'"status":"cancelled"' in out[-1], out
            out.clear()

    gc.collect()  # as Server.start does
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    for i in range(WARMUP_ROUNDS):
        await one_round(i)
    cpu: collections.Counter[str] = collections.Counter()
    if phases:
        from tradews.adapters.sql_journal import SqlJournal
        from tradews.app.engine_host import EngineHost

        phase_timer(cpu, Session, "receive", "receive")
        phase_timer(cpu, SqlJournal, "append", "journal")
        phase_timer(cpu, EngineHost, "_written", "replies_and_view")
    started = time.process_time()
    for i in range(WARMUP_ROUNDS, WARMUP_ROUNDS + rounds):
        await one_round(i)
    elapsed = time.process_time() - started
    requests = max(1, rounds * clients * 2)  # none: a run only for its instruction count
    return {
        "requests": requests,
        "cpu_us_per_request": elapsed / requests * 1e6,
        **{f"{k}_us_per_request": v / requests / 1000 for k, v in cpu.items()},
    }


def child(clients: int, rounds: int, phases: bool) -> None:
    """Runs in the process measured (``--child``): prints the figures as JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        figures = asyncio.run(drive(Path(tmp) / "bench.db", clients, rounds, phases))
    print(json.dumps(figures))


def run_child(src: Path | None, clients: int, rounds: int, phases: bool,
              prefix: tuple[str, ...] = ()) -> tuple[dict[str, Any], str]:  # fmt: skip
    """Run the child (under ``prefix``, e.g. valgrind); return its figures and stderr."""
    env = dict(os.environ)
    path = [str(HERE)] + ([str(src)] if src else [])
    env["PYTHONPATH"] = os.pathsep.join(path + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    command = [*prefix, sys.executable, str(Path(__file__).resolve()), "--child",
               "--clients", str(clients), "--rounds", str(rounds)] + (["--phases"] if phases
                                                                       else [])  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def instructions(src: Path | None, clients: int, rounds: int) -> float:
    """Instructions a request: callgrind's count for ``rounds`` rounds minus none."""
    prefix = ("valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null")

    def count(n: int) -> int:
        _, err = run_child(src, clients, n, False, prefix)
        found = re.search(r"Collected : (\d+)", err)
        assert found is not None, err
        return int(found.group(1))

    return (count(rounds) - count(0)) / (rounds * clients * 2)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ref", action="append", help="a commit to measure (repeatable)")
    parser.add_argument("--clients", type=int, default=32, help="sessions: requests a batch")
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--instructions", action="store_true", help="count with callgrind")
    parser.add_argument("--instruction-rounds", type=int, default=40)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--phases", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.clients, args.rounds, args.phases)
        return
    import order_ack

    runs = []
    with tempfile.TemporaryDirectory() as exports:
        trees: list[tuple[str, Path | None]] = [
            (order_ack.commit(ref), order_ack.export(ref, Path(exports) / ref.replace("/", "_")))
            for ref in args.ref or []
        ] or [(order_ack.commit(), None)]
        for ref, src in trees:
            plain, _ = run_child(src, args.clients, args.rounds, False)
            phased, _ = run_child(src, args.clients, args.rounds, True)
            run: dict[str, Any] = {"commit": ref, **plain}
            run["phases"] = {
                k.removesuffix("_us_per_request"): v
                for k, v in phased.items()
                if k.endswith("_us_per_request") and k != "cpu_us_per_request"
            }
            print(
                f"{ref:<14} {run['cpu_us_per_request']:6.1f} us CPU a request; by phase, in a"
                " run of its own (us): "
                + ", ".join(f"{k} {v:.1f}" for k, v in run["phases"].items()),
                flush=True,
            )
            if args.instructions:
                run["instructions_per_request"] = instructions(
                    src, args.clients, args.instruction_rounds
                )
                print(f"{ref:<14} {run['instructions_per_request']:,.0f} instructions a request")
            runs.append(run)
    name = "-".join(r["commit"] for r in runs)
    record = {
        "benchmark": "order_path",
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "clients": args.clients,
        "rounds": args.rounds,
        "instruction_rounds": args.instruction_rounds if args.instructions else None,
        "runs": runs,
    }
    out = HERE / "results" / f"order_path-{name}.json"
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"saved {out.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
