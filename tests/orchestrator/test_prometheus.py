"""A real Prometheus scraping a running crossbank agrees with its ledgers and its audit.

Debian's ``prometheus`` (started here, scraping each second) scrapes both
banks and the store (with their tokens) and two workers (``METRICS_PORT``),
while transfers commit, fail (insufficient funds) and compensate (a closed
target account), and while the worker running a held credit is SIGKILLed.
Its query API then counts as many committed, compensated and failed
transfers as the ledgers and ``crossbank audit`` show, and the money in
flight it computes from the banks' ledgers is the held credit's amount while
it is held and 0 once every transfer is finished.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import audit
from orchestrator.local.prometheus import PrivatePrometheus, ScrapeJob
from orchestrator.local.supervisor import free_port
from orchestrator.local.system import wait_until
from orchestrator.transfers import TransferRequest, start_transfer
from tests.orchestrator.cluster import (
    STORE_TOKEN,
    TOKEN,
    Cluster,
    running_cluster,
    wait_for_hold,
)

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

#: Debited at the source and neither credited at the target nor reversed yet, in cents.
MONEY_IN_FLIGHT = (
    'sum(crossbank_bank_ledger_cents{kind="debit"} or vector(0))'
    ' - sum(crossbank_bank_ledger_cents{kind="reversal"} or vector(0))'
    ' - sum(crossbank_bank_ledger_cents{kind="credit"} or vector(0))'
)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    if shutil.which("prometheus") is None:
        pytest.skip("no prometheus binary (Debian: apt-get install prometheus)")
    with running_cluster(tmp_path / "system", workers=0) as cluster:
        yield cluster


async def test_prometheus_counts_what_the_ledgers_and_the_audit_say(
    cluster: Cluster, tmp_path: Path
) -> None:
    workers = {}
    for port in (free_port(), free_port()):
        env = {"METRICS_PORT": str(port)}
        workers[f"127.0.0.1:{port}"] = await asyncio.to_thread(cluster.start_worker, env=env)
    ports = cluster.ports
    jobs = [
        ScrapeJob("banks", (f"127.0.0.1:{ports['source']}", f"127.0.0.1:{ports['target']}"), TOKEN),
        ScrapeJob("store", (f"127.0.0.1:{ports['store']}",), STORE_TOKEN),
        ScrapeJob("workers", tuple(workers)),
    ]
    await cluster.seed({"p-src": 50_000}, {"p-dst": 0, "p-shut": 0}, closed=["p-shut"])
    with PrivatePrometheus(free_port(), log_path=tmp_path / "prometheus.log") as prometheus:
        await asyncio.to_thread(prometheus.start, jobs)

        async def all_up() -> bool:
            up = await asyncio.to_thread(prometheus.targets_up)
            return len(up) == 5 and all(up.values())

        await wait_until(all_up, what="every part scraped")

        async def shows(expr: str, expected: float) -> bool:
            return await asyncio.to_thread(prometheus.value, expr) == expected

        async with cluster.banks() as (_, target), cluster.client() as client:
            # A credit held at the target: its money is in flight until the credit lands.
            await target.set_faults([{"action": "hold_before", "op_id": "p-held-credit"}])
            held = await start_transfer(
                client, cluster.settings, TransferRequest("p-held", "p-src", "p-dst", 1_234)
            )
            await wait_for_hold(target, "p-held-credit", "before")
            await wait_until(
                lambda: shows(MONEY_IN_FLIGHT, 1_234), what="the held credit in flight"
            )
            # The worker running it (as its own metrics say) is killed; the other takes over.
            running = await wait_until(
                lambda: asyncio.to_thread(
                    prometheus.query, "crossbank_worker_transfers_running == 1"
                ),
                what="the worker running the held transfer",
            )
            workers[running[0]["metric"]["instance"]].kill()

            requests = [
                *(TransferRequest(f"p-ok-{i}", "p-src", "p-dst", 100 + i) for i in range(6)),
                *(TransferRequest(f"p-back-{i}", "p-src", "p-shut", 200 + i) for i in range(4)),
                *(TransferRequest(f"p-no-{i}", "p-src", "p-dst", 10**7) for i in range(3)),
            ]
            handles = [await start_transfer(client, cluster.settings, r) for r in requests]
            await target.clear_faults()
            results = [await asyncio.wait_for(h.result(), 90) for h in (held, *handles)]

        statuses = [result["status"] for result in results]
        outcomes = {s: statuses.count(s) for s in ("committed", "compensated", "failed")}
        assert outcomes == {"committed": 7, "compensated": 4, "failed": 3}

        ledgers = await audit.collect(cluster.settings)
        assert audit.check(ledgers) == []
        credits = [e for e in ledgers.target.entries if e["kind"] == "credit"]
        reversals = [e for e in ledgers.source.entries if e["kind"] == "reversal"]
        assert (len(credits), len(reversals)) == (outcomes["committed"], outcomes["compensated"])

        queries = {
            "committed": 'sum(crossbank_bank_ledger_entries{bank="target",kind="credit"})',
            "compensated": 'sum(crossbank_bank_ledger_entries{bank="source",kind="reversal"})',
            "failed": 'sum(crossbank_bank_ledger_voids{bank="source"})',
        }
        for status, expr in queries.items():
            counted = functools.partial(shows, expr, outcomes[status])
            await wait_until(counted, what=f"{status} in Prometheus")
        await wait_until(lambda: shows(MONEY_IN_FLIGHT, 0), what="nothing in flight")
