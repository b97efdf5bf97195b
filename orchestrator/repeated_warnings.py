"""Hold back a warning that repeats, so an outage is one line now and then, not one per try.

While the database is down, the Postgres connector logs a failed drain on
each 250 ms tick and its pool logs each failed reconnect. The first of each
is worth reading; the hundred after it hide everything else. Like the store
link (:mod:`orchestrator.store_network`), each warning is shown the first
time and then at most once per interval (``PG_WARN_EVERY``), with how many
like it were not shown. Warnings are told apart by logger and message
template, so a different failure is never held back by an earlier one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

#: The loggers of the Postgres connector and of its connection pool.
POSTGRES_LOGGERS = ("resonate_pg.connection", "psycopg.pool")


class RepeatedWarnings(logging.Filter):
    """Lets a warning through the first time, then once every ``every`` seconds."""

    def __init__(self, every: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        if every <= 0:
            raise ValueError(f"every must be positive, got {every}")
        self.every = every
        self._clock = clock
        #: (logger, template) -> [when last shown, how many held back since].
        self._last: dict[tuple[str, str], list[float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, str(record.msg))
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last[0] < self.every:
            last[1] += 1
            return False
        if last is not None and last[1]:
            record.msg = (
                f"{record.msg} ({int(last[1])} more like it in the last "
                f"{now - last[0]:.0f}s not shown)"
            )
        self._last[key] = [now, 0]
        return True


def limit_repeated_warnings(every: float, loggers: Iterable[str] = POSTGRES_LOGGERS) -> None:
    """Install one :class:`RepeatedWarnings` on each of ``loggers`` (replacing an earlier one)."""
    for name in loggers:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, RepeatedWarnings)]:
            logger.removeFilter(old)
        logger.addFilter(RepeatedWarnings(every))
