"""Wire codecs: bytes on a WebSocket frame <-> the API vocabulary. Pure, no I/O."""
