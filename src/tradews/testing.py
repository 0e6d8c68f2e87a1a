"""Helpers to run a real tradews server in a subprocess, for tests and benchmarks.

    with ServerProcess.start(db_path, demo=True) as server:     # or a postgresql:// URL
        client = await Client.connect(server.url)
        await client.login(server.api_key, server.api_secret)

The server is the installed ``tradews serve`` command, so what is tested is what users run.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

_LISTENING = re.compile(r"listening on (wss?://\S+)")
_ADMIN = re.compile(r"admin: (http://\S+)")
_KEY = re.compile(r"apiKey:\s+(\S+)")
_SECRET = re.compile(r"apiSecret:\s+(\S+)")


# Every secret the tests were given (API secrets, private keys) and every server they started:
# at the end of a run, tests/conftest.py checks that no server logged one (only the demo banner
# prints its own key's secret, on purpose).
KNOWN_SECRETS: set[str] = set()
STARTED: list[ServerProcess] = []


def leaked_secrets() -> list[str]:
    """Lines that servers logged after their banner holding a secret the tests know."""
    secrets = [s for s in KNOWN_SECRETS if len(s) >= 16]
    return [
        line
        for server in STARTED
        for line in server.output[server.banner_lines :]
        if any(secret in line for secret in secrets)
    ]


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    db: Path | str  # a SQLite file, or any database URL ``--db`` takes
    url: str = ""
    admin_url: str = ""  # the admin listener: /metrics, /state, /healthz
    api_key: str = ""
    api_secret: str = ""
    output: list[str] = field(default_factory=list)
    banner_lines: int = 0  # the output's lines up to the end of the banner

    @classmethod
    def start(
        cls,
        db: Path | str,
        *,
        demo: bool = True,
        args: tuple[str, ...] = (),
        timeout: float = 20,
        command: str = "serve",
    ) -> ServerProcess:
        """Start ``tradews COMMAND`` (``serve``, ``engine`` or ``gateway``) and wait for its
        banner."""
        cmd = [sys.executable, "-m", "tradews", command, "--db", str(db), "--port", "0"]
        cmd += ["--admin-port", "0"]
        if demo:
            cmd.append("--demo")
        cmd.extend(args)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        server = cls(process, db)
        # A thread drains the server's output for its whole life: it hands the banner lines
        # over, and keeps the pipe from filling up and blocking the server on a log write.
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_drain, args=(process, lines, server.output), daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                process.kill()
                raise RuntimeError("server did not start:\n" + "\n".join(server.output))
            if m := _LISTENING.search(line):
                server.url = m.group(1)
            elif m := _ADMIN.search(line):
                server.admin_url = m.group(1)
            elif m := _KEY.search(line):
                server.api_key = m.group(1)
            elif m := _SECRET.search(line):
                server.api_secret = m.group(1)
            elif "Press Ctrl+C" in line:
                server.banner_lines = len(server.output)
                if server.api_secret:
                    KNOWN_SECRETS.add(server.api_secret)
                STARTED.append(server)
                return server

    def admin(self, path: str) -> bytes:
        """GET ``path`` from the server's admin listener (``/metrics``, ``/state?check=1``)."""
        with urllib.request.urlopen(self.admin_url + path, timeout=5) as response:
            return bytes(response.read())

    def metrics(self) -> dict[str, float]:
        """The server's Prometheus metrics, by name (``tradews_connections``, ...)."""
        text = self.admin("/metrics").decode()
        return {
            m.group(1): float(m.group(2))
            for m in re.finditer(r"^(tradews_\w+) (\S+)$", text, flags=re.MULTILINE)
        }

    def cli(self, *args: str) -> Any:
        """Run ``tradews ARGS --db <this server's db> --json`` and return the parsed output."""
        return run_cli(*args, "--json", db=self.db)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass
class Deployment:
    """A distributed deployment on this machine: one engine and some gateways, on one database
    and one bus (``nats://127.0.0.1:4222/<namespace>``).

        with Deployment.start(db, bus, gateways=2) as d:
            client = await Client.connect(d.gateways[0].url)
    """

    db: Path | str
    bus: str
    engine: ServerProcess
    gateways: list[ServerProcess] = field(default_factory=list)
    args: tuple[str, ...] = ()

    @classmethod
    def start(
        cls,
        db: Path | str,
        bus: str,
        *,
        gateways: int = 2,
        demo: bool = True,
        args: tuple[str, ...] = (),
        engine_args: tuple[str, ...] = (),
    ) -> Deployment:
        engine = ServerProcess.start(
            db, demo=demo, command="engine", args=("--bus", bus, *args, *engine_args)
        )
        deployment = cls(db, bus, engine, args=args)
        try:
            for _ in range(gateways):
                deployment.add_gateway()
        except BaseException:
            deployment.stop()
            raise
        return deployment

    @property
    def api_key(self) -> str:
        return self.engine.api_key

    @property
    def api_secret(self) -> str:
        return self.engine.api_secret

    def add_gateway(self, *args: str) -> ServerProcess:
        gateway = ServerProcess.start(
            self.db, demo=False, command="gateway", args=("--bus", self.bus, *self.args, *args)
        )
        self.gateways.append(gateway)
        return gateway

    def restart_engine(self, *args: str) -> ServerProcess:
        """Start an engine again (after it stopped or was killed); with the lease free it
        recovers at once, else it waits as a standby: this returns once it has the lease."""
        self.engine = ServerProcess.start(
            self.db, demo=False, command="engine", args=("--bus", self.bus, *self.args, *args)
        )
        return self.engine

    def stop(self) -> None:
        for gateway in self.gateways:
            gateway.stop()
        self.engine.stop()

    def __enter__(self) -> Deployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


NATS_URL = os.environ.get("TRADEWS_TEST_NATS", "nats://127.0.0.1:4222")


def nats_reachable(url: str = NATS_URL) -> bool:
    """Whether a NATS server answers at ``url`` (JetStream is checked when a bus connects)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 4222), 1).close()
    except OSError:
        return False
    return True


def fresh_bus_url(url: str = NATS_URL) -> str:
    """A bus URL with a namespace of its own, so deployments on one NATS do not meet."""
    import secrets

    return f"{url.rstrip('/')}/t{secrets.token_hex(5)}"


def drop_bus(bus: str) -> None:
    """Delete a namespace's JetStream streams (after a test)."""
    import asyncio

    from tradews.adapters.nats_bus import Bus, parse_bus_url

    async def drop() -> None:
        link = Bus(parse_bus_url(bus), name="tradews-test-cleanup")
        await link.connect(wait=False)
        await link.delete_streams()
        await link.close()

    with contextlib.suppress(Exception):  # already gone, or NATS is: nothing to clean
        asyncio.run(drop())


def run_cli(*args: str, db: Path | str, check: bool = True) -> Any:
    """Run the ``tradews`` command line; return parsed JSON output (or the raw result)."""
    cmd = [sys.executable, "-m", "tradews", *args, "--db", str(db)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    return _cli_result(args, done, check)


def run_cli_many(*commands: tuple[str, ...], db: Path | str) -> list[Any]:
    """Run several ``tradews`` command lines one after the other, each as :func:`run_cli` does
    (its own parse, store and exit status) but in one process, which pays Python's and the
    command line's start-up once; stops at the first that fails, raising what it said."""
    argvs = [[*args, "--db", str(db)] for args in commands]
    done = subprocess.run(
        [sys.executable, "-c", _RUN_MANY],
        input=json.dumps(argvs),
        capture_output=True,
        text=True,
        timeout=60 + 10 * len(argvs),
    )
    if done.returncode != 0:
        raise RuntimeError(f"tradews commands failed ({done.returncode}): {done.stderr.strip()}")
    return [
        _cli_result(args, subprocess.CompletedProcess(args, code, stdout, stderr), True)
        for args, (code, stdout, stderr) in zip(commands, json.loads(done.stdout), strict=True)
    ]


# What run_cli_many runs: `tradews` (its main(), exit status and all) once for each command
# line it reads, with what each prints kept apart; then the lot, as JSON, on the real stdout.
_RUN_MANY = """
import contextlib, io, json, sys
from tradews.app.cli import main
results = []
for argv in json.load(sys.stdin):
    sys.argv = ["tradews", *argv]
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    results.append((code, out.getvalue(), err.getvalue()))
    if code:
        break
json.dump(results, sys.stdout)
"""


def _cli_result(args: tuple[str, ...], done: subprocess.CompletedProcess[str], check: bool) -> Any:
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    if "--json" in args and done.returncode == 0:
        parsed = json.loads(done.stdout)
        if isinstance(parsed, dict):
            KNOWN_SECRETS.update(
                str(parsed[k]) for k in ("apiSecret", "privateKey") if parsed.get(k)
            )
        return parsed
    return done


def _drain(process: subprocess.Popen[str], lines: queue.Queue[str | None], keep: list[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        keep.append(line.rstrip("\n"))
        lines.put(line)
    lines.put(None)
