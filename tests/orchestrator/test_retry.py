"""``crossbank transfers --status needs-attention`` finds a stuck reversal; ``crossbank retry`` ends its wait.

The source bank fails every reversal (a fault rule), so the saga sleeps
between attempts, durably, for longer and longer. Once the bank takes them
again, ``crossbank retry`` settles the sleep and the reversal applies at
once, instead of after the rest of the sleep.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from orchestrator.transfers import TransferRequest, start_transfer
from tests.orchestrator.cluster import Cluster, wait_until
from tests.orchestrator.test_cli_input import run_cli

pytestmark = pytest.mark.anyio

#: Each test runs on crossbank's promise store and on Resonate on Postgres (conftest.py).
ON_EVERY_BACKEND = True

#: The worker waits 20 s after the first refused reversal (STEP_BACKOFF 10, doubled).
PATIENT = {"STEP_BACKOFF": "10", "STEP_BACKOFF_MAX": "60", "ATTENTION_AFTER": "1"}


def cli_json(cluster: Cluster, *args: str, expect: int = 0) -> Any:
    result = run_cli(cluster, *args, "--json", env={"ATTENTION_AFTER": "1"})
    assert result.returncode == expect, (result.returncode, result.stdout, result.stderr)
    return json.loads(result.stdout)


async def test_retry_makes_a_stuck_reversal_try_now(cluster: Cluster) -> None:
    for worker in cluster.running_workers():
        worker.stop()
    await asyncio.to_thread(cluster.start_worker, env=PATIENT)
    await cluster.seed({"rt-payer": 1_000}, {"rt-payee": 0}, closed=("rt-payee",))

    async with cluster.banks() as (source, _), cluster.client() as client:
        await source.set_faults([{"action": "fail_before", "kind": "reversal"}])
        handle = await start_transfer(
            client, cluster.settings, TransferRequest("rt-stuck", "rt-payer", "rt-payee", 400)
        )

        async def sleeping() -> bool:
            record = await cluster.record("rt-stuck")
            steps = [] if record is None else record["steps"]
            return any(s["timer"] and s["state"] == "pending" for s in steps)

        await wait_until(sleeping, within=30, what="the reversal's wait after a refusal")
        await asyncio.sleep(1.2)  # past ATTENTION_AFTER

        listed = await asyncio.to_thread(
            cli_json, cluster, "transfers", "--status", "needs-attention"
        )
        assert [t["transfer_id"] for t in listed["transfers"]] == ["rt-stuck"]
        assert listed["transfers"][0]["status"] == "compensating"

        await source.clear_faults()  # the source bank takes reversals again
        asked = time.monotonic()  # the command's own start-up (a Python process) included
        retried = await asyncio.to_thread(cli_json, cluster, "retry", "rt-stuck", "--by", "ops")
        result = await asyncio.wait_for(handle.result(), 30)
        took = time.monotonic() - asked

    assert retried["outcome"] == "retrying"
    assert (result["status"], result["reason"]) == ("compensated", "account_closed")
    # Without the retry the reversal would wait out the rest of its 20 s sleep.
    assert took < 5, f"the reversal applied {took:.2f}s after the retry"
    assert await cluster.violations() == []
    status = await asyncio.to_thread(cli_json, cluster, "status", "rt-stuck")
    assert [(a["action"], a["by"], a["outcome"]) for a in status["operator_actions"]] == [
        ("retry", "ops", "retrying")
    ]


async def test_retry_of_what_is_not_waiting_changes_nothing(cluster: Cluster) -> None:
    await cluster.seed({"rn-payer": 1_000}, {"rn-payee": 0})
    await cluster.transfer("rn-done", "rn-payer", "rn-payee", 100)

    finished = await asyncio.to_thread(cli_json, cluster, "retry", "rn-done", expect=1)
    unknown = await asyncio.to_thread(cli_json, cluster, "retry", "rn-never", expect=1)

    assert (finished["outcome"], unknown["outcome"]) == ("finished", "unknown")
    assert len(await cluster.entries("rn-done-")) == 2
