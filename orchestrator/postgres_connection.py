"""resonate-pg's connection, with timers that survive a database restart.

Timers on Resonate on Postgres (lease expiry, retries, timeouts) move only
when something calls ``resonate.process_timeouts()``; the connector does it
on each wake, and stops for good on its first failure, meant for the
least-privilege role that may not call it. A database restart fails that call
too: every worker and client that lived through it then leaves timers alone,
and a task whose release failed while the database was down stays leased
forever (the chaos campaign's ``kill_postgres`` found transfers that never
finished). Here only a refusal (no privilege) stops the driving; any other
failure skips that wake and the next one tries again. Written for
resonate-pg 0.8.0 (pinned), whose hook this overrides.
"""

from __future__ import annotations

import logging

import psycopg
from resonate_pg import PostgresConnection
from resonate_pg.connection import PROCESS_TIMEOUTS_SQL

logger = logging.getLogger("resonate_pg.connection")


class TimerKeepingConnection(PostgresConnection):
    """A :class:`PostgresConnection` that keeps moving timers after a lost database."""

    async def _fire_timers(self) -> None:
        if not self._drive_timers:
            return
        try:
            async with self._sessions.session() as conn:
                await conn.execute(PROCESS_TIMEOUTS_SQL)
        except psycopg.errors.InsufficientPrivilege as exc:
            self._drive_timers = False
            logger.warning(
                "resonate.process_timeouts() refused, leaving timers to pg_cron: %s", exc
            )
        except Exception as exc:  # the database is away: try again on the next wake
            logger.warning("resonate.process_timeouts() failed, trying again: %s", exc)
