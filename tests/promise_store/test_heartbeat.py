"""A worker's heartbeat waits one interval before its first beat, and still keeps its lease.

``orchestrator.runtime.first_beat_after_an_interval`` drops the beat the SDK
sends the moment a task is acquired (it renews a lease the acquire has just
set; at one transfer in flight it was one journaled write per transfer).
These run a real workflow over the embedded store, in process, and read what
the journal holds.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import timedelta
from pathlib import Path

from resonate.context import Context
from resonate.resonate import Resonate

from orchestrator.runtime import FirstBeatAfterAnInterval, first_beat_after_an_interval
from promise_store.embedded import EmbeddedStore

RUNS: list[str] = []


async def step(ctx: Context, name: str, seconds: float) -> str:
    RUNS.append(name)
    await asyncio.sleep(seconds)
    return name


async def workflow(ctx: Context, name: str, seconds: float) -> str:
    return await ctx.run(step, name, seconds)


def journaled_kinds(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT kind, body FROM journal ORDER BY seq").fetchall()
    return [json.loads(body)["kind"] if kind == "req" else kind for kind, body in rows]


def run_workflow(path: Path, name: str, seconds: float, ttl_s: float) -> str:
    async def main() -> str:
        store = EmbeddedStore(path, pid="p1", group="g")
        resonate = Resonate(network=store, pid="p1", group="g", ttl=timedelta(seconds=ttl_s))
        first_beat_after_an_interval(resonate)
        assert type(resonate._heartbeat) is FirstBeatAfterAnInterval
        resonate.register(workflow, name="wf")
        try:
            handle = resonate.run(name, workflow, name, seconds)
            return str(await asyncio.wait_for(handle.result(), timeout=15))
        finally:
            await resonate.stop()

    return asyncio.run(main())


def test_a_short_task_sends_no_heartbeat(tmp_path: Path) -> None:
    path = tmp_path / "short.db"
    assert run_workflow(path, "short", 0.0, ttl_s=10) == "short"
    kinds = journaled_kinds(path)
    assert "task.acquire" in kinds or "task.create" in kinds
    assert "task.heartbeat" not in kinds


def test_a_task_longer_than_its_lease_keeps_it_and_runs_once(tmp_path: Path) -> None:
    RUNS.clear()
    path = tmp_path / "long.db"
    # A 1 s lease, beats every 0.5 s, a step of 2.5 s: without the beats the
    # store would hand the task back twice over and the step would run again.
    assert run_workflow(path, "long", 2.5, ttl_s=1) == "long"
    assert RUNS == ["long"]
    beats = journaled_kinds(path).count("task.heartbeat")
    assert 3 <= beats <= 6
