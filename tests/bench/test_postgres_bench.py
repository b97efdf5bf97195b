"""The benchmarks on Resonate on Postgres run and count honestly (skipped without Postgres).

The harness's "Resonate on Postgres" row moves real transfers through a real
worker on a private Postgres, and ``bench.postgres_timeouts`` fills the
promises table in the shape resonate.sql expects, which ``resonate.gc`` then
removes entirely (a fill gc would not touch would measure nothing).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import harness, postgres_timeouts
from tests.postgres_available import require_postgres


def test_harness_moves_money_on_resonate_on_postgres(tmp_path: Path) -> None:
    require_postgres()
    out = tmp_path / "results"
    argv = ["--count", "10", "--concurrency", "2", "--warmup", "0", "--skip-recovery",
            "--systems", "Resonate on Postgres", "--workdir", str(tmp_path / "work"),
            "--out", str(out)]  # fmt: skip
    assert harness.main(argv) == 0
    raw = json.loads((out / "raw.json").read_text())
    assert raw["skipped"] == {}
    (row,) = raw["results"]
    assert row["system"] == "Resonate on Postgres"
    assert row["wrong"] == 0
    assert row["statuses"] == {"committed": 9, "compensated": 1}


def test_finished_promises_filled_in_are_all_removed_by_gc(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_postgres()
    argv = ["--promises", "300", "--repeat", "2", "--workdir", str(tmp_path)]
    assert postgres_timeouts.main(argv) == 0
    printed = capsys.readouterr().out
    assert "filled 300 finished promises" in printed
    assert "gc: removed 300 promises" in printed
    assert "; 0 left" in printed
    assert "after gc and vacuum: process_timeouts() median" in printed


def test_postgres_timeouts_refuses_a_fill_of_nothing() -> None:
    with pytest.raises(SystemExit):
        postgres_timeouts.parse_args(["--promises", "0"])
