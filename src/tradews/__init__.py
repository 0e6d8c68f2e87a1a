"""tradews: a self-hosted real-time trading server speaking JSON-RPC 2.0 over WebSocket."""

__version__ = "0.1.0"
