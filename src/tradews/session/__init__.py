"""Per-connection protocol logic, sans-I/O: sessions, RFQ quote streams, market data streams.

Everything here takes ``now`` (integer milliseconds) as an argument and returns bytes to send;
the WebSocket adapter owns sockets and timers. ``C`` in the generic classes is whatever the
adapter uses to address a connection: this layer only keeps it and hands it back.
"""
