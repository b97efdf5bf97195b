"""A worker cut from the store goes on with its step; the void fence keeps the ledgers right.

The zombie-worker case, on real processes through the campaign's proxies:

1. worker-0 (the only one running) debits, then posts the credit; the target
   bank parks that first attempt (``hold_before``);
2. worker-0 is partitioned from the store (``partition_worker_store``), alive,
   still talking to the banks: its lease lapses while it retries the credit;
3. worker-1 starts and takes the transfer over; every further credit attempt,
   the zombie's and the standby's, fails, so the saga voids the credit's op id
   and compensates;
4. the parked first attempt is let go after the fence: the bank must refuse
   it (the op is voided), so the transfer stays compensated with no credit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from chaos.cluster import Cluster, ClusterConfig, link_name
from chaos.proxy import PARTITION, PASS
from chaos.schedule import STORE, TARGET_BANK
from orchestrator import audit
from orchestrator.bank_client import BankClient
from orchestrator.local.system import wait_for_hold, wait_until
from orchestrator.runtime import close_resonate, open_resonate
from orchestrator.transfers import TransferRequest, start_transfer

TID = "zombie-1"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    running = Cluster(
        ClusterConfig(workdir=tmp_path, workers=2, small_disks=False, stepped_clocks=False)
    )
    try:
        running.start()
        running.processes["worker-1"].kill()  # the standby starts once worker-0 is cut off
        yield running
    finally:
        running.stop()


async def _scenario(cluster: Cluster) -> tuple[dict[str, object], dict[str, object] | None, int]:
    settings = cluster.settings()
    token = cluster.config.bank_token
    to_store = link_name("worker-0", STORE)
    to_target = cluster.proxies.proxies[link_name("worker-0", TARGET_BANK)]
    async with (
        BankClient(cluster.source_url, token=token, name="source") as source,
        BankClient(cluster.target_url, token=token, name="target") as target,
    ):
        await source.put_account("src-1", "open", 10_000)
        await target.put_account("dst-1", "open", 0)
        await target.set_faults([{"action": "hold_before", "kind": "credit", "times": 1}])
        resonate = open_resonate(settings, role="client")
        try:
            handle = await start_transfer(
                resonate, settings, TransferRequest(TID, "src-1", "dst-1", 1_000)
            )
            await wait_for_hold(target, f"{TID}-credit", stage="before")
            cluster.proxies.set_mode(to_store, PARTITION)
            cut_at = to_target.connections_seen
            await target.set_faults([{"action": "fail_before", "kind": "credit"}])
            await asyncio.to_thread(cluster.processes["worker-1"].start)
            result = await asyncio.wait_for(handle.result(), 120)
            zombie_calls = to_target.connections_seen - cut_at
        finally:
            await close_resonate(resonate)
        # The fence is in place; now the zombie's first attempt arrives.
        await target.clear_faults()  # releases the parked request too
        await wait_until(_none_held(target), within=3.0, what="the parked credit released")
        await asyncio.sleep(0.5)  # the released request reaches the ledger (or is refused)
        credit = await target.get_entry(f"{TID}-credit")
        cluster.proxies.set_mode(to_store, PASS)
    return result, credit, zombie_calls


@pytest.mark.timeout(180)
def test_a_zombie_workers_old_credit_lands_after_the_fence_and_is_refused(
    cluster: Cluster,
) -> None:
    result, credit, zombie_calls = asyncio.run(_scenario(cluster))
    assert result["status"] == "compensated", result
    assert credit is not None
    assert credit["state"] == "voided", credit
    # The zombie really kept talking to the bank while cut from the store.
    assert zombie_calls > 0
    standby_log = (cluster.config.workdir / "logs" / "worker-1.log").read_text()
    assert TID in standby_log, "the standby never took the transfer over"
    violations = asyncio.run(_audit(cluster))
    assert violations == [], "\n".join(f"{v.invariant}: {v.detail}" for v in violations)


def _none_held(bank: BankClient) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return not await bank.holds()

    return check


async def _audit(cluster: Cluster) -> list[audit.Violation]:
    async def settled() -> list[audit.Violation] | None:
        ledgers = await audit.collect(cluster.settings())
        return audit.check(ledgers) or None

    try:  # give the healed zombie a moment to try its stale steps; none may land
        return await wait_until(settled, within=3.0, what="a violation")
    except TimeoutError:
        return []
