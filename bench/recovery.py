"""crossbank's recovery figures, taken from the scripts that measure them.

``bench/failover.py`` (worker SIGKILL to in-flight transfers finished on a
standby) and ``bench/store_restart.py`` (promise store restart time at 100k
and 1M journal entries) are their own benchmarks; this module calls them so
their figures land in the same report. When one is not there (yet), the
report says TODO instead of showing a number nobody measured.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

FAILOVER = "worker SIGKILL -> in-flight transfers finished on a standby"
RESTART = "promise store restart at {n} journal entries"


def _load(module: str, function: str) -> Callable[..., Any] | None:
    try:
        loaded = importlib.import_module(module)
    except ImportError:
        return None
    found = getattr(loaded, function, None)
    return found if callable(found) else None


def collect(workdir: Path) -> list[tuple[str, str]]:
    """Rows of (measurement, figure); a missing or failing script gives a TODO row."""
    rows: list[tuple[str, str]] = []
    failover = _load("bench.failover", "measure")
    if failover is None:
        rows.append((FAILOVER, "TODO: bench/failover.py (measure) not available yet"))
    else:
        try:
            rows.append((FAILOVER, f"{float(failover(workdir / 'failover')):.2f} s"))
        except Exception as exc:
            rows.append((FAILOVER, f"TODO: failed: {type(exc).__name__}: {exc}"))
    restart = _load("bench.store_restart", "measure")
    for entries in (100_000, 1_000_000):
        label = RESTART.format(n=f"{entries:,}")
        if restart is None:
            rows.append((label, "TODO: bench/store_restart.py (measure) not available yet"))
            continue
        try:
            seconds = float(restart(workdir / f"restart-{entries}", entries))
            rows.append((label, f"{seconds:.2f} s"))
        except Exception as exc:
            rows.append((label, f"TODO: failed: {type(exc).__name__}: {exc}"))
    return rows
