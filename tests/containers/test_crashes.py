"""Kill containers mid-saga with SIGKILL; every transfer still ends once, the audit clean."""

from __future__ import annotations

import pytest

from tests.containers.system import ContainerSystem

pytestmark = [pytest.mark.containers, pytest.mark.slow]

HOLD_CREDIT = "hold_before"


def park_credit(system: ContainerSystem, transfer_id: str) -> None:
    """Make the target bank park this transfer's first credit request until the faults are cleared."""
    rule = {"action": HOLD_CREDIT, "op_id": f"{transfer_id}-credit", "times": 1}
    system.bank_call("target", "PUT", "/admin/faults", {"faults": [rule]})


def start_parked_transfer(system: ContainerSystem, transfer_id: str, amount: str) -> None:
    park_credit(system, transfer_id)
    started = system.cli(
        "transfer",
        "--from",
        "alice",
        "--to",
        "carol",
        "--amount",
        amount,
        "--id",
        transfer_id,
        "--no-wait",
    )
    assert started.code == 0, started.output
    system.wait_for_hold(f"{transfer_id}-credit")


def test_worker_killed_mid_credit_finishes_the_transfer_once_restarted(
    system: ContainerSystem,
) -> None:
    system.start_all(target_faults=True)
    opening = system.balances()
    start_parked_transfer(system, "t-kill", "30.00")

    system.kill(system.workers[0])
    half_done = system.balances()
    assert half_done["source:alice"] == opening["source:alice"] - 3000
    assert half_done["target:carol"] == opening["target:carol"]
    status = system.cli("status", "t-kill").json()
    assert status["state"] == "pending", status

    system.restart(system.workers[0])
    finished = system.cli(
        "transfer", "--from", "alice", "--to", "carol", "--amount", "30.00", "--id", "t-kill"
    )
    assert finished.code == 0, finished.output
    assert finished.json()["status"] == "committed"

    # The request the killed worker left parked now reaches the ledger: a replay, not a second credit.
    system.bank_call("target", "DELETE", "/admin/faults")
    after = system.balances()
    assert after["target:carol"] == opening["target:carol"] + 3000
    assert after["source:alice"] == opening["source:alice"] - 3000
    system.assert_audit_clean()


def test_second_worker_replica_takes_over_when_the_first_is_killed(system: ContainerSystem) -> None:
    system.start_all(workers=2, target_faults=True)
    opening = system.balances()
    start_parked_transfer(system, "t-replica", "5.00")

    running = [
        w for w in system.workers if "t-replica" in w.get_wrapped_container().logs().decode()
    ]
    assert len(running) == 1, "exactly one replica should be running the saga"
    (standby,) = [w for w in system.workers if w is not running[0]]
    system.kill(running[0])
    system.bank_call("target", "DELETE", "/admin/faults")

    finished = system.cli(
        "transfer", "--from", "alice", "--to", "carol", "--amount", "5.00", "--id", "t-replica"
    )
    assert finished.code == 0, finished.output
    assert finished.json()["status"] == "committed"
    assert "t-replica" in standby.get_wrapped_container().logs().decode(), "the standby finished it"
    after = system.balances()
    assert after["target:carol"] == opening["target:carol"] + 500
    assert after["source:alice"] == opening["source:alice"] - 500
    system.assert_audit_clean()


def test_target_bank_killed_mid_load_loses_nothing(system: ContainerSystem) -> None:
    system.start_all(target_faults=True)
    opening = system.balances()
    ids = [f"load-{n}" for n in range(1, 7)]
    park_credit(system, "load-3")
    loop = " && ".join(
        f"crossbank transfer --from alice --to carol --amount 1.00 --id {tid} --no-wait --json"
        for tid in ids
    )
    started = system.cli("-c", loop, entrypoint=["sh"])
    assert started.code == 0, started.output
    system.wait_for_hold("load-3-credit")

    acknowledged = system.bank_call("target", "GET", "/entries?account_id=carol&limit=1000")[
        "entries"
    ]
    system.kill(system.banks["target"])
    system.restart(system.banks["target"])
    kept = system.bank_call("target", "GET", "/entries?account_id=carol&limit=1000")["entries"]
    assert {e["op_id"] for e in acknowledged} <= {e["op_id"] for e in kept}, (
        "an acknowledged entry was lost"
    )

    waits = " && ".join(
        f"crossbank transfer --from alice --to carol --amount 1.00 --id {tid} --json" for tid in ids
    )
    # Exit 1 is a compensated transfer: still an end (a credit whose outcome was settled as never).
    results = system.cli("-c", waits.replace(" && ", "; "), entrypoint=["sh"]).documents()
    statuses = {r["transfer_id"]: r["status"] for r in results}
    assert set(statuses) == set(ids), results
    assert set(statuses.values()) <= {"committed", "compensated"}, statuses

    committed = sum(1 for status in statuses.values() if status == "committed")
    after = system.balances()
    assert after["target:carol"] == opening["target:carol"] + 100 * committed
    assert after["source:alice"] == opening["source:alice"] - 100 * committed
    assert sum(after.values()) == sum(opening.values())
    system.assert_audit_clean()
