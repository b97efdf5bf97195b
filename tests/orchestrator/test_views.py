"""The text a person reads, from the data a command gathered (no banks, no store)."""

from __future__ import annotations

from typing import Any

from orchestrator import audit
from orchestrator.cli import views


def transfer_view(**changes: Any) -> dict[str, Any]:
    view: dict[str, Any] = {
        "transfer_id": "t-1",
        "state": "pending",
        "status": "compensating",
        "request": {"source_account": "ann", "target_account": "bo", "amount": 1250},
        "result": None,
        "error": None,
        "needs_attention": False,
        "steps": [
            {
                "id": "t-1:1",
                "state": "resolved",
                "value": {"step": "debit", "status": "applied"},
                "error": None,
            },
            {
                "id": "t-1:2",
                "state": "resolved",
                "value": {"step": "credit", "status": "rejected", "code": "account_closed"},
                "error": None,
            },
            {"id": "t-1:3", "state": "pending", "value": None, "error": None},
        ],
        "timeline": [{"id": "t-1", "created_at": 1_764_000_000_000, "settled_at": None}],
        "ledger": {
            "debit": {
                "state": "applied",
                "entry": {"amount": 1250, "account_id": "ann", "created_at": "t"},
            },
            "credit": {"state": "voided"},
            "reversal": None,
        },
    }
    view.update(changes)
    return view


def test_status_tells_what_happened_step_by_step_and_where_the_money_is() -> None:
    text = views.describe_status(transfer_view())
    assert "  timeline (promise store):" in text.splitlines()
    assert text.splitlines()[0] == "transfer t-1: compensating"
    assert "12.50 from ann (source bank) to bo (target bank)" in text
    assert "credit: rejected (account_closed)" in text
    assert any("t-1:3" in line and line.endswith("running") for line in text.splitlines())
    assert "voided (fenced: it never happened and never will)" in text
    assert "reversal  -" in text


def test_status_flags_a_compensation_that_takes_too_long() -> None:
    text = views.describe_status(transfer_view(needs_attention=True))
    assert "NEEDS ATTENTION" in text.splitlines()[0]


def test_a_transfer_no_worker_has_picked_up_says_so() -> None:
    text = views.describe_status(transfer_view(steps=[], status="in progress"))
    assert "no step recorded yet: waiting for a worker" in text


def test_status_word_says_the_decided_status_in_words() -> None:
    assert views.status_word({"state": "resolved", "status": "committed"}) == "committed"
    assert views.status_word({"state": "pending", "status": "compensating"}) == "compensating"
    assert views.status_word({"state": "pending", "status": "in_progress"}) == "in progress"
    assert views.status_word({"state": "rejected", "status": "rejected"}) == "rejected"


def test_each_step_reads_the_same_in_the_old_records_and_the_new() -> None:
    """A transfer recorded before the step records were typed reads as one recorded now."""
    fenced_now = {
        "step": "debit",
        "op_id": "t-1-debit",
        "status": "voided",
        "settled_by": "fence",
        "entry": None,
        "code": None,
        "message": None,
    }
    old_fence_step = {"step": "debit-fence", "op_id": "t-1-debit", "state": "voided"}
    old_applied = {"step": "credit", "op_id": "t-1-credit", "status": "applied", "entry": {}}
    new_applied = {**fenced_now, "step": "credit", "status": "applied", "settled_by": "bank"}
    described = [
        views.describe_status(transfer_view(steps=[step(1, value)]))
        for value in (fenced_now, old_fence_step, old_applied, new_applied)
    ]
    assert "t-1:1                      debit: voided, settled by the fence" in described[0]
    assert described[1] == described[0]
    assert "t-1:1                      credit: applied\n" in described[2]
    assert described[3] == described[2]


def step(number: int, value: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"t-1:{number}", "state": "resolved", "value": value, "error": None}


def test_results_say_where_the_money_ended_up() -> None:
    base = {"transfer_id": "t", "amount": 500, "source_account": "a", "target_account": "b"}
    assert "moved 5.00 from a to b" in views.describe_result({**base, "status": "committed"})
    compensated = views.describe_result({**base, "status": "compensated", "reason": "x"})
    assert "the 5.00 is back in a's account" in compensated
    failed = views.describe_result({**base, "status": "failed", "reason": "insufficient_funds"})
    assert "nothing moved" in failed
    note = {"by": "ops", "reason": "customer withdrew", "at": "2026-12-06T10:00:00Z"}
    cancelled = views.describe_result(
        {**base, "status": "compensated", "reason": "cancelled", "cancelled": note}
    )
    assert cancelled.splitlines() == [
        "transfer t: compensated (cancelled)",
        "  cancelled by ops: customer withdrew; the debit was reversed, so the 5.00 is back "
        "in a's account",
    ]


def test_an_audit_lists_each_violation_with_its_entries() -> None:
    summary = {"accounts": 2, "entries": 1, "total_balance": 900, "in_flight": []}
    assert views.describe_audit(summary, []) == (
        "audit: clean (2 accounts, 1 entries, total balance 9.00)"
    )
    violation = audit.Violation(
        "per_transfer",
        "t-9",
        "a debit with neither a credit nor a reversal",
        [{"op_id": "t-9-debit", "kind": "debit", "amount": 100, "account_id": "a", "seq": 4}],
    )
    text = views.describe_audit({**summary, "in_flight": ["t-8"]}, [violation])
    lines = text.splitlines()
    assert lines[0].startswith("audit: 1 violation(s): 1 per_transfer")
    assert "1 transfer(s) still in flight" in lines[0]
    assert lines[1] == "  [per_transfer] transfer t-9: a debit with neither a credit nor a reversal"
    assert lines[2].strip() == "entry t-9-debit: debit 1.00 on a (seq 4)"


def test_status_names_where_its_timeline_comes_from() -> None:
    text = views.describe_status(transfer_view(), kept_in="Resonate on Postgres")
    assert "  timeline (Resonate on Postgres):" in text.splitlines()
