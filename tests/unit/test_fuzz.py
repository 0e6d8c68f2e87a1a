"""Property-based fuzzing of both codecs and the session: random and mutated frames get only
documented errors, a reply whenever one is owed, and never an exception or an internal error.

Mutations start from a valid request for every method (so the fuzzer reaches the params
decoding and the handlers, not only the envelope) and flip, insert, delete, repeat or cut bytes.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.test_session import make_services
from tradews.api.errors import ErrorCode
from tradews.codecs import protobuf as pbc
from tradews.codecs.jsonrpc import JSON
from tradews.codecs.pb import tradews_pb2 as pb
from tradews.codecs.protobuf import PROTOBUF
from tradews.session.session import METHODS, Session

DOCUMENTED = {int(c) for c in ErrorCode} - {int(ErrorCode.INTERNAL_ERROR)}

# One valid call per method; the fuzzer starts from these.
VALID: dict[str, dict[str, Any]] = {
    "rpc.login": {"apiKey": "k", "apiSecret": "s"},
    "time": {},
    "rpc.discover": {},
    "instruments": {},
    "quote_request": {"symbol": "BTC_USD", "type": "RFQ", "quantity": "0.5"},
    "quote_cancel": {"subscription": "q1"},
    "quote_accept": {"quoteId": "abc-1", "side": "buy"},
    "market_data_request": {},
    "market_data_cancel": {},
    "order_place": {
        "symbol": "ETH_USD",
        "side": "sell",
        "type": "limit",
        "quantity": "1.000",
        "price": "3000.00",
        "timeInForce": "IOC",
        "postOnly": False,
        "clientOrderId": "c-1",
    },  # fmt: skip
    "order_cancel": {"orderId": 7},
    "order_cancel_all": {"symbol": "BTC_USD"},
    "order_amend": {"clientOrderId": "c-1", "price": "3001.00"},
    "order_status": {"orderId": 7},
    "orders_open": {},
    "balances": {},
    "trades": {"limit": 10},
    "subscribe": {"channel": "book.BTC_USD", "depth": 10},
    "unsubscribe": {"channel": "book.BTC_USD"},
    "cancel_on_disconnect": {"enabled": True},
    "cancel_all_after": {"timeoutMs": 5000},
    "rpc.logout": {},
}


def test_every_method_has_a_fuzzing_seed() -> None:
    assert set(VALID) >= set(METHODS)


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["١", "１", "1_0", " 1", "NaN", "-0", "1e999999", "", "\x00", "BTC_USD"])
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def json_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A valid request for some method, some of whose params are replaced by anything."""
    method = draw(st.sampled_from(sorted(VALID)))
    params = dict(VALID[method])
    for name in draw(st.lists(st.sampled_from([*params, "extra"]), max_size=3)):
        params[name] = draw(values)
    request: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    if draw(st.booleans()) or method == "rpc.login":
        request["id"] = draw(st.integers(0, 1000) | st.text(max_size=4))
    return request


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with a few byte-level mutations."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        if not buf:
            buf.extend(draw(st.binary(min_size=1, max_size=8)))
            continue
        at = draw(st.integers(0, len(buf) - 1))
        kind = draw(st.sampled_from(["flip", "insert", "delete", "repeat", "cut"]))
        if kind == "flip":
            buf[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            buf[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del buf[at : at + draw(st.integers(1, 8))]
        elif kind == "repeat":
            buf[at:at] = buf[at : at + draw(st.integers(1, 16))]
        else:
            del buf[at:]
    return bytes(buf)


def json_frames() -> st.SearchStrategy[bytes]:
    encoded = json_requests().map(lambda r: json.dumps(r).encode())
    batches = st.lists(json_requests(), min_size=1, max_size=5).map(
        lambda r: json.dumps(r).encode()
    )
    return st.one_of(
        encoded,
        batches,
        encoded.flatmap(mutated),
        batches.flatmap(mutated),
        st.binary(max_size=80),
    )


def owes_a_reply(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False  # never reaches a session: the adapter closes the connection (1007)
    try:
        request = json.loads(data)
    except ValueError:
        return True
    if isinstance(request, dict):
        return "id" in request
    if isinstance(request, list):
        return not request or any(not isinstance(r, dict) or "id" in r for r in request)
    return True


def logged_in(codec: Any = None) -> tuple[Session[str], list[bytes]]:
    """A logged-in session, and the list its later replies (those sent once durable, or after
    other replies, like ``rpc.logout``'s) are appended to."""
    later: list[bytes] = []
    session: Session[str] = Session(make_services(), "c", later.append, codec or JSON)
    if codec is not None:
        data = pbc.request_message("rpc.login", VALID["rpc.login"], 1).SerializeToString()
    else:
        login = {"jsonrpc": "2.0", "method": "rpc.login", "params": VALID["rpc.login"], "id": 0}
        data = json.dumps(login).encode()
    session.receive(data, 1_000)
    return session, later


FUZZ = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(json_frames())
def test_json_frames_get_documented_answers(data: bytes) -> None:
    session, later = logged_in()
    frames = session.receive(data, 5_000) + later
    if owes_a_reply(data) and not session.closing:
        assert frames, "only notifications go unanswered"
    for frame in frames:
        message = json.loads(frame)
        for item in message if isinstance(message, list) else [message]:
            assert item["jsonrpc"] == "2.0"
            if "error" in item:
                assert item["error"]["code"] in DOCUMENTED, item
                assert "id" in item, "an error response always has an id (null if unknown)"
                assert len(frame) < 4000 or "result" in frame.decode(), "an error echoes input"
            else:
                assert "result" in item or "method" in item


def proto_frames() -> st.SearchStrategy[bytes]:
    def encode(request: dict[str, Any]) -> bytes:
        try:
            params = request["params"] if isinstance(request["params"], dict) else {}
            message = pbc.request_message(request["method"], params, 5)
        except (pbc.NotInProtobuf, TypeError, ValueError, OverflowError, AttributeError):
            return b""
        return bytes(message.SerializeToString())

    valid = json_requests().map(encode)
    return st.one_of(valid, valid.flatmap(mutated), st.binary(max_size=80))


@FUZZ
@given(proto_frames())
def test_protobuf_frames_get_documented_answers(data: bytes) -> None:
    session, later = logged_in(PROTOBUF)
    frames = session.receive(data, 5_000) + later
    if not session.closing:
        assert frames, "every protobuf frame is answered"
    for frame in frames:
        message = pb.ServerMessage.FromString(frame)
        if message.WhichOneof("payload") == "error":
            assert message.error.code in DOCUMENTED, message


@settings(max_examples=200, deadline=None)
@given(st.lists(json_frames(), min_size=2, max_size=6))
def test_a_sequence_of_bad_frames_never_breaks_a_session(frames: list[bytes]) -> None:
    """State carries over between frames (subscriptions, login failures): still no fault."""
    session, later = logged_in()
    for data in frames:
        out_frames = session.receive(data, 5_000) + later
        later.clear()
        for out in out_frames:
            message = json.loads(out)
            for item in message if isinstance(message, list) else [message]:
                if "error" in item:
                    assert item["error"]["code"] in DOCUMENTED, item
    session.close()
