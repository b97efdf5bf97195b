"""``crossbank audit`` on real ledgers: clean after real transfers, and a real violation caught.

The test breaks its cluster's ledgers on purpose, so it starts a cluster of
its own rather than borrowing the shared one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.orchestrator.cluster import Cluster, backend_options, running_cluster
from tests.orchestrator.test_cli_input import run_cli

#: The audit runs on crossbank's promise store and on Resonate on Postgres (conftest.py).
ON_EVERY_BACKEND = True


@pytest.fixture
def own_cluster(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    with running_cluster(tmp_path, **backend_options(backend, request)) as started:
        yield started


def test_audit_is_clean_then_names_a_stray_credit(own_cluster: Cluster) -> None:
    cluster = own_cluster
    accounts = ({"au-alice": 10_000}, {"au-carol": 0, "au-closed": 0})
    asyncio.run(cluster.seed(*accounts, closed=("au-closed",)))
    assert asyncio.run(cluster.transfer("au-1", "au-alice", "au-carol", 1_000))["status"] == (
        "committed"
    )
    compensated = asyncio.run(cluster.transfer("au-2", "au-alice", "au-closed", 10))
    assert compensated["status"] == "compensated"
    failed = asyncio.run(cluster.transfer("au-3", "au-alice", "au-carol", 1_000_000))
    assert failed["status"] == "failed"

    clean = run_cli(cluster, "audit")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.startswith("audit: clean")
    report = json.loads(run_cli(cluster, "audit", "--json").stdout)
    assert report["clean"] is True
    assert report["violations"] == []
    assert report["entries"] == 4

    async def post_stray_credit() -> None:
        async with cluster.banks() as (_, target):
            outcome = await target.post_entry("au-stray-credit", "au-carol", 777, "credit")
            assert outcome.applied

    asyncio.run(post_stray_credit())

    dirty = run_cli(cluster, "audit")
    assert dirty.returncode == 1
    assert dirty.stdout.startswith("audit: 2 violation(s)")
    assert "[per_transfer] transfer au-stray: a credit applied with no debit" in (dirty.stdout)
    assert "entry au-stray-credit: credit 7.77 on au-carol" in dirty.stdout
    assert "[conservation]" in dirty.stdout
    assert "+777 cents created" in dirty.stdout

    report = json.loads(run_cli(cluster, "audit", "--json").stdout)
    assert report["clean"] is False
    found = {(v["invariant"], v["transfer_id"]) for v in report["violations"]}
    assert found == {("per_transfer", "au-stray"), ("conservation", None)}
    per_transfer = next(v for v in report["violations"] if v["invariant"] == "per_transfer")
    assert [e["op_id"] for e in per_transfer["entries"]] == ["au-stray-credit"]
