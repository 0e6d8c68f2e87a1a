"""Quote fan-out benchmark: tradews against a bare picows broadcast server and Node ``ws``.

For each driving rate, client count N (default 100 and 1,000) and number of symbols per client
(``--symbols 1``: BTC_USD; ``--symbols 3``: BTC_USD, ETH_USD and SOL_USD, three quote streams
per client), each server in turn is started on 127.0.0.1, N WebSocket clients
(``fanout_client.py``) log in and stream quotes, and
after a warm-up the clients count the quotes they receive over a fixed window and the delivery
latency of each (receive wall time minus the quote's ``timestamp``). Servers:

- ``tradews``: the real server (``tradews serve --demo``), via ``tradews.testing.ServerProcess``;
- ``bare-picows``: ``bench/bare_picows_server.py``, one frame per symbol and tick sent to every
  client of that symbol, one send each;
- ``node-ws``: ``bench/node_ws_server.js``, the same on Node.js ``ws``.

tradews writes a pulse's quotes for one client in one write; the two bare servers send each
quote on its own, as the libraries' broadcast examples do.

Driving rates (offered rate = N x symbols / tick interval):

- ``max``: a pulse every ``--max-tick`` (0.2 ms), shorter than any server's pulse takes, so
  pulses run back to back and the figure is the most each server delivers;
- ``moderate``: a pulse every ``--moderate-tick`` (0.1 s, the tradews default), a load every
  server keeps up with, so the latency is that of the fan-out, not of a queue.

By default the server is pinned to CPU 0 and the load generator to CPU 1, and every measurement
is run ``--repeat`` times (servers taking turns); the median run is reported.

    .venv/bin/python bench/quote_fanout.py [--clients 100 1000] [--symbols 1 3] [--seconds 4]
        [--tradews-ref REF]

Results are printed as Markdown tables and saved as JSON under ``bench/results/``.
See ``docs/performance.md`` for the method and the figures.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from tradews.testing import ServerProcess

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CLIENT = BENCH / "fanout_client.py"
BARE_SERVER = BENCH / "bare_picows_server.py"
NODE_SERVER = BENCH / "node_ws_server.js"
SERVERS = ("tradews", "tradews-proto", "bare-picows", "node-ws")
# The symbols a client streams, in order: ``--symbols K`` takes the first K.
SYMBOLS = ("BTC_USD", "ETH_USD", "SOL_USD")
# "tradews-proto" is the same server with clients speaking the protobuf encoding.
# A run during which processes other than the server and the load generator used more than
# this much CPU (% of one core) was disturbed (another job on the machine): it is run again
# when the retry budget allows, and only used for the reported figure if no quiet run exists.
DISTURBED_OTHER_PCT = 15.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


# Servers -------------------------------------------------------------------------------------


@dataclass
class RunningServer:
    name: str
    url: str
    pid: int
    stop: Callable[[], object]
    api_key: str = ""
    api_secret: str = ""
    admin_url: str = ""  # tradews's admin listener (/metrics), where it has one


def _drain(stream: IO[str] | None) -> None:
    """Keep reading a child's output so a full pipe never blocks it."""
    if stream is None:
        return

    def pump() -> None:
        for _ in stream:
            pass

    threading.Thread(target=pump, daemon=True).start()


def _stop_popen(process: subprocess.Popen[str], timeout: float = 10) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _start_listed(name: str, cmd: list[str], timeout: float = 20) -> RunningServer:
    """Start a server that prints ``listening on ws://...`` and return once it does."""
    process = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT
    )
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline and process.poll() is None:
        ready, _, _ = select.select([process.stdout], [], [], 0.5)
        if not ready:
            continue
        line = process.stdout.readline()
        seen.append(line)
        if line.startswith("listening on "):
            _drain(process.stdout)
            url = line.split()[-1]
            return RunningServer(name, url, process.pid, lambda: _stop_popen(process))
    _stop_popen(process)
    raise RuntimeError(f"{name} did not start: {''.join(seen)}")


@contextmanager
def pinned(cpus: set[int] | None) -> Iterator[None]:
    """Run the block (and so the children it starts) on ``cpus``; None leaves affinity alone."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@contextmanager
def python_path(path: Path | None) -> Iterator[None]:
    """Put ``path`` first on PYTHONPATH for the children started in the block."""
    if path is None:
        yield
        return
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(path), before]))
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


def export_source(ref: str, dest: Path) -> Path:
    """Extract ``src/tradews`` as of git ``ref`` into ``dest``; return the directory to import."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "src/tradews"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest / "src"


@dataclass(frozen=True)
class Tradews:
    """Which tradews to run: ``src`` first on PYTHONPATH (None: the installed working tree),
    with ``options`` added to ``tradews serve --demo --tick-interval T``."""

    src: Path | None = None
    options: tuple[str, ...] = ()

    @classmethod
    def prepare(cls, src: Path | None) -> Tradews:
        """Quotes must follow the demo reference walk, which moves every pulse. Versions with
        simulated traders price off their order book instead, which moves a few times a
        second: turn the traders off there."""
        with python_path(src):
            usage = subprocess.run(
                [sys.executable, "-m", "tradews", "serve", "--help"],
                capture_output=True,
                text=True,
                env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
            ).stdout
        options = ["--no-demo-traders"] if "--no-demo-traders" in usage else []
        if "--max-connections-per-address" in usage:  # thousands of clients from one address
            options += ["--max-connections-per-address", "100000"]
            options += ["--rate-limit-address", "1000000/1000000"]
            options += ["--rate-limit-key", "1000000/1000000"]  # all on the demo key
        if "--max-sessions-per-key" in usage:
            options += ["--max-sessions-per-key", "100000"]
        return cls(src, tuple(options))


@contextmanager
def running(
    name: str,
    tick_interval: float,
    workdir: Path,
    cpus: set[int] | None,
    tradews: Tradews,
) -> Iterator[RunningServer]:
    with pinned(cpus), python_path(tradews.src if name.startswith("tradews") else None):
        server = _start(name, tick_interval, workdir, tradews.options)
    try:
        yield server
    finally:
        server.stop()


def _start(
    name: str, tick_interval: float, workdir: Path, tradews_options: tuple[str, ...]
) -> RunningServer:
    tick = f"{tick_interval:g}"
    if name.startswith("tradews"):
        db = workdir / f"tradews-{time.monotonic_ns()}.db"
        args = ("--tick-interval", tick, *tradews_options)
        proc = ServerProcess.start(db, demo=True, args=args)  # it drains the server's output
        return RunningServer(
            name,
            proc.url,
            proc.process.pid,
            lambda: proc.stop(),
            proc.api_key,
            proc.api_secret,
            proc.admin_url,
        )
    if name == "bare-picows":
        cmd = [sys.executable, str(BARE_SERVER), "--port", "0", "--tick-interval", tick]
        return _start_listed(name, cmd)
    if name == "node-ws":
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is not on PATH")
        return _start_listed(name, [node, str(NODE_SERVER), "--port", "0", "--tick-interval", tick])
    raise ValueError(f"unknown server {name!r}")


# CPU accounting ------------------------------------------------------------------------------


def process_cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``pid``, all its threads, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def tradews_counters(server: RunningServer) -> dict[str, float]:
    """The quote counters of a tradews server's ``/metrics`` ({} if it has none)."""
    base = server.admin_url or server.url.replace("ws://", "http://", 1)
    http = base.rstrip("/") + "/metrics"
    try:
        with urllib.request.urlopen(http, timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return {}
    counters = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("tradews_quotes_total", "tradews_quotes_skipped_slow_reader_total"):
            counters[name] = float(value)
    return counters


@dataclass(frozen=True)
class CpuTimes:
    """Per-CPU jiffies since boot from /proc/stat: (busy, interrupts, total) for each CPU.

    Interrupt time (hard and soft) is not charged to any process; on loopback it is most of
    the TCP path, run on the CPU of the process that sent the data.
    """

    cpus: tuple[tuple[int, int, int], ...]

    @classmethod
    def read(cls) -> CpuTimes:
        rows = []
        for line in Path("/proc/stat").read_text().splitlines():
            name, *fields = line.split()
            if not (name.startswith("cpu") and name[3:].isdigit()):
                continue
            user, nice, system, idle, iowait, irq, softirq, steal = map(int, fields[:8])
            total = user + nice + system + idle + iowait + irq + softirq + steal
            rows.append((total - idle - iowait, irq + softirq, total))
        return cls(tuple(rows))

    def since(self, before: CpuTimes) -> tuple[list[float], list[float]]:
        """(busy %, interrupt %) of each CPU over the interval."""
        busy, irq = [], []
        for (b1, i1, t1), (b0, i0, t0) in zip(self.cpus, before.cpus, strict=True):
            span = max(1, t1 - t0)
            busy.append(round(100 * (b1 - b0) / span, 1))
            irq.append(round(100 * (i1 - i0) / span, 1))
        return busy, irq


def wait_until_quiet(max_wait: float, busy_below: float = 15.0) -> float:
    """Wait (at most ``max_wait`` s) until the machine's CPUs together are under ``busy_below``
    % of one core busy over a second, i.e. no other job is running; return the seconds waited."""
    started = time.monotonic()
    while True:
        before = CpuTimes.read()
        time.sleep(1.0)
        busy, _ = CpuTimes.read().since(before)
        waited = time.monotonic() - started
        if sum(busy) < busy_below or waited >= max_wait:
            return waited


# Load generator ------------------------------------------------------------------------------


class Worker:
    """One ``fanout_client.py`` process with its share of the connections."""

    def __init__(
        self,
        server: RunningServer,
        connections: int,
        symbols: int,
        stderr: IO[str],
        cpus: set[int] | None,
    ) -> None:
        cmd = [
            sys.executable,
            str(CLIENT),
            f"--url={server.url}",
            f"--key={server.api_key}",
            f"--secret={server.api_secret}",  # a secret may start with "-"
            f"--connections={connections}",
            f"--encoding={'proto' if server.name == 'tradews-proto' else 'json'}",
            "--symbols",
            *SYMBOLS[:symbols],
        ]
        with pinned(cpus):
            self.process = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                cwd=ROOT,
            )

    def read(self, timeout: float) -> dict[str, Any]:
        stdout = self.process.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], timeout)
        line = stdout.readline() if ready else ""
        if not line:
            raise RuntimeError(f"load generator pid {self.process.pid} gave no answer")
        result: dict[str, Any] = json.loads(line)
        return result

    def send(self, message: dict[str, Any]) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(json.dumps(message) + "\n")
        stdin.flush()

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


# One measurement -----------------------------------------------------------------------------


@dataclass
class Measurement:
    server: str
    clients: int
    rate: str
    tick_interval: float
    offered_per_s: float
    symbols: int = 1  # quote streams per client
    delivered_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    server_cpu_pct: float = 0.0
    server_user_pct: float = 0.0
    server_cpu_us_per_msg: float = 0.0
    server_user_us_per_msg: float = 0.0
    client_cpu_pct: list[float] = field(default_factory=list)
    cpu_busy_pct: list[float] = field(default_factory=list)
    cpu_irq_pct: list[float] = field(default_factory=list)
    other_cpu_pct: float = 0.0
    server_quotes_per_s: float | None = None  # tradews only, from /metrics
    server_skipped_per_s: float | None = None
    per_connection_min: int = 0
    per_connection_max: int = 0
    closed: int = 0
    connect_seconds: float = 0.0
    window_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    disturbed: bool = False
    runs_delivered_per_s: list[float] = field(default_factory=list)


def medians(runs: list[Measurement]) -> list[Measurement]:
    """Per (rate, N, server), the quiet run with the median delivered rate (any run if none
    was quiet), with every quiet run's rate."""
    groups: dict[tuple[str, int, int, str], list[Measurement]] = {}
    for m in runs:
        groups.setdefault((m.rate, m.clients, m.symbols, m.server), []).append(m)
    chosen = []
    for group in groups.values():
        quiet = [m for m in group if not m.disturbed] or group
        ordered = sorted(quiet, key=lambda m: m.delivered_per_s)
        median = replace(ordered[(len(ordered) - 1) // 2])
        median.runs_delivered_per_s = [round(m.delivered_per_s) for m in quiet]
        chosen.append(median)
    return chosen


def percentile_ms(hist: dict[int, int], bucket_ns: int, q: float) -> float:
    """The ``q`` quantile of ``recv - timestamp`` minus 0.5 ms (bucket midpoints, in ms)."""
    total = sum(hist.values())
    if total == 0:
        return float("nan")
    rank = q * total
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return (bucket + 0.5) * bucket_ns / 1e6 - 0.5
    raise AssertionError("unreachable")


def measure(
    name: str,
    clients: int,
    rate: str,
    tick_interval: float,
    *,
    symbols: int,
    client_procs: int,
    warmup: float,
    seconds: float,
    workdir: Path,
    pin: bool,
    tradews: Tradews,
) -> Measurement:
    result = Measurement(
        name, clients, rate, tick_interval, clients * symbols / tick_interval, symbols
    )
    shares = [clients // client_procs + (i < clients % client_procs) for i in range(client_procs)]
    server_cpus, client_cpus = ({0}, {1}) if pin else (None, None)
    log_path = workdir / f"client-{name}-{clients}x{symbols}-{rate}.log"
    with (
        running(name, tick_interval, workdir, server_cpus, tradews) as server,
        log_path.open("w") as log,
    ):
        workers = [Worker(server, share, symbols, log, client_cpus) for share in shares if share]
        try:
            ready = [w.read(timeout=90) for w in workers]
            result.connect_seconds = max(r["connect_seconds"] for r in ready)
            start = time.time() + warmup
            end = start + seconds
            for w in workers:
                w.send({"start": start, "end": end})
            time.sleep(max(0.0, start - time.time()))
            t0, cpu0, machine0 = time.time(), process_cpu_seconds(server.pid), CpuTimes.read()
            counters0 = tradews_counters(server) if name.startswith("tradews") else {}
            time.sleep(max(0.0, end - time.time()))
            t1, cpu1, machine1 = time.time(), process_cpu_seconds(server.pid), CpuTimes.read()
            counters1 = tradews_counters(server) if name.startswith("tradews") else {}
            reports = [w.read(timeout=30) for w in workers]
        except Exception as exc:
            log.flush()
            tail = log_path.read_text()[-2000:]
            raise RuntimeError(f"{name} N={clients}x{symbols} {rate}: {exc}\n{tail}") from exc
        finally:
            for w in workers:
                w.stop()

    window = max(r["wall_seconds"] for r in reports)
    messages = sum(r["messages"] for r in reports)
    if not messages:
        errors = sorted({e for r in reports for e in r["errors"]})
        raise RuntimeError(
            f"{name} N={clients}x{symbols} {rate}: no quote received in the window {errors}"
        )
    hist: dict[int, int] = {}
    for r in reports:
        for bucket, n in r["hist"]:
            hist[bucket] = hist.get(bucket, 0) + n
    bucket_ns = reports[0]["hist_bucket_ns"]
    result.window_seconds = round(window, 3)
    result.delivered_per_s = messages / window
    result.p50_ms = percentile_ms(hist, bucket_ns, 0.50)
    result.p99_ms = percentile_ms(hist, bucket_ns, 0.99)
    result.max_ms = percentile_ms(hist, bucket_ns, 1.0)
    span = t1 - t0
    server_cpu = sum(cpu1) - sum(cpu0)
    result.server_cpu_pct = 100 * server_cpu / span
    result.server_user_pct = 100 * (cpu1[0] - cpu0[0]) / span
    if messages:
        result.server_cpu_us_per_msg = 1e6 * server_cpu / messages
        result.server_user_us_per_msg = 1e6 * (cpu1[0] - cpu0[0]) / messages
    if counters0 and counters1:
        made, skipped = "tradews_quotes_total", "tradews_quotes_skipped_slow_reader_total"
        result.server_quotes_per_s = (counters1[made] - counters0[made]) / span
        result.server_skipped_per_s = (counters1[skipped] - counters0[skipped]) / span
    result.client_cpu_pct = [round(100 * r["cpu_seconds"] / r["wall_seconds"], 1) for r in reports]
    result.cpu_busy_pct, result.cpu_irq_pct = machine1.since(machine0)
    # Interrupt time on a process's CPU is charged to that process too, so it is not subtracted.
    result.other_cpu_pct = (
        sum(result.cpu_busy_pct) - result.server_cpu_pct - sum(result.client_cpu_pct)
    )
    result.disturbed = result.other_cpu_pct > DISTURBED_OTHER_PCT
    result.per_connection_min = min(r["per_connection_min"] for r in reports)
    result.per_connection_max = max(r["per_connection_max"] for r in reports)
    result.closed = sum(r["closed"] for r in reports)
    result.errors = sorted({e for r in reports for e in r["errors"]})
    return result


# Report --------------------------------------------------------------------------------------


def environment(tradews_ref: str | None) -> dict[str, str]:
    from importlib.metadata import version

    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    node = shutil.which("node")
    node_version = (
        subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
        if node
        else "missing"
    )
    ws_version = json.loads((ROOT / "node_modules/ws/package.json").read_text())["version"]
    git = ["git", "-C", str(ROOT)]
    ref = tradews_ref or "HEAD"
    commit = subprocess.run([*git, "rev-parse", "--short", ref], capture_output=True, text=True)
    source = commit.stdout.strip() or "unknown"
    if tradews_ref is None:
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "src"], capture_output=True, text=True
        )
        if dirty.stdout.strip():
            source += " + uncommitted changes in src/"
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "picows": version("picows"),
        "uvloop": version("uvloop"),
        "msgspec": version("msgspec"),
        "tradews": f"{version('tradews')} at {source}",
        "node": node_version,
        "ws": ws_version,
    }


def _n(clients: int, symbols: int) -> str:
    """N, with the symbols per client when more than one: ``1,000 x 3``."""
    return f"{clients:,}" + (f" x {symbols}" if symbols > 1 else "")


def _pcts(values: list[float]) -> str:
    return " / ".join(f"{v:.0f}" for v in values)


def table(results: list[Measurement]) -> str:
    head = (
        "| rate | N | server | offered msg/s | delivered msg/s (runs) | p50 ms | p99 ms "
        "| server CPU % | server CPU µs/msg (user + kernel) | client CPU % | CPU0 / CPU1 busy % |"
    )
    lines = [head, "|" + "|".join("---" for _ in range(head.count("|") - 1)) + "|"]
    for m in results:
        runs = ", ".join(f"{r / 1000:.0f}k" for r in m.runs_delivered_per_s)
        kernel_us = m.server_cpu_us_per_msg - m.server_user_us_per_msg
        lines.append(
            f"| {m.rate} | {_n(m.clients, m.symbols)} | {m.server} | {m.offered_per_s:,.0f} "
            f"| {m.delivered_per_s:,.0f} ({runs}) | {m.p50_ms:.1f} | {m.p99_ms:.1f} "
            f"| {m.server_cpu_pct:.0f} | {m.server_cpu_us_per_msg:.1f} "
            f"({m.server_user_us_per_msg:.1f} + {kernel_us:.1f}) "
            f"| {' + '.join(f'{c:.0f}' for c in m.client_cpu_pct)} | {_pcts(m.cpu_busy_pct)} |"
        )
    return "\n".join(lines)


def ratios(results: list[Measurement]) -> str:
    """tradews (each encoding) over each other server: delivered msg/s, and server CPU per
    message inverted."""
    by_key = {(m.rate, m.clients, m.symbols, m.server): m for m in results}
    lines = [
        "| rate | N | tradews | msg/s / node-ws | msg/s / bare-picows "
        "| msg per CPU-s / node-ws | msg per CPU-s / bare-picows |",
        "|---|---|---|---|---|---|---|",
    ]
    cases = dict.fromkeys((m.rate, m.clients, m.symbols) for m in results)
    for (rate, clients, symbols), encoding in itertools.product(
        cases, ("tradews", "tradews-proto")
    ):
        ours = by_key.get((rate, clients, symbols, encoding))
        if ours is None:
            continue
        rate_cells, cpu_cells = [], []
        for other in ("node-ws", "bare-picows"):
            theirs = by_key.get((rate, clients, symbols, other))
            if theirs is None or not theirs.delivered_per_s or not ours.server_cpu_us_per_msg:
                rate_cells.append("-")
                cpu_cells.append("-")
                continue
            rate_cells.append(f"{ours.delivered_per_s / theirs.delivered_per_s:.2f}x")
            cpu_cells.append(f"{theirs.server_cpu_us_per_msg / ours.server_cpu_us_per_msg:.2f}x")
        if any(cell != "-" for cell in rate_cells):
            cells = " | ".join(rate_cells + cpu_cells)
            lines.append(f"| {rate} | {_n(clients, symbols)} | {encoding} | {cells} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def progress(m: Measurement) -> str:
    return (
        f"{m.rate:>8} N={_n(m.clients, m.symbols):<9} {m.server:<13} offered {m.offered_per_s:>9,.0f}/s"
        f"  delivered {m.delivered_per_s:>9,.0f}/s  p50 {m.p50_ms:6.1f} ms"
        f"  p99 {m.p99_ms:6.1f} ms  server {m.server_cpu_pct:3.0f}% CPU ({m.server_user_pct:.0f}% user)"
        f" {m.server_cpu_us_per_msg:5.1f} µs/msg"
        f"  client {'+'.join(f'{c:.0f}' for c in m.client_cpu_pct)}%"
        f"  CPUs busy {_pcts(m.cpu_busy_pct)}% irq {_pcts(m.cpu_irq_pct)}%"
        f"  other {m.other_cpu_pct:.0f}%"
        f"  per-conn {m.per_connection_min}-{m.per_connection_max}"
        + (
            f"  tradews made {m.server_quotes_per_s:,.0f}/s skipped {m.server_skipped_per_s:,.0f}/s"
            if m.server_quotes_per_s is not None and m.server_skipped_per_s is not None
            else ""
        )
        + (f"  closed {m.closed}" if m.closed else "")
        + ("  DISTURBED" if m.disturbed else "")
        + (f"  errors {m.errors}" if m.errors else "")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Quote fan-out: tradews vs bare picows vs Node ws (see docs/performance.md)."
    )
    parser.add_argument("--clients", type=int, nargs="+", default=[100, 1000])
    parser.add_argument(
        "--symbols",
        type=int,
        nargs="+",
        choices=range(1, len(SYMBOLS) + 1),
        default=[1],
        help=f"quote streams per client: the first K of {', '.join(SYMBOLS)}",
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="measuring window (s)")
    parser.add_argument("--warmup", type=float, default=1.5, help="seconds before the window")
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    parser.add_argument(
        "--rates", nargs="+", choices=("max", "moderate"), default=["max", "moderate"]
    )
    parser.add_argument(
        "--max-tick", type=float, default=0.0002, help="pulse interval of 'max' (s)"
    )
    parser.add_argument(
        "--moderate-tick", type=float, default=0.1, help="pulse interval of 'moderate' (s)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each measurement; the median is reported"
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=20.0,
        help="before each run, wait up to this long (s) for other jobs to leave the CPUs idle",
    )
    parser.add_argument(
        "--retries", type=int, default=6, help="disturbed runs that may be run again, in all"
    )
    parser.add_argument(
        "--client-procs", type=int, default=1, help="load generator processes (connections split)"
    )
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="do not pin the server to CPU 0 and the load generator to CPU 1",
    )
    parser.add_argument(
        "--tradews-ref",
        metavar="GIT_REF",
        help="run tradews from src/tradews as of this commit (default: the working tree)",
    )
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    args = parser.parse_args(argv)
    pin = args.pin and {0, 1} <= os.sched_getaffinity(0)

    env = environment(args.tradews_ref)
    print("environment: " + ", ".join(f"{k}={v}" for k, v in env.items()), flush=True)
    print(f"server on CPU 0, load generator on CPU 1: {pin}", flush=True)
    ticks = {"max": args.max_tick, "moderate": args.moderate_tick}
    runs: list[Measurement] = []
    failures = 0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="quote-fanout-") as tmp:
        tradews = Tradews.prepare(
            export_source(args.tradews_ref, Path(tmp)) if args.tradews_ref else None
        )
        print(f"tradews serve options: {' '.join(tradews.options) or '(none)'}", flush=True)
        env["tradews_serve_options"] = " ".join(tradews.options)
        # Servers take turns within each repetition, so a disturbance hits them alike.
        retries = args.retries
        for rate, clients, symbols, _, name in itertools.product(
            args.rates, args.clients, args.symbols, range(args.repeat), args.servers
        ):
            while True:
                waited = wait_until_quiet(args.quiet_wait)
                if waited > 1.5:
                    print(f"(waited {waited:.0f} s for other jobs to finish)", flush=True)
                try:
                    m = measure(
                        name,
                        clients,
                        rate,
                        ticks[rate],
                        symbols=symbols,
                        client_procs=args.client_procs,
                        warmup=args.warmup,
                        seconds=args.seconds,
                        workdir=Path(tmp),
                        pin=pin,
                        tradews=tradews,
                    )
                except Exception as exc:  # report it and go on with the other measurements
                    print(f"FAILED: {exc}", file=sys.stderr, flush=True)
                    failures += 1
                    break
                runs.append(m)
                print(progress(m), flush=True)
                if not m.disturbed or retries <= 0:
                    break
                retries -= 1
    elapsed = time.monotonic() - started
    results = medians(runs)
    print(f"\n{table(results)}\n\n{ratios(results)}\n\n(total {elapsed:.0f} s)")

    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"quote_fanout-{time.strftime('%Y%m%d-%H%M%S')}.json"
    document = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "environment": env,
        "settings": {
            "seconds": args.seconds,
            "warmup": args.warmup,
            "repeat": args.repeat,
            "disturbed_other_pct": DISTURBED_OTHER_PCT,
            "client_procs": args.client_procs,
            "pinned": pin,
            "ticks": ticks,
        },
        "results": [asdict(m) for m in results],
        "runs": [asdict(m) for m in runs],
    }
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"saved {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
