"""Engine events and state -> the API's wire structs (decimal strings, names for enums)."""

from __future__ import annotations

from tradews.api.messages import Fill, OrderState, PublicTrade
from tradews.domain.instrument import Instrument
from tradews.domain.ledger import format_atoms
from tradews.domain.orders import OrderType, Side, TimeInForce
from tradews.engine.events import OrderUpdated, TradeExecuted

SIDE_NAMES = {int(Side.BUY): "buy", int(Side.SELL): "sell"}
TYPE_NAMES = {int(OrderType.LIMIT): "limit", int(OrderType.MARKET): "market"}
TIF_NAMES = {int(t): t.name for t in TimeInForce}
_LIMIT = int(OrderType.LIMIT)  # not OrderType.LIMIT on each call: see session.py, _CLOSING


def order_state(e: OrderUpdated, inst: Instrument) -> OrderState:
    return OrderState(
        order_id=e.order_id,
        client_order_id=e.client_order_id,
        symbol=e.symbol,
        side=SIDE_NAMES[e.side],
        type=TYPE_NAMES[e.type],
        price=inst.format_price(e.price) if e.type == _LIMIT else None,
        quantity=inst.format_quantity(e.quantity),
        filled_quantity=inst.format_quantity(e.quantity - e.remaining),
        remaining_quantity=inst.format_quantity(e.remaining),
        time_in_force=TIF_NAMES[e.tif],
        post_only=e.post_only,
        status=e.status,
        reason=e.reason,
        created_at=e.created_at,
        updated_at=e.at,
        seq=e.seq,
    )


def fills_for(account_id: int, t: TradeExecuted, inst: Instrument) -> list[Fill]:
    """The trade confirmations ``account_id`` gets for trade ``t`` (two if it was both sides)."""
    out = []
    taker_side = Side(t.taker_side)
    rfq = t.quote_id is not None
    for is_taker in (False, True):
        account = t.taker_account_id if is_taker else t.maker_account_id
        if account != account_id:
            continue
        side = taker_side if is_taker else taker_side.opposite
        fee = t.taker_fee if is_taker else t.maker_fee
        order_id = t.taker_order_id if is_taker else t.maker_order_id
        out.append(
            Fill(
                trade_id=t.trade_id,
                order_id=None if rfq else order_id,
                symbol=t.symbol,
                side=SIDE_NAMES[int(side)],
                price=inst.format_price(t.price),
                quantity=inst.format_quantity(t.quantity),
                fee=format_atoms(fee),
                fee_asset=inst.base if side is Side.BUY else inst.quote,
                liquidity="rfq" if rfq else ("taker" if is_taker else "maker"),
                quote_id=t.quote_id,
                timestamp=t.at,
                seq=t.seq,
            )
        )
    return out


def public_trade(t: TradeExecuted, inst: Instrument) -> PublicTrade:
    return PublicTrade(
        trade_id=t.trade_id,
        symbol=t.symbol,
        price=inst.format_price(t.price),
        quantity=inst.format_quantity(t.quantity),
        taker_side=SIDE_NAMES[t.taker_side],
        timestamp=t.at,
        seq=t.seq,
    )
