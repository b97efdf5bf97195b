"""Each new fault kind, alone, on real processes under live transfers: it does what it says, and
every invariant holds after it.

One cluster (two banks, the store, two workers, a proxy on every link, small
disks, the store and worker-0 under libfaketime) serves every kind in turn.
For each kind the campaign's own injector carries out one fault of that kind
while a client sends transfers; then the fault is undone, every transfer must
finish, the audit and the campaign's checks must find nothing, and the
evidence that the fault really struck must be there: the link's proxy held,
dropped or reset traffic; the part with the full disk refused a write; the
stepped process stamped time with the stepped clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from resonate.types import Value

from chaos.checks import check_transfers
from chaos.cluster import Cluster, ClusterConfig, link_name
from chaos.injector import FaultRecord, Injector
from chaos.proxy import BLACKHOLE, ONEWAY, PARTITION, RESET, LinkProxy
from chaos.runner import close_quickly
from chaos.schedule import (
    CLIENT,
    CLOCK_KINDS,
    CLOCK_WORKER,
    DISK_KINDS,
    LINK_KINDS,
    STORE,
    Fault,
    PlannedTransfer,
    kinds_for,
)
from chaos.workload import Workload
from orchestrator import audit
from orchestrator.local.system import STORE_BACKEND
from orchestrator.runtime import close_resonate, open_resonate
from orchestrator.settings import Settings

# The client retries a store that is down on purpose; those warnings are expected.
pytestmark = pytest.mark.usefixtures("quiet_sdk_retries")

NEW_KINDS = [
    kind
    for kind in kinds_for(STORE_BACKEND)
    if kind in LINK_KINDS or kind in DISK_KINDS or kind in CLOCK_KINDS
]
#: How long each fault lasts, and how many transfers are sent around it (at a rate
#: that keeps them in flight for the whole fault).
FAULT_S = 3.0
TRANSFERS = 16
RATE = 4.0
#: A clock step back far longer than the fault, so stamps made during it cannot
#: be mistaken for real ones.
CLOCK_STEP_S = -30.0
#: How long the client may take to hear every outcome once the fault is undone.
CLIENT_PATIENCE_S = 10.0
#: The small disks' size here: filling the campaign's default (256 MB) can take
#: longer, on a busy machine, than the transfers sent around the fault.
FULL_DISK_MB = 16


def _running(workdir: Path, **config: Any) -> Iterator[Cluster]:
    running = Cluster(ClusterConfig(workdir=workdir, workers=2, **config))
    try:
        running.start()
        asyncio.run(_open_accounts(running))
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from _running(tmp_path_factory.mktemp("kinds"))


@pytest.fixture
def cluster(kind: str, shared_cluster: Cluster, tmp_path: Path) -> Iterator[Cluster]:
    """The shared cluster; a fresh one for a full disk.

    SQLite appends to its write-ahead log and, once it has checkpointed, writes
    the log's blocks again from the start: a warm ledger or journal needs no
    new block for a while, so a full disk bites only once a file must grow. A
    fresh cluster's files are small, so the transfers sent during the fault
    need new blocks at once.
    """
    if kind in DISK_KINDS:
        yield from _running(tmp_path, disk_mb=FULL_DISK_MB)
    else:
        yield shared_cluster


async def _open_accounts(cluster: Cluster) -> None:
    async with cluster.system.banks() as (source, target):
        await source.put_account("src-1", "open", 10_000_000)
        await target.put_account("dst-1", "open", 0)


@dataclass
class Evidence:
    """What the parts looked like before the fault, to tell what it did."""

    proxy: LinkProxy | None = None
    counters: tuple[int, int, int] = (0, 0, 0)
    log: Path | None = None
    log_offset: int = 0
    stamps: list[tuple[float, int]] = field(default_factory=list)
    #: Wall-clock time the run around the fault began.
    began: float = field(default_factory=time.time)


def _fault(kind: str) -> Fault:
    if kind in LINK_KINDS:
        target = CLIENT if LINK_KINDS[kind].near == CLIENT else "worker-0"
        return Fault(0.5, kind, target, FAULT_S)
    if kind in DISK_KINDS:
        return Fault(0.5, kind, DISK_KINDS[kind], FAULT_S)
    return Fault(0.5, kind, CLOCK_KINDS[kind], FAULT_S, clock_step=CLOCK_STEP_S)


def _counters(proxy: LinkProxy) -> tuple[int, int, int]:
    return (proxy.hung, proxy.dropped_bytes, proxy.resets)


def _before(cluster: Cluster, fault: Fault) -> Evidence:
    if fault.kind in LINK_KINDS:
        proxy = cluster.proxies.proxies[link_name(fault.target, LINK_KINDS[fault.kind].far)]
        return Evidence(proxy=proxy, counters=_counters(proxy))
    part = {"source_bank": "source", "target_bank": "target"}.get(fault.target, fault.target)
    log = cluster.config.workdir / "logs" / f"{part}.log"
    return Evidence(log=log, log_offset=log.stat().st_size if log.exists() else 0)


async def _stamp_store_clock(cluster: Cluster, evidence: Evidence, kind: str) -> None:
    """While the store's clock is stepped, create a promise: the store stamps it."""
    await asyncio.sleep(0.5 + FAULT_S / 2)
    resonate = open_resonate(cluster.settings(), role="client")
    try:
        real = time.time()
        record = await resonate.promises.create(
            f"stamp-{kind}", int(real * 1000) + 600_000, Value(), {}
        )
        evidence.stamps.append((real, record.created_at))
    finally:
        await close_resonate(resonate)


async def _strike(cluster: Cluster, kind: str) -> tuple[FaultRecord, Evidence, list[str]]:
    fault = _fault(kind)
    evidence = _before(cluster, fault)
    settings = cluster.settings()
    planned = tuple(
        PlannedTransfer(f"{kind}-{i:02d}", "src-1", "dst-1", 100 + i) for i in range(TRANSFERS)
    )
    resonate = open_resonate(settings, role="client")
    injector = Injector(cluster)
    problems: list[str] = []
    try:
        workload = Workload(resonate, settings, planned, concurrency=4, rate=RATE)
        sending = asyncio.create_task(workload.run())
        extra = []
        if kind == "clock_step_store":
            extra.append(asyncio.create_task(_stamp_store_clock(cluster, evidence, kind)))
        await injector.run((fault,))
        await asyncio.gather(*extra)
        await injector.recover()
        await asyncio.wait({sending}, timeout=CLIENT_PATIENCE_S)
        results = {tid: run.result for tid, run in workload.runs.items()}
        if kind.endswith("_client_store") and not sending.done():
            # The client's own link broke: once it is back, the client itself must catch
            # up (its push stream found dead within PUSH_IDLE_TIMEOUT, then every result
            # it waits for asked again), not wait out a refresh or a request timeout.
            unheard = sorted(tid for tid, result in results.items() if result is None)
            problems.append(f"the client had not heard {unheard} {CLIENT_PATIENCE_S}s later")
        if not sending.done():
            # A request or a push stream caught in a blackhole waits out the SDK's request
            # timeout (minutes); read the outcomes through a new client instead.
            sending.cancel()
            unfinished = tuple(run.planned for run in workload.runs.values() if run.result is None)
            results.update(await _finish_with_a_new_client(settings, unfinished))
        ledgers = await audit.collect(settings)
        problems += [f"{v.invariant}: {v.detail}" for v in audit.check(ledgers)]
        problems += [
            f"{v.invariant}: {v.detail}" for v in check_transfers(planned, results, ledgers)
        ]
    finally:
        await close_quickly(resonate)
        await injector.aclose()
    return injector.records[0], evidence, problems


async def _finish_with_a_new_client(
    settings: Settings, planned: tuple[PlannedTransfer, ...]
) -> dict[str, Any]:
    """Start (or attach to: the id makes it safe) and wait for ``planned`` on a new client."""
    resonate = open_resonate(settings, role="client")
    try:
        again = Workload(resonate, settings, planned, concurrency=4)
        await asyncio.wait_for(again.run(), 60)
        return {tid: run.result for tid, run in again.runs.items()}
    finally:
        await close_quickly(resonate)


def _log_since(evidence: Evidence) -> str:
    assert evidence.log is not None
    with evidence.log.open("rb") as handle:
        handle.seek(evidence.log_offset)
        return handle.read().decode(errors="replace")


def _check_it_struck(kind: str, record: FaultRecord, evidence: Evidence) -> None:
    if kind in LINK_KINDS:
        assert evidence.proxy is not None
        hung, dropped, resets = (
            after - before
            for after, before in zip(_counters(evidence.proxy), evidence.counters, strict=True)
        )
        mode = LINK_KINDS[kind].mode
        if mode == PARTITION:
            assert hung + dropped + resets > 0, "nothing was cut"
        elif mode == ONEWAY:
            assert dropped > 0, "no answer was dropped"
        elif mode == BLACKHOLE:
            assert hung > 0, "no connection hung"
            assert dropped > 0, "nothing was swallowed"
        elif mode == RESET:
            assert resets > 0, "no connection was reset"
        return
    log = _log_since(evidence)
    if kind in DISK_KINDS and record.fault.target == STORE:
        assert "disk is full" in log, "the store never failed a journal write"
    elif kind in DISK_KINDS:
        assert "ledger storage refused a write: database or disk is full" in log
    elif kind == "clock_step_store":
        ((real, created_at),) = evidence.stamps
        assert abs(created_at / 1000 - (real + CLOCK_STEP_S)) < 5, evidence.stamps
    else:
        assert record.fault.target == CLOCK_WORKER
        during = evidence.began + 0.5 + FAULT_S / 2
        assert _has_stamp_near(log, during + CLOCK_STEP_S), log[-2000:]


def _has_stamp_near(log: str, moment: float) -> bool:
    """Whether a log line is stamped within a few seconds of ``moment`` (local time)."""
    for line in log.splitlines():
        try:
            stamp = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S"))
        except ValueError:
            continue
        if abs(stamp - moment) < 8:
            return True
    return False


@pytest.mark.timeout(150)
@pytest.mark.parametrize("kind", NEW_KINDS)
def test_the_fault_strikes_and_every_invariant_holds(cluster: Cluster, kind: str) -> None:
    if kind in DISK_KINDS and cluster.no_disks:
        pytest.skip(f"{kind}: {cluster.no_disks}")
    if kind in CLOCK_KINDS and cluster.no_clocks:
        pytest.skip(f"{kind}: {cluster.no_clocks}")
    record, evidence, problems = asyncio.run(_strike(cluster, kind))
    assert record.injected, record.error
    assert problems == []
    _check_it_struck(kind, record, evidence)
