"""The session's side of cancel-on-disconnect and rpc.logout, with a fake engine host: which
commands carry the tag, what ends it, and that a logout closes only after every reply."""

from __future__ import annotations

import json
from typing import Any

from tests.unit.test_session import make_services
from tests.unit.test_session_ordering import RecordingTrading
from tradews.engine.commands import EndSession, PlaceOrder
from tradews.engine.engine import Done, Result
from tradews.session.session import Session

PLACE = {"symbol": "BTC_USD", "side": "buy", "type": "limit", "quantity": "1", "price": "1.00"}


def request(method: str, params: Any = None, id: int | None = 1) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    if id is not None:
        message["id"] = id
    return json.dumps(message).encode()


def cod_session() -> tuple[Session[str], RecordingTrading, list[bytes], list[tuple[int, str]]]:
    """A logged-in session whose tags are 42, and what it sends and asks to close."""
    trading = RecordingTrading()
    services = make_services()
    services.trading = trading
    services.session_tags = lambda: 42
    sent: list[bytes] = []
    closes: list[tuple[int, str]] = []
    s = Session(services, "c", sent.append, close=lambda code, why: closes.append((code, why)))
    s.receive(request("rpc.login", {"apiKey": "k", "apiSecret": "s"}, id=0), 0)
    sent.clear()
    return s, trading, sent, closes


def complete(trading: RecordingTrading) -> None:
    """Make every command submitted so far durable (they all succeed)."""
    replies, trading.pending = trading.pending, []
    result: Result = Done(None)
    for reply in replies:
        reply(result)


def test_orders_placed_with_cod_on_carry_its_tag_and_the_end_cancels_them() -> None:
    s, trading, _, _ = cod_session()
    s.receive(request("order_place", PLACE), 1)  # before: no tag
    reply = s.receive(request("cancel_on_disconnect", {"enabled": True}), 2)
    assert json.loads(reply[0])["result"] == {"enabled": True}  # at once: nothing to write
    s.receive(request("order_place", PLACE), 3)
    s.receive(request("cancel_on_disconnect", {"enabled": True}), 4)  # the same tag still
    s.receive(request("order_place", PLACE), 5)
    assert [c.session for c in trading.commands if isinstance(c, PlaceOrder)] == [0, 42, 42]
    s.close(9_000)
    assert trading.commands[-1] == EndSession(9_000, 1, 42, True)
    s.close(9_001)  # once
    assert len(trading.commands) == 4


def test_turning_cod_off_answers_once_durable_and_leaves_nothing_to_cancel() -> None:
    s, trading, sent, _ = cod_session()
    s.receive(request("cancel_on_disconnect", {"enabled": True}), 1)
    s.receive(request("order_place", PLACE), 2)
    complete(trading)
    sent.clear()
    assert s.receive(request("cancel_on_disconnect", {"enabled": False}), 3) == []
    assert trading.commands[-1] == EndSession(3, 1, 42, False)
    assert sent == []
    complete(trading)
    assert json.loads(sent[-1])["result"] == {"enabled": False}
    s.receive(request("order_place", PLACE), 4)
    assert trading.commands[-1].session == 0  # type: ignore[union-attr]
    count = len(trading.commands)
    s.close(5)
    assert len(trading.commands) == count  # nothing to end


def test_logout_with_cod_disarms_replies_then_closes() -> None:
    s, trading, sent, closes = cod_session()
    s.receive(request("cancel_on_disconnect", {"enabled": True}), 1)
    s.receive(request("order_place", PLACE), 2)
    complete(trading)
    sent.clear()
    assert s.receive(request("rpc.logout", id=7), 3) == []
    assert trading.commands[-1] == EndSession(3, 1, 42, False)
    assert s.receive(request("time"), 4) == []  # nothing after a logout is processed
    assert closes == [] and sent == []
    complete(trading)  # durable: the reply, then the close
    assert json.loads(sent[-1]) == {"jsonrpc": "2.0", "result": True, "id": 7}
    assert closes == [(1000, "logged out")]
    count = len(trading.commands)
    s.close(5)
    assert len(trading.commands) == count  # the logout ended the tag, not the close


def test_a_logout_closes_only_after_the_replies_still_waiting() -> None:
    s, trading, sent, closes = cod_session()
    s.receive(request("order_place", PLACE, id=1), 1)  # its reply waits for durability
    s.receive(request("rpc.logout", id=2), 2)  # no COD: answered at once
    assert [json.loads(f)["id"] for f in sent] == [2]
    assert closes == []
    complete(trading)
    assert [json.loads(f)["id"] for f in sent] == [2, 1]
    assert closes == [(1000, "logged out")]


def test_a_logout_sent_as_a_notification_closes_too() -> None:
    s, _, sent, closes = cod_session()
    assert s.receive(request("rpc.logout", id=None), 1) == []
    assert sent == [] and closes == [(1000, "logged out")]


def test_cod_needs_a_session_that_can_trade() -> None:
    s = Session(make_services(), "anonymous")
    (reply,) = s.receive(request("cancel_on_disconnect", {"enabled": True}), 1)
    assert json.loads(reply)["error"]["code"] == 1001
