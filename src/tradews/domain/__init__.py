"""Pure, synchronous trading domain: instruments, exact money, pricing, market statistics.

Nothing in this package does I/O, reads a clock or imports asyncio; callers pass ``now``.
"""
