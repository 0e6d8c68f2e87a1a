"""Ordering guarantees of the session with commands that complete later (after durability)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tests.unit.test_session import make_services
from tradews.domain.orders import Reject
from tradews.engine.commands import AnyCommand, CancelOrder, PlaceOrder
from tradews.engine.engine import Rejected, Result
from tradews.session.session import Session


class RecordingTrading:
    """Stands in for the engine host: records commands, completes them when told to."""

    def __init__(self) -> None:
        self.commands: list[AnyCommand] = []
        self.pending: list[Callable[[Result], None]] = []

    def submit(self, command: AnyCommand, reply: Callable[[Result], None]) -> bool:
        self.commands.append(command)
        self.pending.append(reply)
        return True

    def symbol_of(self, account_id: int, order_id: int | None, client_id: str | None) -> str | None:
        return "BTC_USD"

    def complete_all(self) -> None:
        for reply in self.pending:
            reply(Rejected(Reject.UNKNOWN_ORDER, "test"))
        self.pending.clear()


def session_with(trading: RecordingTrading) -> tuple[Session[str], list[bytes]]:
    services = make_services()
    services.trading = trading
    sent: list[bytes] = []
    s = Session(services, "c", sent.append)
    s.receive(
        b'{"jsonrpc":"2.0","method":"rpc.login","params":{"apiKey":"k","apiSecret":"s"},"id":0}', 0
    )
    return s, sent


def test_a_batch_reaches_the_engine_in_its_own_order() -> None:
    trading = RecordingTrading()
    s, _ = session_with(trading)
    batch: list[dict[str, Any]] = [
        {"jsonrpc": "2.0", "method": "order_place", "id": 1, "params": {
            "symbol": "BTC_USD", "side": "buy", "type": "limit", "quantity": "1", "price": "1.00",
            "clientOrderId": "c1"}},
        {"jsonrpc": "2.0", "method": "order_cancel", "params": {"clientOrderId": "c1"}},
    ]  # fmt: skip
    s.receive(json.dumps(batch).encode(), 1)
    assert [type(c) for c in trading.commands] == [PlaceOrder, CancelOrder]


def test_a_streams_first_message_follows_the_deferred_reply() -> None:
    trading = RecordingTrading()
    s, sent = session_with(trading)
    batch = [
        {"jsonrpc": "2.0", "method": "order_cancel", "id": 1, "params": {"orderId": 5}},
        {"jsonrpc": "2.0", "method": "subscribe", "id": 2, "params": {"channel": "book.BTC_USD"}},
    ]
    immediate = s.receive(json.dumps(batch).encode(), 1)
    assert immediate == []  # nothing before the batch reply, not even the book snapshot
    trading.complete_all()
    first, second = (json.loads(f) for f in sent)
    assert isinstance(first, list) and [r["id"] for r in first] == [1, 2]
    assert second["method"] == "book" and second["params"]["type"] == "snapshot"


def test_a_retried_client_order_id_of_a_forgotten_order_reads_the_history() -> None:
    from tradews.engine.engine import Duplicate
    from tradews.engine.events import OrderUpdated

    class History:
        def closed_order(self, account_id: int, order_id: int | None, client_id: str | None) -> Any:
            assert (account_id, order_id) == (1, 77)
            return OrderUpdated(9, 1, 77, "c1", "BTC_USD", 1, 1, 100, 10_000, 0, 1, False,
                                "filled", None, 5, 6)  # fmt: skip

        def trades_of(self, *args: Any, **kwargs: Any) -> list[Any]:
            return []

    trading = RecordingTrading()
    s, sent = session_with(trading)
    s._services.history = History()
    place = {"jsonrpc": "2.0", "method": "order_place", "id": 3, "params": {
        "symbol": "BTC_USD", "side": "buy", "type": "limit", "quantity": "1", "price": "1.00",
        "clientOrderId": "c1"}}  # fmt: skip
    s.receive(json.dumps(place).encode(), 1)
    trading.pending.pop()(Duplicate(77))
    reply = json.loads(sent[-1])
    assert reply["id"] == 3 and reply["result"]["orderId"] == 77
    assert reply["result"]["status"] == "filled"
