"""The server's log: JSON lines carrying the connection's id, peer and account, and no secret."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from tradews.app.logs import redact
from tradews.client import Client, RpcError
from tradews.testing import KNOWN_SECRETS, STARTED, ServerProcess, leaked_secrets

WRONG_SECRET = "wrong-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def json_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = tmp_path_factory.mktemp("logs") / "l.db"
    args = ("--log-format", "json", "--no-demo-traders")
    with ServerProcess.start(db, demo=True, args=args) as proc:
        yield proc


async def logged(server: ServerProcess, what: str) -> list[dict[str, object]]:
    """The server's log lines after its banner, parsed; waits for one that mentions ``what``."""
    for _ in range(100):
        lines = [json.loads(line) for line in server.output[server.banner_lines :] if line]
        if any(what in str(line["msg"]) for line in lines):
            return lines
        await asyncio.sleep(0.05)
    pytest.fail(f"no log line mentions {what!r}: {server.output[server.banner_lines :]}")


async def test_json_lines_name_the_connection_and_account_and_hold_no_secret(
    json_server: ServerProcess,
) -> None:
    async with await Client.connect(json_server.url) as client:
        with pytest.raises(RpcError):
            await client.login(json_server.api_key, WRONG_SECRET)
        with pytest.raises(RpcError):
            await client.login(WRONG_SECRET, WRONG_SECRET)  # a secret pasted as the key
        await client.login(json_server.api_key, json_server.api_secret)
    lines = await logged(json_server, "logged in")
    for line in lines:  # every line after the banner is one JSON object with these fields
        assert {"ts", "level", "logger", "msg"} <= set(line)
    refused = [x for x in lines if "login refused" in str(x["msg"])]
    assert [x["msg"] for x in refused] == [
        f"login refused for key {json_server.api_key}: invalid API key or secret",
        "login refused for key (not a key id): invalid API key or secret",
    ]
    ok = next(x for x in lines if "logged in" in str(x["msg"]))
    assert ok["account"] == "demo" and ok["peer"] == "127.0.0.1"
    assert ok["conn"] == refused[0]["conn"] and "account" not in refused[0]
    text = "\n".join(json_server.output[json_server.banner_lines :])
    assert WRONG_SECRET not in text and json_server.api_secret not in text


def test_the_end_of_run_check_finds_a_leaked_secret(json_server: ServerProcess) -> None:
    """The check tests/conftest.py runs after the suite can fail."""
    assert json_server in STARTED and json_server.api_secret in KNOWN_SECRETS
    json_server.output.append(f"oops {json_server.api_secret}")
    try:
        assert leaked_secrets() == [f"oops {json_server.api_secret}"]
    finally:
        json_server.output.pop()
    assert leaked_secrets() == []


@pytest.mark.parametrize(
    ("line", "masked"),
    [
        ('{"apiKey": "tw_1", "apiSecret": "abc-DEF_1"}', '{"apiKey": "tw_1", "apiSecret": "***"}'),
        ("LoginParams(api_key='tw', api_secret='s3', signature='zz')",
         "LoginParams(api_key='tw', api_secret='***', signature='***')"),
        ("Authorization: Bearer abc.def", "Authorization: Bearer ***"),
        ("postgresql://bob:hunter2@db:5432/x", "postgresql://bob:***@db:5432/x"),
        ("-----BEGIN PRIVATE KEY-----\nMC4C\n-----END PRIVATE KEY-----",
         "-----PRIVATE KEY REDACTED-----"),
        ("order 12 filled 0.5 BTC_USD at 65000", "order 12 filled 0.5 BTC_USD at 65000"),
    ],
)  # fmt: skip
def test_redaction(line: str, masked: str) -> None:
    assert redact(line) == masked
