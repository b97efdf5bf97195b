"""resonate-pg's connection, with timers that survive a database restart and queries that end.

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

A query that never gets an answer (a connection gone silent: packets dropped,
nothing closed) held its session for good: resonate-pg sets no timeout and
its pool hands the session out again, so one silent link stalled every
request of its client or worker (chaos/README.md, "Findings").
:class:`BoundedSessions` is resonate-pg's own ``PgSessions`` seam with a
deadline on every query: after ``query_timeout`` seconds the connection is
closed, which the pool drops, and the request fails as it would on a lost
database, so the SDK retries it on a fresh connection. A listening
connection's wait for notifications has no deadline: being quiet is its job,
and the connector's tick drains the outbox whether or not it hears.

A client that failed to reach the database while it registered for a
transfer's result (a failover, a restart) waits for that result until the
SDK's refresh loop registers again. :class:`RecoveringConnection` calls
``on_back`` once the database answers again after any failed exchange, so the
client asks at once (:func:`orchestrator.runtime.ask_again`): in a failover
under load this brought the last results from 60 s after the failover to
within seconds of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from resonate_base import ConnectorError
from resonate_pg import PostgresConnection, PsycopgSessions
from resonate_pg.client import PgConn, PgCursor, PgNotify
from resonate_pg.connection import PROCESS_TIMEOUTS_SQL

logger = logging.getLogger("resonate_pg.connection")


class RecoveringConnection(PostgresConnection):
    """A :class:`PostgresConnection` that keeps moving timers after a lost database,
    and calls ``on_back`` once the database answers again after a failure."""

    #: Awaited (in a task of its own) at the first drain that succeeds after a failure.
    on_back: Callable[[], Coroutine[Any, Any, None]] | None = None
    _failed = False
    _catching_up: asyncio.Task[None] | None = None

    async def send(self, req: str, headers: dict[str, str] | None = None) -> str:
        try:
            return await super().send(req, headers)
        except ConnectorError:
            self._failed = True
            raise

    async def _drain(self) -> None:
        try:
            await super()._drain()
        except Exception:
            self._failed = True
            raise
        if self._failed and self.on_back is not None:
            self._failed = False
            # A task, not an await: the pump must keep delivering meanwhile.
            self._catching_up = asyncio.create_task(self.on_back())

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


class BoundedSessions(PsycopgSessions):
    """resonate-pg's psycopg sessions, each query and each connect given up after a while.

    A query gets ``query_timeout`` seconds. A new connection gets libpq's
    ``connect_timeout``, set to the same (whole seconds, at least 2) unless
    ``conninfo`` sets it: the pool opens connections from a few background
    workers, and one connect that hangs keeps a worker for good, so a silent
    link that outlived them left the pool unable ever to open another.
    """

    def __init__(self, conninfo: str, *, query_timeout: float) -> None:
        super().__init__(with_connect_timeout(conninfo, query_timeout))
        self.query_timeout = query_timeout

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[PgConn]:
        async with super().session() as conn:
            yield _BoundedConn(conn, self.query_timeout)

    async def dedicated(self) -> PgConn:
        return _BoundedConn(await super().dedicated(), self.query_timeout)


def with_connect_timeout(conninfo: str, seconds: float) -> str:
    """``conninfo`` with ``connect_timeout`` set to ``seconds`` (rounded up, at least 2), unless it has one."""
    if "connect_timeout" in conninfo_to_dict(conninfo):
        return conninfo
    return make_conninfo(conninfo, connect_timeout=max(2, math.ceil(seconds)))


class _BoundedConn:
    """A connection whose ``execute`` closes it and raises once ``timeout`` seconds pass."""

    def __init__(self, conn: PgConn, timeout: float) -> None:
        self._conn = conn
        self._timeout = timeout

    async def execute(self, query: str, params: Sequence[Any] | None = None) -> PgCursor:
        try:
            async with asyncio.timeout(self._timeout):
                return await self._conn.execute(query, params)
        except TimeoutError:
            with contextlib.suppress(Exception):
                await self._conn.close()
            msg = f"no answer from the database in {self._timeout:g}s; connection closed"
            raise psycopg.OperationalError(msg) from None

    def notifies(self) -> AsyncIterator[PgNotify]:
        return self._conn.notifies()

    async def close(self) -> None:
        await self._conn.close()
