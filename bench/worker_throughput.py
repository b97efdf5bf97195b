"""Transfers per second through ONE worker, against real banks and the served promise store.

Starts both banks, ``python -m promise_store`` and one ``python -m
orchestrator.worker`` as processes (a ``LocalSystem``), seeds
accounts, then for each concurrency level keeps exactly that many transfers
in flight (closed loop) until ``--count`` have finished, and prints
transfers/s and latency percentiles. Every transfer must end ``committed``;
the audit must be clean at the end.

The load generator listens for results on its own push channel in a group
no transfer is dispatched to, so it never runs a saga and the figures measure
the worker, not a polling interval.

    .venv/bin/python -m bench.worker_throughput --count 200 --concurrency 1,8,32
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from resonate.resonate import Resonate

from orchestrator.local.system import IMPATIENT, LocalSystem, with_fresh_tokens
from orchestrator.transfers import TransferRequest, start_transfer

ACCOUNTS = 32


def observer(cluster: LocalSystem) -> Resonate:
    """A client with a push channel in a group of its own: told of results, given no work."""
    settings = cluster.settings
    assert settings.resonate_url is not None
    return Resonate(
        url=settings.resonate_url,
        token=settings.resonate_token,
        group=f"bench-observer-{uuid.uuid4().hex[:8]}",
        ttl=timedelta(seconds=settings.lease_ttl),
    )


async def run_level(
    resonate: Resonate, cluster: LocalSystem, concurrency: int, count: int
) -> dict[str, float]:
    """Keep ``concurrency`` transfers in flight until ``count`` are done."""
    run = uuid.uuid4().hex[:6]
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    next_index = 0

    async def lane() -> None:
        nonlocal next_index
        while next_index < count:
            index = next_index
            next_index += 1
            account = index % ACCOUNTS
            request = TransferRequest(f"b{run}-{index}", f"src{account}", f"dst{account}", 1)
            began = time.perf_counter()
            handle = await start_transfer(resonate, cluster.settings, request)
            result = await handle.result()
            latencies.append(time.perf_counter() - began)
            statuses[result["status"]] = statuses.get(result["status"], 0) + 1

    began = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    wall = time.perf_counter() - began
    if statuses != {"committed": count}:
        raise RuntimeError(f"expected {count} committed transfers, got {statuses}")
    latencies.sort()
    return {
        "concurrency": concurrency,
        "count": count,
        "wall_s": wall,
        "per_s": count / wall,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


async def bench(cluster: LocalSystem, levels: list[int], count: int) -> list[dict[str, float]]:
    await cluster.seed(
        {f"src{i}": 10**12 for i in range(ACCOUNTS)}, {f"dst{i}": 0 for i in range(ACCOUNTS)}
    )
    resonate = observer(cluster)
    try:
        await run_level(resonate, cluster, 4, 16)  # warm-up: connections, imports, caches
        rows = [await run_level(resonate, cluster, level, count) for level in levels]
    finally:
        await resonate.stop()
    violations = await cluster.violations()
    if violations:
        raise RuntimeError(f"audit found {len(violations)} violations: {violations[:3]}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="transfers per level")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated levels")
    parser.add_argument("--workdir", type=Path, default=None, help="keep files and logs here")
    args = parser.parse_args(argv)
    levels = [int(level) for level in args.concurrency.split(",")]
    with tempfile.TemporaryDirectory(prefix="crossbank-bench-") as scratch:
        root = args.workdir or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        settings = replace(with_fresh_tokens(IMPATIENT), lease_ttl=15.0)
        with LocalSystem(root, settings) as cluster:
            rows = asyncio.run(bench(cluster, levels, args.count))
    print("one worker, served promise store, real banks (every transfer committed, audit clean)")
    print(
        f"{'in flight':>9} {'transfers':>9} {'seconds':>8} {'per s':>8} {'p50 ms':>8} {'p99 ms':>8}"
    )
    for row in rows:
        print(
            f"{row['concurrency']:>9.0f} {row['count']:>9.0f} {row['wall_s']:>8.2f} "
            f"{row['per_s']:>8.1f} {row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
