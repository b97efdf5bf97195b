"""Whether the tests on Resonate on Postgres can run here, and the one skip they share.

They skip, saying what is missing, only when no PostgreSQL binaries or no
resonate.sql can be found; a resonate.sql that is not the tested one is an
error (:class:`~orchestrator.local.postgres.ResonateSqlMismatch`), not a skip.
"""

from __future__ import annotations

import pytest

from orchestrator.local.postgres import PostgresUnavailable, postgres_bindir, resonate_sql


def skip_for_missing_postgres(exc: PostgresUnavailable) -> None:
    pytest.skip(f"Resonate on Postgres not tested: {exc}")


def require_postgres() -> None:
    """Skip the calling test unless a private Postgres with resonate.sql can be started."""
    try:
        postgres_bindir()
        resonate_sql()
    except PostgresUnavailable as exc:
        skip_for_missing_postgres(exc)
