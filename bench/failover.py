"""Seconds from a worker's SIGKILL to all of its in-flight transfers finishing on a standby.

Starts both banks, the served promise store and one worker (a ``LocalSystem``);
the target bank parks every credit (a ``hold_before`` rule), so ``--in-flight``
transfers are provably mid-saga on that worker. A standby joins the group,
the first worker is SIGKILLed, the held requests are let go, and the clock
runs until every transfer has its result. The figure is dominated by the
lease length (``LEASE_TTL``): the store hands a dead worker's transfers on
only when their leases lapse. ``--backend postgres`` runs the same scene on
Resonate on Postgres (a private Postgres in the store's place).

    .venv/bin/python -m bench.failover --in-flight 16 --lease-ttl 2,5,15
    .venv/bin/python -m bench.failover --lease-ttl 3 --backend store,postgres
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from orchestrator.local.system import (
    BACKENDS,
    IMPATIENT,
    STORE_BACKEND,
    LocalSystem,
    wait_until,
    with_fresh_tokens,
)
from orchestrator.transfers import TransferRequest, start_transfer


async def _failover(cluster: LocalSystem, in_flight: int) -> float:
    await cluster.seed({"fo-src": 10**9}, {"fo-dst": 0})
    async with cluster.banks() as (_, target), cluster.session() as client:
        await target.set_faults([{"action": "hold_before", "kind": "credit"}])
        handles = [
            await start_transfer(
                client, cluster.settings, TransferRequest(f"fo-{i}", "fo-src", "fo-dst", 1)
            )
            for i in range(in_flight)
        ]

        async def all_held() -> bool:
            return len(await target.holds()) == in_flight

        await wait_until(all_held, within=120)
        (victim,) = cluster.running_workers()
        await asyncio.to_thread(cluster.start_worker)  # the standby, ready and listening

        killed = time.perf_counter()
        victim.kill()
        await target.clear_faults()  # the held requests go on; the standby replays them
        results = await asyncio.gather(*(handle.result() for handle in handles))
        seconds = time.perf_counter() - killed

    if any(result["status"] != "committed" for result in results):
        raise RuntimeError(f"not every transfer committed: {results}")
    violations = await cluster.violations()
    if violations:
        raise RuntimeError(f"audit found {len(violations)} violations: {violations[:3]}")
    return seconds


def measure(
    workdir: Path, *, in_flight: int = 16, lease_ttl: float = 2.0, backend: str = STORE_BACKEND
) -> float:
    """Start a cluster under ``workdir``, kill its worker mid-saga, return the takeover seconds."""
    workdir.mkdir(parents=True, exist_ok=True)
    settings = replace(with_fresh_tokens(IMPATIENT), lease_ttl=lease_ttl)
    with LocalSystem(workdir, settings, faults=True, backend=backend) as cluster:
        return asyncio.run(_failover(cluster, in_flight))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--in-flight", type=int, default=16, help="transfers mid-saga at the kill")
    parser.add_argument("--lease-ttl", default="2,5", help="comma-separated lease lengths (s)")
    parser.add_argument(
        "--backend", default=STORE_BACKEND, help=f"comma-separated, of {', '.join(BACKENDS)}"
    )
    args = parser.parse_args(argv)
    backends = [value.strip() for value in args.backend.split(",")]
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        parser.error(f"unknown backend {unknown[0]!r}: choose from {', '.join(BACKENDS)}")
    print(f"{'backend':>8} {'lease s':>7} {'in flight':>9} {'kill -> all finished s':>23}")
    for backend in backends:
        for ttl in (float(value) for value in args.lease_ttl.split(",")):
            with tempfile.TemporaryDirectory(prefix="crossbank-failover-") as scratch:
                seconds = measure(
                    Path(scratch), in_flight=args.in_flight, lease_ttl=ttl, backend=backend
                )
            print(f"{backend:>8} {ttl:>7g} {args.in_flight:>9} {seconds:>23.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
