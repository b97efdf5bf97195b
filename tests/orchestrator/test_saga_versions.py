"""Versioned sagas: each transfer finishes on the version it started with, through a rolling upgrade.

Real banks, real workers with ``SAGA_VERSIONS`` of their own, on crossbank's
promise store and on Resonate on Postgres. The store routes each version's
transfers to that version's group, so a worker that lacks a version never
sees its transfers; ``crossbank versions`` says when an old version's
workers may stop.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import pytest

from orchestrator.local.supervisor import ManagedProcess
from orchestrator.transfers import TransferHandle, TransferRequest, start_transfer
from tests.orchestrator.cluster import Cluster, wait_for_hold, wait_until
from tests.orchestrator.test_cli_input import run_cli

pytestmark = pytest.mark.anyio

#: Each test runs on crossbank's promise store and on Resonate on Postgres (conftest.py).
ON_EVERY_BACKEND = True


def only_worker(cluster: Cluster, versions: str) -> ManagedProcess:
    """Stop every worker, then start one that carries ``versions`` (``SAGA_VERSIONS``)."""
    for worker in cluster.running_workers():
        worker.stop()
    return cluster.start_worker(env={"SAGA_VERSIONS": versions})


def ran(worker: ManagedProcess, transfer_id: str) -> bool:
    """Whether ``worker``'s log shows it running a step of ``transfer_id``."""
    assert worker.log_path is not None
    return f"transfer {transfer_id} " in worker.log_path.read_text()


def unfinished(cluster: Cluster) -> dict[int, int]:
    result = run_cli(cluster, "versions", "--json")
    assert result.returncode == 0, result.stderr
    return {row["version"]: row["unfinished"] for row in json.loads(result.stdout)["versions"]}


async def start(cluster: Cluster, version: int, transfer_id: str, payer: str) -> TransferHandle:
    settings = replace(cluster.settings, saga_version=version)
    async with cluster.client() as client:
        return await start_transfer(
            client, settings, TransferRequest(transfer_id, payer, "rv-payee", 100)
        )


async def result_of(cluster: Cluster, transfer_id: str) -> dict[str, Any]:
    async def finished() -> dict[str, Any] | None:
        record = await cluster.record(transfer_id)
        return record if record is not None and record["state"] == "resolved" else None

    return await wait_until(finished, within=60, what=f"{transfer_id} finished")


async def test_rolling_upgrade_finishes_each_transfer_on_its_version(cluster: Cluster) -> None:
    payers = {f"rv-payer-{n}": 10_000 for n in range(6)}
    await cluster.seed(payers, {"rv-payee": 0})
    v1_worker = await asyncio.to_thread(only_worker, cluster, "1")

    # Transfers in flight on version 1; two of them held mid-credit by the target bank.
    held = ["rv-v1-held-0", "rv-v1-held-1"]
    async with cluster.banks() as (_, target):
        await target.set_faults(
            [{"action": "hold_before", "op_id": f"{tid}-credit", "times": 1} for tid in held]
        )
        for n, tid in enumerate([*held, "rv-v1-free"]):
            await start(cluster, 1, tid, f"rv-payer-{n}")
        for tid in held:
            await wait_for_hold(target, f"{tid}-credit", "before")
        await result_of(cluster, "rv-v1-free")
        assert await asyncio.to_thread(unfinished, cluster) == {1: 2, 2: 0}

        # Version 2 workers start; new transfers start on version 2 and run there.
        v2_worker = await asyncio.to_thread(cluster.start_worker, env={"SAGA_VERSIONS": "2"})
        for n, tid in enumerate(["rv-v2-0", "rv-v2-1"], start=3):
            await start(cluster, 2, tid, f"rv-payer-{n}")
        for tid in ["rv-v2-0", "rv-v2-1"]:
            assert (await result_of(cluster, tid))["result"]["status"] == "committed"

        # The held version-1 transfers go on, and finish, on the version-1 worker.
        for tid in held:
            assert await target.release(f"{tid}-credit") == 1
    for tid in held:
        assert (await result_of(cluster, tid))["result"]["status"] == "committed"
    assert await asyncio.to_thread(unfinished, cluster) == {1: 0, 2: 0}
    v1_worker.stop()  # nothing of version 1 is left: the old workers may go

    for tid in [*held, "rv-v1-free"]:
        record = await cluster.record(tid)
        assert record is not None
        assert record["saga_version"] == 1
        assert ran(v1_worker, tid)
        assert not ran(v2_worker, tid)
    for tid in ["rv-v2-0", "rv-v2-1"]:
        record = await cluster.record(tid)
        assert record is not None
        assert record["saga_version"] == 2
        assert ran(v2_worker, tid)
        assert not ran(v1_worker, tid)
    assert await cluster.violations() == []


async def test_a_worker_without_the_version_leaves_the_transfer_alone(cluster: Cluster) -> None:
    await cluster.seed({"rv-lone-payer": 1_000}, {"rv-payee": 0})
    v2_only = await asyncio.to_thread(only_worker, cluster, "2")

    await start(cluster, 1, "rv-lone", "rv-lone-payer")
    await asyncio.sleep(3)  # more than a lease (2 s): long enough to have been taken

    record = await cluster.record("rv-lone")
    assert record is not None
    assert (record["state"], record["steps"]) == ("pending", [])
    assert await cluster.entries("rv-lone-") == []
    assert not ran(v2_only, "rv-lone")

    v1 = await asyncio.to_thread(cluster.start_worker, env={"SAGA_VERSIONS": "1"})
    assert (await result_of(cluster, "rv-lone"))["result"]["status"] == "committed"
    assert ran(v1, "rv-lone")
    assert not ran(v2_only, "rv-lone")


def test_a_version_this_code_lacks_is_refused_at_start(cluster: Cluster) -> None:
    result = run_cli(
        cluster, "transfer", "--from", "a", "--to", "b", "--amount", "1", env={"SAGA_VERSION": "9"}
    )
    assert result.returncode == 2
    assert "SAGA_VERSION" in result.stderr
    assert "does not have" in result.stderr
