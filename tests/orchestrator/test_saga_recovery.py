"""Every started transfer finishes once the system runs again (invariant 5, INVARIANTS.md).

No worker at all, the promise store SIGKILLed mid-saga, a worker told to stop
mid-saga: each time the transfer waits, then finishes exactly once.
"""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.transfers import TransferRequest, start_transfer, transfer_record
from tests.orchestrator.cluster import Cluster, wait_for_hold

pytestmark = pytest.mark.anyio


async def test_transfer_started_with_no_worker_runs_when_one_joins(cluster: Cluster) -> None:
    await cluster.seed({"pia": 800}, {"quin": 0})
    for worker in cluster.running_workers():
        worker.stop()

    async with cluster.client() as client:
        handle = await start_transfer(
            client, cluster.settings, TransferRequest("t-no-worker", "pia", "quin", 80)
        )
        record = await transfer_record(client, "t-no-worker")
        assert record is not None
        assert (record["state"], record["steps"]) == ("pending", [])

        await asyncio.to_thread(cluster.start_worker)
        result = await asyncio.wait_for(handle.result(), 60)

    assert result["status"] == "committed"
    assert await cluster.violations() == []


async def test_store_killed_mid_credit_then_restarted(cluster: Cluster) -> None:
    await cluster.seed({"rosa": 800}, {"sam": 0})
    async with cluster.banks() as (_, target):
        await target.set_faults([{"action": "hold_before", "op_id": "t-store-kill-credit"}])
        async with cluster.client() as client:
            handle = await start_transfer(
                client, cluster.settings, TransferRequest("t-store-kill", "rosa", "sam", 120)
            )
            await wait_for_hold(target, "t-store-kill-credit", "before")
            cluster.store.kill()
            await target.clear_faults()  # the credit lands while the store is down
            await asyncio.to_thread(cluster.store.start)
            result = await asyncio.wait_for(handle.result(), 90)

    assert result["status"] == "committed"
    assert sorted(e["kind"] for e in await cluster.entries("t-store-kill")) == ["credit", "debit"]
    balances = await cluster.balances()
    assert (balances["source:rosa"], balances["target:sam"]) == (680, 120)
    assert await cluster.violations() == []


async def test_worker_stopped_mid_credit_is_taken_over(cluster: Cluster) -> None:
    await cluster.seed({"tess": 800}, {"ugo": 0})
    async with cluster.banks() as (_, target), cluster.client() as client:
        await target.set_faults([{"action": "hold_before", "op_id": "t-sigterm-credit"}])
        handle = await start_transfer(
            client, cluster.settings, TransferRequest("t-sigterm", "tess", "ugo", 90)
        )
        await wait_for_hold(target, "t-sigterm-credit", "before")

        (worker,) = cluster.running_workers()
        await asyncio.to_thread(worker.stop, 30)  # SIGTERM; it gives up after its lease
        assert worker.process is not None
        assert worker.process.returncode == 0
        await asyncio.to_thread(cluster.start_worker)
        await target.clear_faults()
        result = await asyncio.wait_for(handle.result(), 60)

    assert result["status"] == "committed"
    assert sorted(e["kind"] for e in await cluster.entries("t-sigterm")) == ["credit", "debit"]
    assert await cluster.violations() == []
