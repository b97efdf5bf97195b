"""Unknown outcomes: banks that answer 5xx, drop the connection, or are down for a while.

When a step's retries run out the saga settles its outcome with the bank's
void fence before it decides, so a credit that landed behind a 5xx is
committed (never compensated: that would create money), and a credit that
never landed is compensated.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orchestrator.transfers import TransferRequest, start_transfer, transfer_record
from tests.orchestrator.cluster import Cluster, wait_until

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("action", ["fail_after", "drop_after"])
async def test_credit_applied_behind_errors_is_settled_as_applied(
    cluster: Cluster, action: str
) -> None:
    payer, payee, transfer_id = f"p-{action}", f"q-{action}", f"t-{action}"
    await cluster.seed({payer: 1_000}, {payee: 0})
    async with cluster.banks() as (_, target):
        await target.set_faults([{"action": action, "kind": "credit"}])  # every attempt

    result = await cluster.transfer(transfer_id, payer, payee, 300)

    assert (result["status"], result["reason"]) == ("committed", None)
    assert result["steps"]["credit"]["settled_by"] == "fence"
    assert result["steps"]["credit"]["status"] == "applied"
    credits = [e for e in await cluster.entries(transfer_id) if e["kind"] == "credit"]
    assert len(credits) == 1
    balances = await cluster.balances()
    assert (balances[f"source:{payer}"], balances[f"target:{payee}"]) == (700, 300)
    assert await cluster.violations() == []


async def test_debit_applied_behind_errors_carries_on(cluster: Cluster) -> None:
    await cluster.seed({"dora": 1_000}, {"ezra": 0})
    async with cluster.banks() as (source, _):
        await source.set_faults([{"action": "fail_after", "kind": "debit"}])

    result = await cluster.transfer("t-debit-500", "dora", "ezra", 250)

    assert result["status"] == "committed"
    assert result["steps"]["debit"]["settled_by"] == "fence"
    assert len(await cluster.entries("t-debit-500-debit")) == 1
    assert await cluster.violations() == []


async def test_credit_that_never_lands_is_voided_and_compensated(cluster: Cluster) -> None:
    await cluster.seed({"fern": 1_000}, {"gus": 0})
    async with cluster.banks() as (_, target):
        await target.set_faults([{"action": "fail_before", "kind": "credit"}])

    result = await cluster.transfer("t-never", "fern", "gus", 600)

    assert (result["status"], result["reason"]) == (
        "compensated",
        "credit_voided_after_timeouts",
    )
    assert result["steps"]["credit"]["status"] == "voided"
    async with cluster.banks() as (_, target):
        assert await target.get_entry("t-never-credit") == {
            "op_id": "t-never-credit",
            "state": "voided",
        }
    balances = await cluster.balances()
    assert (balances["source:fern"], balances["target:gus"]) == (1_000, 0)
    assert await cluster.violations() == []


async def test_target_down_longer_than_the_retry_budget(cluster: Cluster) -> None:
    await cluster.seed({"hugo": 1_000}, {"iris": 0})
    cluster.target.stop()

    async with cluster.client() as client:
        handle = await start_transfer(
            client, cluster.settings, TransferRequest("t-down", "hugo", "iris", 500)
        )

        async def fencing() -> bool:
            record = await transfer_record(client, "t-down")
            steps = record["steps"] if record else []
            # the credit step gave up, and the fence after it is still trying
            return len(steps) >= 3 and steps[1]["state"] == "rejected"

        await wait_until(fencing, within=60)
        assert not handle.done()
        await asyncio.to_thread(cluster.target.start)
        result = await asyncio.wait_for(handle.result(), 60)

    assert (result["status"], result["reason"]) == (
        "compensated",
        "credit_voided_after_timeouts",
    )
    balances = await cluster.balances()
    assert (balances["source:hugo"], balances["target:iris"]) == (1_000, 0)
    assert await cluster.violations() == []


async def test_stuck_reversal_is_flagged_then_finishes(cluster: Cluster) -> None:
    await cluster.seed({"jade": 1_000}, {"kurt": 0}, closed=("kurt",))
    async with cluster.banks() as (source, _), cluster.client() as client:
        await source.set_faults([{"action": "fail_before", "kind": "reversal"}])
        handle = await start_transfer(
            client, cluster.settings, TransferRequest("t-stuck", "jade", "kurt", 200)
        )

        async def flagged() -> dict[str, Any] | None:
            record = await transfer_record(client, "t-stuck", attention_after=0)
            return record if record and record["needs_attention"] else None

        record = await wait_until(flagged, within=60)
        assert record["state"] == "pending"
        assert record["compensating_since"] is not None
        calm = await transfer_record(client, "t-stuck", attention_after=3600)
        assert calm is not None
        assert calm["needs_attention"] is False

        await source.clear_faults()
        result = await asyncio.wait_for(handle.result(), 60)
        done = await transfer_record(client, "t-stuck", attention_after=0)

    assert (result["status"], result["reason"]) == ("compensated", "account_closed")
    assert done is not None
    assert done["needs_attention"] is False
    assert (await cluster.balances())["source:jade"] == 1_000
    assert await cluster.violations() == []
