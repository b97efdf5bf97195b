"""A worker SIGKILLed at exact points of a saga; a standby finishes every transfer exactly once.

The bank parks the request at the chosen point (a ``hold_before`` or
``hold_after`` fault rule) and the test waits until ``GET /admin/holds`` shows
it, so the kill lands where it is meant to, not where a sleep hoped it would.
"""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.transfers import TransferRequest, start_transfer
from tests.orchestrator.cluster import Cluster, wait_for_hold

pytestmark = pytest.mark.anyio

#: Each test runs on crossbank's promise store and on Resonate on Postgres (conftest.py).
ON_EVERY_BACKEND = True


@pytest.mark.parametrize(
    ("bank", "kind", "stage", "target_open", "status"),
    [
        pytest.param("source", "debit", "after", True, "committed", id="after-debit-applied"),
        pytest.param("target", "credit", "before", True, "committed", id="during-credit"),
        pytest.param("target", "credit", "after", True, "committed", id="after-credit-applied"),
        pytest.param("source", "reversal", "before", False, "compensated", id="during-reversal"),
        pytest.param(
            "source", "reversal", "after", False, "compensated", id="after-reversal-applied"
        ),
    ],
)
async def test_worker_killed_mid_saga_standby_finishes(
    cluster: Cluster, bank: str, kind: str, stage: str, target_open: bool, status: str
) -> None:
    transfer_id = f"t-kill-{kind}-{stage}"
    payer, payee = f"payer-{kind}-{stage}", f"payee-{kind}-{stage}"
    await cluster.seed({payer: 1_000}, {payee: 0}, closed=() if target_open else (payee,))
    op_id = f"{transfer_id}-{kind}"

    async with cluster.banks() as (source, target), cluster.client() as client:
        holder = source if bank == "source" else target
        await holder.set_faults([{"action": f"hold_{stage}", "op_id": op_id, "times": 1}])
        handle = await start_transfer(
            client, cluster.settings, TransferRequest(transfer_id, payer, payee, 400)
        )
        await wait_for_hold(holder, op_id, stage)

        (victim,) = cluster.running_workers()
        victim.kill()
        assert await holder.release(op_id) == 1
        await asyncio.to_thread(cluster.start_worker)
        result = await asyncio.wait_for(handle.result(), 60)

    assert result["status"] == status
    entries = await cluster.entries(transfer_id)
    expected = ["debit", "credit"] if status == "committed" else ["debit", "reversal"]
    assert sorted(entry["kind"] for entry in entries) == sorted(expected)
    balances = await cluster.balances()
    moved = 400 if status == "committed" else 0
    assert balances[f"source:{payer}"] == 1_000 - moved
    assert balances[f"target:{payee}"] == moved
    assert await cluster.violations() == []


async def test_sigterm_stops_an_idle_worker_cleanly(cluster: Cluster) -> None:
    (worker,) = cluster.running_workers()

    worker.stop(timeout=10)

    assert worker.process is not None
    assert worker.process.returncode == 0
    assert worker.log_path is not None
    assert "stopped" in worker.log_path.read_text()
