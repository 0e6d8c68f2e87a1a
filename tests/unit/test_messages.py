"""Decoding the API's decimal strings (``api/messages.py``): exact, strict, and the same however
often a string is read."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from tradews.api import messages
from tradews.api.messages import OrderPlaceParams, decode_hook

decoder = msgspec.json.Decoder(OrderPlaceParams, dec_hook=decode_hook, float_hook=Decimal)


def place(price: str) -> OrderPlaceParams:
    return decoder.decode(
        b'{"symbol":"BTC_USD","side":"buy","type":"limit","quantity":"0.5","price":"%s"}'
        % price.encode()
    )


def test_a_string_read_again_gives_the_same_exact_decimal() -> None:
    first, again = place("65000.10"), place("65000.10")
    assert first.price == again.price == Decimal("65000.10")
    assert str(again.price) == "65000.10"  # the exponent too: not 65000.1
    assert first.quantity == Decimal("0.5")


@pytest.mark.parametrize("text", ["١", "NaN", " 1", "1_0", "0x10", "1." + "0" * 40])
def test_invalid_text_is_refused_every_time(text: str) -> None:
    for _ in range(2):  # a refusal is not remembered as a value
        with pytest.raises(msgspec.ValidationError):
            place(text)


def test_the_strings_kept_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(messages, "DECIMALS_KEPT", 8)
    monkeypatch.setattr(messages, "_decimals", {})
    for n in range(50):
        assert place(f"{n}.25").price == Decimal(n) + Decimal("0.25")
        assert len(messages._decimals) <= 8
