"""Closed-loop load: keep exactly ``concurrency`` transfers in flight until all are done."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from bench.stats import Sample
from bench.workload import TransferSpec

#: Where Linux keeps the machine's CPU time counters.
PROC_STAT = Path("/proc/stat")

RunTransfer = Callable[[TransferSpec], Awaitable[str]]
"""Runs one transfer to its terminal status and returns that status."""


async def drive(
    run: RunTransfer, specs: Sequence[TransferSpec], concurrency: int
) -> tuple[list[Sample], float]:
    """Run every spec with ``concurrency`` workers; return the samples and the wall time.

    An exception from one transfer is recorded as status ``error:<type>`` rather
    than stopping the run, so a flaky system shows up as wrong results.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    pending = iter(specs)
    samples: list[Sample] = []

    async def worker() -> None:
        for spec in pending:
            started = time.perf_counter()
            try:
                status = await run(spec)
            except Exception as exc:
                status = f"error:{type(exc).__name__}:{exc}"[:200]
            samples.append(Sample(spec.transfer_id, status, time.perf_counter() - started))

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(min(concurrency, len(specs))):
            group.create_task(worker())
    return samples, time.perf_counter() - started


def machine_busy_seconds(stat: Path = PROC_STAT) -> float | None:
    """CPU seconds all cores have spent busy since boot (None where ``/proc/stat`` is missing).

    Busy is user, nice, system, irq and softirq time: every process of every
    system under test, their servers and databases included, so the
    difference across a run is what a transfer really costs the machine,
    whichever processes did the work. Idle, iowait and steal are left out.
    """
    try:
        fields = stat.read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 8:
        return None
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds(proc: Path = Path("/proc")) -> float | None:
    """CPU seconds this process and every process it started have used (None without ``/proc``).

    Unlike :func:`machine_busy_seconds` this leaves out whatever else runs on
    the machine, which on a shared host is most of the noise: the difference
    across a level is what the system under test spent, its banks, store,
    workers and databases included (they are this process's descendants).
    """
    root = os.getpid()
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    try:
        entries = [e for e in proc.iterdir() if e.name.isdigit()]
    except OSError:
        return None
    for entry in entries:
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        parents[int(entry.name)] = int(fields[1])
        used[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    if root not in used:
        return None
    total = 0.0
    for pid, seconds in used.items():
        ancestor = pid
        while ancestor not in (root, 0, 1) and ancestor in parents:
            ancestor = parents[ancestor]
        if ancestor == root:
            total += seconds
    return total
