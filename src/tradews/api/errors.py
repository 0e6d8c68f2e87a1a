"""Error codes of the API, and the exception that carries one.

JSON-RPC 2.0 reserves -32768..-32000. tradews uses the five standard codes from that range for
protocol errors and positive codes of its own for application errors, grouped by the thousand:

=====  ===========================  ===================================================
code   name                         meaning
=====  ===========================  ===================================================
-32700 PARSE_ERROR                  the frame is not valid JSON (reply id is null)
-32600 INVALID_REQUEST              not a JSON-RPC 2.0 request object (or an empty batch)
-32601 METHOD_NOT_FOUND             no such method
-32602 INVALID_PARAMS               params missing, of the wrong type, or malformed
-32603 INTERNAL_ERROR               a bug on the server; the message carries no details
1001   AUTH_REQUIRED                the method needs ``rpc.login`` first
1002   INVALID_CREDENTIALS          unknown API key or wrong secret (never says which)
1003   KEY_REVOKED                  the key was revoked (only said to holders of its secret)
1004   KEY_EXPIRED                  the key expired (only said to holders of its secret)
1005   TIER_NOT_ALLOWED             websocket access requires the enterprise tier
1006   ALREADY_LOGGED_IN            this connection is already logged in
1007   TOO_MANY_LOGIN_FAILURES      too many failed logins; the connection is closed
1008   PERMISSION_DENIED            the API key lacks the permission (scope) the method needs
1009   ADDRESS_NOT_ALLOWED          the API key may not be used from this address
1010   STALE_TIMESTAMP              a signed login's timestamp is outside the receive window
1011   NONCE_REUSED                 a signed login's nonce was already used
1012   PLAIN_LOGIN_DISABLED         this key (or server) accepts only signed logins
1013   SESSION_LIMIT                the API key has as many sessions open as it may
2001   UNKNOWN_SYMBOL               no listed instrument has this symbol
2002   INVALID_QUANTITY             off the lot, below the minimum or above the maximum
2003   NO_PRICE                     no reference price is available for the instrument yet
2004   UNKNOWN_SUBSCRIPTION         no such subscription on this connection
2005   SUBSCRIPTION_LIMIT           too many subscriptions on this connection
2006   UNKNOWN_CHANNEL              no such stream channel
2007   ALREADY_SUBSCRIBED           this connection already has that subscription
2008   DESK_LIMIT                   the desk cannot quote this size now (inventory or limits)
2009   RESUME_UNAVAILABLE           a private stream cannot resume from ``since``: no longer kept
3001   BATCH_TOO_LARGE              a batch holds more requests than the server accepts
3002   RATE_LIMITED                 over the rate limit; ``data.retryAfter`` says when to retry
4001   REJECTED                     the engine refused the command; ``data.reason`` says why
4002   ENGINE_UNAVAILABLE           not now, retry: trading halted, the bus or the database down
4003   ACCOUNT_FROZEN               the operator froze the account: no orders, quotes or withdrawals
=====  ===========================  ===================================================

The same table is published in ``docs/protocol.md``; a test keeps the two in step.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ErrorCode(IntEnum):
    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    AUTH_REQUIRED = 1001
    INVALID_CREDENTIALS = 1002
    KEY_REVOKED = 1003
    KEY_EXPIRED = 1004
    TIER_NOT_ALLOWED = 1005
    ALREADY_LOGGED_IN = 1006
    TOO_MANY_LOGIN_FAILURES = 1007
    PERMISSION_DENIED = 1008
    ADDRESS_NOT_ALLOWED = 1009
    STALE_TIMESTAMP = 1010
    NONCE_REUSED = 1011
    PLAIN_LOGIN_DISABLED = 1012
    SESSION_LIMIT = 1013
    UNKNOWN_SYMBOL = 2001
    INVALID_QUANTITY = 2002
    NO_PRICE = 2003
    UNKNOWN_SUBSCRIPTION = 2004
    SUBSCRIPTION_LIMIT = 2005
    UNKNOWN_CHANNEL = 2006
    ALREADY_SUBSCRIBED = 2007
    DESK_LIMIT = 2008
    RESUME_UNAVAILABLE = 2009
    BATCH_TOO_LARGE = 3001
    RATE_LIMITED = 3002
    REJECTED = 4001
    ENGINE_UNAVAILABLE = 4002
    ACCOUNT_FROZEN = 4003


_DEFAULT_MESSAGES = {
    ErrorCode.PARSE_ERROR: "Parse error",
    ErrorCode.INVALID_REQUEST: "Invalid Request",
    ErrorCode.METHOD_NOT_FOUND: "Method not found",
    ErrorCode.INVALID_PARAMS: "Invalid params",
    ErrorCode.INTERNAL_ERROR: "Internal error",
}


MAX_MESSAGE_CHARS = 200
MAX_DATA_CHARS = 400


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ApiError(Exception):
    """An error to report to the client: a stable ``code``, a human ``message``, optional ``data``.

    Raised by handlers and turned into an error response by the codec; never escapes a session.
    """

    def __init__(self, code: ErrorCode, message: str | None = None, data: Any = None) -> None:
        self.code = code
        message = message or _DEFAULT_MESSAGES.get(code, code.name.replace("_", " ").lower())
        # Bounded, whatever a message quotes: an error reply never echoes much of the input.
        self.message = _bounded(message, MAX_MESSAGE_CHARS)
        self.data = _bounded(data, MAX_DATA_CHARS) if isinstance(data, str) else data
        super().__init__(f"{int(code)} {self.message}")
