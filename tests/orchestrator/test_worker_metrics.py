"""A worker's ``/metrics`` (``METRICS_PORT``): what its sagas did, read over real HTTP.

A real worker process with real banks and store runs a committed, a failed
(insufficient funds) and a compensated (closed target account) transfer; its
metrics then count exactly those outcomes, bank answers and fences, its push
channel is up, and nothing in them names a transfer or an account.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.local.supervisor import free_port
from tests.orchestrator.cluster import Cluster, running_cluster, wait_until

pytestmark = pytest.mark.anyio

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("metrics"), workers=0) as cluster:
        yield cluster


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_a_worker_counts_what_its_sagas_did(cluster: Cluster) -> None:
    port = free_port()
    await asyncio.to_thread(lambda: cluster.start_worker(env={"METRICS_PORT": str(port)}))
    await cluster.seed({"m-src": 10_000}, {"m-dst": 0, "m-shut": 0}, closed=["m-shut"])

    committed = await cluster.transfer("m-committed", "m-src", "m-dst", 2_500)
    failed = await cluster.transfer("m-failed", "m-src", "m-dst", 1_000_000)
    compensated = await cluster.transfer("m-compensated", "m-src", "m-shut", 700)
    assert [r["status"] for r in (committed, failed, compensated)] == [
        "committed",
        "failed",
        "compensated",
    ]

    async def channel_up() -> Samples | None:
        samples = parse(await asyncio.to_thread(metrics_text, port))
        return samples if value(samples, "crossbank_worker_push_channel_up") == 1 else None

    samples = await wait_until(channel_up, what="the push channel up in the worker's metrics")
    finished = "crossbank_worker_transfers_finished_total"
    assert value(samples, finished, status="committed", reason="") == 1
    assert value(samples, finished, status="failed", reason="insufficient_funds") == 1
    assert value(samples, finished, status="compensated", reason="account_closed") == 1
    assert value(samples, "crossbank_worker_transfers_started_total") == 3
    assert value(samples, "crossbank_worker_transfer_seconds_count", status="committed") == 1

    requests = "crossbank_worker_bank_request_seconds_count"
    assert value(samples, requests, bank="source", kind="debit", answer="applied") == 2
    assert value(samples, requests, bank="source", kind="debit", answer="rejected") == 1
    assert value(samples, requests, bank="target", kind="credit", answer="applied") == 1
    assert value(samples, requests, bank="target", kind="credit", answer="rejected") == 1
    assert value(samples, requests, bank="source", kind="reversal", answer="applied") == 1
    # Each refusal is fenced: its op id voided, so no earlier attempt can land later.
    assert value(samples, "crossbank_worker_fences_total", bank="source", found="voided") == 1
    assert value(samples, "crossbank_worker_fences_total", bank="target", found="voided") == 1
    assert value(samples, "crossbank_worker_transfers_running") == 0
    assert value(samples, "crossbank_worker_reversals_waiting") == 0

    text = await asyncio.to_thread(metrics_text, port)
    for name in ("m-committed", "m-src", "m-dst", "m-shut"):
        assert name not in text


def test_a_bad_metrics_port_is_refused_naming_it(cluster: Cluster) -> None:
    env = {**cluster.worker_env, "METRICS_PORT": "http"}
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert "METRICS_PORT" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
