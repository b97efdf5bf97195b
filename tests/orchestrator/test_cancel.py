"""``crossbank cancel``: the bank's void fence decides every race between a cancel and a step.

Real banks, a real worker, on crossbank's promise store and on Resonate on
Postgres. Each race is set up the way the crash demo sets up a kill: the
bank parks the step's request (a ``hold_before`` or ``hold_after`` rule), the
cancel runs while it is parked, then the request is let go. Whatever the
order, one outcome: each op applied at most once, and the audit clean.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from orchestrator.operations import cancel_transfer
from orchestrator.transfers import TransferRequest, start_transfer
from tests.orchestrator.cluster import Cluster, wait_for_hold
from tests.orchestrator.test_cli_input import run_cli

pytestmark = pytest.mark.anyio

#: Each test runs on crossbank's promise store and on Resonate on Postgres (conftest.py).
ON_EVERY_BACKEND = True

WHO, WHY = "ops@bank", "customer withdrew"


async def cancel(cluster: Cluster, transfer_id: str) -> str:
    async with cluster.banks() as (source, target), cluster.client() as client:
        done = await cancel_transfer(client, source, target, transfer_id, by=WHO, reason=WHY)
    assert done.record_error is None
    return done.outcome


async def finished_clean(cluster: Cluster, transfer_id: str, kinds: list[str]) -> None:
    """The transfer's entries are exactly ``kinds``, each once, and the audit finds nothing."""
    entries = await cluster.entries(f"{transfer_id}-")
    assert sorted(entry["kind"] for entry in entries) == sorted(kinds)
    assert await cluster.violations() == []


def assert_cancelled(result: dict[str, Any], status: str) -> None:
    assert (result["status"], result["reason"]) == (status, "cancelled")
    assert result["cancelled"]["by"] == WHO
    assert result["cancelled"]["reason"] == WHY


async def test_cancel_before_the_transfer_starts_leaves_a_tombstone(cluster: Cluster) -> None:
    await cluster.seed({"cb-payer": 1_000}, {"cb-payee": 0})

    assert await cancel(cluster, "cb-early") == "cancelled_before_debit"
    result = await cluster.transfer("cb-early", "cb-payer", "cb-payee", 300)

    assert_cancelled(result, "failed")
    await finished_clean(cluster, "cb-early", [])
    assert (await cluster.balances())["source:cb-payer"] == 1_000


@pytest.mark.parametrize(
    ("stage", "outcome", "status", "kinds"),
    [
        # The debit is parked before it applies: the void wins, the debit never applies.
        pytest.param("before", "cancelled_before_debit", "failed", [], id="debit-held-before"),
        # The debit applied and its answer is parked: the credit's op id is voided instead.
        pytest.param(
            "after",
            "cancelled_after_debit",
            "compensated",
            ["debit", "reversal"],
            id="debit-held-after",
        ),
    ],
)
async def test_cancel_racing_the_debit(
    cluster: Cluster, stage: str, outcome: str, status: str, kinds: list[str]
) -> None:
    transfer_id = f"cd-{stage}"
    payer, payee = f"cd-payer-{stage}", f"cd-payee-{stage}"
    await cluster.seed({payer: 1_000}, {payee: 0})
    op_id = f"{transfer_id}-debit"
    async with cluster.banks() as (source, _), cluster.client() as client:
        await source.set_faults([{"action": f"hold_{stage}", "op_id": op_id, "times": 1}])
        handle = await start_transfer(
            client, cluster.settings, TransferRequest(transfer_id, payer, payee, 400)
        )
        await wait_for_hold(source, op_id, stage)

        assert await cancel(cluster, transfer_id) == outcome
        assert await source.release(op_id) == 1
        result = await asyncio.wait_for(handle.result(), 60)

    assert_cancelled(result, status)
    await finished_clean(cluster, transfer_id, kinds)


async def test_cancel_after_the_credit_applied_changes_nothing(cluster: Cluster) -> None:
    """The credit landed (its answer is parked): too late, exit 1, and the transfer commits."""
    await cluster.seed({"cc-payer": 1_000}, {"cc-payee": 0})
    op_id = "cc-late-credit"
    async with cluster.banks() as (_, target), cluster.client() as client:
        await target.set_faults([{"action": "hold_after", "op_id": op_id, "times": 1}])
        handle = await start_transfer(
            client, cluster.settings, TransferRequest("cc-late", "cc-payer", "cc-payee", 400)
        )
        await wait_for_hold(target, op_id, "after")

        cli = await asyncio.to_thread(
            run_cli, cluster, "cancel", "cc-late", "--reason", WHY, "--by", WHO, "--json"
        )
        assert cli.returncode == 1, cli.stderr
        assert json.loads(cli.stdout)["outcome"] == "too_late"
        assert await target.release(op_id) == 1
        result = await asyncio.wait_for(handle.result(), 60)

    assert (result["status"], result["cancelled"]) == ("committed", None)
    await finished_clean(cluster, "cc-late", ["debit", "credit"])
    # The refused cancel is on the record too, with who asked and why.
    status = await asyncio.to_thread(run_cli, cluster, "status", "cc-late", "--json")
    (action,) = json.loads(status.stdout)["operator_actions"]
    assert (action["action"], action["by"], action["reason"], action["outcome"]) == (
        "cancel",
        WHO,
        WHY,
        "too_late",
    )


async def test_cancel_while_the_worker_is_dead_mid_credit(cluster: Cluster) -> None:
    """SIGKILLed with its credit parked: the cancel needs no worker, and the next one compensates."""
    await cluster.seed({"ck-payer": 1_000}, {"ck-payee": 0})
    op_id = "ck-dead-credit"
    async with cluster.banks() as (_, target), cluster.client() as client:
        await target.set_faults([{"action": "hold_before", "op_id": op_id, "times": 1}])
        handle = await start_transfer(
            client, cluster.settings, TransferRequest("ck-dead", "ck-payer", "ck-payee", 400)
        )
        await wait_for_hold(target, op_id, "before")
        (victim,) = cluster.running_workers()
        victim.kill()

        cli = await asyncio.to_thread(
            run_cli, cluster, "cancel", "ck-dead", "--reason", WHY, "--by", WHO, "--json"
        )
        assert cli.returncode == 0, cli.stderr
        assert json.loads(cli.stdout)["outcome"] == "cancelled_after_debit"
        assert await target.release(op_id) == 1  # the dead worker's credit, refused now
        await asyncio.to_thread(cluster.start_worker)
        result = await asyncio.wait_for(handle.result(), 60)

    assert_cancelled(result, "compensated")
    await finished_clean(cluster, "ck-dead", ["debit", "reversal"])
    assert (await cluster.balances())["source:ck-payer"] == 1_000


async def test_a_finished_transfer_cannot_be_cancelled(cluster: Cluster) -> None:
    await cluster.seed({"cf-payer": 1_000}, {"cf-payee": 0})
    await cluster.transfer("cf-done", "cf-payer", "cf-payee", 100)

    cli = await asyncio.to_thread(run_cli, cluster, "cancel", "cf-done", "--reason", WHY)

    assert cli.returncode == 1
    assert "already finished (committed)" in cli.stdout
    await finished_clean(cluster, "cf-done", ["debit", "credit"])


@pytest.mark.parametrize("reason", ["", "   ", "x" * 201, "line\nbreak"])
async def test_a_bad_reason_is_refused_and_changes_nothing(cluster: Cluster, reason: str) -> None:
    cli = await asyncio.to_thread(run_cli, cluster, "cancel", "cr-bad", "--reason", reason)

    assert cli.returncode == 2
    assert "--reason must be 1 to 200 printable characters" in cli.stderr
    async with cluster.banks() as (source, _):
        assert await source.get_entry("cr-bad-debit") is None


@pytest.mark.parametrize("command", ["cancel", "retry"])
async def test_an_id_no_transfer_can_have_is_refused(cluster: Cluster, command: str) -> None:
    extra = ["--reason", WHY] if command == "cancel" else []
    cli = await asyncio.to_thread(run_cli, cluster, command, "../etc", *extra)

    assert cli.returncode == 2
    assert "transfer id '../etc' must be 1-100 letters" in cli.stderr
