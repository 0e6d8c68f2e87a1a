"""The API vocabulary shared by every codec: typed messages and error codes."""
