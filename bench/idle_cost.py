"""What an idle worker costs on each backend: CPU milliseconds per second, by process.

Starts one worker and its backend's server (crossbank's promise store, or a
private Postgres with Resonate in it) as a ``LocalSystem``, lets it settle,
then reads ``/proc`` before and after ``--seconds`` of doing nothing and
prints each process's CPU per second of wall time (a Postgres server's
processes summed into one row, as ``bench.process_cpu`` does). No transfer
runs, so this is the price of being ready: timers, keepalives, polling.

    .venv/bin/python -m bench.idle_cost --seconds 20 --backend store,postgres
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.process_cpu import ProcessCpu, grouped, sample
from orchestrator.local.system import BACKENDS, STORE, STORE_BACKEND, LocalSystem
from orchestrator.settings import Settings

#: Seconds after start-up before the clock runs: the worker's first connections are not idling.
SETTLE_SECONDS = 3.0


def _snapshot() -> dict[int, ProcessCpu]:
    seen: dict[int, ProcessCpu] = {}
    sample(os.getpid(), seen)
    seen.pop(os.getpid(), None)  # this process only waits
    return seen


def idle_cpu(workdir: Path, backend: str, seconds: float) -> list[tuple[str, float]]:
    """(process, CPU ms per second) for one worker and its server, idle for ``seconds``."""
    # The banks are never called while idle: the worker only needs their URLs.
    settings = Settings(source_bank_url="http://127.0.0.1:9", target_bank_url="http://127.0.0.1:9")
    with LocalSystem(workdir, settings, run=(STORE,), workers=1, backend=backend, fresh=True):
        time.sleep(SETTLE_SECONDS)
        before = _snapshot()
        started = time.monotonic()
        time.sleep(seconds)
        after = _snapshot()
        wall = time.monotonic() - started
    spent = [
        ProcessCpu(
            pid,
            now.command,
            now.user_s - (before[pid].user_s if pid in before else 0.0),
            now.system_s - (before[pid].system_s if pid in before else 0.0),
        )
        for pid, now in after.items()
    ]
    return [(p.command, p.total_s * 1000 / wall) for p in grouped(spent)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idle_cost", description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="idle time measured (20)")
    parser.add_argument(
        "--backend", default=",".join(BACKENDS), help=f"comma-separated, of {', '.join(BACKENDS)}"
    )
    args = parser.parse_args(argv)
    backends = [value.strip() for value in args.backend.split(",")]
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        parser.error(f"unknown backend {unknown[0]!r}: choose from {', '.join(BACKENDS)}")
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    print("| backend | process | CPU ms per second idle |\n| --- | --- | ---: |")
    for backend in backends or [STORE_BACKEND]:
        with tempfile.TemporaryDirectory(prefix="crossbank-idle-") as scratch:
            rows = idle_cpu(Path(scratch), backend, args.seconds)
        for command, per_second in rows:
            print(f"| {backend} | `{command[:70]}` | {per_second:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
