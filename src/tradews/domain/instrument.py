"""Instruments and exact money.

Inside the core every price is an integer number of ticks and every quantity an integer number
of lots. Decimal strings exist only at the edges (JSON, the command line, the database). A value
that is not an exact multiple of its step is rejected, never rounded: rounding a client's price
silently is how desks lose money.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal


class InvalidDecimal(ValueError):
    """A string that is not a finite, positive decimal number."""


class OffStep(ValueError):
    """A value that is not an exact multiple of its tick or lot."""


# The one decimal syntax tradews reads from people and programs: ASCII digits with an optional
# fraction, an optional leading minus and an optional exponent (JSON's number syntax, so a
# number means the same in a string as outside one). Python's Decimal() alone would also take
# other scripts' digits ("١"), full-width digits, underscores, "NaN", "Infinity" and
# surrounding whitespace; none of those is how anyone means to write an amount of money.
DECIMAL_SYNTAX = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
MAX_DECIMAL_CHARS = 40


def read_decimal(text: str, *, what: str = "value") -> Decimal:
    """Parse ``text`` in the documented syntax (``"65000.10"``, ``"2"``, ``"-0.5"``).

    Raises :class:`InvalidDecimal` naming ``what``; the message quotes ``text`` only when short.
    """
    if len(text) > MAX_DECIMAL_CHARS:
        raise InvalidDecimal(f"{what} has more than {MAX_DECIMAL_CHARS} characters")
    if not DECIMAL_SYNTAX.fullmatch(text):
        raise InvalidDecimal(f'{what} must be a decimal number like "65000.10", got {text!r}')
    return Decimal(text)


def parse_decimal(text: str, *, what: str = "value") -> Decimal:
    """Parse ``text`` (see :func:`read_decimal`) as a decimal greater than zero.

    Raises :class:`InvalidDecimal` with a message naming ``what`` otherwise.
    """
    value = read_decimal(text, what=what)
    if value <= 0:
        raise InvalidDecimal(f"{what} must be greater than zero, got {text!r}")
    return value


def to_steps(value: Decimal, step: Decimal, *, what: str = "value") -> int:
    """Return ``value / step`` as an int, or raise :class:`OffStep` if it is not whole."""
    try:
        steps, remainder = divmod(value, step)
    except ArithmeticError:  # e.g. 1E+999999: beyond what the decimal context can divide
        raise OffStep(f"{what} {value} is out of range") from None
    if remainder != 0:
        raise OffStep(f"{what} {value} is not a multiple of {step}")
    return int(steps)


def fixed_point(units: int, places: int) -> str:
    """``units`` x 10^-``places`` written with exactly ``places`` decimals, as
    ``f"{Decimal(units).scaleb(-places):.{places}f}"`` would (``fixed_point(-5, 2)`` is
    ``"-0.05"``), in integer arithmetic."""
    if not places:
        return str(units)
    if units < 0:
        return "-" + fixed_point(-units, places)
    text = str(units).zfill(places + 1)
    return text[:-places] + "." + text[-places:]


FORMATTED_KEPT = 4096


def _kept(cache: dict[int, str], steps: int, text: str) -> str:
    """Remember ``text`` for ``steps`` in ``cache`` (emptied when full); return it."""
    if len(cache) >= FORMATTED_KEPT:
        cache.clear()
    cache[steps] = text
    return text


@dataclass(frozen=True, slots=True)
class Instrument:
    """A tradable pair such as ``BTC_USD``: ``base`` is bought and sold, priced in ``quote``.

    ``quote_size`` is the quantity an RFQ stream quotes when the client does not ask for one;
    ``spread_bps`` is the half-spread the desk adds on each side of the reference price.
    ``spread_ladder``, when given, replaces it by size: ``((1, 5), (10, 8))`` quotes up to 1 at
    5 bps, up to 10 at 8 bps, and nothing larger (see :meth:`spread_for`).
    """

    symbol: str
    base: str
    quote: str
    tick: Decimal
    lot: Decimal
    min_size: Decimal
    max_size: Decimal | None
    quote_size: Decimal
    spread_bps: Decimal = Decimal("5")
    spread_ladder: tuple[tuple[Decimal, Decimal], ...] = ()  # (up to quantity, bps), ascending
    _tick_places: int = field(init=False, repr=False, compare=False)
    _lot_places: int = field(init=False, repr=False, compare=False)
    # tick and lot as whole numbers of 10^-places, to format without Decimal arithmetic
    _tick_units: int = field(init=False, repr=False, compare=False)
    _lot_units: int = field(init=False, repr=False, compare=False)
    # Prices and quantities as formatted before (every order reply and update has four, and
    # they repeat): steps -> text, at most FORMATTED_KEPT of each.
    _prices: dict[int, str] = field(init=False, repr=False, compare=False)
    _quantities: dict[int, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("tick", "lot", "min_size", "quote_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be greater than zero")
        if self.spread_bps < 0:
            raise ValueError("spread_bps must not be negative")
        previous = Decimal(0)
        for quantity, bps in self.spread_ladder:
            if quantity <= previous:
                raise ValueError("the spread ladder's quantities must be positive and ascending")
            if bps < 0:
                raise ValueError("the spread ladder's spreads must not be negative")
            to_steps(quantity, self.lot, what="spread ladder quantity")
            previous = quantity
        to_steps(self.min_size, self.lot, what="min size")
        if self.max_size is not None:
            to_steps(self.max_size, self.lot, what="max size")
            if self.max_size < self.min_size:
                raise ValueError("max size must not be below min size")
        self.check_quantity(to_steps(self.quote_size, self.lot, what="quote size"))
        object.__setattr__(self, "_tick_places", max(0, -int(self.tick.as_tuple().exponent)))
        object.__setattr__(self, "_lot_places", max(0, -int(self.lot.as_tuple().exponent)))
        object.__setattr__(self, "_tick_units", int(self.tick.scaleb(self._tick_places)))
        object.__setattr__(self, "_lot_units", int(self.lot.scaleb(self._lot_places)))
        object.__setattr__(self, "_prices", {})
        object.__setattr__(self, "_quantities", {})

    # Prices --------------------------------------------------------------------------------

    def price_ticks(self, text: str) -> int:
        """Parse a client's price string into ticks; raises on junk or an off-tick price."""
        return to_steps(parse_decimal(text, what="price"), self.tick, what="price")

    def format_price(self, ticks: int) -> str:
        """``ticks`` x tick with the tick's decimal places (``"65000.10"``)."""
        text = self._prices.get(ticks)
        if text is None:
            text = _kept(
                self._prices, ticks, fixed_point(ticks * self._tick_units, self._tick_places)
            )
        return text

    # Quantities ----------------------------------------------------------------------------

    def quantity_lots(self, text: str) -> int:
        """Parse a client's quantity into lots and check it against the size limits."""
        lots = to_steps(parse_decimal(text, what="quantity"), self.lot, what="quantity")
        self.check_quantity(lots)
        return lots

    def check_quantity(self, lots: int) -> None:
        qty = Decimal(lots) * self.lot
        if qty < self.min_size:
            raise OffStep(f"quantity {qty} is below the minimum size {self.min_size}")
        if self.max_size is not None and qty > self.max_size:
            raise OffStep(f"quantity {qty} is above the maximum size {self.max_size}")

    def format_quantity(self, lots: int) -> str:
        """``lots`` x lot with the lot's decimal places (``"0.0010"``)."""
        text = self._quantities.get(lots)
        if text is None:
            text = _kept(
                self._quantities, lots, fixed_point(lots * self._lot_units, self._lot_places)
            )
        return text

    def spread_for(self, lots: int) -> Decimal | None:
        """The desk's half-spread for a quote of ``lots``, in basis points; None when the
        ladder stops below it (the desk does not quote that size)."""
        if not self.spread_ladder:
            return self.spread_bps
        qty = Decimal(lots) * self.lot
        for up_to, bps in self.spread_ladder:
            if qty <= up_to:
                return bps
        return None

    @property
    def largest_quote(self) -> Decimal | None:
        """The largest quantity the desk quotes (the ladder's top), None if unbounded here."""
        return self.spread_ladder[-1][0] if self.spread_ladder else None

    @property
    def quote_size_lots(self) -> int:
        return to_steps(self.quote_size, self.lot)


def parse_ladder(text: str) -> tuple[tuple[Decimal, Decimal], ...]:
    """``"1:5,10:8,50:15"`` (up to 1 at 5 bps, up to 10 at 8, up to 50 at 15) as tuples;
    ``""`` is no ladder. Raises ValueError saying what is wrong."""
    if not text.strip():
        return ()
    ladder = []
    for step in text.split(","):
        quantity, sep, bps = step.strip().partition(":")
        if not sep:
            raise ValueError(f"spread ladder step {step.strip()!r}: write QUANTITY:BPS, e.g. 1:5")
        ladder.append(
            (parse_decimal(quantity, what="ladder quantity"), read_decimal(bps, what="ladder bps"))
        )
    return tuple(ladder)


def format_ladder(ladder: tuple[tuple[Decimal, Decimal], ...]) -> str:
    return ",".join(f"{q}:{b}" for q, b in ladder)
