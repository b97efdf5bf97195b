"""The campaign's own checks catch what they are there to catch (hand-built ledgers)."""

from __future__ import annotations

from typing import Any

from chaos.checks import (
    ACKNOWLEDGED_WRITE_SURVIVED,
    RESULT_MATCHES_LEDGER,
    TERMINAL,
    applied_entries,
    check_seen_entries,
    check_transfers,
)
from chaos.schedule import PlannedTransfer
from orchestrator.audit import BankLedger, Ledgers

T1 = PlannedTransfer("t-1", "src-1", "dst-1", 500)


def entry(seq: int, op_id: str, account_id: str, kind: str, amount: int = 500) -> dict[str, Any]:
    return {
        "seq": seq,
        "op_id": op_id,
        "account_id": account_id,
        "kind": kind,
        "amount": amount,
        "balance_after": None,
        "created_at": "2026-01-01T00:00:00Z",
    }


def ledgers(source: list[dict[str, Any]], target: list[dict[str, Any]]) -> Ledgers:
    return Ledgers(BankLedger("source", [], source), BankLedger("target", [], target))


DEBIT = entry(1, "t-1-debit", "src-1", "debit")
CREDIT = entry(1, "t-1-credit", "dst-1", "credit")
REVERSAL = entry(2, "t-1-reversal", "src-1", "reversal")


def result(status: str, **steps: dict[str, Any] | None) -> dict[str, Any]:
    return {"transfer_id": "t-1", "status": status, "amount": 500, "steps": steps}


def invariants(violations: list[Any]) -> list[str]:
    return [v.invariant for v in violations]


def test_consistent_outcomes_pass() -> None:
    committed = result("committed", debit={"status": "applied", "entry": DEBIT})
    assert check_transfers([T1], {"t-1": committed}, ledgers([DEBIT], [CREDIT])) == []
    compensated = result("compensated")
    assert check_transfers([T1], {"t-1": compensated}, ledgers([DEBIT, REVERSAL], [])) == []
    assert check_transfers([T1], {"t-1": result("failed")}, ledgers([], [])) == []


def test_a_transfer_without_a_terminal_result_is_reported() -> None:
    for outcome in (None, {"status": "rejected"}):
        violations = check_transfers([T1], {"t-1": outcome}, ledgers([DEBIT], []))
        assert invariants(violations) == [TERMINAL]
        assert violations[0].transfer_id == "t-1"
        assert violations[0].entries == [DEBIT]


def test_an_outcome_the_ledgers_contradict_is_reported() -> None:
    cases = [
        ("committed", [DEBIT], []),  # the credit is missing
        ("compensated", [DEBIT], [CREDIT]),  # credited, not reversed
        ("failed", [DEBIT], []),  # a failed transfer moved money
    ]
    for status, source, target in cases:
        violations = check_transfers([T1], {"t-1": result(status)}, ledgers(source, target))
        assert invariants(violations) == [RESULT_MATCHES_LEDGER], status


def test_a_reported_amount_that_differs_from_the_request_is_reported() -> None:
    wrong = {**result("committed"), "amount": 499}
    violations = check_transfers([T1], {"t-1": wrong}, ledgers([DEBIT], [CREDIT]))
    assert invariants(violations) == [RESULT_MATCHES_LEDGER]


def test_an_applied_step_missing_from_the_ledger_is_reported() -> None:
    reported = result(
        "committed",
        debit={"status": "applied", "entry": DEBIT},
        credit={"status": "applied", "entry": CREDIT},
    )
    assert list(applied_entries(reported)) == [DEBIT, CREDIT]
    other_credit = {**CREDIT, "seq": 7}
    violations = check_transfers([T1], {"t-1": reported}, ledgers([DEBIT], [other_credit]))
    assert invariants(violations) == [ACKNOWLEDGED_WRITE_SURVIVED]


def test_an_entry_seen_during_the_run_must_survive_unchanged() -> None:
    seen = {("source", "t-1-debit"): DEBIT, ("target", "t-1-credit"): CREDIT}
    assert check_seen_entries(seen, ledgers([DEBIT], [CREDIT])) == []
    lost = check_seen_entries(seen, ledgers([DEBIT], []))
    assert invariants(lost) == [ACKNOWLEDGED_WRITE_SURVIVED]
    assert lost[0].transfer_id == "t-1"
    changed = check_seen_entries(seen, ledgers([{**DEBIT, "amount": 1}], [CREDIT]))
    assert invariants(changed) == [ACKNOWLEDGED_WRITE_SURVIVED]


def test_applied_entries_read_results_recorded_before_and_after_the_typed_records() -> None:
    old = result(
        "committed",
        debit={"step": "debit", "op_id": "t-1-debit", "status": "applied", "entry": DEBIT},
        credit={
            "step": "credit",
            "op_id": "t-1-credit",
            "state": "applied",
            "status": "applied",
            "entry": CREDIT,
            "settled_by": "fence",
        },
    )
    new = result(
        "compensated",
        debit={"step": "debit", "op_id": "t-1-debit", "status": "applied", "entry": DEBIT},
        credit={"step": "credit", "op_id": "t-1-credit", "status": "voided", "entry": None},
        reversal={"step": "reversal", "op_id": "t-1-reversal", "status": "applied"}
        | {"settled_by": "bank", "entry": REVERSAL, "code": None, "message": None},
    )
    assert list(applied_entries(old)) == [DEBIT, CREDIT]
    assert list(applied_entries(new)) == [DEBIT, REVERSAL]


def test_ledgers_holding_more_than_the_outcome_rests_on_contradict_it() -> None:
    violations = check_transfers(
        [T1], {"t-1": result("committed")}, ledgers([DEBIT, REVERSAL], [CREDIT])
    )
    assert invariants(violations) == [RESULT_MATCHES_LEDGER]
    assert "more than a committed transfer leaves" in violations[0].detail
