"""crossbank's recovery figures, taken from the scripts that measure them.

``bench/failover.py`` (worker SIGKILL to in-flight transfers finished on a
standby) and ``bench/store_restart.py`` (promise store restart at a given
journal length) are their own benchmarks; this module calls them so their
figures land in the same report. When one is missing or fails, the row says
TODO instead of showing a number nobody measured.

Call :func:`collect` outside any running event loop: the scripts run their own.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

FAILOVER = "worker SIGKILL -> its {n} in-flight transfers finished on a standby (lease {ttl:g} s)"
RESTART = "promise store restart, {n:,} journal entries"


def _module(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def failover_row(workdir: Path, in_flight: int = 16, lease_ttl: float = 2.0) -> tuple[str, str]:
    label = FAILOVER.format(n=in_flight, ttl=lease_ttl)
    failover = _module("bench.failover")
    if failover is None or not hasattr(failover, "measure"):
        return label, "TODO: bench/failover.py (measure) not available"
    try:
        seconds = float(failover.measure(workdir, in_flight=in_flight, lease_ttl=lease_ttl))
    except Exception as exc:
        return label, f"TODO: failed: {type(exc).__name__}: {exc}"
    return label, f"{seconds:.2f} s"


def restart_row(workdir: Path, entries: int) -> tuple[str, str]:
    """Full replay (no snapshot), then after a snapshot; each as open time and spawn-to-healthy."""
    label = RESTART.format(n=entries)
    restart = _module("bench.store_restart")
    needed = ("build_journal", "timed_open", "time_to_healthy")
    if restart is None or not all(hasattr(restart, name) for name in needed):
        return label, "TODO: bench/store_restart.py (build_journal/timed_open) not available"
    try:
        from promise_store.state import JournaledState

        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / f"restart-{entries}.db"
        for leftover in workdir.glob(f"{path.name}*"):
            leftover.unlink()
        expected = restart.build_journal(path, entries)
        replay_s, replayed = restart.timed_open(path, expected)
        replay_healthy_s, _ = restart.time_to_healthy(path)
        store = JournaledState(path, snapshot_every=10**9)
        store.snapshot_now()
        store.close_sync()
        snap_s, _ = restart.timed_open(path, expected)
        snap_healthy_s, snap_cpu_s = restart.time_to_healthy(path)
    except Exception as exc:
        return label, f"TODO: failed: {type(exc).__name__}: {exc}"
    return label, (
        f"replaying all {replayed:,}: open {replay_s:.2f} s, process healthy in "
        f"{replay_healthy_s:.2f} s; from a snapshot: open {snap_s:.2f} s, healthy in "
        f"{snap_healthy_s:.2f} s ({snap_cpu_s:.2f} s of CPU)"
    )


def collect(
    workdir: Path, restart_entries: Sequence[int] = (100_000, 1_000_000)
) -> list[tuple[str, str]]:
    """Rows of (measurement, figure) for the report."""
    rows = [failover_row(workdir / "failover")]
    rows += [restart_row(workdir / "restart", n) for n in restart_entries]
    return rows
