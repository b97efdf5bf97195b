"""Figures from one measured run: throughput and latency percentiles (pure)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    """One transfer as the load generator saw it."""

    transfer_id: str
    status: str
    latency_s: float


@dataclass(frozen=True)
class RunStats:
    """What one system did at one concurrency level."""

    system: str
    concurrency: int
    count: int
    wall_s: float
    throughput: float
    p50_ms: float
    p99_ms: float
    statuses: dict[str, int]
    wrong: int
    """Transfers whose terminal status differed from the planned one (must be 0)."""
    cpu_ms: float | None = None
    """Busy CPU time of the whole machine per transfer, every process counted (None: unknown)."""
    own_cpu_ms: float | None = None
    """CPU time per transfer of the harness and the processes it started (None: unknown)."""


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: the smallest value with at least ``fraction`` of values at or below it."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    ordered = sorted(values)
    rank = math.ceil(fraction * len(ordered))
    return ordered[rank - 1]


def summarize(
    system: str,
    concurrency: int,
    samples: Sequence[Sample],
    wall_s: float,
    expected: dict[str, str],
    cpu_s: float | None = None,
    own_cpu_s: float | None = None,
) -> RunStats:
    """Throughput counts only transfers that reached the status the plan says they must."""
    if wall_s <= 0:
        raise ValueError(f"wall time must be positive, got {wall_s}")
    wrong = sum(1 for s in samples if expected.get(s.transfer_id) != s.status)
    latencies = [s.latency_s * 1000.0 for s in samples]
    return RunStats(
        system=system,
        concurrency=concurrency,
        count=len(samples),
        wall_s=wall_s,
        throughput=(len(samples) - wrong) / wall_s,
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        statuses=dict(Counter(s.status for s in samples)),
        wrong=wrong,
        cpu_ms=None if cpu_s is None or not samples else cpu_s * 1000.0 / len(samples),
        own_cpu_ms=None if own_cpu_s is None or not samples else own_cpu_s * 1000.0 / len(samples),
    )
