"""The way in, as a newcomer takes it: the README's commands pasted into a fresh shell.

- `make demo` starts the demo, and the command its banner prints streams quotes;
- the README's "Running it for real" block, run as written (only the database's directory and
  the listening port differ), gives a desk that streams quotes to the key it created;
- its distributed block (PostgreSQL, NATS, an engine and a gateway) does the same;
- every Python program in the README and the docs runs against the demo, and the docs' snippets
  give the values they print;
- every `tradews ...` line in the README and the docs names commands and options that exist.

(CI runs `make test` in a fresh clone, which is the README's other command; the Python SDK
program in the README is run by tests/e2e/test_sdk.py, and docs/reference.md's examples by
tests/e2e/test_reference.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers import eventually
from tradews.app.cli import app
from tradews.client import Client
from tradews.testing import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def shell_blocks(path: Path) -> list[list[str]]:
    """The ```sh blocks of a Markdown file, as lines (continuations joined)."""
    blocks: list[list[str]] = []
    lines: list[str] | None = None
    pending = ""
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            if lines is None and line.strip() in ("```sh", "```bash"):
                lines = []
            elif lines is not None:
                blocks.append(lines)
                lines = None
            continue
        if lines is None:
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    return blocks


def tradews_commands(path: Path) -> list[list[str]]:
    """Every ``tradews ...`` invocation in the file's shell blocks, as arguments. Optional parts
    written ``[--json]`` count as given; comments, ``VAR=value`` prefixes and ``&`` are not
    part of the command."""
    found = []
    for block in shell_blocks(path):
        for line in block:
            code = re.split(r"\s#", " " + line, maxsplit=1)[0]
            for part in re.split(r"&&|;", code):
                words = shlex.split(part.replace("[", "").replace("]", "").strip().rstrip("&"))
                while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
                    words.pop(0)
                if words and words[0] == "tradews":
                    found.append(words[1:])
    return found


DOCUMENTED = [(p.name, c) for p in DOCS for c in tradews_commands(p)]


def test_the_docs_have_commands_to_check() -> None:
    assert len(DOCUMENTED) > 40  # the extraction itself works


@pytest.mark.parametrize(("doc", "args"), DOCUMENTED, ids=[" ".join(a) for _, a in DOCUMENTED])
def test_every_documented_command_exists_with_its_options(doc: str, args: list[str]) -> None:
    """Run with --help appended: the parser refuses an unknown command or option first."""
    args = [a for a in args if a != "--config"]  # taken before the parser (app/config.py)
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, f"{doc}: tradews {' '.join(args)}\n{result.output}"


def fresh_shell(script: str, cwd: Path, **env: str) -> subprocess.Popen[str]:
    """``bash -c script`` with nothing inherited but a minimal PATH and HOME: what a newcomer's
    new terminal has."""
    base = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(cwd), "LANG": "C.UTF-8"}
    return subprocess.Popen(
        ["bash", "-ec", script],
        cwd=cwd,
        env={**base, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # so that the whole group (make, the server) can be stopped
    )


def read_until(process: subprocess.Popen[str], marker: str, timeout: float = 60) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if marker in line:
            return lines
    pytest.fail(f"no {marker!r} within {timeout} s:\n" + "\n".join(lines))


def stop(process: subprocess.Popen[str]) -> None:
    """Ctrl-C to the shell's whole process group; then SIGTERM for what a non-interactive shell
    started in the background (it ignores SIGINT), and SIGKILL for anything still there."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(15)
        os.killpg(process.pid, signal.SIGTERM)
        time.sleep(1)
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


async def listed(url: str, symbol: str) -> None:
    """Wait until the server at ``url`` lists ``symbol`` (``instruments``, no login needed; a
    connection each time, as one without a login is closed after 10 s)."""

    async def symbols() -> list[str]:
        async with await Client.connect(url) as client:
            return [i["symbol"] for i in await client.call("instruments")]

    await eventually(symbols, lambda seen: symbol in seen, what=f"{symbol} listed", timeout=30)


def stream_quotes(command: str, cwd: Path, n: int = 3) -> list[str]:
    """Run a printed ``tradews quotes`` command for ``n`` quotes; the lines it printed."""
    done = subprocess.run(
        ["bash", "-ec", f"{command} --count {n}"],
        cwd=cwd,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(cwd), "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return [line for line in done.stdout.splitlines() if re.search(r"BTC_USD buy \S+ sell", line)]


def test_make_demo_and_the_command_its_banner_prints(tmp_path: Path) -> None:
    # the README's `make demo`, on a free port and a database of its own
    db = shlex.quote(str(tmp_path / "demo.db"))
    demo = fresh_shell(f"make demo DEMO_ARGS='--port 0 --admin-port 0 --db {db}'", ROOT)
    try:
        banner = read_until(demo, "Press Ctrl+C", timeout=120)
        printed = next(i for i, line in enumerate(banner) if "quotes from the command line" in line)
        command = banner[printed + 1].strip()
        assert re.fullmatch(
            r"\S*tradews quotes BTC_USD --url ws://\S+ --key tw_\w+ --secret \S+", command
        )
        quotes = stream_quotes(command, ROOT)
        assert len(quotes) == 3, quotes
    finally:
        stop(demo)


def test_running_it_for_real_as_the_readme_says(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Running it for real") :]
    block = next(b for b in shell_blocks(ROOT / "README.md") if "\n".join(b) in section)
    *setup, serve = block
    assert serve.startswith("tradews serve")
    # the same commands; only where the database lives and the port it listens on differ
    setup = [line.replace("$PWD", str(tmp_path)) for line in setup]
    setup[0] = setup[0].replace(". .venv/bin/activate", f". {ROOT}/.venv/bin/activate")
    serve = re.sub(r"--port \d+", "--port 0 --admin-port 0", serve).replace("0.0.0.0", "127.0.0.1")
    prepared = fresh_shell("\n".join(setup), tmp_path)
    output, _ = prepared.communicate(timeout=180)
    assert prepared.returncode == 0, output
    key = re.search(r"apiKey:?\s+(tw_\w+)", output)
    secret = re.search(r"apiSecret:?\s+(\S+)", output)
    assert key and secret, output
    server = fresh_shell("\n".join([*setup[:2], f"exec {serve}"]), tmp_path)
    try:
        banner = read_until(server, "Press Ctrl+C")
        url = next(m.group(1) for line in banner if (m := re.search(r"listening on (\S+)", line)))
        quotes = stream_quotes(
            f". {ROOT}/.venv/bin/activate && tradews quotes BTC_USD --url {url} "
            f"--key {key.group(1)} --secret {secret.group(1)}",
            tmp_path,
        )
        assert len(quotes) == 3, quotes
    finally:
        stop(server)


def python_blocks(path: Path) -> list[str]:
    text = path.read_text()
    return [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]


PROGRAMS = [(p.name, b) for p in DOCS for b in python_blocks(p) if "asyncio.run(" in b]
SNIPPETS = [p for p in DOCS if any("asyncio.run(" not in b for b in python_blocks(p))]


def test_every_python_program_in_the_docs_runs_against_the_demo(tmp_path: Path) -> None:
    """Each complete program (one that calls asyncio.run) in the README and the docs, as
    printed, with the demo's URL and key in the environment its text reads them from."""
    assert len(PROGRAMS) >= 2
    with ServerProcess.start(tmp_path / "demo.db", demo=True) as server:
        env = {**os.environ, "TRADEWS_URL": server.url, "TRADEWS_API_KEY": server.api_key,
               "TRADEWS_API_SECRET": server.api_secret}  # fmt: skip
        for doc, program in PROGRAMS:
            done = subprocess.run(
                [sys.executable, "-c", program], env=env, capture_output=True, text=True,
                timeout=60,
            )  # fmt: skip
            assert done.returncode == 0, f"{doc}:\n{program}\n{done.stderr}"
            assert done.stdout.strip(), f"{doc}: printed nothing"


@pytest.mark.parametrize("path", SNIPPETS, ids=lambda p: p.name)
def test_the_docs_python_snippets_give_what_they_say(path: Path) -> None:
    """A file's snippets run in order in one namespace (later ones use earlier names); where a
    snippet ends with ``# value``, its last expression gives that value."""
    namespace: dict[str, object] = {}
    for block in python_blocks(path):
        if "asyncio.run(" in block:
            continue
        lines = block.rstrip("\n").splitlines()
        said = lines[-1][2:] if lines[-1].startswith("# ") else None
        code = [line for line in lines if not line.startswith("#")]
        *body, last = code
        exec("\n".join(body), namespace)
        value = eval(last, namespace)
        if said is not None:
            assert repr(value) == said, f"{path.name}: {last} gives {value!r}, the doc says {said}"


def test_the_distributed_deployment_as_the_readme_says(tmp_path: Path) -> None:
    """The README's engine + gateway block, on this machine's PostgreSQL and NATS. Only names
    that must be unique to this test differ: the database, the bus namespace, the ports."""
    from tests.conftest import require
    from tests.databases import require_pg, url_of
    from tradews.testing import NATS_URL, drop_bus, nats_reachable

    require_pg()
    require(nats_reachable(), f"NATS is not reachable at {NATS_URL}")
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### More clients than one process can serve") :]
    block = next(b for b in shell_blocks(ROOT / "README.md") if "\n".join(b) in section)
    name, namespace = f"tradews_readme_{os.urandom(4).hex()}", f"readme{os.urandom(4).hex()}"
    bus = f"nats://127.0.0.1:4222/{namespace}"
    script = "\n".join(block)
    for old, new in (
        (". .venv/bin/activate", f". {ROOT}/.venv/bin/activate"),
        ("postgresql://postgres@127.0.0.1/tradews", url_of(name)),
        ("nats://127.0.0.1:4222", bus),
        ("$PWD", str(tmp_path)),
        ("-U postgres tradews", f"-U postgres {name}"),
        ("tradews engine --demo &", "tradews engine --demo --admin-port 0 > engine.log 2>&1 &"),
        ("--port 8765 --admin-port 8767", "--port 0 --admin-port 0"),
    ):
        assert old in script, old  # the README still says this
        script = script.replace(old, new)
    lines = script.splitlines()
    lines[-1] = "exec " + lines[-1]  # the gateway, in the foreground as in the README
    deployment = fresh_shell("\n".join(lines), tmp_path)
    try:
        banner = read_until(deployment, "Press Ctrl+C", timeout=90)
        url = next(m.group(1) for line in banner if (m := re.search(r"listening on (\S+)", line)))
        engine_log = ""
        for _ in range(100):
            engine_log = (tmp_path / "engine.log").read_text()
            if "apiSecret" in engine_log:
                break
            time.sleep(0.1)
        key = re.search(r"apiKey:\s+(tw_\w+)", engine_log)
        secret = re.search(r"apiSecret:\s+(\S+)", engine_log)
        assert key and secret, engine_log
        # the gateway lists the demo's instruments once its replica has applied the engine's
        # listing of them, which may come a moment after both banners
        asyncio.run(listed(url, "BTC_USD"))
        quotes = stream_quotes(
            f". {ROOT}/.venv/bin/activate && tradews quotes BTC_USD --url {url} "
            f"--key {key.group(1)} --secret {secret.group(1)}",
            tmp_path,
        )
        assert len(quotes) == 3, quotes
    finally:
        stop(deployment)
        drop_bus(bus)
        subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--force", name],
                       capture_output=True, timeout=30)  # fmt: skip
