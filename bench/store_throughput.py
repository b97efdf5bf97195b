"""Promises created per second through the served store's HTTP front door.

    .venv/bin/python bench/store_throughput.py [--requests 3000] [--concurrency 1 32]

Starts ``python -m promise_store`` on a free port with a fresh journal in a
temp directory, then sends ``promise.create`` envelopes over keep-alive HTTP
from ``C`` concurrent clients and prints throughput and latency per level.
Every request is acknowledged only after its journal commit (fsync), so this
measures the durable path, group commit included.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from orchestrator.local.supervisor import free_port, local_url, store_process
from promise_store.state import JournaledState


async def run_level(url: str, total: int, concurrency: int, prefix: str) -> dict[str, float]:
    ids = itertools.count()
    latencies: list[float] = []

    async def client(session: aiohttp.ClientSession) -> None:
        while (n := next(ids)) < total:
            body = json.dumps(
                {
                    "kind": "promise.create",
                    "head": {"corrId": f"c{n}", "version": "2026-04-01"},
                    "data": {"id": f"{prefix}-{n}", "timeoutAt": 2**62, "param": {}, "tags": {}},
                }
            )
            started = time.perf_counter()
            headers = {"Content-Type": "application/json"}
            async with session.post(url + "/", data=body, headers=headers) as response:
                answer = await response.json()
            latencies.append(time.perf_counter() - started)
            if answer["head"]["status"] != 201:
                raise RuntimeError(f"unexpected answer: {answer}")

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "per_second": total / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


async def journal_only(path: Path, total: int, concurrency: int) -> float:
    """The same creates straight into a JournaledState: the cost without HTTP."""
    store = JournaledState(path)
    started = time.perf_counter()
    for first in range(0, total, concurrency):
        await asyncio.gather(
            *(
                store.apply({"kind": "promise.create", "corrId": "c", "id": f"j{n}", "tags": {}})
                for n in range(first, min(first + concurrency, total))
            )
        )
    elapsed = time.perf_counter() - started
    await store.close()
    return total / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        url = local_url(port)
        store = store_process(
            port=port,
            path=Path(tmp) / "bench.db",
            log_path=Path(tmp) / "store.log",
        )
        with store:
            for level in args.concurrency:
                figures = asyncio.run(run_level(url, args.requests, level, f"c{level}"))
                print(
                    f"concurrency {level:>3}: {figures['per_second']:8.0f} promises/s  "
                    f"p50 {figures['p50_ms']:6.2f} ms  p99 {figures['p99_ms']:6.2f} ms  "
                    f"({args.requests} durable promise.create over HTTP)"
                )
        for level in args.concurrency:
            rate = asyncio.run(journal_only(Path(tmp) / f"direct-{level}.db", args.requests, level))
            print(
                f"concurrency {level:>3}: {rate:8.0f} promises/s  (same creates, in-process, no HTTP)"
            )


if __name__ == "__main__":
    main()
