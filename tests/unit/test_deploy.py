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
