"""The command line against a database, with and without a running server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tradews.testing import run_cli


def tradews(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = run_cli(*args, db=db, check=False)
    assert isinstance(result, subprocess.CompletedProcess)
    return result


def test_accounts_keys_and_instruments(tmp_path: Path) -> None:
    db = tmp_path / "admin.db"
    acct = run_cli("account", "create", "acme", "--tier", "enterprise", "--json", db=db)
    assert acct["name"] == "acme" and acct["tier"] == "enterprise"
    assert run_cli("account", "list", "--json", db=db)[0]["name"] == "acme"

    key = run_cli("key", "create", "acme", "--json", "--label", "desk-1", db=db)
    assert key["apiKey"].startswith("tw_") and len(key["apiSecret"]) >= 43  # 256 bits
    listed = run_cli("key", "list", "acme", "--json", db=db)
    assert [(k["apiKey"], k["label"], k["status"]) for k in listed] == [
        (key["apiKey"], "desk-1", "active")
    ]
    assert key["apiSecret"] not in Path(db).read_bytes().decode("latin-1")  # only a hash is kept

    done = tradews(db, "key", "revoke", key["apiKey"])
    assert done.returncode == 0 and "revoked" in done.stdout
    assert run_cli("key", "list", "acme", "--json", db=db)[0]["status"] == "revoked"

    added = tradews(
        db, "instrument", "add", "ADA_EUR", "--base", "ADA", "--quote", "EUR",
        "--tick", "0.0001", "--lot", "1", "--min-size", "10", "--max-size", "100000",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    (inst,) = run_cli("instrument", "list", "--json", db=db)
    assert inst == {
        "symbol": "ADA_EUR", "shard": "main", "base": "ADA", "quote": "EUR", "tick": "0.0001", "lot": "1",
        "minSize": "10", "maxSize": "100000", "quoteSize": "10", "spreadBps": "5", "spreadLadder": None,
    }  # fmt: skip


def test_errors_are_one_clear_line(tmp_path: Path) -> None:
    db = tmp_path / "errors.db"
    tradews(db, "account", "create", "acme")
    cases = [
        (("account", "create", "acme"), "already exists"),
        (("account", "create", "x", "--tier", "gold"), "--tier must be one of"),
        (("key", "create", "nobody"), "no account named 'nobody'"),
        (("key", "revoke", "tw_missing"), "no API key"),
        (("key", "create", "acme", "--expires-in", "soon"), "--expires-in must look like"),
        (("instrument", "add", "btcusd", "--base", "B", "--quote", "U", "--tick", "1", "--lot", "1"),
         "symbol must look like"),
        (("instrument", "add", "X_Y", "--base", "X", "--quote", "Y", "--tick", "abc", "--lot", "1"),
         "--tick must be a decimal number"),
        (("instrument", "add", "X_Y", "--base", "X", "--quote", "Y", "--tick", "0.01", "--lot",
          "0.1", "--min-size", "0.15"), "not a multiple"),
    ]  # fmt: skip
    for args, message in cases:
        done = tradews(db, *args)
        assert done.returncode == 1, args
        assert message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr


def test_unusable_database_path(tmp_path: Path) -> None:
    done = tradews(tmp_path / "missing-dir" / "x.db", "account", "list")
    assert done.returncode == 1 and "does not exist" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_reports_a_busy_port(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "tradews", "serve", "--db", str(tmp_path / "p.db"),
             "--port", str(port)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_refuses_fees_over_100_percent(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tradews", "serve", "--db", str(tmp_path / "f.db"),
         "--fees", "enterprise=5:20000"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 1 and "--fees" in done.stderr
    assert "Traceback" not in done.stderr


def test_help_and_errors_print_brackets_as_written(tmp_path: Path) -> None:
    """Help texts and error messages go through rich, which reads ``[...]`` as markup."""
    for command in ("serve", "engine", "gateway"):
        done = subprocess.run(
            [sys.executable, "-m", "tradews", command, "--help"],
            capture_output=True, text=True, timeout=30, env={**os.environ, "COLUMNS": "200"},
        )  # fmt: skip
        assert done.returncode == 0 and "--bus" in done.stdout, done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "tradews", "engine", "--db", str(tmp_path / "b.db"),
         "--bus", "http://127.0.0.1"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 1 and "nats://host:4222[/namespace]" in done.stderr
    assert "Traceback" not in done.stderr
