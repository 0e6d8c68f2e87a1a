"""The single writer of trading state: commands in, events out, every step sequenced.

Pure and synchronous like the domain; the asyncio runner and the SQLite journal live in
``adapters/`` and ``app/``.
"""
