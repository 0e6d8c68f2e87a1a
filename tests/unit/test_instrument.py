from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradews.domain import instrument
from tradews.domain.instrument import Instrument, InvalidDecimal, OffStep

BTC = Instrument(
    "BTC_USD", "BTC", "USD", Decimal("0.01"), Decimal("0.0001"), Decimal("0.001"),
    Decimal("100"), Decimal("1"),
)  # fmt: skip


def test_prices_and_quantities_round_trip_exactly() -> None:
    assert BTC.price_ticks("65000.01") == 6_500_001
    assert BTC.format_price(6_500_001) == "65000.01"
    assert BTC.format_price(6_500_000) == "65000.00"
    assert BTC.quantity_lots("0.0015") == 15
    assert BTC.format_quantity(15) == "0.0015"


@pytest.mark.parametrize("text", ["65000.001", "0.005"])
def test_off_tick_price_is_rejected_not_rounded(text: str) -> None:
    with pytest.raises(OffStep):
        BTC.price_ticks(text)


@pytest.mark.parametrize("text", ["abc", "", "NaN", "Infinity", "-1", "0", "1e999999999999"])
def test_junk_is_rejected(text: str) -> None:
    with pytest.raises((InvalidDecimal, OffStep)):
        BTC.price_ticks(text)


@pytest.mark.parametrize("text, reason", [("0.0005", "below"), ("100.0001", "above")])
def test_size_limits(text: str, reason: str) -> None:
    with pytest.raises(OffStep, match=reason):
        BTC.quantity_lots(text)


@given(st.integers(min_value=1, max_value=10**15))
def test_format_then_parse_is_identity(ticks: int) -> None:
    assert BTC.price_ticks(BTC.format_price(ticks)) == ticks


@given(
    st.integers(min_value=-(10**18), max_value=10**18),
    st.sampled_from(["0.01", "0.05", "5", "1E+1", "0.010", "0.00000001", "0.5"]),
)
def test_formatting_writes_what_decimal_formatting_would(steps: int, step: str) -> None:
    # format_price and format_quantity work in integers; the text is that of the Decimal
    inst = Instrument("X_Y", "X", "Y", Decimal(step), Decimal(step), Decimal(step), None,
                      Decimal(step))  # fmt: skip
    places = max(0, -int(Decimal(step).as_tuple().exponent))
    assert inst.format_price(steps) == f"{Decimal(steps) * Decimal(step):.{places}f}"
    assert inst.format_quantity(steps) == f"{Decimal(steps) * Decimal(step):.{places}f}"


def test_invalid_definitions() -> None:
    with pytest.raises(ValueError):
        Instrument("X_Y", "X", "Y", Decimal("0"), Decimal("1"), Decimal("1"), None, Decimal("1"))
    with pytest.raises(OffStep):  # quote size off the lot
        Instrument(
            "X_Y", "X", "Y", Decimal("1"), Decimal("0.5"), Decimal("1"), None, Decimal("1.25")
        )


def test_formatted_text_is_kept_within_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(instrument, "FORMATTED_KEPT", 16)
    inst = Instrument("X_Y", "X", "Y", Decimal("0.01"), Decimal("0.001"), Decimal("0.001"), None,
                      Decimal("1"))  # fmt: skip
    for n in range(100):
        assert inst.format_price(n) == f"{Decimal(n) / 100:.2f}"
        assert inst.format_quantity(n) == inst.format_quantity(n) == f"{Decimal(n) / 1000:.3f}"
        assert len(inst._prices) <= 16 and len(inst._quantities) <= 16
