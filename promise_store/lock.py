"""An exclusive, process-lifetime lock on a journal file."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from promise_store.errors import StoreLocked


class FileLock:
    """``flock`` on ``<path>.lock``, held until :meth:`release` or process death.

    The kernel drops a ``flock`` when its holder dies, so a SIGKILLed owner never
    leaves a stale lock behind and the next process can open the store at once.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = Path(f"{path}.lock")
        self._fd: int | None = None

    def acquire(self) -> FileLock:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreLocked(str(self.path)) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
