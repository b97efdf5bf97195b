"""Whether the bank can write its ledger, as ``/health`` and a refused write report it.

SQLite says so when the ledger's disk is full or failing
(``sqlite3.OperationalError: database or disk is full``, ``disk I/O error``):
the write's transaction is rolled back, so nothing was acknowledged, and the
bank answers ``503 storage_unavailable`` with SQLite's reason instead of an
opaque 500. From then on ``/health`` answers 503 too, so a supervisor or a
load balancer stops sending writes, until the bank can write again: the next
write that succeeds, or a probe ``/health`` itself makes (a small file
written and synced next to the ledger, then removed), clears it. The bank
needs no restart when space returns.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

#: What SQLite's messages say when the storage, not the request, is the problem.
_STORAGE_MESSAGES = (
    "database or disk is full",
    "disk i/o error",
    "attempt to write a readonly database",
    "unable to open database file",
)
#: Bytes the health probe writes: enough to need a free block, small enough to be cheap.
_PROBE_BYTES = 4096


def is_storage_error(exc: BaseException) -> bool:
    """True when ``exc`` says the ledger's storage cannot be written (not a bug, not bad input)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    text = str(exc).lower()
    return any(message in text for message in _STORAGE_MESSAGES)


class StorageHealth:
    """The last storage failure of the ledger at ``ledger_path``, until a write succeeds."""

    def __init__(self, ledger_path: Path) -> None:
        self.ledger_path = ledger_path
        self._failure: str | None = None
        self._lock = threading.Lock()

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            self._failure = str(exc)

    def wrote(self) -> None:
        with self._lock:
            self._failure = None

    def failure(self) -> str | None:
        """None when the ledger can be written; else why not (probing again first)."""
        with self._lock:
            if self._failure is not None and self._probe():
                self._failure = None
            return self._failure

    def _probe(self) -> bool:
        probe = self.ledger_path.with_name(f".{self.ledger_path.name}.probe")
        try:
            with probe.open("wb") as handle:
                handle.write(b"\0" * _PROBE_BYTES)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError:
            return False
        finally:
            probe.unlink(missing_ok=True)
        return True
