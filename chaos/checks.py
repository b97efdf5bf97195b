"""The campaign's own checks, on top of :func:`orchestrator.audit.check`.

The audit sees only the ledgers. A campaign also knows what it asked for and
what it was told, so it can check what the ledgers alone cannot:

- every transfer it started reached a terminal status;
- the outcome each saga reported agrees with the ledgers: a committed
  transfer's debit and credit are there, a compensated one's debit and
  reversal, a failed one moved nothing;
- acknowledged writes survived: every entry a saga's result says a bank
  applied is still in that bank's ledger, as is every entry the campaign saw
  in a ledger listing while processes were being killed.

All pure: the runner gathers the data, these functions judge it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from chaos.schedule import PlannedTransfer
from orchestrator.audit import Ledgers, Violation

TERMINAL = "terminal"
RESULT_MATCHES_LEDGER = "result_matches_ledger"
ACKNOWLEDGED_WRITE_SURVIVED = "acknowledged_write_survived"

TERMINAL_STATUSES = frozenset({"committed", "compensated", "failed"})

#: Which ledger entries each outcome requires (bank, step); the rest must be absent.
_REQUIRED_STEPS: dict[str, frozenset[str]] = {
    "committed": frozenset({"debit", "credit"}),
    "compensated": frozenset({"debit", "reversal"}),
    "failed": frozenset(),
}
_STEP_BANK = {"debit": "source", "credit": "target", "reversal": "source"}


def entries_by_op(ledgers: Ledgers) -> dict[tuple[str, str], dict[str, Any]]:
    """``(bank name, op_id) -> entry``; the audit reports duplicates separately."""
    return {
        (bank.name, entry["op_id"]): entry for bank in ledgers.banks() for entry in bank.entries
    }


def check_transfers(
    planned: Iterable[PlannedTransfer],
    results: Mapping[str, dict[str, Any] | None],
    ledgers: Ledgers,
) -> list[Violation]:
    """Each planned transfer is terminal, and its reported outcome matches the ledgers."""
    present = entries_by_op(ledgers)
    violations: list[Violation] = []
    for transfer in planned:
        tid = transfer.transfer_id
        steps = {step: present.get((bank, f"{tid}-{step}")) for step, bank in _STEP_BANK.items()}
        found = [entry for entry in steps.values() if entry is not None]
        result = results.get(tid)
        status = result.get("status") if result else None
        if result is None or status not in TERMINAL_STATUSES:
            violations.append(
                Violation(TERMINAL, tid, f"not terminal after the run (status {status!r})", found)
            )
            continue
        required = _REQUIRED_STEPS[status]
        missing = sorted(step for step in required if steps[step] is None)
        extra = sorted(step for step, entry in steps.items() if entry and step not in required)
        if missing or extra:
            violations.append(
                Violation(
                    RESULT_MATCHES_LEDGER,
                    tid,
                    f"reported {status} but the ledgers "
                    + "; ".join(
                        part
                        for part in (
                            f"lack its {', '.join(missing)}" if missing else "",
                            f"also hold its {', '.join(extra)}" if extra else "",
                        )
                        if part
                    ),
                    found,
                )
            )
        if result.get("amount") != transfer.amount or any(
            entry["amount"] != transfer.amount for entry in found
        ):
            violations.append(
                Violation(
                    RESULT_MATCHES_LEDGER,
                    tid,
                    f"asked to move {transfer.amount}, reported {result.get('amount')}",
                    found,
                )
            )
        violations += _check_acknowledged_steps(tid, result, present)
    return violations


def applied_entries(result: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every ledger entry a saga's result says a bank applied (in its ``steps``)."""
    steps = result.get("steps") or {}
    for step in steps.values() if isinstance(steps, dict) else ():
        if not isinstance(step, dict):
            continue
        entry = step.get("entry")
        applied = step.get("status") == "applied" or step.get("state") == "applied"
        if applied and isinstance(entry, dict) and "op_id" in entry:
            yield entry


def _check_acknowledged_steps(
    tid: str, result: Mapping[str, Any], present: Mapping[tuple[str, str], dict[str, Any]]
) -> list[Violation]:
    violations = []
    for entry in applied_entries(result):
        step = entry["op_id"].rpartition("-")[2]
        bank = _STEP_BANK.get(step)
        if bank is None:
            continue
        violations += _survived(tid, bank, entry, present, "the saga's result reports")
    return violations


def check_seen_entries(
    seen: Mapping[tuple[str, str], dict[str, Any]], ledgers: Ledgers
) -> list[Violation]:
    """Every entry listed by a bank during the run is still there, unchanged, at the end."""
    present = entries_by_op(ledgers)
    violations = []
    for (bank, op_id), entry in sorted(seen.items()):
        tid = op_id.rpartition("-")[0] or None
        violations += _survived(tid, bank, entry, present, "a ledger listing during the run showed")
    return violations


def _survived(
    tid: str | None,
    bank: str,
    entry: dict[str, Any],
    present: Mapping[tuple[str, str], dict[str, Any]],
    source: str,
) -> list[Violation]:
    now = present.get((bank, entry["op_id"]))
    if now is None:
        return [
            Violation(
                ACKNOWLEDGED_WRITE_SURVIVED,
                tid,
                f"{source} {entry['op_id']} applied on the {bank} bank; it is gone",
                [entry],
            )
        ]
    same = all(now.get(key) == entry.get(key) for key in ("seq", "account_id", "kind", "amount"))
    if not same:
        return [
            Violation(
                ACKNOWLEDGED_WRITE_SURVIVED,
                tid,
                f"{source} {entry['op_id']} on the {bank} bank as one entry; it now reads differently",
                [entry, now],
            )
        ]
    return []
