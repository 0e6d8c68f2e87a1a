"""psycopg 3 (synchronous) against asyncpg, on the journal's own pattern, to choose a driver.

Two operations, each timed one at a time (a closed loop, as the engine host writes):

- ``batch N``: one transaction inserting N journal-like rows (seq, at, a 120-byte command, no
  msg_id) and its commit, with ``synchronous_commit = on`` (durability FULL: the commit waits
  for PostgreSQL's WAL flush). N = 1, 16, 256: a lone command, a busy moment, a burst.
- ``select``: one row read by its primary key (a msg_id lookup, a closed order).

psycopg runs three ways, on an autocommit connection with explicit ``BEGIN`` and ``COMMIT``:

- ``psycopg``: each statement on its own, ``executemany`` for the rows (which psycopg sends
  in pipeline mode): three round trips at least;
- ``psycopg-pipe``: the same three statements in one pipeline (``connection.pipeline()``):
  one round trip;
- ``psycopg-unnest``: in one pipeline too, the rows as one ``INSERT ... SELECT FROM unnest``
  of one binary array per column: one statement, whatever N.

asyncpg runs as its documentation shows: ``async with connection.transaction()``,
``executemany``, ``fetchrow``.

    .venv/bin/python bench/pg_drivers.py [--url postgresql://postgres@127.0.0.1/postgres]
                                         [--seconds 3]

A database is made for the run on that server and dropped after. Prints a table and writes
``bench/results/pg_drivers-<commit>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psycopg

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BATCHES = (1, 16, 256)
COMMAND = bytes(range(120))  # about the size of an encoded order command
TABLE = (
    "CREATE TABLE journal (seq BIGINT PRIMARY KEY, at BIGINT NOT NULL, command BYTEA NOT NULL,"
    " msg_id TEXT, reply BYTEA)"
)


def commit_of(ref: str) -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def summary(name: str, case: str, rows_per_op: int, times: list[float]) -> dict[str, Any]:
    """ops/s over the measured time, and latency percentiles in microseconds."""
    ordered = sorted(times)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1e6, 1)

    total = sum(times)
    return {
        "driver": name,
        "case": case,
        "ops": len(times),
        "ops_per_s": round(len(times) / total, 1),
        "rows_per_s": round(len(times) * rows_per_op / total, 1),
        "p50_us": pct(0.50),
        "p99_us": pct(0.99),
        "mean_us": round(statistics.fmean(times) * 1e6, 1),
    }


class Seq:
    """Journal sequence numbers, continuing across cases and drivers (one table)."""

    def __init__(self) -> None:
        self.next = 1

    def rows(self, n: int) -> list[tuple[int, int, bytes, None, None]]:
        first, self.next = self.next, self.next + n
        return [(s, 1_700_000_000_000, COMMAND, None, None) for s in range(first, first + n)]


def timed(op: Callable[[], None], seconds: float) -> list[float]:
    for _ in range(20):  # warm up: prepared statements, caches
        op()
    times = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        op()
        times.append(time.perf_counter() - t0)
    return times


async def timed_async(op: Callable[[], Awaitable[None]], seconds: float) -> list[float]:
    for _ in range(20):
        await op()
    times = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        await op()
        times.append(time.perf_counter() - t0)
    return times


INSERT = "INSERT INTO journal(seq, at, command, msg_id, reply) VALUES ({})"


UNNEST = (
    "INSERT INTO journal(seq, at, command, msg_id, reply) SELECT * FROM"
    " unnest(%b::bigint[], %b::bigint[], %b::bytea[], %b::text[], %b::bytea[])"
)


def run_psycopg(url: str, seq: Seq, seconds: float) -> list[dict[str, Any]]:
    out = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = on")
        insert = INSERT.format("%s, %s, %s, %s, %s")

        def statements(n: int) -> None:
            conn.execute("BEGIN")
            with conn.cursor() as cur:
                cur.executemany(insert, seq.rows(n))
            conn.execute("COMMIT")

        def pipelined(n: int) -> None:
            with conn.pipeline():
                statements(n)

        def unnest(n: int) -> None:
            columns = [list(c) for c in zip(*seq.rows(n), strict=True)]
            with conn.pipeline(), conn.cursor(binary=True) as cur:
                cur.execute("BEGIN")
                cur.execute(UNNEST, columns)
                cur.execute("COMMIT")

        for name, write in (
            ("psycopg", statements), ("psycopg-pipe", pipelined), ("psycopg-unnest", unnest),
        ):  # fmt: skip
            for n in BATCHES:
                times = timed(lambda n=n, write=write: write(n), seconds)
                out.append(summary(name, f"batch {n}", n, times))
        last = seq.next - 1

        def select() -> None:
            conn.execute("SELECT seq, command FROM journal WHERE seq = %s", (last,)).fetchone()

        out.append(summary("psycopg", "select", 1, timed(select, seconds)))
    return out


async def run_asyncpg(url: str, seq: Seq, seconds: float) -> list[dict[str, Any]]:
    out = []
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET synchronous_commit = on")
        insert = INSERT.format("$1, $2, $3, $4, $5")
        for n in BATCHES:

            async def batch(n: int = n) -> None:
                async with conn.transaction():
                    await conn.executemany(insert, seq.rows(n))

            out.append(summary("asyncpg", f"batch {n}", n, await timed_async(batch, seconds)))
        last = seq.next - 1

        async def select() -> None:
            await conn.fetchrow("SELECT seq, command FROM journal WHERE seq = $1", last)

        out.append(summary("asyncpg", "select", 1, await timed_async(select, seconds)))
    finally:
        await conn.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--seconds", type=float, default=3.0, help="per case and driver")
    parser.add_argument("--rounds", type=int, default=2, help="each driver runs this often")
    args = parser.parse_args()
    name = f"tradews_bench_{os.getpid()}"
    url = urlunsplit(urlsplit(args.url)._replace(path=f"/{name}"))
    with psycopg.connect(args.url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
        version = admin.execute("SHOW server_version").fetchone()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(TABLE)
        seq = Seq()
        rows: list[dict[str, Any]] = []
        for _ in range(args.rounds):  # alternate, so drift on the machine hits both alike
            rows += run_psycopg(url, seq, args.seconds)
            rows += asyncio.run(run_asyncpg(url, seq, args.seconds))
    finally:
        with psycopg.connect(args.url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:  # each case's better round, per driver
        key = (row["driver"], row["case"])
        if key not in best or row["ops_per_s"] > best[key]["ops_per_s"]:
            best[key] = row
    print(f"{'case':<10} {'driver':<15} {'ops/s':>9} {'rows/s':>10} {'p50 µs':>8} {'p99 µs':>8}")
    for (driver, case), r in sorted(best.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        print(
            f"{case:<10} {driver:<15} {r['ops_per_s']:>9,.0f} {r['rows_per_s']:>10,.0f} "
            f"{r['p50_us']:>8,.0f} {r['p99_us']:>8,.0f}"
        )
    result = {
        "commit": commit_of("HEAD"),
        "python": sys.version,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "postgresql": version[0] if version else None,
        "psycopg": psycopg.__version__,
        "asyncpg": asyncpg.__version__,
        "seconds_per_case": args.seconds,
        "rounds": args.rounds,
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"pg_drivers-{result['commit']}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
