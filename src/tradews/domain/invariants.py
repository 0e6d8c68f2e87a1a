"""The one exception for a broken invariant of trading state.

A business rule that refuses a command is a value (a :class:`~tradews.domain.orders.Reject`
code). A broken invariant is different: the state is already wrong, which only a bug can cause,
and the engine must stop rather than go on trading on it. The checks that raise this are plain
``if`` statements, not ``assert``, so that ``python -O`` keeps them.
"""

from __future__ import annotations


class InvariantViolation(Exception):
    """Trading state is, or was about to become, impossible (a bug, never bad input)."""
