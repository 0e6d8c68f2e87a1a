"""What a session needs from the outside world, as interfaces the adapters implement."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from tradews.domain.instrument import Instrument


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a logged-in connection acts for."""

    account_id: int
    account_name: str
    tier: str
    key_id: str
    expires_at: int | None  # ms since epoch, None for a key that never expires


class Authenticator(Protocol):
    def authenticate(self, api_key: str, api_secret: str, now_ms: int) -> Principal:
        """Return the principal of a valid key, or raise ApiError.

        Must raise INVALID_CREDENTIALS alike for an unknown key and a wrong secret, taking the
        same time for both; KEY_REVOKED / KEY_EXPIRED only once the secret has been verified.
        """
        ...


class InstrumentCatalog(Protocol):
    def get(self, symbol: str) -> Instrument | None: ...

    def all(self) -> list[Instrument]: ...
