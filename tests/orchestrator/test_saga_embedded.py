"""The embedded store: one process runs the saga and waits; run again after a crash, it resumes."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from orchestrator.local.supervisor import ManagedProcess
from orchestrator.runtime import resonate_session
from orchestrator.settings import Settings
from orchestrator.transfers import TransferRequest, start_transfer
from tests.orchestrator.cluster import Cluster, wait_for_hold

pytestmark = pytest.mark.anyio


def embedded(cluster: Cluster, store: Path) -> Settings:
    return dataclasses.replace(
        cluster.settings, resonate_url=None, resonate_token=None, store_path=store
    )


async def test_embedded_transfer_runs_in_process(cluster: Cluster, tmp_path: Path) -> None:
    await cluster.seed({"lena": 900}, {"milo": 0}, closed=())
    settings = embedded(cluster, tmp_path / "promises.db")
    (worker,) = cluster.running_workers()
    worker.stop()  # no served worker can have run it

    async with resonate_session(settings, role="client") as resonate:
        handle = await start_transfer(
            resonate, settings, TransferRequest("t-embedded", "lena", "milo", 400)
        )
        result = await asyncio.wait_for(handle.result(), 60)

    assert result["status"] == "committed"
    balances = await cluster.balances()
    assert (balances["source:lena"], balances["target:milo"]) == (500, 400)
    assert await cluster.violations() == []


async def test_embedded_process_killed_mid_credit_resumes_on_restart(
    cluster: Cluster, tmp_path: Path
) -> None:
    await cluster.seed({"nina": 900}, {"otto": 0})
    settings = embedded(cluster, tmp_path / "promises.db")
    env = {
        **cluster.worker_env,
        "RESONATE_URL": "",
        "STORE_PATH": str(settings.store_path),
    }
    first = ManagedProcess(
        "tests.orchestrator.cluster",
        args=("t-resume", "nina", "otto", "300"),
        env=env,
        log_path=tmp_path / "first.log",
    )
    async with cluster.banks() as (_, target):
        await target.set_faults([{"action": "hold_before", "op_id": "t-resume-credit"}])
        first.start(wait=False)
        try:
            await wait_for_hold(target, "t-resume-credit", "before")
        finally:
            first.kill()
        await target.clear_faults()

    async with resonate_session(settings, role="client") as resonate:
        handle = await start_transfer(
            resonate, settings, TransferRequest("t-resume", "nina", "otto", 300)
        )
        result = await asyncio.wait_for(handle.result(), 60)

    assert result["status"] == "committed"
    assert sorted(e["kind"] for e in await cluster.entries("t-resume")) == ["credit", "debit"]
    balances = await cluster.balances()
    assert (balances["source:nina"], balances["target:otto"]) == (600, 300)
    assert await cluster.violations() == []
