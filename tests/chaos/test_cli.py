"""``python -m chaos``'s options: the backend is chosen, recorded, and checked against the kinds."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bench.process_cpu import ProcessCpu, sample
from chaos.cli import build_parser, main, params_from
from chaos.schedule import KILL_POSTGRES, KILL_STORE


def test_backend_postgres_draws_kill_postgres_and_not_kill_store() -> None:
    args = build_parser().parse_args(["--backend", "postgres", "--seed", "7"])
    params = params_from(args)
    assert params.backend == "postgres"
    assert KILL_POSTGRES in params.fault_kinds
    assert KILL_STORE not in params.fault_kinds


def test_the_store_is_the_default_backend() -> None:
    params = params_from(build_parser().parse_args(["--seed", "7"]))
    assert params.backend == "store"
    assert KILL_POSTGRES not in params.fault_kinds


def test_a_kind_the_backend_has_not_is_refused_before_anything_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--backend", "postgres", "--kinds", "kill_store", "--seed", "1"])
    assert exit_.value.code == 2
    assert "kill_store" in capsys.readouterr().err


def test_the_unsynced_control_is_refused_without_power_cuts_and_recorded_with_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--unsynced-bank", "--seed", "1"])
    assert exit_.value.code == 2
    assert "add power_cut to kinds" in capsys.readouterr().err
    args = build_parser().parse_args(["--seed", "1", "--kinds", "power_cut", "--unsynced-bank"])
    params = params_from(args)
    assert params.unsynced_bank
    assert params.power_cuts
    assert params.to_dict()["unsynced_bank"] is True  # replayed as it ran


def test_a_long_run_is_paced_and_has_quiet_windows() -> None:
    args = build_parser().parse_args(
        ["--seed", "3", "--duration", "1800", "--rate", "5", "--quiet-period", "330"]
    )
    params = params_from(args)
    assert (params.rate, params.quiet_period) == (5.0, 330.0)


def test_the_new_kinds_are_drawn_by_default_and_can_be_picked() -> None:
    everything = params_from(build_parser().parse_args(["--seed", "7"])).fault_kinds
    assert {"partition_worker_store", "disk_full_store", "clock_step_worker"} <= set(everything)
    picked = params_from(
        build_parser().parse_args(["--seed", "7", "--kinds", "oneway_worker_target_bank"])
    )
    assert picked.fault_kinds == ("oneway_worker_target_bank",)


def test_a_store_link_is_refused_on_postgres(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--backend", "postgres", "--kinds", "partition_worker_store", "--seed", "1"])
    assert "partition_worker_store" in capsys.readouterr().err


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (``bench.process_cpu`` walks /proc for them)."""
    seen: dict[int, ProcessCpu] = {}
    sample(pid, seen)
    return set(seen) - {pid}


def test_ctrl_c_stops_every_process_and_says_so(tmp_path: Path) -> None:
    options = ["--seed", "7", "--transfers", "400", "--rate", "10", "--faults", "2"]
    options += ["--duration", "60", "--workdir", str(tmp_path / "run")]
    campaign = subprocess.Popen(
        [sys.executable, "-m", "chaos", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert campaign.stderr is not None
        for line in campaign.stderr:  # the parts are up once the transfers start
            if "running 400 transfers" in line:
                break
        started = descendants(campaign.pid)
        assert started, "the campaign started its banks, store and workers as children"
        campaign.send_signal(signal.SIGINT)
        out, _ = campaign.communicate(timeout=60)
    finally:
        campaign.kill()
    assert campaign.returncode == 130
    assert "interrupted: every process stopped" in out
    assert not any(Path(f"/proc/{pid}").exists() for pid in started)
