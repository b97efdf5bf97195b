"""The campaign's own checks, on top of :func:`orchestrator.audit.check`.

The audit sees only the ledgers. A campaign also knows what it asked for and
what it was told, so it can check what the ledgers alone cannot:

- every transfer it started reached a terminal status;
- the outcome each saga reported agrees with the ledgers: the saga's own
  rule (:func:`orchestrator.records.decide`), applied to the entries the
  ledgers hold, comes to the same status and rests on all of them (a
  committed transfer's debit and credit, a compensated one's debit and
  reversal, nothing for a failed one);
- acknowledged writes survived: every entry a saga's result says a bank
  applied is still in that bank's ledger, as is every entry the campaign saw
  in a ledger listing while processes were being killed.

All pure: the runner gathers the data, these functions judge it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from chaos.schedule import PlannedTransfer
from orchestrator.audit import STEP_PLACEMENT, Ledgers, Violation
from orchestrator.records import STEP_KINDS, TERMINAL_STATUSES, TransferSteps, decide

TERMINAL = "terminal"
RESULT_MATCHES_LEDGER = "result_matches_ledger"
ACKNOWLEDGED_WRITE_SURVIVED = "acknowledged_write_survived"

_STEP_BANK = STEP_PLACEMENT


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
        held = {step for step, entry in steps.items() if entry is not None}
        on_ledgers = decide(TransferSteps.on_ledgers(tid, held))
        if on_ledgers.status != status or held != on_ledgers.applied:
            violations.append(
                Violation(
                    RESULT_MATCHES_LEDGER,
                    tid,
                    f"reported {status} but the ledgers hold "
                    f"{', '.join(sorted(held)) or 'none of its entries'}: "
                    + (
                        f"{on_ledgers.status} by the saga's rule"
                        if on_ledgers.status != status
                        else f"more than a {status} transfer leaves"
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
    steps = result.get("steps")
    recorded = TransferSteps.from_json(steps if isinstance(steps, Mapping) else {})
    for kind in STEP_KINDS:
        record = recorded.get(kind)
        entry = record.entry if record is not None and record.applied else None
        if isinstance(entry, dict) and "op_id" in entry:
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
