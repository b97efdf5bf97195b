"""Durable Resonate promises on SQLite: embedded in-process, or served over HTTP.

See ``promise_store/README.md``. The embedded front door is
``promise_store.embedded.EmbeddedStore``; the served one is ``python -m promise_store``.
"""

from promise_store.errors import CorruptStore, StoreError, StoreFailed, StoreLocked

__all__ = ["CorruptStore", "StoreError", "StoreFailed", "StoreLocked"]
