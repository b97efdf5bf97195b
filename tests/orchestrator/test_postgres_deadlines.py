"""A silent database link ends a query instead of holding it: a real Postgres behind a blackhole.

resonate-pg sets no timeout, and a connection that goes silent (packets
dropped, nothing closed) held its query, and with it every request of its
worker or client, for good (chaos/README.md, "Findings").
"""

from __future__ import annotations

import time

import psycopg
import pytest

from chaos.proxy import BLACKHOLE, PASS, LinkProxy
from orchestrator.local.postgres import PrivatePostgres
from orchestrator.postgres_connection import BoundedSessions, with_connect_timeout

pytestmark = pytest.mark.anyio


def test_a_connect_timeout_is_added_unless_the_dsn_has_one() -> None:
    assert "connect_timeout=30" in with_connect_timeout("postgresql://u@h:5432/db", 30)
    assert "connect_timeout=2" in with_connect_timeout("postgresql://u@h:5432/db", 0.5)
    assert "connect_timeout=8" in with_connect_timeout("postgresql://u@h:5432/db", 7.2)
    own = "postgresql://u@h:5432/db?connect_timeout=5"
    assert with_connect_timeout(own, 30) == own


async def test_a_query_on_a_silent_link_gives_up_and_the_next_one_works(
    postgres_server: PrivatePostgres,
) -> None:
    proxy = LinkProxy("postgres", postgres_server.port)
    await proxy.start()
    dsn = postgres_server.dsn("postgres").replace(f":{postgres_server.port}/", f":{proxy.port}/")
    sessions = BoundedSessions(dsn, query_timeout=1)
    try:
        async with sessions.session() as conn:
            assert await (await conn.execute("SELECT 1")).fetchone() == (1,)
        await proxy.set_mode(BLACKHOLE)
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError, match="no answer from the database in 1s"):
            async with sessions.session() as conn:
                await conn.execute("SELECT 2")
        gave_up_after = time.monotonic() - started
        await proxy.set_mode(PASS)
        answered = await first_answer(sessions, within=30)
    finally:
        await sessions.close()
        await proxy.stop()
    # One second, then psycopg's own attempt to cancel the query (at most 10 s).
    assert gave_up_after < 15, gave_up_after
    assert answered == (3,), "the link is back: a query on a fresh connection answers"


async def first_answer(sessions: BoundedSessions, within: float) -> object:
    """The first answer to ``SELECT 3``, as the SDK would get it by sending again."""
    deadline = time.monotonic() + within
    while True:
        try:
            async with sessions.session() as conn:
                return await (await conn.execute("SELECT 3")).fetchone()
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
