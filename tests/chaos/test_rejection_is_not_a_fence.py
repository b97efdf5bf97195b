"""Regression: a rejected step must not be final while an earlier attempt is still in flight.

Found by reading the saga while building the chaos campaign, reproduced here
without chaos, deterministically, with the bank's ``hold_before`` rule:

1. the account the step writes to is closed;
2. the step's first POST is parked by the bank before it writes; the worker's
   client times out (an unknown outcome) and retries;
3. the retry is answered 422 ``account_closed``; the saga records that as the
   step's final outcome (compensates after a refused credit, fails the
   transfer after a refused debit) without fencing the op id;
4. the account is reopened and the parked first attempt goes on: the bank
   applies it, since nothing voided that op id.

A refused credit then ends with both a credit and a reversal (money created);
a refused debit ends with a debit on a "failed" transfer (money destroyed).
The same happens when a worker that lost its lease (paused past it) retries a
step another worker already settled as rejected. The saga now settles
a rejection like an unknown outcome, by voiding the op id in the same step
(``voided`` confirms the rejection; ``applied`` means an earlier attempt won).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.cluster import Cluster, ClusterConfig
from orchestrator import audit
from orchestrator.bank_client import BankClient
from orchestrator.runtime import close_resonate, open_resonate
from orchestrator.transfers import TransferRequest, start_transfer

#: How long a released request is given to reach the ledger before the audit.
RELEASE_GRACE_S = 3.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    running = Cluster(ClusterConfig(workdir=tmp_path, workers=1, bank_timeout=1.0, step_backoff=1))
    try:
        running.start()
        yield running
    finally:
        running.stop()


async def _wait_for_hold(bank: BankClient, op_id: str) -> None:
    deadline = time.monotonic() + 60
    while not any(h["op_id"] == op_id for h in await bank.holds()):
        assert time.monotonic() < deadline, f"{op_id} was never parked"
        await asyncio.sleep(0.05)


async def _scenario(cluster: Cluster, step: str) -> tuple[dict[str, object], list[audit.Violation]]:
    settings = cluster.settings()
    token = cluster.config.bank_token
    tid = f"refused-{step}"
    async with (
        BankClient(cluster.source_url, token=token, name="source") as source,
        BankClient(cluster.target_url, token=token, name="target") as target,
    ):
        await source.put_account("src-1", "open", 10_000)
        await target.put_account("dst-1", "open", 0)
        bank, account = (source, "src-1") if step == "debit" else (target, "dst-1")
        await bank.put_account(account, "closed")
        await bank.set_faults([{"action": "hold_before", "kind": step, "times": 1}])

        resonate = open_resonate(settings, role="client")
        try:
            handle = await start_transfer(
                resonate, settings, TransferRequest(tid, "src-1", "dst-1", 1_000)
            )
            await _wait_for_hold(bank, f"{tid}-{step}")
            result = await asyncio.wait_for(handle.result(), 120)
        finally:
            await close_resonate(resonate)

        await bank.put_account(account, "open")
        assert await bank.release() == 1
        deadline = time.monotonic() + RELEASE_GRACE_S
        while time.monotonic() < deadline:
            state = await bank.get_entry(f"{tid}-{step}")
            if state is not None and state["state"] == "applied":
                break
            await asyncio.sleep(0.05)
    return result, audit.check(await audit.collect(settings))


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    ("step", "expected_status"), [("credit", "compensated"), ("debit", "failed")]
)
def test_a_refused_step_stays_refused(cluster: Cluster, step: str, expected_status: str) -> None:
    result, violations = asyncio.run(_scenario(cluster, step))
    assert result["status"] == expected_status
    assert violations == [], "\n".join(f"{v.invariant}: {v.detail}" for v in violations)
