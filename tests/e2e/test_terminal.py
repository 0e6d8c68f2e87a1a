"""The live terminal (``tradews book``, ``tradews ticker``) in a real pseudo-terminal against a
demo server: it starts, shows data that moves, and Ctrl-C (the terminal's interrupt character,
so SIGINT from the tty driver) ends it with status 0 and no traceback. ``tradews order ...``
places, lists and cancels with credentials from a profile file."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tradews.testing import ServerProcess

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess.start(tmp_path_factory.mktemp("terminal") / "demo.db") as server:
        yield server


class Terminal:
    """A command running with a pty as its controlling terminal."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: exec the command, never return
            os.execve(sys.executable, [sys.executable, "-m", "tradews", *args], env)
        self.output = ""

    def read_until(self, done: Callable[[str], bool], timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while not done(self.output):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out; the screen so far:\n{self.output[-3000:]}")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:  # the child closed the terminal
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"the command ended:\n{self.output[-3000:]}")
                self.output += ANSI.sub("", chunk.decode(errors="replace"))
        return self.output

    def interrupt(self, timeout: float = 20) -> int:
        """Type Ctrl-C; the exit status once the command is gone."""
        os.write(self.fd, b"\x03")
        deadline = time.monotonic() + timeout
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                raise AssertionError("still running after Ctrl-C")
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                with contextlib.suppress(OSError):  # the child closed the terminal
                    self.output += ANSI.sub("", os.read(self.fd, 65536).decode(errors="replace"))
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)


def env_for(server: ServerProcess, home: Path) -> dict[str, str]:
    return {**os.environ, "TRADEWS_URL": server.url, "TRADEWS_API_KEY": server.api_key,
            "TRADEWS_API_SECRET": server.api_secret, "XDG_CONFIG_HOME": str(home),
            "COLUMNS": "120", "LINES": "60", "TERM": "xterm-256color"}  # fmt: skip


def distinct(pattern: str, text: str) -> set[str]:
    return set(re.findall(pattern, text))


def test_book_shows_a_moving_ladder_and_tape_then_quits_on_ctrl_c(
    demo: ServerProcess, tmp_path: Path
) -> None:
    term = Terminal(["book", "BTC_USD", "--depth", "5"], env_for(demo, tmp_path))
    # The ladder redrawn at several book sequence numbers, and trades in the tape.
    screen = term.read_until(lambda s: len(distinct(r"BTC_USD book\s+seq (\d+)", s)) >= 3)
    assert "bid size" in screen and "ask size" in screen and "trades" in screen
    term.read_until(lambda s: bool(re.search(r"\d\d:\d\d:\d\d\W+(buy|sell)\W+\d", s)))
    assert term.interrupt() == 0
    assert "Traceback" not in term.output and "error" not in term.output


def test_ticker_shows_every_instrument_moving_then_quits_on_ctrl_c(
    demo: ServerProcess, tmp_path: Path
) -> None:
    term = Terminal(["ticker"], env_for(demo, tmp_path))
    term.read_until(lambda s: all(sym in s for sym in ("BTC_USD", "ETH_USD", "SOL_USD")))
    term.read_until(lambda s: len(distinct(r"BTC_USD\W+(\d+\.\d+)", s)) >= 2)  # last moves
    assert term.interrupt() == 0
    assert "Traceback" not in term.output and "error" not in term.output


def tradews(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tradews", *args], env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


def test_order_commands_take_credentials_from_a_profile_file(
    demo: ServerProcess, tmp_path: Path
) -> None:
    profile = tmp_path / "tradews" / "profile.toml"
    profile.parent.mkdir()
    profile.write_text(
        f'[desk]\nurl = "{demo.url}"\napi_key = "{demo.api_key}"\n'
        f'api_secret = "{demo.api_secret}"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEWS_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path)
    args = ("--profile", "desk", "--json")
    placed = tradews("order", "place", "ETH_USD", "buy", "0.5", "--price", "1000.00", *args,
                     env=env)  # fmt: skip
    assert placed.returncode == 0, placed.stderr
    order = json.loads(placed.stdout)[0]
    assert order["status"] == "new" and order["price"] == "1000.00"
    listed = tradews("order", "list", "--symbol", "ETH_USD", *args, env=env)
    assert order["orderId"] in [o["orderId"] for o in json.loads(listed.stdout)]
    table = tradews("order", "list", "--profile", "desk", env=env)
    assert table.returncode == 0 and str(order["orderId"]) in table.stdout
    cancelled = tradews("order", "cancel", str(order["orderId"]), *args, env=env)
    assert json.loads(cancelled.stdout)[0]["status"] == "cancelled"

    # Errors are one line, exit 1.
    refused = tradews("order", "place", "ETH_USD", "buy", "0.5", "--price", "1000.001",
                      "--profile", "desk", env=env)  # fmt: skip
    assert refused.returncode == 1 and "INVALID_PRICE" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    missing = tradews("order", "list", "--profile", "nobody", env=env)
    assert missing.returncode == 1 and "no [nobody] table" in missing.stderr
    anonymous = tradews("order", "list", env={**env, "XDG_CONFIG_HOME": str(tmp_path / "none")})
    assert anonymous.returncode == 1 and "no API key" in anonymous.stderr
