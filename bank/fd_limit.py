"""Fit the connection cap under the process's open-file limit (``RLIMIT_NOFILE``).

Every connection is a file descriptor; running out of them makes ``accept``
fail for everyone, which is exactly the lock-out the cap exists to prevent.
So the cap leaves room for the bank's own files, raising the soft limit
towards the hard one first if that is what it takes.
"""

from __future__ import annotations

import contextlib
import logging
import resource

log = logging.getLogger("bank")

#: Descriptors kept for the bank itself beyond per-thread ones: the listening
#: socket, waitress's wake-up pipe, stdio, logs, a few spare.
BASE_RESERVE = 64
#: Per worker thread: its SQLite connection's database, WAL and shared-memory files.
PER_THREAD_RESERVE = 4


def fd_reserve(threads: int) -> int:
    return BASE_RESERVE + PER_THREAD_RESERVE * threads


def fit_connection_cap(wanted: int, threads: int) -> int:
    """The cap to use: ``wanted``, or less if the descriptor limit cannot hold it."""
    reserve = fd_reserve(threads)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + reserve
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return wanted
    cap = max(1, soft - reserve)
    log.warning(
        "BANK_MAX_CONNECTIONS=%d does not fit the open-file limit %d (%d kept for the bank): "
        "using %d",
        wanted,
        soft,
        reserve,
        cap,
    )
    return cap
