"""Resonate on Postgres as a user meets it: the settings and databases ``crossbank`` refuses, in
one line naming ``RESONATE_PG_DSN``, the resonate.sql it will not apply, and the crash demo on it.

(The commands themselves run on Postgres in test_cli_transfers.py and test_cli_audit.py, and the
saga in test_saga_outcomes.py and test_saga_crashes.py: every test there runs on both backends.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.local.postgres import (
    PrivatePostgres,
    ResonateSqlMismatch,
    resonate_sql,
    resonate_sql_path,
)
from orchestrator.local.supervisor import ManagedProcess, free_port
from orchestrator.settings import Settings

CROSSBANK = str(Path(sys.executable).parent / "crossbank")


def crossbank(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    """The real ``crossbank`` with default settings plus ``env`` (nothing from this shell's)."""
    return subprocess.run(
        [CROSSBANK, *args],
        env={**os.environ, **Settings().to_env(), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def refusal(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a refused command printed (exit 2, nothing on stdout)."""
    assert (result.returncode, result.stdout) == (2, ""), (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_both_backends_set_is_refused() -> None:
    line = refusal(
        crossbank(
            "status",
            "t-1",
            RESONATE_URL="http://127.0.0.1:1",
            RESONATE_PG_DSN="postgresql://crossbank@127.0.0.1:1/resonate",
        )
    )
    assert "RESONATE_PG_DSN" in line
    assert "RESONATE_URL" in line


def test_a_dsn_that_is_not_a_postgres_url_is_refused() -> None:
    line = refusal(crossbank("status", "t-1", RESONATE_PG_DSN="http://127.0.0.1:1/db"))
    assert line.startswith("crossbank: error: RESONATE_PG_DSN must be a postgresql:// URL")


def test_an_unreachable_database_is_refused_without_its_password() -> None:
    dsn = f"postgresql://crossbank:sekrit@127.0.0.1:{free_port()}/resonate"
    for command in (("status", "t-1"), ("transfer", "--from", "a", "--to", "b", "--amount", "1")):
        line = refusal(crossbank(*command, RESONATE_PG_DSN=dsn))
        assert "Postgres not reachable at" in line
        assert "(RESONATE_PG_DSN)" in line
        assert "sekrit" not in line


def test_a_database_without_the_schema_is_refused(postgres_server: PrivatePostgres) -> None:
    dsn = postgres_server.create_database("no_resonate_here", with_resonate=False)
    line = refusal(crossbank("status", "t-1", RESONATE_PG_DSN=dsn))
    assert "has no Resonate schema" in line
    assert "(RESONATE_PG_DSN)" in line


def test_the_worker_refuses_a_database_without_the_schema(postgres_server: PrivatePostgres) -> None:
    dsn = postgres_server.create_database("no_resonate_for_workers", with_resonate=False)
    result = crossbank("worker", RESONATE_PG_DSN=dsn)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith("crossbank worker: the database at ")
    assert "has no Resonate schema" in result.stderr
    assert "(RESONATE_PG_DSN)" in result.stderr


def test_the_worker_waits_for_an_unreachable_database_and_says_why(tmp_path: Path) -> None:
    """Postgres may start after its workers: the worker says so and keeps trying, until SIGTERM."""
    dsn = f"postgresql://crossbank@127.0.0.1:{free_port()}/resonate"
    worker = ManagedProcess(
        "orchestrator",
        args=("worker",),
        env={**Settings().to_env(), "RESONATE_PG_DSN": dsn},
        log_path=tmp_path / "worker.log",
        name="worker",
        ready_log="Postgres not reachable at",
    )
    try:
        worker.start(timeout=30)
        assert worker.log_path is not None
        said = next(
            line for line in worker.log_path.read_text().splitlines() if "reachable" in line
        )
        assert "(RESONATE_PG_DSN): " in said
        assert said.endswith("; waiting for it")
        assert worker.running()
    finally:
        worker.stop()
    assert worker.process is not None
    assert worker.process.returncode == 0


def test_a_resonate_sql_that_is_not_the_tested_one_is_refused(tmp_path: Path) -> None:
    changed = tmp_path / "resonate.sql"
    changed.write_text(resonate_sql() + "\n-- one more line\n")
    with pytest.raises(ResonateSqlMismatch, match="RESONATE_SQL"):
        resonate_sql({"RESONATE_SQL": str(changed)})
    # The demo refuses it before starting anything, and says why.
    result = crossbank(
        "crash-demo", "--backend", "postgres", "--data", str(tmp_path / "demo"),
        RESONATE_SQL=str(changed),
    )  # fmt: skip
    assert result.returncode == 1
    assert "not" in result.stderr
    assert "RESONATE_SQL" in result.stderr


def test_the_checked_sha256_is_the_one_the_third_party_readme_names() -> None:
    """The pinned digest and the copy's README agree (the README is beside the file)."""
    readme = resonate_sql_path().parent / "README.md"
    if not readme.is_file():
        pytest.skip(f"no resonate.sql README at {readme}")
    from orchestrator.local.postgres import RESONATE_SQL_SHA256

    assert RESONATE_SQL_SHA256 in re.findall(r"[0-9a-f]{64}", readme.read_text())


def test_crash_demo_on_postgres_finishes_and_leaves_nothing_running(
    postgres_server: PrivatePostgres, tmp_path: Path
) -> None:
    """``crossbank crash-demo --backend postgres``: its own Postgres, stopped with the rest."""
    del postgres_server  # only to skip, saying why, where Postgres cannot run here
    result = crossbank(
        "crash-demo", "--backend", "postgres", "--data", str(tmp_path / "demo"), timeout=120
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    assert "each op applied exactly once" in result.stdout
    assert "audit: clean" in result.stdout
    dsn = re.search(r"postgresql://\S+", result.stdout)
    assert dsn is not None
    still = crossbank("status", "t-1", RESONATE_PG_DSN=dsn.group(0))
    assert "Postgres not reachable" in refusal(still)
