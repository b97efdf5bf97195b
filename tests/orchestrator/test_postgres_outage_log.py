"""A worker on Resonate on Postgres says the database is gone once, not on every try.

While the database is down the connector (its drain every 250 ms, its pool's
reconnects) logs each failure; crossbank's logging lets the first through and
then about one every ``PG_WARN_EVERY`` seconds, like the store's own link does
for the store.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from orchestrator.local.postgres import PrivatePostgres
from orchestrator.local.supervisor import free_port, worker_process
from orchestrator.settings import Settings
from tests.postgres_available import require_postgres

#: What the pool logs on each failed reconnect (several a second at first).
RECONNECT_FAILED = "error connecting in"


@pytest.mark.timeout(120)
def test_a_database_outage_is_reported_once_then_rate_limited(tmp_path: Path) -> None:
    require_postgres()
    with PrivatePostgres(free_port(), log_path=tmp_path / "postgres.log") as server:
        dsn = server.create_database("outage")
        env = {**Settings(resonate_pg_dsn=dsn).to_env(), "LOG_LEVEL": "INFO"}
        worker = worker_process(env, log_path=tmp_path / "worker.log", name="worker")
        worker.start()
        try:
            server.kill()
            time.sleep(3.0)  # a dozen drain ticks, several pool reconnects
            server.restart()
            time.sleep(1.0)
            assert worker.running()
        finally:
            worker.stop()
    lines = (tmp_path / "worker.log").read_text().splitlines()
    failures = [line for line in lines if RECONNECT_FAILED in line]
    assert len(failures) == 1, "\n".join(failures)  # the first one, not hidden
    assert "WARNING" in failures[0]
