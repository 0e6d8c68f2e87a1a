"""Shared fixtures: a real demo server in a subprocess, and clients connected to it."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tradews.client import Client
from tradews.testing import (
    NATS_URL,
    Deployment,
    ServerProcess,
    drop_bus,
    fresh_bus_url,
    nats_reachable,
)

REQUIRE_SERVICES = os.environ.get("TRADEWS_REQUIRE_SERVICES") == "1"


def require(available: bool, reason: str) -> None:
    """Skip when a needed tool or service is missing; fail instead when CI requires them."""
    if available:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (TRADEWS_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


@pytest.fixture(scope="session", params=["serve", "gateway"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One demo server shared by the tests that do not change its configuration, in both
    deployments: the all-in-one ``tradews serve``, and a gateway of an engine + gateway pair
    over NATS (the same tests, so the distributed mode is the same product)."""
    db = tmp_path_factory.mktemp("server") / "tradews.db"
    if request.param == "serve":
        with ServerProcess.start(db, demo=True) as proc:
            yield proc
        return
    require(nats_reachable(), f"NATS is not reachable at {NATS_URL}")
    bus = fresh_bus_url()
    try:
        with Deployment.start(db, bus, gateways=1) as deployment:
            gateway = deployment.gateways[0]
            gateway.api_key, gateway.api_secret = deployment.api_key, deployment.api_secret
            yield gateway
    finally:
        drop_bus(bus)


@pytest.fixture(scope="module", params=["json", "proto"])
def encoding(request: pytest.FixtureRequest) -> str:
    """Tests that take this run once per wire encoding: the API must behave the same in both."""
    return str(request.param)


@pytest.fixture
async def client(server: ServerProcess, encoding: str) -> AsyncIterator[Client]:
    async with await Client.connect(server.url, encoding=encoding) as c:
        yield c


@pytest.fixture
async def logged_in(server: ServerProcess, encoding: str) -> AsyncIterator[Client]:
    async with await Client.connect(server.url, encoding=encoding) as c:
        assert await c.login(server.api_key, server.api_secret) is True
        yield c


@pytest.fixture
async def raw(server: ServerProcess) -> AsyncIterator[Client]:
    """A client that sees every frame as bytes, for protocol-level tests."""
    async with await Client.connect(server.url, raw=True) as c:
        yield c


def pytest_report_header() -> str:
    """Say which build of the engine runs: compiled (``make install``) or pure Python."""
    from tradews._build import build

    return f"tradews engine: {build()}"


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to test a compiled module older than its source: the edit would not be tested."""
    from tradews._build import stale_compiled

    stale = stale_compiled()
    if stale:
        pytest.exit(f"compiled modules older than their sources: {', '.join(stale)}; "
                    "run `make install` (or `make uncompile`)", returncode=4)  # fmt: skip


def node_available() -> bool:
    root = Path(__file__).resolve().parent.parent
    return shutil.which("node") is not None and (root / "node_modules" / "ws").is_dir()


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_server_log() -> Iterator[None]:
    """After the whole run: no server logged a secret the tests know (every API secret and
    private key they created, every demo key's secret), in any line after its banner."""
    yield
    from tradews.testing import leaked_secrets

    leaked = leaked_secrets()
    assert not leaked, f"{len(leaked)} log lines hold a secret, e.g. {leaked[0]!r}"
