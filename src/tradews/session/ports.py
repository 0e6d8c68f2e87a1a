"""What a session needs from the outside world, as interfaces the adapters implement."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from typing import TYPE_CHECKING, Protocol

from tradews.api.errors import ApiError
from tradews.domain.instrument import Instrument
from tradews.engine.commands import AnyCommand
from tradews.engine.engine import Result
from tradews.engine.events import OrderUpdated, TradeExecuted

if TYPE_CHECKING:
    from tradews.session.streams import StreamRecord


class Unavailable(Exception):
    """A port cannot answer now: what is behind it (the database) is unreachable. The call may
    succeed later, so the session answers it with ENGINE_UNAVAILABLE and this message (never an
    internal error), and a login refused this way does not count as a failed one."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a logged-in connection acts for."""

    account_id: int
    account_name: str
    tier: str
    key_id: str
    expires_at: int | None  # ms since epoch, None for a key that never expires
    scopes: frozenset[str] = frozenset({"read", "trade"})  # Scope values the key may use
    allowed_networks: tuple[IPv4Network | IPv6Network, ...] = ()  # empty: any address
    plain_login: bool = True  # whether rpc.login with apiSecret is allowed for this key


class Authenticator(Protocol):
    def authenticate(self, api_key: str, api_secret: str, now_ms: int) -> Principal:
        """Plain login: return the principal of a valid key, or raise ApiError.

        Must raise INVALID_CREDENTIALS alike for an unknown key and a wrong secret, taking the
        same time for both; KEY_REVOKED / KEY_EXPIRED only once the secret has been verified.
        """
        ...

    def authenticate_signed(
        self,
        api_key: str,
        message: bytes,
        signature: str,
        now_ms: int,
        verified: Callable[[], None],
    ) -> Principal:
        """Signed login: return the principal of the key whose holder signed ``message``
        (``tradews.api.signing.login_message``) with ``signature`` (lowercase hex), or raise.

        INVALID_CREDENTIALS alike for an unknown key and a bad signature. Once the signature
        has verified, call ``verified`` (the session records the nonce there; it may raise),
        then report KEY_REVOKED / KEY_EXPIRED.
        """
        ...


class InstrumentCatalog(Protocol):
    def get(self, symbol: str) -> Instrument | None: ...

    def all(self) -> list[Instrument]: ...

    def unknown(self, symbol: str) -> str:
        """Why ``symbol`` is not traded here, for a client (another engine shard may list it)."""
        ...


class Trading(Protocol):
    """The way to the engine. ``reply`` is called once the command's effects are durable, or
    with an :class:`ApiError` when the outcome cannot be known (a gateway whose engine did not
    confirm in time, or could not be reached)."""

    def submit(self, command: AnyCommand, reply: Callable[[Result | ApiError], None]) -> bool:
        """Returns False if trading is halted (nothing was applied, ``reply`` is not called)."""
        ...

    def symbol_of(
        self, account_id: int, order_id: int | None, client_order_id: str | None
    ) -> str | None:
        """The symbol of one of the account's orders, as the engine knows it now (an order
        still being made durable included); None if there is no such order."""
        ...


class History(Protocol):
    """Durable read models: what is no longer in memory."""

    def trades_of(
        self, account_id: int, *, symbol: str | None, before: int | None, limit: int
    ) -> list[TradeExecuted]: ...

    def closed_order(
        self, account_id: int, order_id: int | None, client_order_id: str | None
    ) -> OrderUpdated | None: ...


class StreamArchive(Protocol):
    """The private streams' stored messages (``session/streams.py``), read to resume a stream
    further back than the in-memory buffer reaches."""

    def head(self, account_id: int, channel: str, upto_seq: int) -> int:
        """The last streamSeq of the stream among the records of commands up to engine seq
        ``upto_seq`` (later ones may be stored but not yet published); 0 if it has none."""
        ...

    def floor(self, account_id: int, channel: str) -> int:
        """The last streamSeq of the stream that is no longer kept (0: every one is)."""
        ...

    def read(
        self, account_id: int, channel: str, after: int, upto: int, limit: int
    ) -> list[StreamRecord]:
        """At most ``limit`` records with ``after < streamSeq <= upto``, in order."""
        ...
