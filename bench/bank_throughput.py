"""How many ``POST /entries`` per second one bank sustains, at several concurrencies.

Starts ``python -m source_bank`` (waitress, a fresh SQLite ledger in a temp
directory, fsync on every commit), opens one account, then for each
concurrency posts N credits with unique op ids from that many client threads
(one keep-alive connection each) and prints requests/s and latency
percentiles. It also checks that every acknowledged entry is in the ledger.

    .venv/bin/python bench/bank_throughput.py --requests 2000 --concurrency 1,16
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from orchestrator.local.supervisor import bank_process, free_port, local_url

TOKEN = "bench-token"


def run_level(url: str, account_id: str, count: int, concurrency: int) -> dict[str, float]:
    """Post ``count`` credits from ``concurrency`` threads; wall time and latencies."""
    per_client = [count // concurrency + (i < count % concurrency) for i in range(concurrency)]
    run = uuid.uuid4().hex[:8]

    def client(index: int) -> list[float]:
        latencies = []
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with requests.Session() as http:  # one keep-alive connection per client thread
            http.headers.update(headers)
            for n in range(per_client[index]):
                body: dict[str, str | int] = {
                    "op_id": f"bench-{run}-{index}-{n}",
                    "account_id": account_id,
                    "amount": 1,
                    "kind": "credit",
                }
                started = time.perf_counter()
                response = http.post(f"{url}/entries", json=body, timeout=60)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 201:
                    raise RuntimeError(f"unexpected {response.status_code}: {response.text}")
        return latencies

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        latencies = [lat for lats in pool.map(client, range(concurrency)) for lat in lats]
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "req_s": count / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "seconds": elapsed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=2000, help="requests per level")
    parser.add_argument("--concurrency", default="1,16", help="comma-separated levels")
    args = parser.parse_args(argv)
    levels = [int(level) for level in args.concurrency.split(",")]

    with tempfile.TemporaryDirectory(prefix="bank-bench-") as directory:
        port = free_port()
        url = local_url(port)
        ledger = Path(directory) / "ledger.db"
        with bank_process("source", port=port, ledger=ledger, token=TOKEN, name="bench bank"):
            headers = {"Authorization": f"Bearer {TOKEN}"}
            with requests.Session() as http:
                http.headers.update(headers)
                http.put(
                    f"{url}/accounts/bench", json={"status": "open"}, timeout=30
                ).raise_for_status()
                print(f"POST /entries against one bank ({args.requests} requests per level)")
                print(f"{'concurrency':>11} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
                total = 0
                for level in levels:
                    result = run_level(url, "bench", args.requests, level)
                    total += args.requests
                    print(
                        f"{level:>11} {result['req_s']:>8.0f} "
                        f"{result['p50_ms']:>8.1f} {result['p99_ms']:>8.1f}"
                    )
                balance = http.get(f"{url}/accounts/bench", timeout=30).json()["balance"]
                if balance != total:
                    print(f"ledger holds {balance}, expected {total}", file=sys.stderr)
                    return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
