"""Resonate on Postgres through a failover: the primary dies under load, its standby is promoted.

Two real servers (:mod:`orchestrator.local.replication`), workers and the
client on one multi-host DSN. Under a steady flow of transfers the primary's
WAL sender is stopped for two seconds (the standby falls behind, as behind a
slow link), then the primary is SIGKILLed with every backend and the standby
promoted. Per replication mode:

- ``sync``: every commit waited for the standby, so nothing acknowledged is
  lost: every transfer's root promise is on the new primary, every transfer
  finishes, the audit is clean.
- ``async``: the transfers the primary acknowledged during the lag are gone
  from the new primary; their ledger entries are not. A client still waiting
  for one starts it again under the same id (its request is in its handle),
  so every transfer still finishes once, and starting a lost one again
  changes nothing on the ledgers. The audit is clean.

In both, a client that waited for a result while the primary died hears it
within moments of the promotion: once the database answers again, it asks
about every result it waits for (:mod:`orchestrator.postgres_connection`).

Each run prints its figures: root promises lost, time from the primary's
death to the next transfer finished, and to the slowest result (``-s`` to see
them).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from resonate.error import ServerError
from resonate.resonate import Resonate

from chaos.schedule import PlannedTransfer
from chaos.workload import Workload
from orchestrator import audit
from orchestrator.local.replication import ASYNC, MODES, SYNC, ReplicatedPostgres
from orchestrator.local.supervisor import free_port
from orchestrator.local.system import IMPATIENT, POSTGRES_BACKEND, LocalSystem
from orchestrator.runtime import CLIENT_POLL_SECONDS, close_resonate, open_resonate
from orchestrator.transfers import TransferRequest, start_transfer
from tests.postgres_available import require_postgres

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("quiet_sdk_retries")]

TRANSFERS = 120
RATE = 10.0
#: Load before the lag, and how long the standby lags before the primary dies.
WARM_S = 4.0
LAG_S = 2.0


async def _lost_promises(resonate: Resonate, ids: list[str]) -> list[str]:
    lost = []
    for transfer_id in ids:
        try:
            await resonate.promises.get(transfer_id)
        except ServerError as exc:
            if exc.code != 404:
                raise
            lost.append(transfer_id)
    return lost


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", MODES)
async def test_a_failover_under_load_finishes_every_transfer_once(
    tmp_path: Path, mode: str
) -> None:
    require_postgres()
    postgres = ReplicatedPostgres((free_port(), free_port()), mode=mode, log_dir=tmp_path / "logs")
    try:
        dsn = await asyncio.to_thread(postgres.start, "crossbank")
        system = LocalSystem(
            tmp_path / "system",
            IMPATIENT,
            workers=2,
            backend=POSTGRES_BACKEND,
            postgres_dsn=dsn,
            log_dir=tmp_path / "logs",
        )
        with system:
            await system.seed(
                {f"src-{i}": 10**6 for i in range(4)}, {f"dst-{i}": 0 for i in range(4)}
            )
            transfers = tuple(
                PlannedTransfer(f"fo-{mode}-{i:04d}", f"src-{i % 4}", f"dst-{i % 4}", 100 + i)
                for i in range(TRANSFERS)
            )
            resonate = open_resonate(system.settings, role="client")
            try:
                workload = Workload(resonate, system.settings, transfers, concurrency=6, rate=RATE)
                running = asyncio.create_task(workload.run())
                await asyncio.sleep(WARM_S)
                await asyncio.to_thread(postgres.hold_replication)
                await asyncio.sleep(LAG_S)
                died = time.monotonic() - workload.clock_zero
                await asyncio.to_thread(postgres.fail_over)
                promoted = time.monotonic() - workload.clock_zero
                await asyncio.wait_for(running, 120)

                finished = [run.finished_at for run in workload.runs.values() if run.finished_at]
                recovery = min(at for at in finished if at > died) - died
                # How long after the promotion (or its own start) the slowest result arrived.
                slowest = max(
                    run.finished_at - max(run.started_at, promoted)
                    for run in workload.runs.values()
                    if run.finished_at is not None and run.started_at is not None
                )
                lost = await _lost_promises(resonate, list(workload.runs))
                ledgers = await audit.collect(system.settings)
                entries = sum(len(bank.entries) for bank in ledgers.banks())
                print(
                    f"\n{mode}: {len(lost)} root promises lost; standby promoted "
                    f"{promoted - died:.2f}s after the primary died; next transfer finished "
                    f"{recovery:.2f}s after it; slowest result {slowest:.2f}s after the "
                    f"promotion; {entries} ledger entries"
                )
                assert {run.status for run in workload.runs.values()} == {"committed"}
                # Asked for again once the database answered, not left to the refresh loop.
                assert slowest < CLIENT_POLL_SECONDS / 2
                assert entries == 2 * TRANSFERS  # a debit and a credit each, none twice
                assert audit.check(ledgers) == []
                if mode == SYNC:
                    assert lost == []
                else:
                    assert mode == ASYNC
                    assert lost, "nothing was lost: the standby did not lag"
                    # A lost transfer started again gets the same result, and no new entry.
                    for transfer_id in lost:
                        planned = workload.runs[transfer_id].planned
                        request = TransferRequest(
                            transfer_id,
                            planned.source_account,
                            planned.target_account,
                            planned.amount,
                        )
                        handle = await start_transfer(resonate, system.settings, request)
                        again = await asyncio.wait_for(handle.result(), 30)
                        assert again == workload.runs[transfer_id].result
                    ledgers = await audit.collect(system.settings)
                    assert sum(len(bank.entries) for bank in ledgers.banks()) == entries
            finally:
                await close_resonate(resonate)
    finally:
        await asyncio.to_thread(postgres.stop)
