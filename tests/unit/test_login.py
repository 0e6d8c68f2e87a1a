"""rpc.login's checks and their order, and the nonce cache, with a fake clock and key store."""

from __future__ import annotations

import json
from collections.abc import Callable
from ipaddress import ip_network
from typing import Any

import pytest

from tests.unit.test_session import make_services
from tradews.api import signing
from tradews.api.errors import ApiError, ErrorCode
from tradews.session.login import LoginPolicy, NonceCache
from tradews.session.ports import Principal
from tradews.session.session import Session, SessionState

SECRET = "s3cret-s3cret-s3cret"
NOW = 1_763_779_226_123


class Keys:
    """A key store with one HMAC key ``k`` (scopes and networks to taste); records lookups."""

    def __init__(self, **principal: Any) -> None:
        self.principal = Principal(1, "acme", "enterprise", "k", None, **principal)
        self.lookups = 0

    def authenticate(self, api_key: str, api_secret: str, now_ms: int) -> Principal:
        self.lookups += 1
        if (api_key, api_secret) != ("k", SECRET):
            raise ApiError(ErrorCode.INVALID_CREDENTIALS, "invalid API key or secret")
        return self.principal

    def authenticate_signed(
        self, api_key: str, message: bytes, signature: str, now_ms: int,
        verified: Callable[[], None],
    ) -> Principal:  # fmt: skip
        self.lookups += 1
        if api_key != "k" or not signing.verify_hmac(SECRET, message, signature):
            raise ApiError(ErrorCode.INVALID_CREDENTIALS, "invalid API key or secret")
        verified()
        return self.principal


def session(keys: Keys, policy: LoginPolicy | None = None, peer: str = "127.0.0.1") -> Session[str]:
    services = make_services()
    services.authenticator = keys
    if policy is not None:
        services.login = policy
    return Session(services, "conn", peer=peer)


def signed(
    ts: int = NOW, nonce: str = "nonce-0001", key: str = "k", secret: str = SECRET
) -> dict[str, Any]:
    sig = signing.hmac_signature(secret, signing.login_message(key, ts, nonce))
    return {"apiKey": key, "timestamp": ts, "nonce": nonce, "signature": sig}


def login(s: Session[str], params: dict[str, Any], now: int = NOW) -> Any:
    msg = {"jsonrpc": "2.0", "method": "rpc.login", "id": 1, "params": params}
    (reply,) = s.receive(json.dumps(msg).encode(), now)
    return json.loads(reply)


def error(reply: Any) -> tuple[int, Any]:
    return reply["error"]["code"], reply["error"].get("data")


def test_signed_login_logs_in_and_a_replay_is_refused() -> None:
    keys = Keys()
    policy = LoginPolicy()
    assert login(session(keys, policy), signed())["result"] is True
    assert error(login(session(keys, policy), signed(), NOW + 1000))[0] == 1011
    assert login(session(keys, policy), signed(nonce="nonce-0002"), NOW + 1000)["result"] is True


def test_the_window_is_checked_before_the_key_store() -> None:
    keys = Keys()
    s = session(keys)
    for ts in (NOW - 5_001, NOW + 5_001):
        assert error(login(s, signed(ts))) == (1010, {"serverTime": NOW})
    assert keys.lookups == 0
    assert login(s, signed(NOW - 5_000))["result"] is True  # the edge is inside


@pytest.mark.parametrize(
    "params, says",
    [({"apiKey": "k"}, "give apiSecret"),
     ({"apiKey": "k", "apiSecret": SECRET, "nonce": "nonce-0001"}, "not both"),
     ({"apiKey": "k", "timestamp": NOW, "nonce": "nonce-0001"}, "missing: signature"),
     ({**signed(), "nonce": "bad nonce!"}, "nonce must be"),
     ({**signed(), "nonce": "short"}, "nonce must be"),
     ({**signed(), "signature": "AB" * 32}, "signature must be lowercase hex"),
     ({**signed(), "timestamp": -1}, "timestamp must be a positive"),
     ({**signed(), "timestamp": "1763779226123"}, "Expected `int")],
)  # fmt: skip
def test_malformed_params_are_invalid_params_and_not_failures(params: Any, says: str) -> None:
    keys = Keys()
    s = session(keys)
    for _ in range(6):
        code, data = error(login(s, params))
        assert code == -32602 and says in data
    assert keys.lookups == 0 and s.close_reason is None


def test_a_bad_signature_is_a_wrong_secret_and_counts_as_a_failure() -> None:
    keys = Keys()
    s = session(keys)
    wrong_secret = login(s, {"apiKey": "k", "apiSecret": "nope"})["error"]
    bad_signature = login(s, signed(secret="nope"))["error"]
    assert wrong_secret == bad_signature
    assert bad_signature["code"] == 1002
    codes = [error(login(s, signed(nonce=f"nonce-{i:04}", secret="x")))[0] for i in range(3)]
    assert codes == [1002, 1002, 1007] and s.close_reason == "too many failed logins"


def test_the_nonce_is_recorded_once_verified_even_if_the_login_fails_later() -> None:
    keys = Keys(allowed_networks=(ip_network("10.0.0.0/8"),))
    policy = LoginPolicy()
    assert error(login(session(keys, policy), signed()))[0] == 1009
    # The same signed message from an allowed address: a replay, refused.
    assert error(login(session(keys, policy, peer="10.1.2.3"), signed()))[0] == 1011
    # A nonce whose signature did not verify is not recorded.
    assert error(login(session(keys, policy), signed(nonce="nonce-0009", secret="x")))[0] == 1002
    good = signed(nonce="nonce-0009")
    assert login(session(keys, policy, peer="10.9.9.9"), good)["result"] is True


@pytest.mark.parametrize(
    "peer, allowed",
    [("10.1.2.3", True), ("11.0.0.1", False), ("::ffff:10.0.0.7", True), ("2001:db8::1", True),
     ("2001:db9::1", False), (None, False), ("not-an-address", False)],
)  # fmt: skip
def test_allow_lists(peer: str | None, allowed: bool) -> None:
    keys = Keys(allowed_networks=(ip_network("10.0.0.0/8"), ip_network("2001:db8::/32")))
    services = make_services()
    services.authenticator = keys
    s = Session(services, "conn", peer=peer)
    reply = login(s, {"apiKey": "k", "apiSecret": SECRET})
    assert reply.get("result") is True if allowed else error(reply)[0] == 1009


def test_plain_login_off_per_key_is_said_only_to_holders_of_the_secret() -> None:
    keys = Keys(plain_login=False)
    s = session(keys)
    assert error(login(s, {"apiKey": "k", "apiSecret": "guess"}))[0] == 1002
    reply = login(s, {"apiKey": "k", "apiSecret": SECRET})
    assert error(reply)[0] == 1012 and "for this API key" in reply["error"]["message"]
    assert login(s, signed())["result"] is True


def test_plain_login_off_server_wide() -> None:
    keys = Keys()
    s = session(keys, LoginPolicy(plain_login=False))
    reply = login(s, {"apiKey": "k", "apiSecret": SECRET})
    assert error(reply)[0] == 1012 and "on this server" in reply["error"]["message"]
    assert keys.lookups == 0
    assert login(s, signed())["result"] is True


def call(s: Session[str], method: str, params: Any = None) -> Any:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": 2}
    if params is not None:
        msg["params"] = params
    return json.loads(s.receive(json.dumps(msg).encode(), NOW)[0])


def test_scopes_are_checked_for_every_method_in_dispatch() -> None:
    s = session(Keys(scopes=frozenset({"read"})))
    assert login(s, signed())["result"] is True and s.state is SessionState.AUTHENTICATED
    assert isinstance(call(s, "balances")["result"], list)
    for method, params in [("order_place", {"symbol": "BTC_USD", "side": "buy", "type": "market",
                                            "quantity": "1"}),
                           ("order_cancel_all", None), ("quote_accept", {"quoteId": "x",
                                                                          "side": "buy"})]:  # fmt: skip
        err = call(s, method, params)["error"]
        assert err["code"] == 1008 and "'trade' permission" in err["message"], method
    s = session(Keys(scopes=frozenset({"trade"})))
    login(s, signed())
    err = call(s, "balances")["error"]
    assert err["code"] == 1008 and "'read' permission" in err["message"]
    assert "result" in call(s, "time")  # methods without login need no scope


# The nonce cache on its own -------------------------------------------------------------------


def test_nonces_are_forgotten_after_twice_the_window() -> None:
    cache = NonceCache(window_ms=5_000)
    cache.use("k", "n1", NOW, NOW)
    with pytest.raises(ApiError) as info:
        cache.use("k", "n1", NOW, NOW + 10_000)  # still remembered at exactly 2 x window
    assert info.value.code is ErrorCode.NONCE_REUSED
    cache.use("k", "n2", NOW, NOW + 10_000)
    cache.use("k", "n1", NOW + 10_001, NOW + 10_001)  # forgotten: its message is long stale
    assert len(cache) == 2  # n2 and the new n1


def test_idle_keys_are_swept() -> None:
    cache = NonceCache(window_ms=1_000)
    for i in range(100):
        cache.use(f"key-{i}", "nonce", NOW, NOW)
    assert len(cache) == 100
    cache.use("other", "nonce", NOW + 2_001, NOW + 2_001)
    assert len(cache) == 1


def test_a_key_at_its_cap_is_refused_until_nothing_refused_can_be_replayed() -> None:
    cache = NonceCache(window_ms=1_000, per_key=3)
    for i in range(3):
        cache.use("k", f"n{i}", NOW + i, NOW + i)
    with pytest.raises(ApiError) as info:
        cache.use("k", "n3", NOW + 900, NOW + 10)  # timestamp ahead of the clock, in window
    assert info.value.code is ErrorCode.RATE_LIMITED
    # Room comes at NOW + 2001 (n0 ages out), but the refused message is valid until NOW + 1900.
    assert info.value.data == {"retryAfter": 2_001 - 10}
    cache.use("other", "n0", NOW, NOW + 10)  # other keys are not affected
    cache.use("k", "n4", NOW + 2_001, NOW + 2_001)  # after retryAfter: n0 has aged out
    with pytest.raises(ApiError) as info:  # still a replay check first
        cache.use("k", "n4", NOW + 2_001, NOW + 2_002)
    assert info.value.code is ErrorCode.NONCE_REUSED


def test_a_refused_message_stays_refused_past_the_cap() -> None:
    cache = NonceCache(window_ms=1_000, per_key=1)
    cache.use("k", "n0", NOW, NOW)
    with pytest.raises(ApiError) as info:  # valid until NOW + 1500 + 1000
        cache.use("k", "n1", NOW + 1_500, NOW + 600)
    assert info.value.data == {"retryAfter": 2_501 - 600}
    with pytest.raises(ApiError):  # room at NOW + 2001, but n1 could still be replayed
        cache.use("k", "n1", NOW + 1_500, NOW + 2_400)
    cache.use("k", "n1", NOW + 1_500, NOW + 2_501)  # only a fresh message gets here in fact


def test_every_refusal_at_the_cap_extends_the_wait_to_its_own_message() -> None:
    cache = NonceCache(window_ms=1_000, per_key=1)
    cache.use("k", "n0", NOW, NOW)
    with pytest.raises(ApiError):
        cache.use("k", "n1", NOW + 500, NOW + 500)  # refused: valid until NOW + 1500
    with pytest.raises(ApiError) as info:
        cache.use("k", "n2", NOW + 1_900, NOW + 1_900)  # refused: valid until NOW + 2900
    assert info.value.data == {"retryAfter": 2_901 - 1_900}
    cache.use("k", "n3", NOW + 2_901, NOW + 2_901)
