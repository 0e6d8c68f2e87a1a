"""One TOML file and TRADEWS_* variables for `serve` and every admin command: flag over
environment over file over default, secrets masked by `config show`, a bad value in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tradews.client import Client
from tradews.testing import ServerProcess, run_cli


def tradews(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRADEWS_")}
    return subprocess.run(
        [sys.executable, "-m", "tradews", *args], capture_output=True, text=True, timeout=60,
        cwd=cwd, env={**clean, **(env or {})},
    )  # fmt: skip


def names(db: Path) -> list[str]:
    return [a["name"] for a in run_cli("account", "list", "--json", db=db)] if db.exists() else []


def test_flag_over_environment_over_file_over_default(tmp_path: Path) -> None:
    conf = tmp_path / "tradews.toml"
    conf.write_text(f'db = "{tmp_path / "file.db"}"\n')
    env = {"TRADEWS_DB": str(tmp_path / "env.db")}
    steps = [
        (("account", "create", "by-default"), None, tmp_path / "tradews.db"),
        (("--config", str(conf), "account", "create", "by-file"), None, tmp_path / "file.db"),
        (("account", "create", "by-file-2", f"--config={conf}"), None, tmp_path / "file.db"),
        (("account", "create", "by-env", "--config", str(conf)), env, tmp_path / "env.db"),
        (("account", "create", "by-flag", "--config", str(conf), "--db", str(tmp_path / "flag.db")),
         env, tmp_path / "flag.db"),
    ]  # fmt: skip
    for args, extra, expected in steps:
        done = tradews(*args, cwd=tmp_path, env=extra)
        assert done.returncode == 0, done.stderr
        assert args[args.index("create") + 1] in names(expected), (args, expected)
    assert names(tmp_path / "file.db") == ["by-file", "by-file-2"]
    # TRADEWS_CONFIG names the file too.
    done = tradews("account", "create", "via-env-file", cwd=tmp_path,
                   env={"TRADEWS_CONFIG": str(conf)})  # fmt: skip
    assert done.returncode == 0 and "via-env-file" in names(tmp_path / "file.db")

    shown = json.loads(
        tradews(
            "config",
            "show",
            "--json",
            "--config",
            str(conf),
            cwd=tmp_path,
            env={"TRADEWS_PORT": "9100"},
        ).stdout  # fmt: skip
    )
    assert shown["configFile"] == str(conf)
    by_key = {s["key"]: (s["value"], s["source"]) for s in shown["settings"]}
    assert by_key["db"] == (str(tmp_path / "file.db"), "file")
    assert by_key["port"] == (9100, "env")
    assert by_key["host"] == ("127.0.0.1", "default")


async def test_serve_takes_the_file_and_its_flags_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file turns the demo on and asks for a port the flag (--port 0) overrides."""
    conf = tmp_path / "serve.toml"
    conf.write_text(
        'demo = true\nport = 1\nquote_ttl = 6.0\nallow_origin = ["https://desk.example"]\n'
    )
    monkeypatch.setenv("TRADEWS_CONFIG", str(conf))
    with ServerProcess.start(tmp_path / "s.db", demo=False) as server:
        assert server.api_key  # the demo account, from the file
        async with await Client.connect(server.url) as client:
            await client.login(server.api_key, server.api_secret)
            sub = await client.quote_request("BTC_USD")
            assert sub["validForMs"] == 6000


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    conf = tmp_path / "secret.toml"
    conf.write_text('admin_token = "file-token-123"\n')
    env = {"TRADEWS_API_SECRET": "env-secret-456",
           "TRADEWS_DB": "postgresql://desk:db-password-789@db.internal/tradews"}  # fmt: skip
    for as_json in ((), ("--json",)):
        done = tradews("config", "show", *as_json, "--config", str(conf), cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr
        for secret in ("file-token-123", "env-secret-456", "db-password-789"):
            assert secret not in done.stdout
    by_key = {s["key"]: s for s in json.loads(done.stdout)["settings"]}
    assert by_key["admin_token"]["value"] == "***" and by_key["admin_token"]["source"] == "file"
    assert by_key["api_secret"]["value"] == "***" and by_key["api_secret"]["source"] == "env"
    assert by_key["db"]["value"] == "postgresql://desk:***@db.internal/tradews"
    assert by_key["tls_key"]["value"] is None  # unset: nothing to mask


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ('port = "abc"\n', {}, "port must be an integer, got 'abc'"),
        ("quote_ttl = true\n", {}, "quote_ttl must be a number, got True"),
        ('allow_origin = "https://a.example"\n', {}, "allow_origin must be a list"),
        ("prot = 8765\n", {}, "unknown setting 'prot'"),
        ("port = \n", {}, "is not valid TOML"),
        ("", {"TRADEWS_PORT": "abc"}, "TRADEWS_PORT"),
    ],
)
def test_a_bad_value_is_one_line_and_exit_1(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    conf = tmp_path / "bad.toml"
    conf.write_text(text)
    for args in (("serve", "--db", str(tmp_path / "x.db")), ("config", "show")):
        done = tradews(*args, "--config", str(conf), cwd=tmp_path, env=env)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
        assert message in lines[0], lines[0]
    missing = tradews("account", "list", "--config", str(tmp_path / "none.toml"), cwd=tmp_path)
    assert missing.returncode == 1 and "does not exist" in missing.stderr
