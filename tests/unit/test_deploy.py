"""The deployment example in deploy/ runs the commands this tradews has: every tradews service's
command line parses (it is run with --help appended, which checks every option it names)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "compose.yaml"


def services() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text())["services"])


def test_the_example_has_an_engine_a_standby_two_gateways_and_their_services() -> None:
    found = services()
    commands = {name: s.get("command", [])[:1] for name, s in found.items()}
    assert [n for n, c in commands.items() if c == ["engine"]] == ["engine", "engine-standby"]
    assert len([n for n, c in commands.items() if c == ["gateway"]]) == 2
    assert {"nats", "postgres", "balancer", "migrate"} <= set(found)
    balancer = (COMPOSE.parent / "haproxy.cfg").read_text()
    for name, command in commands.items():
        if command == ["gateway"]:
            assert f"server {name} {name}:8765" in balancer


@pytest.mark.parametrize(
    "name", [n for n, s in services().items() if s.get("image") == "tradews" or "<<" in s]
)
def test_each_tradews_command_parses(name: str) -> None:
    command = services()[name]["command"]
    done = subprocess.run(
        [sys.executable, "-m", "tradews", *command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


SINGLE = COMPOSE.parent / "compose.single.yaml"
UNIT = COMPOSE.parent / "tradews.service"


@pytest.mark.parametrize("name", ["migrate", "tradews"])
def test_the_single_process_example_parses(name: str) -> None:
    service = yaml.safe_load(SINGLE.read_text())["services"][name]
    assert service["image"] == "tradews"
    done = subprocess.run(
        [sys.executable, "-m", "tradews", *service["command"], "--help"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_the_systemd_unit_runs_a_command_that_parses() -> None:
    lines = UNIT.read_text().splitlines()
    start = next(line for line in lines if line.startswith("ExecStart="))
    binary, *args = start.removeprefix("ExecStart=").split()
    assert binary == "/opt/tradews/bin/tradews"
    done = subprocess.run(
        [sys.executable, "-m", "tradews", *args, "--help"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Environment=TRADEWS_DB=/var/lib/tradews/tradews.db" in lines
