"""Timers on Resonate on Postgres keep moving after the database was away, stop only when refused.

Before, the connector stopped calling ``resonate.process_timeouts()`` for good
on any failure, a database restart included: after ``kill_postgres`` no
process moved timers and a task whose release had failed stayed leased
forever (transfers that never finished in the chaos campaign).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from orchestrator.postgres_connection import RecoveringConnection

pytestmark = pytest.mark.anyio


class Sessions:
    """Sessions whose first ``failures`` fail with the given error, then run statements."""

    def __init__(self, error: Exception, failures: int) -> None:
        self.error = error
        self.failures = failures
        self.executed: list[str] = []

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Any]:
        if self.failures:
            self.failures -= 1
            raise self.error
        yield self

    async def execute(self, sql: str, *args: object) -> None:
        self.executed.append(sql)

    async def dedicated(self) -> Any:
        raise NotImplementedError

    async def close(self) -> None:
        return None


async def fire_timers(connection: RecoveringConnection, times: int) -> None:
    for _ in range(times):
        await connection._fire_timers()


async def test_timers_keep_moving_after_the_database_was_away() -> None:
    sessions = Sessions(psycopg.OperationalError("server closed the connection"), failures=3)
    connection = RecoveringConnection(sessions=sessions, pid="p", group="g")
    await fire_timers(connection, 5)
    assert sessions.executed == ["SELECT resonate.process_timeouts()"] * 2


async def test_a_role_that_may_not_move_timers_stops_trying() -> None:
    refused = psycopg.errors.InsufficientPrivilege("permission denied for function")
    sessions = Sessions(refused, failures=1)
    connection = RecoveringConnection(sessions=sessions, pid="p", group="g")
    await fire_timers(connection, 3)
    assert sessions.executed == []
