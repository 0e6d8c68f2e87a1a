"""Order acknowledgement round trip over WebSocket, with the durable journal on, beside a bare
picows echo server measured in the same run.

A client sends ``order_place`` (a passive limit order that rests) and waits for the reply, which
the server sends only once the order is in the journal; then it cancels it the same way. The
round trip of each is timed at the client. Two loads, each on tradews and on the bare echo
server (``bench/bare_echo_server.py``, which sends every frame straight back: the round trip of
the same library with no application):

- light: one client, one request at a time;
- loaded: 64 clients on 64 connections, each one request at a time (closed loop).

    .venv/bin/python bench/order_ack.py [--durability full [normal]] [--seconds 8]
        [--procs 2] [--clients 64] [--postgres postgresql://postgres@127.0.0.1/postgres]
        [--tradews-ref REF [REF ...]] [--repeat 1] [--quiet-wait 0]

The load generator is ``bench/order_ack_client.py`` (picows callbacks, no client library),
``--procs`` processes of it for the loaded runs (one for light), each with its share of the
connections. The CPU the generators and the server used during each window is reported (in
cores: 1.0 is one core busy all the time; and the server's per request), so a run whose
generator is saturated shows it, and so does one where other work on the machine took the
CPU (``other``).
``--postgres``: store in PostgreSQL instead of SQLite, in a database made for the run on that
server (the URL is of its maintenance database) and dropped after. ``--tradews-ref``: run
tradews from ``src/tradews`` as of each commit (exported with ``git archive``, with this
install's compiled engine where its sources are the same), the commits taking turns, so a
before and an after are measured in one run under the same conditions.

Prints one line per measurement and the ratio of tradews's light p50 to the echo server's;
saves everything as JSON under ``bench/results/order_ack-<commit>-<time>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from quote_fanout import export_source, python_path, wait_until_quiet
from tradews.client import Client
from tradews.testing import ServerProcess, run_cli

HERE = Path(__file__).resolve().parent
ACCOUNTS = 4
WARMUP = 1.0  # seconds of load before each window


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
    """One client of the project's own library in this process, placing and cancelling in a
    closed loop for ``seconds``; each round trip's time goes to ``out``. (``distributed.py``
    drives its configurations with it; this benchmark uses ``order_ack_client.py``.)"""
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


def summary(samples: list[float], seconds: float) -> dict[str, float]:
    """Rate and percentiles of round trips in seconds (``closed_loop``'s samples)."""
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


UNLIMITED = (
    "--rate-limit-connection", "1000000/1000000",
    "--rate-limit-key", "1000000/1000000",
    "--rate-limit-address", "1000000/1000000",
    "--max-connections-per-address", "100000",
    "--max-sessions-per-key", "100000",
)  # fmt: skip


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def quantile(hist: dict[int, int], total: int, q: float) -> int:
    """The smallest bucket (µs) at or below which a fraction ``q`` of the samples lie."""
    rank = max(1, round(q * total))
    seen = 0
    for us in sorted(hist):
        seen += hist[us]
        if seen >= rank:
            return us
    return max(hist)


def measure(
    url: str, keys: list[dict[str, str]], clients: int, procs: int, seconds: float, pid: int
) -> dict[str, Any]:
    """``clients`` closed loops over ``procs`` generator processes for ``seconds``."""
    procs = max(1, min(procs, clients))
    generators = []
    for p in range(procs):
        share = range(p, clients, procs)
        gen = subprocess.Popen(
            [sys.executable, str(HERE / "order_ack_client.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert gen.stdin is not None
        setup = {"url": url, "keys": keys, "connections": len(share), "first": p}
        gen.stdin.write(json.dumps(setup) + "\n")
        gen.stdin.flush()
        generators.append(gen)
    try:
        for gen in generators:
            assert gen.stdout is not None
            line = gen.stdout.readline()
            if not line or not json.loads(line).get("ready"):
                raise RuntimeError("a load generator did not start")
        start = time.time() + WARMUP
        end = start + seconds
        for gen in generators:
            assert gen.stdin is not None
            gen.stdin.write(json.dumps({"start": start, "end": end}) + "\n")
            gen.stdin.flush()
        time.sleep(max(0.0, start - time.time()))
        server0 = cpu_seconds(pid)
        time.sleep(max(0.0, end - time.time()))
        server_cpu = cpu_seconds(pid) - server0
        results = []
        for gen in generators:
            assert gen.stdout is not None
            results.append(json.loads(gen.stdout.readline()))
    finally:
        for gen in generators:
            with contextlib.suppress(subprocess.TimeoutExpired):
                gen.wait(timeout=10)
            if gen.poll() is None:
                gen.kill()
    hist: dict[int, int] = {}
    for r in results:
        for us, c in r["hist_us"].items():
            hist[int(us)] = hist.get(int(us), 0) + c
    count = sum(r["count"] for r in results)
    if not count:
        raise RuntimeError("no round trip completed in the window")
    return {
        "clients": clients,
        "procs": procs,
        "requests": count,
        "errors": sum(r["errors"] for r in results),
        "per_second": count / seconds,
        "p50_us": quantile(hist, count, 0.50),
        "p99_us": quantile(hist, count, 0.99),
        "p999_us": quantile(hist, count, 0.999),
        "max_us": max(hist),
        "server_cores": server_cpu / seconds,
        "server_us_per_request": server_cpu / count * 1e6,
        "generator_cores": sum(r["cpu_s"] for r in results) / seconds,
        "generator_busiest": max(r["cpu_s"] / r["wall_s"] for r in results),
        "other_cores": None,
    }


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def run_measured(label: str, url: str, keys: list[dict[str, str]], clients: int, procs: int,
                 seconds: float, pid: int, quiet_wait: float = 0.0) -> dict[str, Any]:  # fmt: skip
    if quiet_wait > 0 and wait_until_quiet(quiet_wait) > 1.5:
        print("(waited for other jobs to finish)", flush=True)
    busy0, total0 = machine_busy()
    s = measure(url, keys, clients, procs, seconds, pid)
    busy1, total1 = machine_busy()
    cores = os.cpu_count() or 1
    machine = (busy1 - busy0) / max(1, total1 - total0) * cores
    # what ran on the machine besides this server and the generators, in cores (approximate:
    # the machine's figure includes the warm-up and the end)
    s["other_cores"] = max(0.0, machine - s["server_cores"] - s["generator_cores"])
    s["label"] = label
    print(
        f"{label:<26} {s['requests']:>8,} req {s['per_second']:>8,.0f}/s"
        f"  p50 {s['p50_us']:>6,} us  p99 {s['p99_us']:>6,} us  p99.9 {s['p999_us']:>6,} us"
        f"  CPU: server {s['server_cores']:.2f} ({s['server_us_per_request']:.0f} us/req),"
        f" generator {s['generator_cores']:.2f}"
        f" (busiest {s['generator_busiest']:.2f}), other {s['other_cores']:.2f}",
        flush=True,
    )
    return s


@contextlib.contextmanager
def echo_server() -> Iterator[tuple[str, int]]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "bare_echo_server.py")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        m = re.search(r"ws://\S+", proc.stdout.readline())
        if m is None:
            raise RuntimeError("the echo server did not start")
        yield m.group(0), proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)


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


def loads(args: argparse.Namespace) -> list[tuple[str, int, int]]:
    return [
        ("light (1 client)", 1, 1),
        (f"loaded ({args.clients} clients)", args.clients, args.procs),
    ]


def commit(ref: str = "HEAD") -> str:
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=HERE, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", ref) or "unknown"
    if ref != "HEAD":
        return head
    return head + ("-dirty" if git("status", "--porcelain", "--", "../src") else "")


# The engine's modules that `make install` compiles (Makefile ENGINE_MODULES).
ENGINE_MODULES = ("domain/orders", "domain/order_book", "domain/ledger", "engine/engine")


def export(ref: str, dest: Path) -> Path:
    """``src/tradews`` as of ``ref`` in ``dest``, with this install's compiled engine modules
    copied in when their sources are the same at ``ref`` (else that ref runs them pure)."""
    dest.mkdir(parents=True)
    src = export_source(ref, dest)
    sources = [f"src/tradews/{m}.py" for m in ENGINE_MODULES]
    same = subprocess.run(["git", "diff", "--quiet", ref, "--", *sources], cwd=HERE.parent)
    if same.returncode == 0:
        for module in ENGINE_MODULES:
            folder = HERE.parent / "src/tradews" / module.rpartition("/")[0]
            stem = module.rpartition("/")[2]
            for so in folder.glob(f"{stem}.*.so"):
                shutil.copy(so, src / "tradews" / module.rpartition("/")[0])
        for so in (HERE.parent / "src").glob("*__mypyc*.so"):
            shutil.copy(so, src)
    else:
        print(f"{ref}: its engine differs from this install's compiled one: runs pure Python")
    return src


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--durability", choices=["full", "normal"], nargs="+", default=["full"])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=64, help="connections of the loaded run")
    parser.add_argument("--procs", type=int, default=2, help="generator processes when loaded")
    parser.add_argument("--postgres", help="a PostgreSQL server's maintenance database URL")
    parser.add_argument(
        "--tradews-ref",
        nargs="+",
        metavar="GIT_REF",
        help="run tradews from src/tradews as of these commits, taking turns (default: the"
        " working tree)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every tradews run")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each measurement, wait up to this long for other jobs to finish",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where the JSON goes")
    args = parser.parse_args()
    runs: list[dict[str, Any]] = []
    with echo_server() as (url, pid):
        keys = [{"apiKey": "-", "apiSecret": "-"}]
        for label, clients, procs in loads(args):
            s = run_measured(
                f"echo {label}", url, keys, clients, procs, args.seconds, pid, args.quiet_wait
            )
            runs.append({"server": "bare-echo", **s})
    with tempfile.TemporaryDirectory() as exports:
        trees: list[tuple[str, Path | None]] = [
            (commit(ref), export(ref, Path(exports) / ref.replace("/", "_")))
            for ref in args.tradews_ref or []
        ] or [(commit(), None)]
        for _, durability, (ref, tree) in itertools.product(
            range(args.repeat), args.durability, trees
        ):
            with (
                tempfile.TemporaryDirectory() as tmp,
                database(Path(tmp), args.postgres) as db,
                python_path(tree),
            ):
                keys = prepare(db)
                # Load from one address at full speed: lift the per-client limits a public
                # server needs (see docs/security.md), to measure the engine and the journal.
                server_args = ("--durability", durability, "--log-level", "warning", *UNLIMITED)
                with ServerProcess.start(db, demo=False, args=server_args) as server:
                    pid = server.process.pid
                    for label, clients, procs in loads(args):
                        s = run_measured(f"{ref} {durability} {label}", server.url, keys,
                                         clients, procs, args.seconds, pid,
                                         args.quiet_wait)  # fmt: skip
                        runs.append(
                            {"server": "tradews", "commit": ref, "durability": durability, **s}
                        )
    echo_p50 = next(r["p50_us"] for r in runs if r["server"] == "bare-echo" and r["clients"] == 1)
    for r in runs:
        if r["server"] == "tradews" and r["clients"] == 1:
            r["p50_vs_echo"] = r["p50_us"] / echo_p50
            print(
                f"{r['commit']} {r['durability']}: light p50 {r['p50_vs_echo']:.1f}x"
                " the bare echo server's"
            )
    ref = "-".join(dict.fromkeys(r["commit"] for r in runs if r["server"] == "tradews"))
    record = {
        "benchmark": "order_ack",
        "commit": ref,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": args.seconds,
        "store": "postgresql" if args.postgres else "sqlite",
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"order_ack-{ref}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"saved {path.relative_to(HERE.parent) if path.is_relative_to(HERE.parent) else path}")


if __name__ == "__main__":
    main()
