"""Workers never go deaf: the push channel stays open for as long as the worker runs.

The SDK's own channel ended silently when aiohttp's 300 s total timeout hit
the stream, and the worker took no more work. Here a real worker
process's channel is pushed through its limits by the same settings a
deployment uses (``PUSH_MAX_LIFETIME``, ``PUSH_IDLE_TIMEOUT``), and the store is
killed under it; each time the worker says in its log that it reconnected and
why, and a transfer started afterwards commits with every op applied once.
Its container healthcheck (``deploy/healthcheck.py --worker``) is run as the
container runs it, and says unhealthy while the store is down.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.local.supervisor import ManagedProcess
from tests.orchestrator.cluster import Cluster, running_cluster, wait_until

pytestmark = pytest.mark.anyio

HEALTHCHECK = Path(__file__).resolve().parents[2] / "deploy" / "healthcheck.py"


@pytest.fixture(scope="module")
def push_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Banks and store; each test starts the worker it needs."""
    with running_cluster(tmp_path_factory.mktemp("push"), workers=0) as started:
        yield started


@pytest.fixture
def cluster(push_cluster: Cluster) -> Iterator[Cluster]:
    if not push_cluster.store.running():
        push_cluster.store.start()
    yield push_cluster
    for worker in push_cluster.running_workers():
        worker.stop()


def log_of(worker: ManagedProcess) -> str:
    assert worker.log_path is not None
    return worker.log_path.read_text(errors="replace")


async def logged(worker: ManagedProcess, text: str, times: int = 1, within: float = 30) -> None:
    async def enough() -> bool:
        return log_of(worker).count(text) >= times

    try:
        await wait_until(enough, within=within, interval=0.1)
    except TimeoutError:
        raise AssertionError(
            f"{worker.name} never logged {text!r} {times}x:\n{log_of(worker)}"
        ) from None


def healthcheck(worker: ManagedProcess) -> subprocess.CompletedProcess[str]:
    """The worker container's healthcheck, run with the worker's own environment."""
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK), "--worker"],
        env=worker.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


async def health_becomes(worker: ManagedProcess, healthy: bool, within: float = 30) -> str:
    async def matches() -> str | None:
        done = await asyncio.to_thread(healthcheck, worker)
        return (done.stdout + done.stderr or "ok") if (done.returncode == 0) == healthy else None

    try:
        found: str = await wait_until(matches, within=within, interval=0.2)
    except TimeoutError:
        raise AssertionError(
            f"healthcheck never said healthy={healthy}: {healthcheck(worker)}\n{log_of(worker)}"
        ) from None
    return found


async def assert_transfer_commits_once(cluster: Cluster, transfer_id: str) -> None:
    source, target = f"{transfer_id}-src", f"{transfer_id}-dst"
    await cluster.seed({source: 1000}, {target: 0})
    result = await cluster.transfer(transfer_id, source, target, 250, within=90)
    assert result["status"] == "committed", result
    kinds = sorted(entry["kind"] for entry in await cluster.entries(transfer_id))
    assert kinds == ["credit", "debit"]
    balances = await cluster.balances()
    assert (balances[f"source:{source}"], balances[f"target:{target}"]) == (750, 250)
    assert await cluster.violations() == []


@pytest.mark.parametrize(
    ("limit", "reason", "reopened"),
    [
        (
            {"PUSH_MAX_LIFETIME": "1"},
            "(PUSH_MAX_LIFETIME): reconnecting on purpose",
            "push channel open at",
        ),
        # Below the store's 10 s keepalive: every stream ends by going silent.
        (
            {"PUSH_IDLE_TIMEOUT": "1"},
            "push channel lost (nothing from the store for 1s (PUSH_IDLE_TIMEOUT))",
            "push channel back at",
        ),
    ],
    ids=["lifetime", "idle-timeout"],
)
async def test_worker_takes_work_after_its_channel_outlives_a_limit(
    cluster: Cluster, limit: dict[str, str], reason: str, reopened: str
) -> None:
    worker = await asyncio.to_thread(lambda: cluster.start_worker(env=limit))
    await logged(worker, reason, times=3)
    await logged(worker, reopened, times=3)

    await assert_transfer_commits_once(cluster, f"t-push-{next(iter(limit)).lower()}")
    assert worker.running()


async def test_worker_reconnects_after_store_restart_and_health_follows(
    cluster: Cluster, tmp_path: Path
) -> None:
    health_file = {"WORKER_HEALTH_FILE": str(tmp_path / "worker.health")}
    worker = await asyncio.to_thread(lambda: cluster.start_worker(env=health_file))
    await health_becomes(worker, healthy=True)

    cluster.store.kill()
    why = await health_becomes(worker, healthy=False)
    assert "push channel down" in why, why
    await logged(worker, "push channel lost (")
    assert healthcheck(worker).returncode == 1  # and it stays so while the store is down

    await asyncio.to_thread(cluster.store.start)
    await logged(worker, "push channel back")
    await health_becomes(worker, healthy=True)
    await assert_transfer_commits_once(cluster, "t-push-store-restart")


def test_a_worker_with_several_channels_is_up_only_while_all_are() -> None:
    """One channel per saga version: the health file and the gauge need every one of them."""
    from orchestrator.push import EveryChannel

    heard: list[str] = []

    class Recorder:
        def connected(self) -> None:
            heard.append("up")

        def disconnected(self, reason: str) -> None:
            heard.append(f"down: {reason}")

    every = EveryChannel([Recorder()], 2)
    first, second = every.channel(0), every.channel(1)
    first.connected()
    assert heard == []  # the second version's transfers cannot reach it yet
    second.connected()
    first.connected()  # again while it stays open
    second.disconnected("stream ended")
    second.connected()
    assert heard == ["up", "up", "down: stream ended", "up"]
