"""Seconds from a restarted promise store answering again to transfers finishing again.

Starts both banks, the served promise store and one worker (a
``LocalSystem``), keeps 8 transfers in flight, SIGKILLs the
store, leaves it down for ``--down`` seconds, starts it on the same file and
port, and times the first transfer to finish after the store is healthy.
Workers and clients resend what the store did not answer on a short ladder
(``orchestrator/store_network.py``: 50 ms doubling to 1 s), so the figure
stays small however long the store was down; with the SDK's own 1-60 s
ladder it grew with the outage. Every transfer must still commit and the
audit must come out clean.

    .venv/bin/python -m bench.store_outage --down 1,10,30
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from orchestrator.local.system import IMPATIENT, STORE, LocalSystem, with_fresh_tokens
from orchestrator.transfers import TransferRequest, start_transfer

IN_FLIGHT = 8


async def _outage(cluster: LocalSystem, down_s: float) -> float:
    await cluster.seed({"so-src": 10**9}, {"so-dst": 0})
    statuses: list[str] = []
    stop = asyncio.Event()
    back_at = 0.0  # when the restarted store was healthy (0: not yet)
    first_after = 0.0  # when the first transfer finished after that
    progressed = asyncio.Event()

    async with cluster.session() as client:

        async def keep_transferring(lane: int) -> None:
            nonlocal first_after
            number = 0
            while not stop.is_set():
                number += 1
                request = TransferRequest(f"so-{lane}-{number}", "so-src", "so-dst", 1)
                handle = await start_transfer(client, cluster.settings, request)
                statuses.append(str((await handle.result())["status"]))
                if back_at and not first_after:
                    first_after = time.monotonic()
                    progressed.set()

        lanes = [asyncio.create_task(keep_transferring(lane)) for lane in range(IN_FLIGHT)]
        await asyncio.sleep(2.0)
        cluster.kill(STORE)
        await asyncio.sleep(down_s)
        await asyncio.to_thread(cluster.restart, STORE)
        back_at = time.monotonic()
        await asyncio.wait_for(progressed.wait(), 120)
        seconds = first_after - back_at
        stop.set()
        await asyncio.wait_for(asyncio.gather(*lanes), 120)

    if any(status != "committed" for status in statuses):
        raise RuntimeError(f"not every transfer committed: {sorted(set(statuses))}")
    violations = await cluster.violations()
    if violations:
        raise RuntimeError(f"audit found {len(violations)} violations: {violations[:3]}")
    return seconds


def measure(workdir: Path, *, down_s: float = 10.0) -> float:
    """Start a cluster under ``workdir``, take its store down under load, return the seconds."""
    workdir.mkdir(parents=True, exist_ok=True)
    with LocalSystem(workdir, with_fresh_tokens(IMPATIENT)) as cluster:
        return asyncio.run(_outage(cluster, down_s))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--down", default="1,10", help="comma-separated outage lengths (s)")
    args = parser.parse_args(argv)
    print(f"{'store down s':>12} {'healthy -> first transfer finished s':>37}")
    for down in (float(value) for value in args.down.split(",")):
        with tempfile.TemporaryDirectory(prefix="crossbank-outage-") as scratch:
            seconds = measure(Path(scratch), down_s=down)
        print(f"{down:>12g} {seconds:>37.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
