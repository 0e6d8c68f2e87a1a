"""One engine per database: an exclusive lock file beside it, held for the process's life.

The operating system releases the lock when the process dies, ``kill -9`` included, so a crash
never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class LockHeld(Exception):
    pass


class ProcessLock:
    def __init__(self, db_path: Path) -> None:
        self.path = db_path.with_name(db_path.name + ".lock")
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._fd is not None:  # held already (a second flock here would refuse us)
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def acquire(self) -> None:
        if not self.try_acquire():
            raise LockHeld(f"another tradews engine is using {self.path.with_suffix('')}")

    def held(self) -> bool:
        """Whether we hold the lock: nothing but a release takes a held flock away."""
        return self._fd is not None

    def describe(self) -> str:
        return f"the lock file {self.path}"

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
