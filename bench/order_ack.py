"""Order acknowledgement round trip over WebSocket, with the durable journal on.

A client sends ``order_place`` (a passive limit order that rests) and waits for the reply, which
the server sends only once the order is in the journal; then it cancels it the same way. The
round trip of each is timed at the client. Two loads:

- light: one client, one request at a time;
- loaded: 64 clients on 64 connections, each one request at a time (closed loop).

    .venv/bin/python bench/order_ack.py [--durability full|normal] [--seconds 10]
        [--postgres postgresql://postgres@127.0.0.1/postgres]

``--postgres``: store in PostgreSQL instead of SQLite, in a database made for the run on that
server (the URL is of its maintenance database) and dropped after.

Everything runs on this machine: the server process, and the clients in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tradews.client import Client
from tradews.testing import ServerProcess, run_cli

ACCOUNTS = 4


def prepare(db: Path | str) -> list[dict[str, str]]:
    run_cli("instrument", "add", "BTC_USD", "--base", "BTC", "--quote", "USD", "--tick", "0.01",
            "--lot", "0.0001", db=db)  # fmt: skip
    keys = []
    for i in range(ACCOUNTS):
        run_cli("account", "create", f"bench{i}", "--tier", "enterprise", db=db)
        keys.append(run_cli("key", "create", f"bench{i}", "--json", db=db))
        run_cli("deposit", f"bench{i}", "USD", "1000000000", "--ref", f"usd{i}", db=db)
    return keys


async def closed_loop(url: str, key: dict[str, str], seconds: float, out: list[float],
                      n: int) -> None:  # fmt: skip
    async with await Client.connect(url) as c:
        await c.login(key["apiKey"], key["apiSecret"])
        deadline = time.perf_counter() + seconds
        i = 0
        while time.perf_counter() < deadline:
            price = f"{1000 + (i % 500)}.{n % 100:02d}"
            t0 = time.perf_counter()
            order = await c.call(
                "order_place",
                {"symbol": "BTC_USD", "side": "buy", "type": "limit", "quantity": "0.0001",
                 "price": price},
            )  # fmt: skip
            t1 = time.perf_counter()
            await c.call("order_cancel", {"orderId": order["orderId"]})
            t2 = time.perf_counter()
            out.append(t1 - t0)
            out.append(t2 - t1)
            i += 1


UNLIMITED = (
    "--rate-limit-connection", "1000000/1000000",
    "--rate-limit-key", "1000000/1000000",
    "--rate-limit-address", "1000000/1000000",
    "--max-connections-per-address", "100000",
    "--max-sessions-per-key", "100000",
)  # fmt: skip


def summary(samples: list[float], seconds: float) -> dict[str, float]:
    samples = sorted(samples)
    q = statistics.quantiles(samples, n=1000)
    return {
        "requests": len(samples),
        "per_second": len(samples) / seconds,
        "p50_us": q[499] * 1e6,
        "p99_us": q[989] * 1e6,
        "p999_us": q[998] * 1e6,
        "max_us": samples[-1] * 1e6,
    }


@contextlib.contextmanager
def database(tmp: Path, postgres: str | None) -> Iterator[Path | str]:
    """A SQLite file, or a fresh PostgreSQL database at this release's schema."""
    if postgres is None:
        yield tmp / "bench.db"
        return
    import psycopg

    name = f"tradews_bench_{secrets.token_hex(4)}"
    os.environ["TRADEWS_KEY_FILE"] = str(tmp / "bench.key")
    with psycopg.connect(postgres, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        url = urlunsplit(urlsplit(postgres)._replace(path=f"/{name}"))
        run_cli("db", "upgrade", db=url)
        yield url
    finally:
        with psycopg.connect(postgres, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def run(durability: str, seconds: float, postgres: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp, database(Path(tmp), postgres) as db:
        keys = prepare(db)
        # Load from one address at full speed: lift the per-client limits a public server
        # needs (see docs/security.md), to measure the engine and the journal.
        args = ("--durability", durability, "--log-level", "warning", *UNLIMITED)
        with ServerProcess.start(db, demo=False, args=args) as server:
            for label, clients in (("light (1 client)", 1), ("loaded (64 clients)", 64)):
                samples: list[float] = []
                # warm-up
                await closed_loop(server.url, keys[0], 1.0, [], 0)
                await asyncio.gather(
                    *(closed_loop(server.url, keys[i % ACCOUNTS], seconds, samples, i)
                      for i in range(clients))
                )  # fmt: skip
                s = summary(samples, seconds)
                print(
                    f"{durability:>6} {label:<20} {s['requests']:>8,} req  {s['per_second']:>8,.0f}/s"
                    f"  p50 {s['p50_us']:>7,.0f} us  p99 {s['p99_us']:>7,.0f} us"
                    f"  p99.9 {s['p999_us']:>7,.0f} us  max {s['max_us']:>7,.0f} us"
                )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--durability", choices=["full", "normal"], nargs="+", default=["full", "normal"]
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--postgres", help="a PostgreSQL server's maintenance database URL")
    args = parser.parse_args()
    for durability in args.durability:
        asyncio.run(run(durability, args.seconds, args.postgres))


if __name__ == "__main__":
    main()
