"""Demo mode: instruments, an enterprise ``demo`` account with a fresh key, and start prices."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from tradews.adapters.sql_store import SqlStore
from tradews.domain.instrument import Instrument

DEMO_ACCOUNT = "demo"
DEMO_KEY_LABEL = "demo-banner"

DEMO_INSTRUMENTS = [
    Instrument(
        "BTC_USD",
        "BTC",
        "USD",
        Decimal("0.01"),
        Decimal("0.0001"),
        Decimal("0.0001"),
        Decimal("100"),
        Decimal("1"),
        Decimal("5"),
    ),
    Instrument(
        "ETH_USD",
        "ETH",
        "USD",
        Decimal("0.01"),
        Decimal("0.001"),
        Decimal("0.001"),
        Decimal("1000"),
        Decimal("10"),
        Decimal("6"),
    ),
    Instrument(
        "SOL_USD",
        "SOL",
        "USD",
        Decimal("0.001"),
        Decimal("0.01"),
        Decimal("0.01"),
        Decimal("50000"),
        Decimal("100"),
        Decimal("8"),
    ),
]

# Where each demo walk starts, in units of the quote currency.
START_PRICES = {"BTC_USD": Decimal("65000"), "ETH_USD": Decimal("3200"), "SOL_USD": Decimal("150")}
DEFAULT_START_PRICE = Decimal("100")


@dataclass(frozen=True, slots=True)
class DemoCredentials:
    api_key: str
    api_secret: str


def seed_demo(store: SqlStore, now_ms: int) -> DemoCredentials:
    """Make sure the demo instruments and account exist; issue a fresh key for the banner.

    The previous banner key is revoked: its secret was printed once and is gone.
    """
    existing = {i.symbol for i in store.list_instruments(every_shard=True)}
    for inst in DEMO_INSTRUMENTS:
        if inst.symbol not in existing:
            store.add_instrument(inst, now_ms)
    if store.get_account(DEMO_ACCOUNT) is None:
        store.create_account(DEMO_ACCOUNT, "enterprise", now_ms)
    store.revoke_keys_labelled(DEMO_ACCOUNT, DEMO_KEY_LABEL, now_ms)
    key, secret = store.create_key(DEMO_ACCOUNT, now_ms, label=DEMO_KEY_LABEL)
    return DemoCredentials(key, secret)


def start_ticks(inst: Instrument) -> int:
    price = START_PRICES.get(inst.symbol, DEFAULT_START_PRICE)
    return max(1, int(price / inst.tick))
