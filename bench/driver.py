"""Closed-loop load: keep exactly ``concurrency`` transfers in flight until all are done."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

from bench.stats import Sample
from bench.workload import TransferSpec

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
