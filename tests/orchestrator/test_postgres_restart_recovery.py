"""After Postgres itself crashed and came back, a killed worker's transfer is still finished.

Both workers live through the database's SIGKILL and restart; then the one
running a transfer is SIGKILLed mid-credit and the other must finish it one
lease later. (This end-to-end check passed before the timer fix too: what
moved the lease there was not pinned down; the fix's own regression test is
tests/orchestrator/test_postgres_timers.py.)
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.local.system import (
    IMPATIENT,
    POSTGRES_BACKEND,
    LocalSystem,
    wait_for_hold,
    wait_until,
)
from tests.postgres_available import require_postgres

pytestmark = pytest.mark.anyio

TRANSFER = "t-after-pg-restart"


@pytest.mark.timeout(150)
async def test_a_worker_killed_after_a_database_restart_is_taken_over(tmp_path: Path) -> None:
    require_postgres()
    system = LocalSystem(tmp_path, IMPATIENT, workers=2, faults=True, backend=POSTGRES_BACKEND)
    with system:
        assert system.postgres is not None
        await system.seed({"pg-payer": 1_000}, {"pg-payee": 0})
        async with system.banks() as (_, target):
            system.postgres.kill()
            await asyncio.sleep(1.0)
            await asyncio.to_thread(system.postgres.restart)
            await asyncio.sleep(2.0)  # both workers have met the outage and reconnected

            op_id = f"{TRANSFER}-credit"
            await target.set_faults([{"action": "hold_before", "op_id": op_id, "times": 1}])
            # Started by a short-lived CLI, and watched on the ledger rather than by a
            # client: a fresh process moves the timers, and would hide what is tested.
            started = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "orchestrator", "transfer", "--from", "pg-payer",
                 "--to", "pg-payee", "--amount", "4", "--id", TRANSFER, "--no-wait"],
                env={**os.environ, **system.child_env},
                capture_output=True,
                text=True,
                timeout=60,
            )  # fmt: skip
            assert started.returncode == 0, started.stderr
            await wait_for_hold(target, op_id, stage="before")
            (victim,) = [
                worker
                for worker in system.workers
                if worker.log_path is not None and TRANSFER in worker.log_path.read_text()
            ]
            victim.kill()
            assert await target.release(op_id) == 1

            async def credited() -> bool:
                entry = await target.get_entry(op_id)
                return entry is not None and entry.get("state") == "applied"

            # The standby takes over once the 2 s lease expires, if timers still move.
            await wait_until(credited, within=30.0, interval=0.2, what="the standby's credit")
        assert await system.violations() == []
