"""The benchmark harness measures real transfers and refuses to count wrong ones.

Runs the harness end to end (two real banks, the baseline and crossbank's
embedded store) with a handful of transfers, and checks the pure parts the
figures rest on: the workload plan and the percentile.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from bench import harness, process_cpu
from bench.driver import machine_busy_seconds
from bench.stats import Sample, percentile, summarize
from bench.workload import CLOSED_ACCOUNT, plan_transfers


def test_plan_is_deterministic_unique_and_reverses_one_in_ten() -> None:
    specs = plan_transfers("run", 100)
    assert specs == plan_transfers("run", 100)
    assert len({s.transfer_id for s in specs}) == 100
    compensated = [s for s in specs if s.expected_status == "compensated"]
    assert len(compensated) == 10
    assert all(s.target_account == CLOSED_ACCOUNT for s in compensated)
    assert specs[0].debit_op == "run-000000-debit"


def test_plan_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="count"):
        plan_transfers("run", 0)
    with pytest.raises(ValueError, match="prefix"):
        plan_transfers("a/b", 1)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([7.0], 0.99) == 7.0


def test_wrong_outcomes_do_not_count_as_throughput() -> None:
    samples = [Sample("a", "committed", 0.1), Sample("b", "committed", 0.1)]
    stats = summarize("x", 1, samples, 1.0, {"a": "committed", "b": "compensated"})
    assert stats.wrong == 1
    assert stats.throughput == 1.0


def test_busy_cpu_counts_user_nice_system_irq_softirq_only(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    #                 user nice system idle iowait irq softirq steal
    stat.write_text("cpu  400  100  200    9000 50     20  30      70 0 0\ncpu0 1 2 3\n")
    assert machine_busy_seconds(stat) == pytest.approx(750 / os.sysconf("SC_CLK_TCK"))
    assert machine_busy_seconds(tmp_path / "missing") is None
    stat.write_text("not a stat file\n")
    assert machine_busy_seconds(stat) is None


def test_harness_runs_baseline_and_embedded_crossbank(tmp_path: Path) -> None:
    out = tmp_path / "results"
    code = harness.main(
        [
            "--count",
            "10",
            "--concurrency",
            "1,4",
            "--warmup",
            "0",
            "--systems",
            "baseline",
            "crossbank embedded",
            "--skip-recovery",
            "--workdir",
            str(tmp_path / "work"),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    raw = json.loads((out / "raw.json").read_text())
    assert raw["skipped"] == {}
    rows = {(r["system"], r["concurrency"]): r for r in raw["results"]}
    assert set(rows) == {
        ("baseline (no durability)", 1),
        ("baseline (no durability)", 4),
        ("crossbank embedded", 1),
        ("crossbank embedded", 4),
    }
    for row in rows.values():
        assert row["wrong"] == 0
        assert row["statuses"] == {"committed": 9, "compensated": 1}
        assert row["throughput"] > 0
        assert row["cpu_ms"] > 0  # the transfers kept the machine busy
    table = (out / "results.md").read_text()
    assert "| crossbank embedded | 4 |" in table


def test_process_cpu_counts_children_and_grandchildren() -> None:
    # Busy for 0.4 s of CPU, then idle long enough for a sample (every 0.2 s) to see it
    # all, however slowly a loaded machine ran the busy part.
    busy = (
        "import time\nend = time.process_time() + 0.4\n"
        "while time.process_time() < end: pass\ntime.sleep(0.6)"
    )
    spawner = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {busy!r}])"
    code, processes = process_cpu.run([sys.executable, "-c", spawner])
    assert code == 0
    grandchild = [
        p for p in processes if "process_time" in p.command and "subprocess" not in p.command
    ]
    assert len(grandchild) == 1
    assert grandchild[0].total_s >= 0.3
    table = process_cpu.table(processes, per=4)
    assert table.splitlines()[-1].startswith("| all |")


def test_resonate_on_postgres_is_skipped_saying_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTGRES_BINDIR", str(tmp_path / "no-postgres-here"))
    out = tmp_path / "results"
    argv = ["--count", "1", "--concurrency", "1", "--warmup", "0", "--skip-recovery",
            "--systems", "Resonate on Postgres", "--workdir", str(tmp_path / "work"),
            "--out", str(out)]  # fmt: skip
    code = harness.main(argv)
    assert code == 0
    raw = json.loads((out / "raw.json").read_text())
    assert raw["results"] == []
    reason = raw["skipped"]["Resonate on Postgres"]
    assert reason.startswith("unavailable:")
    assert "POSTGRES_BINDIR" in reason


def test_process_cpu_sums_a_postgres_server_into_one_row() -> None:
    processes = [
        process_cpu.ProcessCpu(10, "/opt/pg/bin/postgres -D /tmp/data -p 5432", 0.5, 0.1),
        process_cpu.ProcessCpu(11, "postgres: postgres crossbank 127.0.0.1(4242) idle", 1.0, 0.4),
        process_cpu.ProcessCpu(12, "postgres: walwriter", 0.1, 0.0),
        process_cpu.ProcessCpu(13, "python -m orchestrator.worker", 0.2, 0.1),
    ]
    rows = process_cpu.grouped(processes)
    assert [row.command for row in rows] == [
        "Postgres server (3 processes)",
        "python -m orchestrator.worker",
    ]
    assert rows[0].total_s == pytest.approx(2.1)
    assert "| `Postgres server (3 processes)` |" in process_cpu.table(processes, per=None)
