"""The engine lease's contract, on every backend: one holder at a time, and a holder that dies
(``kill -9`` included) leaves nothing behind."""

from __future__ import annotations

import subprocess
import sys
import time

from tradews.adapters.registry import open_lease

HOLD = """
import sys, time
from tradews.adapters.registry import open_lease
lease = open_lease(sys.argv[1])
print("held" if lease.try_acquire() else "refused", flush=True)
time.sleep(120)
"""


def test_a_second_holder_is_refused_until_the_first_releases(db_url: str) -> None:
    first, second = open_lease(db_url), open_lease(db_url)
    assert first.try_acquire()
    assert first.try_acquire()  # holding it already
    assert not second.try_acquire()
    other = open_lease(db_url, name="maintenance")  # another name is another lease
    assert other.try_acquire()
    first.release()
    assert second.try_acquire()
    assert "engine" in second.describe() or ".lock" in second.describe()
    second.release()
    other.release()


def test_the_lease_is_freed_when_its_holder_dies(db_url: str) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, db_url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        lease = open_lease(db_url)
        assert not lease.try_acquire()
        holder.kill()
        holder.wait()
        deadline = time.monotonic() + 10
        while not lease.try_acquire():
            assert time.monotonic() < deadline, "the dead holder's lease was not freed"
            time.sleep(0.05)
        lease.release()
    finally:
        holder.kill()
        holder.wait()


def test_a_holder_knows_whether_it_still_holds_the_lease(db_url: str) -> None:
    lease = open_lease(db_url)
    assert not lease.held()
    assert lease.try_acquire()
    assert lease.held()
    lease.release()
    assert not lease.held()
