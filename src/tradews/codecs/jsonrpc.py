"""JSON-RPC 2.0 framing, to the letter of the specification (https://www.jsonrpc.org/specification).

:func:`parse_frame` turns the bytes of one text frame into a :class:`Frame`: a single call, a
batch of calls, or an error that must be answered on its own (a parse error, an empty batch).
Each :class:`Call` keeps its ``params`` undecoded (``msgspec.Raw``) so the session decodes them
straight into the method's typed params struct, with error paths like ``$.symbol``.

Rules implemented here, each covered by a test:

- invalid JSON -> -32700 with ``id: null``; an empty array -> a single -32600;
- a batch element that is not a request -> -32600 for that element, the rest still run;
- ``id`` absent means a notification: it runs and gets no reply, errors included;
- ids are echoed with their JSON type (string, integer, fractional number or null).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from tradews.api.errors import ApiError, ErrorCode
from tradews.api.messages import RateBudget
from tradews.codecs.base import Call, Frame, Id, Invalid
from tradews.codecs.push import Push


class _Request(msgspec.Struct, frozen=True):
    jsonrpc: str
    method: Annotated[str, msgspec.Meta(max_length=64)]
    params: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    id: Id | msgspec.UnsetType = msgspec.UNSET


class _IdOnly(msgspec.Struct):
    id: Any = None


_request_decoder = msgspec.json.Decoder(_Request)
_batch_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_id_decoder = msgspec.json.Decoder(_IdOnly)


def _parse_one(data: bytes | msgspec.Raw) -> Call | Invalid:
    try:
        req = _request_decoder.decode(data)
    except msgspec.ValidationError as exc:
        return Invalid(ApiError(ErrorCode.INVALID_REQUEST, data=str(exc)), _salvage_id(data))
    except msgspec.DecodeError:
        return Invalid(ApiError(ErrorCode.PARSE_ERROR))
    if req.jsonrpc != "2.0":
        return Invalid(
            ApiError(ErrorCode.INVALID_REQUEST, data='"jsonrpc" must be exactly "2.0"'),
            None if isinstance(req.id, msgspec.UnsetType) else req.id,
        )
    request_id = None if isinstance(req.id, msgspec.UnsetType) else req.id
    params = None if isinstance(req.params, msgspec.UnsetType) else req.params
    if params is not None and bytes(params).lstrip()[:1] not in (b"{", b"["):
        return Invalid(
            ApiError(ErrorCode.INVALID_REQUEST, data='"params" must be an object or an array'),
            request_id,
        )
    return Call(req.method, params, request_id, isinstance(req.id, msgspec.UnsetType))


def _salvage_id(data: bytes | msgspec.Raw) -> Id:
    """Echo the id of an invalid request when it can be read and is of a valid type."""
    try:
        value = _id_decoder.decode(data).id
    except msgspec.DecodeError:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    return value


def parse_frame(data: bytes, *, max_batch: int) -> Frame:
    """Parse one text frame. Never raises: every problem becomes an error to send back."""
    try:
        return _parse_frame(data, max_batch)
    except RecursionError:  # msgspec's guard against JSON nested thousands of levels deep
        error = ApiError(ErrorCode.PARSE_ERROR, data="JSON nested too deeply")
    except UnicodeDecodeError:  # the adapter refuses such text frames (1007) before this
        error = ApiError(ErrorCode.PARSE_ERROR, data="not UTF-8")
    return Frame([], data.lstrip()[:1] == b"[", error)


def _parse_frame(data: bytes, max_batch: int) -> Frame:
    stripped = data.lstrip()
    if stripped[:1] == b"[":
        try:
            elements = _batch_decoder.decode(data)
        except msgspec.DecodeError:
            return Frame([], True, ApiError(ErrorCode.PARSE_ERROR))
        if not elements:
            return Frame([], True, ApiError(ErrorCode.INVALID_REQUEST, data="empty batch"))
        if len(elements) > max_batch:
            return Frame(
                [],
                True,
                ApiError(
                    ErrorCode.BATCH_TOO_LARGE,
                    f"a batch may hold at most {max_batch} requests, got {len(elements)}",
                ),
            )
        return Frame([_parse_one(e) for e in elements], True)
    item = _parse_one(data)
    if isinstance(item, Invalid) and item.error.code == ErrorCode.PARSE_ERROR:
        return Frame([], False, item.error)
    return Frame([item], False)


# Encoding ------------------------------------------------------------------------------------


class _Result(msgspec.Struct, omit_defaults=True, rename={"rate_limit": "rateLimit"}):
    jsonrpc: str
    result: Any
    id: Id
    # Only for clients that asked for it (see docs/protocol.md, rate limits).
    rate_limit: RateBudget | None = None


class _ErrorBody(msgspec.Struct, omit_defaults=True):
    code: int
    message: str
    data: Any = None


class _Error(msgspec.Struct, omit_defaults=True, rename={"rate_limit": "rateLimit"}):
    jsonrpc: str
    error: _ErrorBody
    id: Id
    rate_limit: RateBudget | None = None


class _Notification(msgspec.Struct):
    jsonrpc: str
    method: str
    params: Any


_encoder = msgspec.json.Encoder(decimal_format="string")


def result(id: Id, value: Any) -> _Result:
    return _Result("2.0", value, id)


def error(id: Id, err: ApiError) -> _Error:
    return _Error("2.0", _ErrorBody(int(err.code), err.message, err.data), id)


def encode_notification(method: str, params: Any) -> bytes:
    return _encoder.encode(_Notification("2.0", method, params))


def _encode_push(push: Push) -> bytes:
    return _encoder.encode(_Notification("2.0", push.kind, push.body))


class JsonRpcCodec:
    """JSON-RPC 2.0 in text frames (the default, and the published encoding)."""

    name = "json"
    binary = False

    def decode(self, data: bytes, *, max_batch: int) -> Frame:
        return parse_frame(data, max_batch=max_batch)

    def result(self, call: Call, value: Any) -> Any:
        return result(call.id, value)

    def error(self, call_id: Id, err: ApiError) -> Any:
        return error(call_id, err)

    def with_budget(self, reply: Any, budget: Any) -> Any:
        return msgspec.structs.replace(reply, rate_limit=budget)

    def pack(self, replies: list[Any], is_batch: bool) -> bytes:
        return _encoder.encode(replies if is_batch else replies[0])

    def push(self, push: Push) -> bytes:
        return push.encoded("json", _encode_push)


JSON = JsonRpcCodec()
