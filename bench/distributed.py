"""The distributed deployment (engine + gateways over NATS JetStream) beside ``tradews serve``.

One invocation measures, on this machine and on 127.0.0.1 only:

- **order round trip** (the method of ``order_ack.py``): ``order_place`` of a resting limit
  order, then ``order_cancel``, each waited for, closed loop; light = 1 client, loaded = 64.
  Configurations: ``serve`` (all in one process), ``engine+1gw`` (clients on the gateway) and
  ``engine+2gw`` with every client on the first gateway, so that the second one, which only
  follows the engine's log, shows what a gateway's replica costs per command.
- **quote fan-out** (the method of ``quote_fanout.py``, with its load generator): N clients
  (500) stream BTC_USD RFQ quotes with the pulse back to back (``--tick``, 0.2 ms); delivered
  quotes/s and the CPU (user + system, from /proc/<pid>/stat) of every server-side process per
  delivered quote. Configurations: ``serve``, ``engine+1gw``, ``engine+2gw`` (clients split).

Every configuration starts on a fresh database and, when distributed, a fresh NATS namespace,
which is deleted after it; every process started is stopped at the end.

    .venv/bin/python bench/distributed.py [--db DIR|URL] [--seconds 4] [--baseline GIT_REF]

``--db`` is where the databases go: a directory for SQLite files (default: a temporary one), or
a ``postgresql://`` URL whose database name gets a suffix per configuration (created with
``createdb`` and dropped with ``dropdb``). ``--baseline REF`` runs the distributed
configurations a second time with ``src/tradews`` as of ``REF``, interleaved with the working
tree's, to measure a change of the distributed path before and after in the same run.

It prints tables and writes the raw figures to ``bench/results/distributed-<commit>.json``.
See "Distributed deployment" in ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from order_ack import ACCOUNTS, UNLIMITED, closed_loop, prepare, summary
from quote_fanout import (
    CpuTimes,
    RunningServer,
    Tradews,
    Worker,
    export_source,
    percentile_ms,
    pinned,
    process_cpu_seconds,
    python_path,
    tradews_counters,
    wait_until_quiet,
)
from tradews.testing import (
    NATS_URL,
    Deployment,
    ServerProcess,
    drop_bus,
    fresh_bus_url,
    run_cli,
)

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
ORDER_LOADS = (("light", 1), ("loaded", 64))
LOAD_GENERATORS = 2  # fan-out client processes in every configuration (one per gateway in 2gw)


# Databases -----------------------------------------------------------------------------------


class Databases:
    """A fresh database for each configuration: a SQLite file in a directory, or a PostgreSQL
    database named after the URL's with a suffix (the distributed processes share it)."""

    def __init__(self, where: str, scratch: Path) -> None:
        self.url = where if "://" in where and not where.startswith("sqlite:") else None
        self.directory = Path(where.removeprefix("sqlite://")) if self.url is None else scratch
        self.made: list[str] = []

    def fresh(self, label: str) -> str:
        name = f"{label}-{time.monotonic_ns()}".replace("+", "_").replace("-", "_")
        if self.url is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            return str(self.directory / f"{name}.db")
        parts = urlsplit(self.url)
        database = f"{parts.path.strip('/') or 'tradews'}_{name}"
        subprocess.run(["createdb", *self._pg_args(), database], check=True)
        self.made.append(database)
        url = urlunsplit(parts._replace(path="/" + database))
        # PostgreSQL is migrated only on request (SQLite on open); the key file every process
        # reads goes beside the SQLite files' directory.
        os.environ.setdefault("TRADEWS_KEY_FILE", str(self.directory / "tradews.key"))
        run_cli("db", "upgrade", db=url)
        return url

    def drop(self) -> None:
        for database in self.made:
            subprocess.run(["dropdb", "--if-exists", *self._pg_args(), database], check=False)
        self.made = []

    def _pg_args(self) -> list[str]:
        assert self.url is not None
        parts = urlsplit(self.url)
        args = ["-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432)]
        return args + (["-U", parts.username] if parts.username else [])


# Configurations ------------------------------------------------------------------------------


@dataclass
class Target:
    """A running configuration: where clients connect, and the processes whose CPU counts."""

    config: str  # serve, engine+1gw, engine+2gw
    variant: str  # which source: "working tree" or the baseline ref
    urls: list[str]
    pids: dict[str, int]  # role -> pid: serve / engine / gw1 / gw2 / nats
    admin_urls: list[str]
    api_key: str = ""
    api_secret: str = ""


def nats_pid() -> int | None:
    """The local ``nats-server`` (its CPU is part of the distributed deployment's cost)."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "comm").read_text().strip() == "nats-server":
                    return int(proc.name)
            except OSError:
                continue
    return None


@contextmanager
def deployed(
    config: str,
    variant: str,
    db: str,
    *,
    demo: bool,
    args: tuple[str, ...],
    nats: str,
    src: Path | None,
    cpus: set[int] | None,
) -> Iterator[Target]:
    """Start ``config`` on ``db`` (``src`` first on PYTHONPATH), stop it (and drop its NATS
    namespace) on leaving."""
    gateways = {"serve": 0, "engine+1gw": 1, "engine+2gw": 2}[config]
    with ExitStack() as stack:
        with pinned(cpus), python_path(src):  # the processes inherit both; this one must not
            if gateways:
                bus = fresh_bus_url(nats)
                stack.callback(drop_bus, bus)
                d = stack.enter_context(
                    Deployment.start(db, bus, gateways=gateways, demo=demo, args=args)  # type: ignore[arg-type]
                )
                servers = d.gateways
                pids = {"engine": d.engine.process.pid}
                pids.update({f"gw{i + 1}": g.process.pid for i, g in enumerate(servers)})
                if (pid := nats_pid()) is not None:
                    pids["nats"] = pid
                credentials = d.engine
            else:
                credentials = stack.enter_context(
                    ServerProcess.start(db, demo=demo, args=args)  # type: ignore[arg-type]
                )
                servers = [credentials]
                pids = {"serve": credentials.process.pid}
        yield Target(
            config,
            variant,
            [s.url for s in servers],
            pids,
            [s.admin_url for s in servers],
            credentials.api_key,
            credentials.api_secret,
        )


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    return {role: sum(process_cpu_seconds(pid)) for role, pid in pids.items()}


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {role: after[role] - before[role] for role in before}


# Order round trip ----------------------------------------------------------------------------


@dataclass
class OrderResult:
    config: str
    variant: str
    load: str
    clients: int
    requests: int = 0
    per_second: float = 0.0
    p50_us: float = 0.0
    p99_us: float = 0.0
    p999_us: float = 0.0
    max_us: float = 0.0
    cpu_us_per_request: dict[str, float] = field(default_factory=dict)  # per process
    cpu_pct: dict[str, float] = field(default_factory=dict)
    cpu_busy_pct: list[float] = field(default_factory=list)


async def order_round_trip(
    target: Target, keys: list[dict[str, str]], seconds: float, warmup: float
) -> list[OrderResult]:
    url = target.urls[0]  # with two gateways, the second only follows the log
    results = []
    for load, clients in ORDER_LOADS:
        await closed_loop(url, keys[0], warmup, [], 0)
        samples: list[float] = []
        cpu0, machine0, t0 = cpu_seconds(target.pids), CpuTimes.read(), time.perf_counter()
        await asyncio.gather(
            *(closed_loop(url, keys[i % ACCOUNTS], seconds, samples, i) for i in range(clients))
        )
        used = cpu_used(cpu0, cpu_seconds(target.pids))
        span = time.perf_counter() - t0
        s = summary(samples, seconds)
        r = OrderResult(target.config, target.variant, load, clients)
        r.requests, r.per_second = int(s["requests"]), s["per_second"]
        r.p50_us, r.p99_us, r.p999_us, r.max_us = (
            s["p50_us"],
            s["p99_us"],
            s["p999_us"],
            s["max_us"],
        )
        r.cpu_us_per_request = {k: round(1e6 * v / r.requests, 1) for k, v in used.items()}
        r.cpu_pct = {k: round(100 * v / span, 1) for k, v in used.items()}
        r.cpu_busy_pct = CpuTimes.read().since(machine0)[0]
        results.append(r)
        print(order_line(r), flush=True)
    return results


def order_line(r: OrderResult) -> str:
    cpu = " ".join(f"{k} {v:.0f}" for k, v in r.cpu_us_per_request.items())
    return (
        f"order  {r.config:<11} {r.variant:<13} {r.load:<6} {r.clients:>3} cl"
        f"  {r.per_second:>7,.0f} req/s  p50 {r.p50_us:>6,.0f}  p99 {r.p99_us:>6,.0f}"
        f"  p99.9 {r.p999_us:>6,.0f} us  CPU us/req: {cpu}"
    )


# Quote fan-out -------------------------------------------------------------------------------


@dataclass
class FanoutResult:
    config: str
    variant: str
    clients: int
    tick: float
    delivered_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    cpu_pct: dict[str, float] = field(default_factory=dict)  # per process
    cpu_us_per_quote: dict[str, float] = field(default_factory=dict)
    server_cpu_us_per_quote: float = 0.0  # every server-side process, NATS included
    client_cpu_pct: list[float] = field(default_factory=list)
    cpu_busy_pct: list[float] = field(default_factory=list)
    skipped_slow_per_s: float = 0.0
    per_connection_min: int = 0
    per_connection_max: int = 0
    errors: list[str] = field(default_factory=list)


def fanout(
    target: Target,
    clients: int,
    tick: float,
    *,
    warmup: float,
    seconds: float,
    cpus: set[int] | None,
    log: Any,
) -> FanoutResult:
    """Quote fan-out with ``clients`` connections over ``LOAD_GENERATORS`` processes; with two
    gateways each process connects to one of them."""
    shares = [clients // LOAD_GENERATORS + (i < clients % LOAD_GENERATORS) for i in range(2)]
    servers = [
        RunningServer("tradews", url, 0, lambda: None, target.api_key, target.api_secret, admin)
        for url, admin in zip(target.urls, target.admin_urls, strict=True)
    ]
    workers = [Worker(servers[i % len(servers)], n, log, cpus) for i, n in enumerate(shares)]
    try:
        for w in workers:
            w.read(timeout=90)
        start = time.time() + warmup
        end = start + seconds
        for w in workers:
            w.send({"start": start, "end": end})
        time.sleep(max(0.0, start - time.time()))
        t0, cpu0, machine0 = time.time(), cpu_seconds(target.pids), CpuTimes.read()
        counters0 = [tradews_counters(s) for s in servers]
        time.sleep(max(0.0, end - time.time()))
        t1, cpu1, machine1 = time.time(), cpu_seconds(target.pids), CpuTimes.read()
        counters1 = [tradews_counters(s) for s in servers]
        reports = [w.read(timeout=30) for w in workers]
    finally:
        for w in workers:
            w.stop()
    r = FanoutResult(target.config, target.variant, clients, tick)
    window = max(rep["wall_seconds"] for rep in reports)
    messages = sum(rep["messages"] for rep in reports)
    hist: dict[int, int] = {}
    for rep in reports:
        for bucket, n in rep["hist"]:
            hist[bucket] = hist.get(bucket, 0) + n
    bucket_ns = reports[0]["hist_bucket_ns"]
    r.delivered_per_s = messages / window
    r.p50_ms = percentile_ms(hist, bucket_ns, 0.50)
    r.p99_ms = percentile_ms(hist, bucket_ns, 0.99)
    used = cpu_used(cpu0, cpu1)
    span = t1 - t0
    r.cpu_pct = {k: round(100 * v / span, 1) for k, v in used.items()}
    if messages:
        r.cpu_us_per_quote = {k: round(1e6 * v / messages, 2) for k, v in used.items()}
        r.server_cpu_us_per_quote = round(1e6 * sum(used.values()) / messages, 2)
    r.client_cpu_pct = [round(100 * rep["cpu_seconds"] / rep["wall_seconds"], 1) for rep in reports]
    r.cpu_busy_pct = machine1.since(machine0)[0]
    skipped = "tradews_quotes_skipped_slow_reader_total"
    r.skipped_slow_per_s = (
        sum(
            c1.get(skipped, 0.0) - c0.get(skipped, 0.0)
            for c0, c1 in zip(counters0, counters1, strict=True)
        )
        / span
    )
    r.per_connection_min = min(rep["per_connection_min"] for rep in reports)
    r.per_connection_max = max(rep["per_connection_max"] for rep in reports)
    r.errors = sorted({e for rep in reports for e in rep["errors"]})
    print(fanout_line(r), flush=True)
    return r


def fanout_line(r: FanoutResult) -> str:
    cpu = " ".join(f"{k} {v:.0f}%/{r.cpu_us_per_quote.get(k, 0):.1f}" for k, v in r.cpu_pct.items())
    return (
        f"fanout {r.config:<11} {r.variant:<13} N={r.clients}  {r.delivered_per_s:>8,.0f} quotes/s"
        f"  p50 {r.p50_ms:5.1f} ms  p99 {r.p99_ms:6.1f} ms"
        f"  server {r.server_cpu_us_per_quote:.2f} us/quote  (CPU %/us per quote: {cpu})"
        f"  clients {'+'.join(f'{c:.0f}' for c in r.client_cpu_pct)}%"
        f"  CPUs {' / '.join(f'{b:.0f}' for b in r.cpu_busy_pct)}%"
        + (f"  errors {r.errors}" if r.errors else "")
    )


# Report --------------------------------------------------------------------------------------


def order_table(results: list[OrderResult]) -> str:
    base = {r.load: r for r in results if r.config == "serve"}
    lines = [
        "| configuration | source | load | req/s | vs serve | p50 us | p99 us | p99.9 us "
        "| CPU us per request, by process |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ref = base.get(r.load)
        ratio = f"{r.per_second / ref.per_second:.2f}x" if ref and ref.per_second else "-"
        cpu = ", ".join(f"{k} {v:.0f}" for k, v in r.cpu_us_per_request.items())
        lines.append(
            f"| {r.config} | {r.variant} | {r.load} ({r.clients}) | {r.per_second:,.0f} | {ratio} "
            f"| {r.p50_us:,.0f} | {r.p99_us:,.0f} | {r.p999_us:,.0f} | {cpu} |"
        )
    return "\n".join(lines)


def fanout_table(results: list[FanoutResult]) -> str:
    base = next((r for r in results if r.config == "serve"), None)
    lines = [
        "| configuration | source | N | delivered quotes/s | vs serve | p50 ms | p99 ms "
        "| server CPU us/quote (all processes) | CPU % and us/quote, by process |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ratio = f"{r.delivered_per_s / base.delivered_per_s:.2f}x" if base else "-"
        cpu = ", ".join(
            f"{k} {v:.0f}% {r.cpu_us_per_quote.get(k, 0):.2f}" for k, v in r.cpu_pct.items()
        )
        lines.append(
            f"| {r.config} | {r.variant} | {r.clients} | {r.delivered_per_s:,.0f} | {ratio} "
            f"| {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.server_cpu_us_per_quote:.2f} | {cpu} |"
        )
    return "\n".join(lines)


def environment() -> dict[str, str]:
    from importlib.metadata import version

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    nats_version = subprocess.run(
        ["nats-server", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "python": sys.version.split()[0],
        "picows": version("picows"),
        "nats-py": version("nats-py"),
        "nats-server": nats_version or "unknown",
        "tradews": short_commit(),
    }


def short_commit() -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return done.stdout.strip() or "unknown"


# Main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", help="directory for SQLite files, or a postgresql:// URL")
    parser.add_argument("--nats", default=NATS_URL, help="NATS server (a fresh namespace each)")
    parser.add_argument(
        "--phases", nargs="+", choices=("order", "fanout"), default=["order", "fanout"]
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="measuring window of each phase")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each window")
    parser.add_argument("--durability", choices=("full", "normal"), default="full")
    parser.add_argument("--clients", type=int, default=500, help="fan-out clients")
    parser.add_argument("--tick", type=float, default=0.0002, help="pulse interval of the fan-out")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="fan-out: tradews processes on CPU 0, load generators on CPU 1 (NATS as it is)",
    )
    parser.add_argument(
        "--quiet-wait", type=float, default=10.0, help="wait up to this long for idle CPUs first"
    )
    parser.add_argument(
        "--baseline",
        metavar="GIT_REF",
        help="also run the distributed configurations with src/tradews as of this commit",
    )
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    args = parser.parse_args(argv)
    pin = args.pin and {0, 1} <= os.sched_getaffinity(0)
    server_cpus, client_cpus = ({0}, {1}) if pin else (None, None)

    env = environment()
    print("environment: " + ", ".join(f"{k}={v}" for k, v in env.items()), flush=True)
    orders: list[OrderResult] = []
    fanouts: list[FanoutResult] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-distributed-") as tmp:
        databases = Databases(args.db or tmp, Path(tmp))
        variants: list[tuple[str, Path | None]] = [("working tree", None)]
        if args.baseline:
            variants.append((args.baseline, export_source(args.baseline, Path(tmp))))
        runs = [
            (config, variant)
            for config in ("serve", "engine+1gw", "engine+2gw")
            for variant in (variants if config != "serve" else variants[:1])
        ]
        try:
            if "order" in args.phases:
                order_args = ("--durability", args.durability, "--log-level", "warning", *UNLIMITED)
                for config, (variant, src) in runs:
                    wait_until_quiet(args.quiet_wait)
                    db = databases.fresh(f"order-{config}")
                    keys = prepare(db)  # type: ignore[arg-type]
                    with deployed(
                        config,
                        variant,
                        db,
                        demo=False,
                        args=order_args,
                        nats=args.nats,
                        src=src,
                        cpus=None,
                    ) as target:
                        orders += asyncio.run(
                            order_round_trip(target, keys, args.seconds, args.warmup)
                        )
            if "fanout" in args.phases:
                log = (Path(tmp) / "fanout-clients.log").open("w")
                for config, (variant, src) in runs:
                    wait_until_quiet(args.quiet_wait)
                    options = Tradews.prepare(src).options
                    fan_args = ("--tick-interval", f"{args.tick:g}", "--log-level", "warning")
                    with deployed(
                        config,
                        variant,
                        databases.fresh(f"fanout-{config}"),
                        demo=True,
                        args=(*fan_args, *options),
                        nats=args.nats,
                        src=src,
                        cpus=server_cpus,
                    ) as target:
                        fanouts.append(
                            fanout(
                                target,
                                args.clients,
                                args.tick,
                                warmup=args.warmup,
                                seconds=args.seconds,
                                cpus=client_cpus,
                                log=log,
                            )
                        )
                log.close()
        finally:
            databases.drop()
    elapsed = time.monotonic() - started

    print()
    if orders:
        print(f"Order round trip, durability {args.durability}, {args.seconds:g} s per load\n")
        print(order_table(orders) + "\n")
    if fanouts:
        print(f"Quote fan-out, {args.clients} clients, pulse every {args.tick * 1000:g} ms\n")
        print(fanout_table(fanouts) + "\n")
    print(f"(total {elapsed:.0f} s)")

    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"distributed-{short_commit()}.json"
    document = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "environment": env,
        "settings": {
            "seconds": args.seconds,
            "warmup": args.warmup,
            "durability": args.durability,
            "fanout_clients": args.clients,
            "tick": args.tick,
            "pinned": pin,
            "load_generators": LOAD_GENERATORS,
            "baseline": args.baseline,
            "database": "postgresql" if args.db and "://" in args.db else "sqlite",
        },
        "elapsed_seconds": round(elapsed, 1),
        "order": [asdict(r) for r in orders],
        "fanout": [asdict(r) for r in fanouts],
    }
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"saved {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
