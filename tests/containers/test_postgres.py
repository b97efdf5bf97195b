"""compose.postgres.yaml's deployment as containers: Resonate's server on Postgres
(the crossbank-postgres image, resonate.sql mounted), the banks and two workers."""

from __future__ import annotations

import time

import pytest

from tests.containers.system import ContainerSystem
from tests.containers.test_crashes import start_parked_transfer

pytestmark = [pytest.mark.containers, pytest.mark.slow]

#: pg_cron fires the timers every second (deploy/postgres/crossbank.sql) and the
#: workers' logs are read every 0.2 s, on a loaded machine: the rest of the margin.
RECOVERY_MARGIN = 2.0 + 1.0


def test_on_postgres_money_moves_and_a_killed_workers_transfer_finishes_on_the_standby(
    postgres_system: ContainerSystem,
) -> None:
    system = postgres_system
    system.start_all(workers=2, target_faults=True)
    opening = system.balances()

    moved = system.cli(
        "transfer", "--from", "alice", "--to", "carol", "--amount", "10.00", "--id", "pg-move"
    )
    assert moved.code == 0, moved.output
    assert moved.json()["status"] == "committed"

    start_parked_transfer(system, "pg-kill", "5.00")
    (running,) = [
        w for w in system.workers if "pg-kill" in w.get_wrapped_container().logs().decode()
    ]
    (standby,) = [w for w in system.workers if w is not running]
    system.kill(running)
    killed_at = time.monotonic()
    system.bank_call("target", "DELETE", "/admin/faults")
    system.wait_for_log(standby, "pg-kill", timeout=60)
    recovered_after = time.monotonic() - killed_at
    print(
        f"\nworker SIGKILLed mid-credit: the standby took the transfer after {recovered_after:.1f}s"
    )
    # Not a speed goal: a timer driver that fires late (resonate.sql's own 5 s job,
    # or pg_cron's once-a-minute fallback) would leave the transfer waiting far longer.
    assert recovered_after < system.lease_ttl + RECOVERY_MARGIN, recovered_after

    finished = system.cli(
        "transfer", "--from", "alice", "--to", "carol", "--amount", "5.00", "--id", "pg-kill"
    )
    assert finished.code == 0, finished.output
    assert finished.json()["status"] == "committed"
    after = system.balances()
    assert after["source:alice"] == opening["source:alice"] - 1500
    assert after["target:carol"] == opening["target:carol"] + 1500
    assert sum(after.values()) == sum(opening.values())
    system.assert_audit_clean()
