"""All I/O lives here: the WebSocket server, storage, clocks."""
