"""A client in another language, written only from the published JSON-RPC document."""

from __future__ import annotations

import json
import subprocess
from decimal import Decimal
from pathlib import Path

from tests.conftest import node_available, require
from tradews.testing import ServerProcess

SCRIPT = Path(__file__).resolve().parent.parent / "node" / "docs_client.mjs"


def test_node_ws_client_from_the_docs(server: ServerProcess) -> None:
    require(node_available(), "node and the npm package 'ws' are needed (run `make test`)")
    done = subprocess.run(
        ["node", str(SCRIPT), server.url, server.api_key, server.api_secret, "5"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=SCRIPT.parent.parent.parent,
    )
    assert done.returncode == 0, done.stderr
    messages = [json.loads(line) for line in done.stdout.splitlines()]
    login, subscribed = messages[0], messages[1]
    assert login == {"jsonrpc": "2.0", "result": True, "id": 1}
    assert subscribed["id"] == 2 and subscribed["result"]["symbol"] == "BTC_USD"
    quotes = [m["params"] for m in messages if m.get("method") == "quote"]
    assert len(quotes) == 5
    for q in quotes:
        assert q["symbol"] == "BTC_USD"
        assert Decimal(q["buyPrice"]) <= Decimal(q["sellPrice"])
