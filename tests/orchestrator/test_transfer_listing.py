"""``crossbank transfers``: newest first, filtered and paged, from the store's own search.

Real banks, a real worker, on crossbank's promise store and on Resonate on
Postgres; the commands run as real subprocesses, the way a user runs them.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from tests.orchestrator.cluster import Cluster
from tests.orchestrator.test_cli_input import run_cli

#: Each command runs on crossbank's promise store and on Resonate on Postgres (conftest.py).
ON_EVERY_BACKEND = True


def cli_json(cluster: Cluster, *args: str, expect: int = 0) -> Any:
    result = run_cli(cluster, *args, "--json")
    assert result.returncode == expect, (result.returncode, result.stdout, result.stderr)
    return json.loads(result.stdout)


def every_page(cluster: Cluster, *args: str) -> list[list[str]]:
    """The transfer ids of each page, following the cursors to the end."""
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        more = ["--cursor", cursor] if cursor else []
        page = cli_json(cluster, "transfers", *args, *more)
        pages.append([t["transfer_id"] for t in page["transfers"]])
        cursor = page["cursor"]
        if cursor is None:
            return pages


def test_listing_is_newest_first_filtered_and_paged(cluster: Cluster) -> None:
    asyncio.run(cluster.seed({"tl-payer": 10_000, "tl-poor": 10}, {"tl-payee": 0}))
    before = time.time()
    outcomes = {}
    for n in range(5):
        tid, payer = f"tl-{n}", "tl-payer" if n != 2 else "tl-poor"
        outcomes[tid] = asyncio.run(cluster.transfer(tid, payer, "tl-payee", 100))["status"]
    assert outcomes["tl-2"] == "failed"
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(before - 1))

    pages = every_page(cluster, "--since", since, "--limit", "2")
    assert pages == [["tl-4", "tl-3"], ["tl-2", "tl-1"], ["tl-0"]]

    failed = cli_json(cluster, "transfers", "--since", since, "--status", "failed")
    assert [(t["transfer_id"], t["status"]) for t in failed["transfers"]] == [("tl-2", "failed")]
    (row,) = failed["transfers"]
    assert row["request"] == {
        "transfer_id": "tl-2",
        "source_account": "tl-poor",
        "target_account": "tl-payee",
        "amount": 100,
    }
    assert (row["reason"], row["saga_version"]) == ("insufficient_funds", 2)
    committed = every_page(cluster, "--since", since, "--status", "committed", "--limit", "3")
    assert committed == [["tl-4", "tl-3", "tl-1"], ["tl-0"]]
    assert cli_json(cluster, "transfers", "--since", "1m", "--status", "in_progress") == {
        "transfers": [],
        "cursor": None,
    }

    text = run_cli(cluster, "transfers", "--since", since, "--limit", "2")
    assert text.returncode == 0
    assert "tl-4" in text.stdout
    assert "more: crossbank transfers --limit 2 --since" in text.stdout


def test_bad_listing_input_is_refused(cluster: Cluster) -> None:
    for args, words in [
        (("--status", "lost"), "unknown status 'lost'"),
        (("--since", "yesterday"), "--since 'yesterday'"),
        (("--cursor", "not-a-cursor"), "not a cursor"),
        (("--limit", "0"), "invalid limit"),
    ]:
        result = run_cli(cluster, "transfers", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert words in result.stderr, (args, result.stderr)
