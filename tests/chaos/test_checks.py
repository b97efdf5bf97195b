"""The campaign's own checks catch what they are there to catch (hand-built ledgers).

Each check is fed at least one case that breaks it, and must report it by name.
"""

from __future__ import annotations

import json
from typing import Any

from chaos.checks import (
    ACKNOWLEDGED_WRITE_SURVIVED,
    ACTION_SAW_THE_TRANSFER,
    CANCEL_TOO_LATE_COMMITTED,
    CANCEL_TOOK_EFFECT,
    CANCELLED_ONLY_BY_A_CANCEL,
    OPERATOR_RECORD_KEPT,
    RESULT_MATCHES_LEDGER,
    TERMINAL,
    VOIDED_OP_NEVER_APPLIED,
    OperatorAct,
    applied_entries,
    check_operator_actions,
    check_operator_records,
    check_seen_entries,
    check_transfers,
)
from chaos.schedule import CANCEL, RETRY, PlannedTransfer
from orchestrator import audit
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


# -- operator actions (the cancel and retry kinds) ----------------------------------

BY = "chaos-campaign"
WHY = "chaos campaign seed 1: fault 3 cancels t-1"
NOTE = {"by": BY, "reason": WHY, "at": "2026-01-01T00:00:01.000000Z"}


def cancel(outcome: str | None, *, lost: int = 0, record_error: str | None = None) -> OperatorAct:
    took = outcome in ("cancelled_before_debit", "cancelled_after_debit")
    done = None
    if outcome is not None:
        done = {"transfer_id": "t-1", "outcome": outcome, "message": "", "took_effect": took}
        done["record_error"] = record_error
    return OperatorAct(CANCEL, "t-1", BY, WHY, done, attempts=lost + 1, lost=lost)


def retry(outcome: str, **fields: Any) -> OperatorAct:
    done = {"transfer_id": "t-1", "outcome": outcome, "message": "", "took_effect": False}
    return OperatorAct(RETRY, "t-1", BY, None, done | {"record_error": None}, **fields)


def ended(status: str, reason: str | None = None, note: dict[str, str] | None = None) -> Any:
    return {**result(status), "reason": reason, "cancelled": note}


def judge(
    act: OperatorAct,
    outcome: dict[str, Any],
    source: list[dict[str, Any]],
    target: list[dict[str, Any]],
    seen: dict[tuple[str, str], dict[str, Any]] | None = None,
) -> list[str]:
    return invariants(
        check_operator_actions([act], {"t-1": outcome}, ledgers(source, target), seen or {})
    )


def test_cancels_that_end_as_they_said_pass() -> None:
    before = cancel("cancelled_before_debit")
    assert judge(before, ended("failed", "cancelled", NOTE), [], []) == []
    after = cancel("cancelled_after_debit")
    assert judge(after, ended("compensated", "cancelled", NOTE), [DEBIT, REVERSAL], []) == []
    too_late = cancel("too_late")
    assert judge(too_late, ended("committed"), [DEBIT], [CREDIT]) == []
    for nothing in ("finished", "not_cancelled", "already_cancelled", None):
        assert judge(cancel(nothing), ended("committed"), [DEBIT], [CREDIT]) == []


def test_a_cancel_that_took_effect_on_a_transfer_that_committed_is_reported() -> None:
    found = judge(cancel("cancelled_before_debit"), ended("committed"), [DEBIT], [CREDIT])
    assert CANCEL_TOOK_EFFECT in found
    assert VOIDED_OP_NEVER_APPLIED in found  # and the debit it voided is on the ledger


def test_a_cancel_that_took_effect_must_end_as_it_said_with_its_own_note() -> None:
    other = {**NOTE, "by": "someone-else"}
    cases = [
        # voided before the debit, yet compensated: the debit applied after all
        (cancel("cancelled_before_debit"), ended("compensated", "cancelled", NOTE)),
        # voided the credit, yet failed: the debit was never taken back
        (cancel("cancelled_after_debit"), ended("failed", "cancelled", NOTE)),
        # the right status for another reason, or another operator's note
        (cancel("cancelled_before_debit"), ended("failed", "insufficient_funds")),
        (cancel("cancelled_before_debit"), ended("failed", "cancelled", other)),
    ]
    for act, outcome in cases:
        assert CANCEL_TOOK_EFFECT in judge(act, outcome, [], []), (act.outcome, outcome)


def test_a_cancelled_transfer_whose_debit_stayed_taken_is_reported() -> None:
    found = judge(
        cancel("cancelled_after_debit"), ended("compensated", "cancelled", NOTE), [DEBIT], []
    )
    assert found == [CANCEL_TOOK_EFFECT]


def test_an_op_a_cancel_voided_must_never_have_applied() -> None:
    # The ledgers at the end agree with the result, but a listing during the run
    # showed the credit the cancel voided (lost since, or applied and then undone).
    seen = {("target", "t-1-credit"): CREDIT}
    outcome = ended("compensated", "cancelled", NOTE)
    found = judge(cancel("cancelled_after_debit"), outcome, [DEBIT, REVERSAL], [], seen)
    assert found == [VOIDED_OP_NEVER_APPLIED]


def test_a_cancel_too_late_must_end_committed() -> None:
    cases: list[tuple[Any, list[dict[str, Any]], list[dict[str, Any]]]] = [
        (ended("compensated", "account_closed"), [DEBIT, REVERSAL], []),
        (ended("failed", "insufficient_funds"), [], []),
        (ended("committed"), [DEBIT], []),  # the credit it found applied is gone
    ]
    for outcome, source, target in cases:
        assert judge(cancel("too_late"), outcome, source, target) == [CANCEL_TOO_LATE_COMMITTED]


def test_a_transfer_is_reported_cancelled_only_by_a_cancel_that_may_have_done_it() -> None:
    outcome = ended("failed", "cancelled", NOTE)
    # took effect, or no answer at all, or "finished" after a lost attempt: it may have
    assert judge(cancel(None, lost=3), outcome, [], []) == []
    assert judge(cancel("finished", lost=1), outcome, [], []) == []
    # it said it changed nothing, and nothing before it could have
    for nothing in ("finished", "not_cancelled", "already_cancelled", "too_late"):
        found = judge(cancel(nothing), outcome, [], [])
        assert CANCELLED_ONLY_BY_A_CANCEL in found, nothing
    # a note no cancel of the campaign wrote, or a reason without a note
    stranger = ended("failed", "cancelled", {**NOTE, "reason": "not ours"})
    assert judge(cancel("not_cancelled"), stranger, [], []) == [CANCELLED_ONLY_BY_A_CANCEL]
    bare = ended("failed", "cancelled")
    assert judge(cancel("finished"), bare, [], []) == [CANCELLED_ONLY_BY_A_CANCEL]
    # a cancel's note on a transfer that ended for another reason
    other_reason = ended("failed", "insufficient_funds", NOTE)
    assert judge(cancel(None), other_reason, [], []) == [CANCELLED_ONLY_BY_A_CANCEL]


def test_an_action_must_see_the_transfer_the_client_knew() -> None:
    assert (
        judge(retry("unknown", started_before=False), ended("committed"), [DEBIT], [CREDIT]) == []
    )
    lost = judge(retry("unknown", started_before=True), ended("committed"), [DEBIT], [CREDIT])
    assert lost == [ACTION_SAW_THE_TRANSFER]
    pending = judge(retry("retrying", finished_before=True), ended("committed"), [DEBIT], [CREDIT])
    assert pending == [ACTION_SAW_THE_TRANSFER]
    assert (
        judge(retry("finished", finished_before=True), ended("committed"), [DEBIT], [CREDIT]) == []
    )


def test_an_action_answered_with_its_record_kept_must_have_its_record() -> None:
    act = cancel("cancelled_before_debit")
    record = {"action": "cancel", "transfer_id": "t-1", "by": BY, "reason": WHY}
    kept = {"t-1": [record | {"outcome": "cancelled_before_debit", "at": 1.0}]}
    assert check_operator_records([act], kept) == []
    assert invariants(check_operator_records([act], {})) == [OPERATOR_RECORD_KEPT]
    wrong = {"t-1": [record | {"outcome": "too_late", "at": 1.0}]}
    assert invariants(check_operator_records([act], wrong)) == [OPERATOR_RECORD_KEPT]
    # an action that said its record could not be kept, or got no answer, is not looked for
    assert check_operator_records([cancel("too_late", record_error="store down")], {}) == []
    assert check_operator_records([cancel(None, lost=2)], {}) == []
    # every answer is recorded, even a retry of a transfer the store does not have
    for answer in ("unknown", "not_waiting"):
        missing = check_operator_records([retry(answer, started_before=False)], {})
        assert invariants(missing) == [OPERATOR_RECORD_KEPT]


def test_an_op_applied_twice_on_a_cancelled_transfer_is_reported_by_the_audit() -> None:
    twice = {**REVERSAL, "seq": 3}
    found = audit.check(ledgers([DEBIT, REVERSAL, twice], []))
    assert audit.EXACTLY_ONCE in invariants(found)


def test_an_operator_act_survives_the_results_file() -> None:
    act = cancel("cancelled_after_debit", lost=1)
    assert OperatorAct.from_dict(json.loads(json.dumps(act.to_dict()))) == act
