"""The three outcomes of a transfer, through a real worker, banks and served store."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.transfers import TransferConflict, TransferRequest, start_transfer
from tests.orchestrator.cluster import Cluster

pytestmark = pytest.mark.anyio

#: Each test runs on crossbank's promise store and on Resonate on Postgres (conftest.py).
ON_EVERY_BACKEND = True


async def test_committed_compensated_and_failed(cluster: Cluster) -> None:
    await cluster.seed({"alice": 10_000}, {"bob": 0, "carol": 0}, closed=("carol",))

    committed = await cluster.transfer("t-ok", "alice", "bob", 1_250)
    compensated = await cluster.transfer("t-closed", "alice", "carol", 700)
    failed = await cluster.transfer("t-poor", "alice", "bob", 1_000_000)
    unknown = await cluster.transfer("t-nobody", "alice", "zed", 100)

    assert committed["status"] == "committed"
    assert committed["reason"] is None
    assert committed["steps"]["credit"]["entry"]["amount"] == 1_250
    assert compensated["status"] == "compensated"
    assert compensated["reason"] == "account_closed"
    assert compensated["steps"]["reversal"]["status"] == "applied"
    assert failed["status"] == "failed"
    assert failed["reason"] == "insufficient_funds"
    assert failed["steps"]["credit"] is None
    assert unknown["status"] == "compensated"
    assert unknown["reason"] == "unknown_account"

    balances = await cluster.balances()
    assert balances["source:alice"] == 10_000 - 1_250
    assert balances["target:bob"] == 1_250
    assert balances["target:carol"] == 0
    assert await cluster.violations() == []


async def test_source_rejects_debit_of_unknown_account(cluster: Cluster) -> None:
    await cluster.seed({"ann": 500}, {"ben": 0})

    result = await cluster.transfer("t-ghost", "ghost", "ben", 100)

    assert (result["status"], result["reason"]) == ("failed", "unknown_account")
    assert await cluster.entries("t-ghost") == []
    assert await cluster.violations() == []


async def test_record_shows_params_steps_and_result(cluster: Cluster) -> None:
    await cluster.seed({"cat": 500}, {"dan": 0})
    assert await cluster.record("t-rec") is None

    result = await cluster.transfer("t-rec", "cat", "dan", 100)
    record = await cluster.record("t-rec")

    assert record is not None
    assert record["state"] == "resolved"
    assert record["request"] == {
        "transfer_id": "t-rec",
        "source_account": "cat",
        "target_account": "dan",
        "amount": 100,
    }
    assert record["result"] == result
    assert [step["value"]["step"] for step in record["steps"]] == ["debit", "credit"]
    assert record["needs_attention"] is False


async def test_same_id_twice_returns_the_first_result(cluster: Cluster) -> None:
    await cluster.seed({"eve": 1_000}, {"fay": 0})

    first = await cluster.transfer("t-twice", "eve", "fay", 300)
    second = await cluster.transfer("t-twice", "eve", "fay", 300)

    assert second == first
    assert len(await cluster.entries("t-twice")) == 2  # one debit, one credit
    assert (await cluster.balances())["source:eve"] == 700
    assert await cluster.violations() == []


async def test_same_id_started_concurrently_runs_once(cluster: Cluster) -> None:
    await cluster.seed({"gil": 1_000}, {"hal": 0})
    request = TransferRequest("t-race", "gil", "hal", 250)

    async def start_and_wait() -> dict[str, object]:
        async with cluster.client() as resonate:
            handle = await start_transfer(resonate, cluster.settings, request)
            result: dict[str, object] = await asyncio.wait_for(handle.result(), 60)
            return result

    results = await asyncio.gather(*(start_and_wait() for _ in range(6)))

    assert all(result == results[0] for result in results)
    assert results[0]["status"] == "committed"
    entries = await cluster.entries("t-race")
    assert sorted(entry["op_id"] for entry in entries) == ["t-race-credit", "t-race-debit"]
    assert (await cluster.balances())["source:gil"] == 750
    assert await cluster.violations() == []


async def test_same_id_with_other_parameters_is_refused(cluster: Cluster) -> None:
    await cluster.seed({"ivy": 1_000}, {"jon": 0})
    await cluster.transfer("t-conflict", "ivy", "jon", 300)

    async with cluster.client() as resonate:
        handle = await start_transfer(
            resonate, cluster.settings, TransferRequest("t-conflict", "ivy", "jon", 301)
        )
        with pytest.raises(TransferConflict, match="already exists with different parameters"):
            await handle.result()

    assert (await cluster.balances())["source:ivy"] == 700


async def test_a_start_racing_the_clients_refresh_still_gets_its_result(cluster: Cluster) -> None:
    """The SDK registers a handle before its promise exists; a refresh in between reads 404.

    The client's refresh loop (every ``CLIENT_POLL_SECONDS``) re-registers
    every pending handle. Here it is made to wake the moment a handle is
    registered, so its ``register_listener`` reaches the store before the
    ``promise.create``: the store answers 404 and the SDK settles the handle
    as "promise not found", although the transfer runs. The result must still
    arrive, and the money move once.
    """
    await cluster.seed({"race-src": 10_000}, {"race-dst": 0})
    async with cluster.client() as resonate:
        subscriptions = resonate._runtime.subs  # the SDK's pending handles, by promise id

        async def wake_when_a_handle_is_registered(_seconds: float) -> None:
            while all(sub.settled() for sub in subscriptions.values()):  # noqa: ASYNC110 (no event marks a new handle)
                await asyncio.sleep(0)

        resonate._sleeper = wake_when_a_handle_is_registered
        results = []
        for n in range(5):
            request = TransferRequest(f"t-race-{n}", "race-src", "race-dst", 1)
            handle = await start_transfer(resonate, cluster.settings, request)
            results.append(await asyncio.wait_for(handle.result(), 30))

    assert [r["status"] for r in results] == ["committed"] * 5
    assert (await cluster.balances())["target:race-dst"] == 5
    assert await cluster.violations() == []
