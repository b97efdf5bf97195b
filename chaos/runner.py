"""Run one campaign: start the cluster, send the workload under the fault schedule, audit.

The order is the point: faults strike only while the workload runs; then
every fault is undone (rules cleared, paused processes resumed, dead ones
restarted, accounts reopened) and the system gets a bounded time to bring
every transfer to a terminal status. Only then are the invariants judged,
so a violation means the system broke a promise, not that it was still busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from resonate.resonate import Resonate

from chaos import lifetimes
from chaos.checks import (
    OperatorAct,
    check_operator_actions,
    check_operator_records,
    check_seen_entries,
    check_transfers,
)
from chaos.cluster import Cluster, ClusterConfig
from chaos.injector import Injector
from chaos.operator_actions import Operator
from chaos.results import Outcome
from chaos.schedule import Campaign, CampaignParams, plan
from chaos.watcher import LedgerWatcher
from chaos.workload import Workload
from orchestrator import audit
from orchestrator.accounts import open_accounts
from orchestrator.audit import Violation
from orchestrator.bank_client import BankClient
from orchestrator.local.system import STORE_BACKEND
from orchestrator.runtime import close_resonate, open_resonate

Log = Callable[[str], None]


async def run_campaign(params: CampaignParams, *, workdir: Path, log: Log) -> Outcome:
    """Run the campaign ``params`` describes on fresh processes whose files live in ``workdir``."""
    campaign = plan(params)
    config = ClusterConfig(
        workdir=workdir,
        workers=params.workers,
        backend=params.backend,
        power_cuts=params.power_cuts,
        unsynced_bank=params.unsynced_bank,
    )
    cluster = Cluster(config)
    began = time.monotonic()
    try:
        keeper = "promise store" if params.backend == STORE_BACKEND else "Postgres"
        log(f"starting banks, {keeper} and {params.workers} workers in {workdir}")
        await asyncio.to_thread(cluster.start)
        await seed_accounts(cluster, campaign)
        outcome = await _run_on(cluster, campaign, began, log)
    finally:
        log("stopping every process")
        await asyncio.to_thread(cluster.stop)
    outcome.lifetimes = lifetimes.measure(workdir / "logs")
    outcome.disk_refusals = count_refusals(workdir / "logs")
    return outcome


#: What a part's log says when its disk refused a write (a bank; the promise store).
_REFUSAL_LOGS = {
    "source": "ledger storage refused a write",
    "target": "ledger storage refused a write",
    "store": "journal write failed, refusing further work",
}


def count_refusals(log_dir: Path) -> dict[str, int]:
    """How many writes each part's full disk refused, by its log (the faults' real effect)."""
    counts = {}
    for part, text in _REFUSAL_LOGS.items():
        path = log_dir / f"{part}.log"
        if path.exists():
            counts[part] = path.read_text(errors="replace").count(text)
    return counts


async def _wait_while_progressing(
    workload: Workload, task: asyncio.Task[None], recovered: float, stall_limit: float
) -> None:
    """Wait for the workload to finish, giving up once it has made no progress for a while.

    Transfers not yet sent when the faults stop are still sent, so the bound
    is on a stall (no transfer started or finished for ``stall_limit``
    seconds), not on the total, which grows with the workload.
    """
    while not task.done():
        await asyncio.wait({task}, timeout=1.0)
        if time.monotonic() - max(workload.last_progress, recovered) > stall_limit:
            return


async def seed_accounts(cluster: Cluster, campaign: Campaign) -> None:
    """Open every planned account with its opening balance (idempotent on a rerun)."""
    token = cluster.config.bank_token
    async with (
        BankClient(cluster.source_url, token=token, name="source") as source,
        BankClient(cluster.target_url, token=token, name="target") as target,
    ):
        await open_accounts(source, target, campaign.accounts)


async def _run_on(cluster: Cluster, campaign: Campaign, began: float, log: Log) -> Outcome:
    params = campaign.params
    settings = cluster.settings()
    resonate = open_resonate(settings, role="client")
    watcher = LedgerWatcher(
        {"source": cluster.source_url, "target": cluster.target_url},
        token=cluster.config.bank_token,
    )
    workload = Workload(
        resonate,
        settings,
        campaign.transfers,
        concurrency=params.concurrency,
        rate=params.rate,
        log=log,
    )
    operator = Operator(
        resonate,
        workload,
        source_url=cluster.source_url,
        target_url=cluster.target_url,
        token=cluster.config.bank_token,
        campaign=f"chaos campaign seed {params.seed}",
        log=log,
    )
    injector = Injector(cluster, log=log, acknowledged=lambda: len(watcher.seen), operator=operator)
    notes: list[str] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        log(
            f"running {params.transfers} transfers at concurrency {params.concurrency} "
            f"under {len(campaign.faults)} faults over {params.duration:g}s"
        )
        zero = time.monotonic()
        workload_task = asyncio.create_task(workload.run())
        watcher_task = asyncio.create_task(watcher.run())
        tasks += [workload_task, watcher_task]
        await injector.run(campaign.faults)
        await asyncio.sleep(max(0.0, params.duration - (time.monotonic() - zero)))
        log("faults over: clearing rules, resuming and restarting processes, reopening accounts")
        notes += await _recover(injector)
        recovered = time.monotonic()
        await _wait_while_progressing(workload, workload_task, recovered, params.quiesce_timeout)
        quiesce_seconds: float | None = None
        workload_seconds: float | None = None
        if workload_task.done():
            workload_task.result()
            settled_from = max(recovered, workload.last_started)
            quiesce_seconds = round(max(0.0, time.monotonic() - settled_from), 2)
            workload_seconds = round(workload.last_progress - zero, 2)
        else:
            notes.append(
                f"{len(workload.unfinished())} transfers were not terminal: no transfer started "
                f"or finished for {params.quiesce_timeout:g}s after the faults stopped"
            )
        notes.append(_overlap_note(workload, recovered))
        await _cancel(workload_task)
        watcher.stop()
        await watcher_task
        await watcher.read_once()
        results = {tid: run.result for tid, run in workload.runs.items()}
        for tid in workload.unfinished():
            results[tid] = await workload.read_result(tid)
        log("auditing both ledgers")
        ledgers = await audit.collect(settings)
        unfinished = [tid for tid, result in results.items() if result is None]
        violations = audit.check(ledgers, in_flight=unfinished)
        violations += check_transfers(campaign.transfers, results, ledgers)
        violations += check_seen_entries(watcher.seen, ledgers)
        acts = [record.act for record in injector.records if record.act is not None]
        violations += check_operator_actions(acts, results, ledgers, watcher.seen)
        violations += await _check_records(operator, acts, notes)
        return Outcome(
            campaign=campaign,
            fault_records=injector.records,
            runs=workload.runs,
            violations=violations,
            workload_seconds=workload_seconds,
            quiesce_seconds=quiesce_seconds,
            total_seconds=round(time.monotonic() - began, 2),
            ledger_rounds=watcher.rounds,
            entries_seen=len(watcher.seen),
            notes=notes,
        )
    finally:
        for task in tasks:
            await _cancel(task)
        await close_quickly(resonate)
        await injector.aclose()
        await operator.aclose()
        await watcher.aclose()


#: How long stopping the campaign's client may take. A request caught in a blackhole
#: waits out the store link's request timeout (minutes), and stopping joins it.
CLOSE_PATIENCE_S = 15.0


async def close_quickly(resonate: Resonate) -> None:
    """Stop the client, but not for longer than :data:`CLOSE_PATIENCE_S`."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(close_resonate(resonate), CLOSE_PATIENCE_S)


async def _check_records(
    operator: Operator, acts: list[OperatorAct], notes: list[str]
) -> list[Violation]:
    """The operator records kept for ``acts``, checked; a store that cannot be searched is a note."""
    if not acts:
        return []
    try:
        kept = await operator.read_records([act.transfer_id for act in acts])
    except Exception as exc:
        notes.append(
            f"operator records not checked: reading them failed: {type(exc).__name__}: {exc}"
        )
        return []
    return check_operator_records(acts, kept)


async def _recover(injector: Injector) -> list[str]:
    """Undo every fault; a part that cannot be brought back is a note, and the audit goes on.

    The transfers it holds then count as not terminal, and the work dir keeps its files.
    """
    try:
        await injector.recover()
    except Exception as exc:
        return [f"could not bring every part back after the faults: {type(exc).__name__}: {exc}"]
    return []


def _overlap_note(workload: Workload, recovered: float) -> str:
    """How much of the workload really ran under faults (a campaign is only as good as that)."""
    faults_over = recovered - workload.clock_zero
    runs = workload.runs.values()
    finished_during = sum(1 for run in runs if (run.finished_at or faults_over) < faults_over)
    sent_after = sum(1 for run in runs if (run.started_at or 0) > faults_over)
    return (
        f"{finished_during} transfers finished while faults were being injected; "
        f"{sent_after} were started after the faults stopped"
    )


async def _cancel(task: asyncio.Task[None]) -> None:
    """Stop ``task`` if it still runs; its own failure was already reported where it mattered."""
    if not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
