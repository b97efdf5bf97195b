"""The saga's one rule, :func:`records.decide`, and the records it reads, old and new."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.records import (
    Decision,
    StepRecord,
    TransferResult,
    TransferSteps,
    decide,
    parse_step_value,
)


def rec(kind: Any, status: Any, settled_by: Any = "bank", code: str | None = None) -> StepRecord:
    return StepRecord(kind, f"t-{kind}", status, settled_by, code=code)


@pytest.mark.parametrize(
    ("steps", "decision"),
    [
        (TransferSteps(), Decision("in_progress", next_step="debit")),
        (
            TransferSteps(rec("debit", "rejected", code="insufficient_funds")),
            Decision("failed", "insufficient_funds"),
        ),
        (
            TransferSteps(rec("debit", "voided", "fence")),
            Decision("failed", "debit_voided_after_timeouts"),
        ),
        (
            TransferSteps(rec("debit", "applied", "fence")),
            Decision("in_progress", next_step="credit", applied=frozenset({"debit"})),
        ),
        (
            TransferSteps(rec("debit", "applied"), rec("credit", "applied", "fence")),
            Decision("committed", applied=frozenset({"debit", "credit"})),
        ),
        (
            TransferSteps(rec("debit", "applied"), rec("credit", "voided", "fence")),
            Decision(
                "compensating",
                "credit_voided_after_timeouts",
                next_step="reversal",
                applied=frozenset({"debit"}),
            ),
        ),
        (
            TransferSteps(
                rec("debit", "applied"),
                rec("credit", "rejected", code="account_closed"),
                rec("reversal", "applied"),
            ),
            Decision("compensated", "account_closed", applied=frozenset({"debit", "reversal"})),
        ),
    ],
)
def test_decide(steps: TransferSteps, decision: Decision) -> None:
    assert decide(steps) == decision


def test_on_the_ledgers_a_missing_entry_never_happened_and_gives_no_reason() -> None:
    assert decide(TransferSteps.on_ledgers("t", {"debit", "reversal"})) == Decision(
        "compensated", None, applied=frozenset({"debit", "reversal"})
    )
    assert decide(TransferSteps.on_ledgers("t", {"debit"})).finished is False
    assert decide(TransferSteps.on_ledgers("t", set())).status == "failed"


@pytest.mark.parametrize(
    ("old", "now"),
    [
        (  # the old fence step's own record
            {"step": "credit-fence", "op_id": "t-credit", "state": "voided"},
            rec("credit", "voided", "fence"),
        ),
        (  # a settled step with the fence's state folded into its status
            {"step": "debit", "op_id": "t-debit", "state": "applied", "status": "applied"}
            | {"entry": {"op_id": "t-debit"}, "settled_by": "fence"},
            StepRecord("debit", "t-debit", "applied", "fence", entry={"op_id": "t-debit"}),
        ),
        (
            {
                "step": "debit",
                "op_id": "t-debit",
                "status": "rejected",
                "code": "x",
                "message": "m",
            },
            StepRecord("debit", "t-debit", "rejected", code="x", message="m"),
        ),
    ],
)
def test_records_written_before_the_types_read_as_records(
    old: dict[str, Any], now: StepRecord
) -> None:
    assert StepRecord.from_json(old) == now
    assert StepRecord.from_json(now.to_json()) == now


def test_what_is_no_record_of_this_saga_is_refused() -> None:
    for value in ({"step": "refund", "status": "applied"}, {"step": "debit", "status": "lost"}):
        with pytest.raises(ValueError, match="step record"):
            StepRecord.from_json(value)
        assert parse_step_value(value) is None
    with pytest.raises(ValueError, match="not a credit step record"):
        StepRecord.from_json({"step": "debit", "status": "applied"}, kind="credit")
    with pytest.raises(ValueError, match="not a finished transfer"):
        TransferResult.from_json({"status": "in_progress"})
