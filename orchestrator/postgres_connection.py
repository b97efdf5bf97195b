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

resonate.sql answers ``promise.search`` 501. :class:`RecoveringConnection`
answers it with a query of its own over resonate.sql's ``promises`` table,
meaning what a search means on crossbank's store (``promise_store/search.py``
parses the request and makes the cursor, for both): it needs ``SELECT`` on
``resonate.promises``, which resonate.sql's ``resonate_worker`` role lacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any

import msgspec
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb
from resonate_base import PROTOCOL_VERSION, ConnectorError
from resonate_pg import PostgresConnection, PsycopgSessions
from resonate_pg.client import PgConn, PgCursor, PgNotify
from resonate_pg.connection import PROCESS_TIMEOUTS_SQL

from promise_store.search import SEARCH_KIND, Search, page_of, parse_search

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
            search = _search_envelope(req)
            if search is not None:
                return await self._search(search)
            return await super().send(req, headers)
        except ConnectorError:
            self._failed = True
            raise

    async def _search(self, envelope: dict[str, Any]) -> str:
        """Answer a ``promise.search`` envelope from ``resonate.promises`` (resonate.sql answers 501).

        One bounded query per page, the newest ``limit + 1`` matches, so it
        fails, and the SDK retries, as any other request on a lost database
        does; a role refused the table gets a 403 that says which grant it needs.
        """
        if self._stopped:
            raise ConnectorError(RuntimeError("connection has been stopped"))
        data = envelope.get("data")
        search = parse_search(data if isinstance(data, dict) else {})
        if isinstance(search, str):
            return _search_answer(envelope, 400, {"error": search})
        sql, params = search_query(search)
        try:
            async with self._sessions.session() as conn:
                rows = await (await conn.execute(sql, params)).fetchall()
        except psycopg.errors.InsufficientPrivilege as exc:
            message = (
                f"promise.search reads resonate.promises, which this role may not ({exc}); "
                "the schema's owner can GRANT SELECT ON resonate.promises TO it"
            )
            return _search_answer(envelope, 403, {"error": message})
        except Exception as exc:
            raise ConnectorError(exc) from exc
        found = [((row[8], row[0]), promise_record(row)) for row in rows]
        return _search_answer(envelope, 200, page_of(found, search.limit))

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


#: A promise as resonate.sql's ``promise_get`` shapes it (``_promise_json``), from its columns.
_PROMISE_COLUMNS = (
    "id, state, param_headers, param_data, value_headers, value_data, tags, "
    "timeout_at, created_at, settled_at"
)


def search_query(search: Search) -> tuple[str, list[Any]]:
    """The SQL and parameters for one page of ``search`` over resonate.sql's ``promises``.

    Ids compare by code point (``COLLATE "C"``), as on crossbank's store,
    whatever the database's collation. No index serves this order: each
    page sorts the matching rows (a top-N sort, bounded memory).
    """
    where: list[str] = []
    params: list[Any] = []
    if search.states is not None:
        where.append("state = ANY(%s)")
        params.append(sorted(search.states))
    if search.tags:
        where.append("tags @> %s")
        params.append(Jsonb(search.tags))
    if search.before is not None:
        created_at, promise_id = search.before
        where.append('(created_at < %s OR (created_at = %s AND id COLLATE "C" < %s))')
        params += [created_at, created_at, promise_id]
    sql = f"SELECT {_PROMISE_COLUMNS} FROM resonate.promises"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += ' ORDER BY created_at DESC, id COLLATE "C" DESC LIMIT %s'
    params.append(search.limit + 1)
    return sql, params


def promise_record(row: Sequence[Any]) -> dict[str, Any]:
    """The promise record of one row of :data:`_PROMISE_COLUMNS`, as stored (no timeout applied)."""
    promise_id, state, param_headers, param_data, value_headers, value_data = row[:6]
    tags, timeout_at, created_at, settled_at = row[6:]
    return {
        "id": promise_id,
        "state": state,
        "param": {"headers": param_headers, "data": param_data},
        "value": {"headers": value_headers, "data": value_data},
        "tags": tags,
        "timeoutAt": timeout_at,
        "createdAt": created_at,
        "settledAt": settled_at,
    }


def _search_envelope(req: str) -> dict[str, Any] | None:
    """``req`` decoded when it is a ``promise.search`` envelope; ``None`` for any other
    (those go to resonate.sql unopened, as before: a substring test first keeps them cheap)."""
    if SEARCH_KIND not in req:
        return None
    try:
        envelope = msgspec.json.decode(req)
    except msgspec.DecodeError:
        return None
    if not isinstance(envelope, dict) or envelope.get("kind") != SEARCH_KIND:
        return None
    return envelope


def _search_answer(envelope: dict[str, Any], status: int, data: dict[str, Any]) -> str:
    """The response envelope: kind and corrId echoed, as the SDK checks they are."""
    head = envelope.get("head")
    head = head if isinstance(head, dict) else {}
    answer = {
        "kind": SEARCH_KIND,
        "head": {
            "corrId": head.get("corrId"),
            "status": status,
            "version": head.get("version", PROTOCOL_VERSION),
        },
        "data": data,
    }
    return msgspec.json.encode(answer).decode()


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
