"""A small Resonate program the promise-store tests run as a real process.

    python -m tests.promise_store.workflow_app worker          # serve the "workers" group
    python -m tests.promise_store.workflow_app run ID STEPS SLEEP_S [--here] [--linger]

``run`` starts (or re-attaches to) invocation ``ID`` and prints its result as
one JSON line. With ``--here`` it executes the workflow itself (its own group);
without, it asks the ``workers`` group to (rpc) and only waits. With
``--linger`` it keeps running after printing (so a test can SIGKILL it).

Environment: ``RESONATE_URL`` (unset: the embedded store at ``STORE_PATH``),
``STEP_LOG`` (a file every step appends to), ``GATE_DIR`` (step ``i`` waits
until ``GATE_DIR/open-i`` exists when ``GATE_DIR/hold-i`` exists), ``TTL_S``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from resonate.context import Context
from resonate.resonate import Resonate

from promise_store.embedded import EmbeddedStore


def log(line: str) -> None:
    with Path(os.environ["STEP_LOG"]).open("a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


async def wait_for_file(path: Path) -> None:
    """The gate is opened by another process, so poll the file system for it."""
    while True:
        if await asyncio.to_thread(path.exists):
            return
        await asyncio.sleep(0.05)


async def step(ctx: Context, wid: str, i: int) -> int:
    log(f"start {wid} {i}")
    gate = Path(os.environ.get("GATE_DIR", "/nonexistent"))
    if await asyncio.to_thread((gate / f"hold-{i}").exists):
        await wait_for_file(gate / f"open-{i}")
    log(f"done {wid} {i}")
    return i * 10


async def workflow(ctx: Context, wid: str, steps: int, sleep_s: float) -> dict[str, Any]:
    total = 0
    for i in range(1, steps + 1):
        total += await ctx.run(step, wid, i)
    if sleep_s > 0:
        await ctx.run(step, wid, 0)
        await ctx.sleep(timedelta(seconds=sleep_s))
        log(f"woke {wid}")
    return {"id": wid, "total": total}


def build(group: str, pid: str) -> Resonate:
    ttl = timedelta(seconds=float(os.environ.get("TTL_S", "2")))
    url = os.environ.get("RESONATE_URL")
    if url:
        r = Resonate(url=url, group=group, pid=pid, ttl=ttl)
    else:
        store = EmbeddedStore(os.environ["STORE_PATH"], pid=pid, group=group, tick_interval=0.2)
        r = Resonate(network=store, group=group, pid=pid, ttl=ttl)
    r.register(workflow)
    r.register(step)
    return r


async def main(argv: list[str]) -> None:
    pid = f"{argv[0]}-{os.getpid()}"
    if argv[0] == "worker":
        r = build("workers", pid)
        print("ready", flush=True)
        await asyncio.Event().wait()
        return
    wid, steps, sleep_s = argv[1], int(argv[2]), float(argv[3])
    here = "--here" in argv
    r = build("workers" if here else "clients", pid)
    try:
        if here:
            handle = r.run(wid, workflow, wid, steps, sleep_s)
        else:
            handle = r.options(target="workers").rpc(wid, "workflow", wid, steps, sleep_s)
        result = await handle.result()
        print(json.dumps(result), flush=True)
        if "--linger" in argv:
            await asyncio.Event().wait()
    finally:
        await r.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
