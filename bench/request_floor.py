"""What one request to the served store costs at least, and what a transfer's 8.4 make.

    .venv/bin/python -m bench.request_floor [--requests 2000]

Starts ``python -m promise_store`` on a fresh journal and sends it requests one
at a time over the worker's own store link (``orchestrator.store_network``),
in the SDK's envelope: ``promise.get`` of a promise that exists (a read: no
journal commit) and ``promise.create`` (one synced commit each). For each it
prints wall time, this client's CPU and the store process's CPU per request.

These requests carry no task, run no workflow and touch no bank, so they are
the floor under every store request a transfer makes: a transfer through the
served store makes 8.4 of them, 7.4 of them writes (bench/README.md, "Store
requests per transfer"), before the SDK's own work in the worker. The last
lines multiply that out, to set against the baseline's whole transfer (about
2.3-2.8 ms of CPU here, from ``bench.harness``), whose double was the goal
set for a served transfer.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
from resonate_base import PROTOCOL_VERSION

from bench.process_cpu import read_stat
from orchestrator.local.supervisor import free_port, local_url, store_process
from orchestrator.store_network import StoreNetwork

#: Store requests per served transfer, and how many of them are writes
#: (counted from a store's journal; bench/README.md).
REQUESTS_PER_TRANSFER = 8.4
WRITES_PER_TRANSFER = 7.4

#: Requests of each kind sent before measuring.
WARM_UP = 50


def envelope(kind: str, n: int, data: dict[str, object]) -> str:
    head = {"corrId": f"c{n}", "version": PROTOCOL_VERSION}
    return msgspec.json.encode({"kind": kind, "head": head, "data": data}).decode()


def store_cpu(pid: int) -> float:
    stat = read_stat(pid)
    if stat is None:
        raise RuntimeError(f"the store (pid {pid}) is gone")
    return stat[1] + stat[2]


async def answered(network: StoreNetwork, request: str, status: int) -> None:
    """Send ``request``; anything but ``status`` in the answer means the figures are not real."""
    answer = msgspec.json.decode(await network.send(request))
    if answer["head"]["status"] != status:
        raise RuntimeError(f"the store answered {answer!r} to {request}")


async def per_request(
    network: StoreNetwork, pid: int, count: int, make: Callable[[int], str], status: int
) -> tuple[float, float, float]:
    """(wall, client CPU, store CPU) in ms per request, over ``count`` sequential requests."""
    for n in range(WARM_UP):  # warm the connection and the store
        await answered(network, make(-1 - n), status)
    wall, cpu, theirs = time.perf_counter(), time.process_time(), store_cpu(pid)
    for n in range(count):
        await answered(network, make(n), status)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    theirs = store_cpu(pid) - theirs
    return wall * 1000 / count, cpu * 1000 / count, theirs * 1000 / count


async def measure(url: str, pid: int, count: int) -> dict[str, tuple[float, float, float]]:
    network = StoreNetwork(url)
    await network.start()
    try:
        created = envelope("promise.create", 0, {"id": "floor", "timeoutAt": 2**62})
        await answered(network, created, 201)
        read = await per_request(
            network, pid, count, lambda n: envelope("promise.get", n, {"id": "floor"}), 200
        )
        write = await per_request(
            network,
            pid,
            count,
            lambda n: envelope(
                "promise.create", n, {"id": f"p{n}", "timeoutAt": 2**62, "param": {}, "tags": {}}
            ),
            201,
        )
    finally:
        await network.stop()
    return {"promise.get (no commit)": read, "promise.create (one synced commit)": write}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per kind (2000)")
    args = parser.parse_args()
    if not os.path.isdir("/proc"):
        parser.error("this reads the store's CPU from Linux's /proc")
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        store = store_process(port=port, path=Path(tmp) / "floor.db", log_path=Path(tmp) / "log")
        with store:
            figures = asyncio.run(measure(local_url(port), store.pid, args.requests))
    print(f"{args.requests} requests of each kind, one at a time, ms per request")
    print("| request | wall | client CPU | store CPU | both |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, (wall, client, server) in figures.items():
        print(f"| {name} | {wall:.3f} | {client:.3f} | {server:.3f} | {client + server:.3f} |")
    (rw, rc, rs), (ww, wc, ws) = figures.values()
    reads = REQUESTS_PER_TRANSFER - WRITES_PER_TRANSFER
    wall = reads * rw + WRITES_PER_TRANSFER * ww
    cpu = reads * (rc + rs) + WRITES_PER_TRANSFER * (wc + ws)
    print(
        f"a transfer's {REQUESTS_PER_TRANSFER} store requests ({WRITES_PER_TRANSFER} writes) "
        f"cost at least {cpu:.2f} ms of CPU and {wall:.2f} ms of wall time, "
        "before any SDK work or bank call"
    )


if __name__ == "__main__":
    main()
