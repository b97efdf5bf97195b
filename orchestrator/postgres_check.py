"""Whether ``RESONATE_PG_DSN`` names a database that can serve Resonate, said in one line.

The connector (:mod:`resonate_pg`) retries a database it cannot reach forever,
by design, and a database without ``resonate.sql`` fails each request with a
missing-function error deep in the SDK. A person running the CLI wants
neither: this check answers at once, naming the setting.
"""

from __future__ import annotations

import psycopg

from orchestrator.settings import redact_dsn

#: A function ``resonate.sql`` creates and every request calls: present means the schema is there.
SCHEMA_PROBE = "SELECT to_regprocedure('resonate.resonate_rpc(jsonb)') IS NOT NULL"


class DatabaseNotReady(Exception):
    """The database cannot serve Resonate now; the message says why in one line."""


class SchemaMissing(DatabaseNotReady):
    """The database answers but has no ``resonate.sql``: waiting will not fix it."""


async def check_resonate_database(dsn: str, *, connect_timeout: float) -> None:
    """Return once the database at ``dsn`` answers and has the schema, or raise :class:`DatabaseNotReady`."""
    where = f"{redact_dsn(dsn)} (RESONATE_PG_DSN)"
    try:
        async with await psycopg.AsyncConnection.connect(
            dsn, connect_timeout=max(1, round(connect_timeout))
        ) as connection:
            cursor = await connection.execute(SCHEMA_PROBE)
            row = await cursor.fetchone()
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseNotReady(f"Postgres not reachable at {where}: {reason}") from None
    if row is None or not row[0]:
        raise SchemaMissing(
            f"the database at {where} has no Resonate schema: apply resonate.sql to it "
            "(orchestrator/README.md, 'Resonate on Postgres')"
        )
