"""The three ways a transfer ends, through the real images on a private network."""

from __future__ import annotations

import pytest

from tests.containers.system import ContainerSystem

pytestmark = [pytest.mark.containers, pytest.mark.slow]


def test_committed_compensated_and_failed_transfers_leave_the_ledgers_consistent(
    system: ContainerSystem,
) -> None:
    system.start_all(target_faults=True)
    opening = system.balances()

    committed = system.cli(
        "transfer", "--from", "alice", "--to", "carol", "--amount", "12.50", "--id", "t-commit"
    )
    assert committed.code == 0, committed.output
    assert committed.json()["status"] == "committed"

    # Refused by the source bank: nothing moves.
    failed = system.cli(
        "transfer", "--from", "erin", "--to", "carol", "--amount", "50.00", "--id", "t-fail"
    )
    assert failed.code == 1, failed.output
    assert (failed.json()["status"], failed.json()["reason"]) == ("failed", "insufficient_funds")

    # The target account closes while the credit is in flight: the debit is reversed.
    system.bank_call(
        "target",
        "PUT",
        "/admin/faults",
        {"faults": [{"action": "hold_before", "op_id": "t-comp-credit", "times": 1}]},
    )
    started = system.cli(
        "transfer",
        "--from",
        "bob",
        "--to",
        "dave",
        "--amount",
        "7.00",
        "--id",
        "t-comp",
        "--no-wait",
    )
    assert started.code == 0, started.output
    system.wait_for_hold("t-comp-credit")
    system.bank_call("target", "PUT", "/accounts/dave", {"status": "closed"})
    system.bank_call("target", "DELETE", "/admin/faults")
    compensated = system.cli(
        "transfer", "--from", "bob", "--to", "dave", "--amount", "7.00", "--id", "t-comp"
    )
    assert compensated.code == 1, compensated.output
    assert (compensated.json()["status"], compensated.json()["reason"]) == (
        "compensated",
        "account_closed",
    )

    after = system.balances()
    assert after["source:alice"] == opening["source:alice"] - 1250
    assert after["target:carol"] == opening["target:carol"] + 1250
    assert after["source:erin"] == opening["source:erin"]
    assert after["source:bob"] == opening["source:bob"]
    assert after["target:dave"] == opening["target:dave"]
    assert sum(after.values()) == sum(opening.values())
    system.assert_audit_clean()
