"""The sans-I/O session, driven directly with a fake clock and a fake key store."""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction
from typing import Any

from tradews.api.errors import ApiError, ErrorCode
from tradews.app.catalog import Catalog
from tradews.app.demo import DEMO_INSTRUMENTS
from tradews.domain.instrument import Instrument
from tradews.domain.pricing import NoQuote, TwoWayPrice, rfq_prices
from tradews.session.market_data import MarketDataDesk
from tradews.session.ports import Principal, Unavailable
from tradews.session.quote_desk import QuoteDesk, stream_tokens
from tradews.session.session import Services, Session, SessionState
from tradews.session.view import TradingView


class FakeKeys:
    def authenticate(self, api_key: str, api_secret: str, now_ms: int) -> Principal:
        if (api_key, api_secret) == ("k", "s"):
            return Principal(1, "acme", "enterprise", "k", None)
        if (api_key, api_secret) == ("std", "s"):
            return Principal(2, "retail", "standard", "std", None)
        raise ApiError(ErrorCode.INVALID_CREDENTIALS, "invalid API key or secret")


REFERENCES: dict[str, Fraction] = {}


class ReferenceOnly:
    """Prices from ``REFERENCES`` alone, as the desk does over an empty book."""

    def price(
        self, inst: Instrument, lots: int, exclude: int | None, now_ms: int
    ) -> TwoWayPrice | NoQuote:
        return rfq_prices(None, None, REFERENCES.get(inst.symbol), inst.spread_bps)

    def accounts_in(self, symbol: str) -> frozenset[int]:
        return frozenset()


def make_services() -> Services[str]:
    REFERENCES.clear()
    REFERENCES["BTC_USD"] = Fraction(6_500_000)
    quotes: QuoteDesk[str] = QuoteDesk(
        ttl_ms=3000,
        refresh_ms=1000,
        new_stream_token=stream_tokens(b"test key"),
        pricer=ReferenceOnly(),
    )
    catalog = Catalog(DEMO_INSTRUMENTS)
    view: TradingView[str] = TradingView(catalog)
    return Services(FakeKeys(), catalog, quotes, MarketDataDesk(view, catalog.all), view, 1000)


def call(session: Session[str], method: str, params: Any = None, id: Any = 1) -> list[Any]:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        msg["params"] = params
    return [json.loads(b) for b in session.receive(json.dumps(msg).encode(), 1_000)]


def test_login_then_quote_stream_then_refresh_and_close() -> None:
    services = make_services()
    s = Session(services, "conn-1")
    assert (
        call(s, "quote_request", {"symbol": "BTC_USD", "type": "RFQ"})[0]["error"]["code"] == 1001
    )
    assert call(s, "rpc.login", {"apiKey": "k", "apiSecret": "s"}) == [
        {"jsonrpc": "2.0", "result": True, "id": 1}
    ]
    assert s.state is SessionState.AUTHENTICATED
    reply, first = call(s, "quote_request", {"symbol": "BTC_USD", "type": "RFQ"}, id="r")
    assert reply["result"]["symbol"] == "BTC_USD" and reply["id"] == "r"
    q = first["params"]
    assert (q["buyPrice"], q["sellPrice"], q["seq"], q["validUntil"]) == (
        "64967.50", "65032.50", 1, 4_000,
    )  # fmt: skip
    desk = services.quotes
    # Nothing is owed while the price is unchanged and the quote is fresh...
    assert list(desk.due(2_000, lambda c: True)) == []
    # ...a refresh is owed once it is within refresh_ms of expiry...
    due = list(desk.due(3_000, lambda c: True))
    assert [c for c, _ in due] == ["conn-1"]
    assert json.loads(due[0][1])["params"]["seq"] == 2
    # ...and at once when the price moves, unless the reader is slow.
    REFERENCES["BTC_USD"] = Fraction(6_600_000)
    assert list(desk.due(3_100, lambda c: False)) == []
    assert desk.skipped_slow == 1
    ((conn, frame),) = desk.due(3_100, lambda c: True)
    assert json.loads(frame)["params"]["seq"] == 3  # no gap for the skipped pulse
    s.close()
    assert desk.stream_count == 0 and s.state is SessionState.CLOSED
    assert s.receive(b'{"jsonrpc":"2.0","method":"time","id":1}', 0) == []


def test_standard_tier_and_failure_limit() -> None:
    s = Session(make_services(), "c")
    err = call(s, "rpc.login", {"apiKey": "std", "apiSecret": "s"})[0]["error"]
    assert err == {"code": 1005, "message": "websocket access requires the enterprise tier"}
    for _ in range(3):
        assert call(s, "rpc.login", {"apiKey": "x", "apiSecret": "y"})[0]["error"]["code"] == 1002
    assert s.close_reason is None
    assert call(s, "rpc.login", {"apiKey": "x", "apiSecret": "y"})[0]["error"]["code"] == 1007
    assert s.close_reason == "too many failed logins"


def test_subscription_limit() -> None:
    services = make_services()
    s = Session(services, "c")
    call(s, "rpc.login", {"apiKey": "k", "apiSecret": "s"})
    limit = services.limits.max_subscriptions
    for i in range(limit):
        assert "result" in call(s, "quote_request", {"symbol": "BTC_USD", "type": "RFQ"}, i)[0]
    assert (
        call(s, "quote_request", {"symbol": "BTC_USD", "type": "RFQ"})[0]["error"]["code"] == 2005
    )
    assert s.subscription_count == limit


def test_no_price_yet() -> None:
    s = Session(make_services(), "c")
    call(s, "rpc.login", {"apiKey": "k", "apiSecret": "s"})
    err = call(s, "quote_request", {"symbol": "ETH_USD", "type": "RFQ"})[0]["error"]
    assert err["code"] == 2003


def test_market_data_snapshot_without_trades() -> None:
    services = make_services()
    s = Session(services, "c")
    call(s, "rpc.login", {"apiKey": "k", "apiSecret": "s"})
    reply, snapshot = call(s, "market_data_request")
    rows = {r["symbol"]: r for r in snapshot["params"]["instruments"]}
    assert rows["BTC_USD"]["last"] is None and rows["BTC_USD"]["bid"] is None
    assert rows["BTC_USD"]["volume24h"] == "0.0000"


def test_quote_quantity_decimal_places() -> None:
    s = Session(make_services(), "c")
    call(s, "rpc.login", {"apiKey": "k", "apiSecret": "s"})
    reply, first = call(s, "quote_request", {"symbol": "BTC_USD", "type": "RFQ", "quantity": "0.5"})
    assert Decimal(first["params"]["quantity"]) == Decimal("0.5")
    assert first["params"]["quantity"] == "0.5000"


class UnreachableKeys:
    def authenticate(self, api_key: str, api_secret: str, now_ms: int) -> Principal:
        raise Unavailable("the database is unreachable")


def test_a_login_the_store_cannot_answer_is_refused_clearly_and_not_counted() -> None:
    services = make_services()
    services.authenticator = UnreachableKeys()  # type: ignore[assignment]
    s = Session(services, "conn-1")
    for _ in range(services.limits.max_login_failures + 1):
        error = call(s, "rpc.login", {"apiKey": "k", "apiSecret": "s"})[0]["error"]
        assert error == {"code": 4002, "message": "the database is unreachable"}
    assert s.state is not SessionState.AUTHENTICATED
    services.authenticator = FakeKeys()  # back: the same connection logs in
    assert call(s, "rpc.login", {"apiKey": "k", "apiSecret": "s"})[0]["result"] is True
