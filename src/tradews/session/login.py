"""``rpc.login``, plain and signed: the checks and their order, and the nonce cache. Sans-I/O.

Plain login (``apiKey``, ``apiSecret``)::

    server-wide plain login off -> 1012
    key store: unknown key / wrong secret -> 1002, revoked -> 1003, expired -> 1004
    key's plain login off -> 1012     (only now: a stranger learns nothing about the key)
    address not on the key's allow-list -> 1009

Signed login (``apiKey``, ``timestamp``, ``nonce``, ``signature``)::

    malformed nonce or signature -> -32602   (before the key store: says nothing about keys)
    timestamp outside the receive window -> 1010 with data.serverTime
    key store: unknown key / bad signature -> 1002 (the same reply as a wrong secret)
    (key, nonce) already used -> 1011; else the nonce is recorded, whatever follows
    revoked -> 1003, expired -> 1004
    address not on the key's allow-list -> 1009

The session then checks the account's tier (1005).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv6Address, ip_address

from tradews.api.errors import ApiError, ErrorCode
from tradews.api.messages import LoginParams
from tradews.api.signing import NONCE, SIGNATURE, login_message
from tradews.session.ports import Authenticator, Principal

DEFAULT_WINDOW_MS = 5_000
DEFAULT_NONCES_PER_KEY = 1_000


class NonceCache:
    """Which (key, nonce) pairs were used, for as long as a replay could still be in the window.

    A login is accepted only with a timestamp within ``window_ms`` of the server's clock, so a
    message first used at ``t`` can only be replayed before ``t + 2 * window_ms``: an entry is
    forgotten after that. At most ``per_key`` entries are kept per key; a key at that cap is
    refused further signed logins (3002 with ``retryAfter``) until its entries age out, and
    stays refused until every message refused meanwhile has left the window, so that none of
    them can be replayed later. Only the key's holder can fill the cap (a nonce is recorded only
    after its signature verified), at ``per_key / (2 * window)`` logins a second.
    """

    def __init__(self, window_ms: int, per_key: int = DEFAULT_NONCES_PER_KEY) -> None:
        if window_ms <= 0 or per_key <= 0:
            raise ValueError("the window and the cap must be positive")
        self.window_ms = window_ms
        self.per_key = per_key
        self._keys: dict[str, OrderedDict[str, int]] = {}  # key -> nonce -> first used at
        self._blocked_until: dict[str, int] = {}
        self._swept_at = 0

    def __len__(self) -> int:
        return sum(len(nonces) for nonces in self._keys.values())

    def use(self, key_id: str, nonce: str, timestamp: int, now_ms: int) -> None:
        """Record a verified login's nonce; raise NONCE_REUSED if it was used before, or
        RATE_LIMITED if the key is at its cap."""
        self._sweep(now_ms)
        nonces = self._keys.get(key_id)
        if nonces is not None:
            self._forget_old(nonces, now_ms)
            if nonce in nonces:
                raise ApiError(ErrorCode.NONCE_REUSED, "this nonce was already used with this key")
        blocked = self._blocked_until.get(key_id, 0)
        full = nonces is not None and len(nonces) >= self.per_key
        if full or blocked > now_ms:
            # Refused without recording: keep the key refused until this message has left the
            # window, so it cannot be replayed once the cap has room again.
            oldest = next(iter(nonces.values())) if nonces and full else 0
            room_at = oldest + 2 * self.window_ms + 1 if full else 0
            until = max(blocked, timestamp + self.window_ms + 1, room_at)
            self._blocked_until[key_id] = until
            raise ApiError(
                ErrorCode.RATE_LIMITED,
                f"too many signed logins with this API key (at most {self.per_key} in "
                f"{2 * self.window_ms} ms)",
                {"retryAfter": max(1, until - now_ms)},
            )
        if nonces is None:
            nonces = self._keys[key_id] = OrderedDict()
        nonces[nonce] = now_ms

    def _forget_old(self, nonces: OrderedDict[str, int], now_ms: int) -> None:
        horizon = now_ms - 2 * self.window_ms
        while nonces and next(iter(nonces.values())) < horizon:
            nonces.popitem(last=False)

    def _sweep(self, now_ms: int) -> None:
        """Once per window, drop what every key no longer needs (keys that stopped logging in
        included), so memory follows recent logins only."""
        if now_ms - self._swept_at < self.window_ms:
            return
        self._swept_at = now_ms
        for key_id in list(self._keys):
            nonces = self._keys[key_id]
            self._forget_old(nonces, now_ms)
            if not nonces:
                del self._keys[key_id]
        for key_id, until in list(self._blocked_until.items()):
            if until <= now_ms:
                del self._blocked_until[key_id]


@dataclass(slots=True)
class LoginPolicy:
    """Server-wide login settings, and the nonce cache every session shares."""

    window_ms: int = DEFAULT_WINDOW_MS
    plain_login: bool = True
    nonces_per_key: int = DEFAULT_NONCES_PER_KEY
    nonces: NonceCache = field(init=False)
    # Where several processes accept logins for one store (gateways), the nonces they all
    # saw: claim(key, nonce, now_ms) records one and returns False if it was there already.
    shared: Callable[[str, str, int], bool] | None = None

    def __post_init__(self) -> None:
        self.nonces = NonceCache(self.window_ms, self.nonces_per_key)


@dataclass(frozen=True, slots=True)
class SignedProof:
    timestamp: int
    nonce: str
    signature: str


def proof_of(p: LoginParams) -> str | SignedProof:
    """The secret (plain login) or the signature (signed login) the params carry; -32602 when
    they are neither, or malformed. Nothing here looks at keys."""
    signed = {"timestamp": p.timestamp, "nonce": p.nonce, "signature": p.signature}
    given = [name for name, value in signed.items() if value is not None]
    if p.api_secret is not None:
        if given:
            raise _bad_params(
                f"give apiSecret (plain login) or timestamp, nonce and signature (signed "
                f"login), not both: got apiSecret and {', '.join(given)}"
            )
        return p.api_secret
    if not given:
        raise _bad_params(
            "give apiSecret (plain login) or timestamp, nonce and signature (signed login)"
        )
    missing = [name for name, value in signed.items() if value is None]
    if missing:
        raise _bad_params(f"a signed login needs timestamp, nonce and signature; missing: "
                          f"{', '.join(missing)}")  # fmt: skip
    assert p.timestamp is not None and p.nonce is not None and p.signature is not None
    if p.timestamp <= 0:
        raise _bad_params("timestamp must be a positive integer: milliseconds since the epoch")
    if not NONCE.fullmatch(p.nonce):
        raise _bad_params("nonce must be 8-64 characters of A-Z, a-z, 0-9, '_' and '-'")
    if not SIGNATURE.fullmatch(p.signature):
        raise _bad_params(
            "signature must be lowercase hex: 64 digits (HMAC-SHA256) or 128 (Ed25519)"
        )
    return SignedProof(p.timestamp, p.nonce, p.signature)


def authenticate(
    api_key: str,
    proof: str | SignedProof,
    keys: Authenticator,
    policy: LoginPolicy,
    peer: str | None,
    now_ms: int,
) -> Principal:
    """Run the checks of the module docstring in order; return the principal or raise."""
    if isinstance(proof, str):
        if not policy.plain_login:
            raise ApiError(ErrorCode.PLAIN_LOGIN_DISABLED, _SIGNED_ONLY + " on this server")
        principal = keys.authenticate(api_key, proof, now_ms)
        if not principal.plain_login:
            raise ApiError(ErrorCode.PLAIN_LOGIN_DISABLED, _SIGNED_ONLY + " for this API key")
    else:
        if abs(now_ms - proof.timestamp) > policy.window_ms:
            raise ApiError(
                ErrorCode.STALE_TIMESTAMP,
                f"timestamp is more than {policy.window_ms} ms away from the server's clock",
                {"serverTime": now_ms},
            )
        message = login_message(api_key, proof.timestamp, proof.nonce)

        def verified() -> None:
            policy.nonces.use(api_key, proof.nonce, proof.timestamp, now_ms)
            if policy.shared is not None and not policy.shared(api_key, proof.nonce, now_ms):
                raise ApiError(ErrorCode.NONCE_REUSED, "this nonce was already used with this key")

        principal = keys.authenticate_signed(api_key, message, proof.signature, now_ms, verified)
    if principal.allowed_networks and not _address_allowed(peer, principal):
        raise ApiError(
            ErrorCode.ADDRESS_NOT_ALLOWED, "this API key may not be used from this address"
        )
    return principal


_SIGNED_ONLY = "plain login (apiSecret) is disabled: sign the login (timestamp, nonce, signature)"


def _address_allowed(peer: str | None, principal: Principal) -> bool:
    if peer is None:
        return False
    try:
        address = ip_address(peer)
    except ValueError:
        return False
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # an IPv4 client of a dual-stack socket
    return any(address in network for network in principal.allowed_networks)


def _bad_params(message: str) -> ApiError:
    return ApiError(ErrorCode.INVALID_PARAMS, data=message)
