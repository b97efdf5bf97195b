"""The exceptions a user of the promise store may need to catch."""

from __future__ import annotations


class StoreError(RuntimeError):
    """Base class for promise-store failures."""


class StoreLocked(StoreError):
    """Another process already drives this journal file.

    One journal must have exactly one writer: two in-memory states appending
    to the same file would diverge and corrupt it. Processes that need to
    share promises talk to one served store (``python -m promise_store``)
    through ``RESONATE_URL`` instead of opening the file themselves.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"the promise store at {path} is already open in another process; "
            "a journal has one owner at a time -- to share it, run the served store "
            "(python -m promise_store) and point every process at it with RESONATE_URL"
        )


class CorruptStore(StoreError):
    """The store file cannot be recovered automatically (e.g. a bad snapshot)."""


class StoreFailed(StoreError):
    """A journal write failed; the in-memory state can no longer be trusted.

    The store refuses every further request rather than answer from state that
    is not on disk, until a probe write is synced again and the state is rebuilt
    from the journal (a restart recovers the same way).
    """
