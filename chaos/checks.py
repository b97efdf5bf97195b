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
  in a ledger listing while processes were being killed;
- operator actions (the ``cancel`` and ``retry`` kinds) came to what they
  said (:func:`check_operator_actions`): a cancel that took effect ends
  failed or compensated, reason ``cancelled``, with its own note, and the op id
  it voided never applied; a cancel that came too late ends committed; no
  transfer is reported cancelled that no cancel could have cancelled; an action
  on a transfer the store had acknowledged saw it, and on one that had
  finished saw that; every action answered without a record error has its
  record in the store.

All pure: the runner gathers the data, these functions judge it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from chaos.schedule import CANCEL, RETRY, PlannedTransfer
from orchestrator.audit import STEP_PLACEMENT, Ledgers, Violation
from orchestrator.records import (
    CANCELLED,
    STEP_KINDS,
    TERMINAL_STATUSES,
    TransferSteps,
    decide,
)

TERMINAL = "terminal"
RESULT_MATCHES_LEDGER = "result_matches_ledger"
ACKNOWLEDGED_WRITE_SURVIVED = "acknowledged_write_survived"
#: A cancel that said it took effect ended as it said: failed (voided before the
#: debit) or compensated (after it), reason ``cancelled``, with the cancel's note.
CANCEL_TOOK_EFFECT = "cancel_took_effect"
#: The op id a cancel voided never applied: not on the ledger at the end, never
#: listed during the run (the audit's ``exactly_once`` says no op applied twice).
VOIDED_OP_NEVER_APPLIED = "voided_op_never_applied"
#: A cancel that said ``too_late`` (its credit had applied) ended committed.
CANCEL_TOO_LATE_COMMITTED = "cancel_too_late_committed"
#: A transfer reported cancelled was cancelled by one of the campaign's cancels
#: that took effect (or whose answer was lost), and by nothing else.
CANCELLED_ONLY_BY_A_CANCEL = "cancelled_only_by_a_cancel"
#: An action saw the transfer as the client knew it was: one whose start the store
#: had acknowledged exists, one whose result the client had is finished.
ACTION_SAW_THE_TRANSFER = "action_saw_the_transfer"
#: An action answered without a record error has its operator record in the store.
OPERATOR_RECORD_KEPT = "operator_record_kept"

#: What a cancel that took effect says it voided, and how the transfer must end.
_CANCEL_EFFECTS: dict[str, tuple[str, str]] = {
    "cancelled_before_debit": ("debit", "failed"),
    "cancelled_after_debit": ("credit", "compensated"),
}
#: Answers that are certain however many earlier attempts lost theirs: an earlier
#: attempt's void would have been seen by this one (voids never change).
_CERTAIN_WHATEVER_WAS_LOST = frozenset(
    {*_CANCEL_EFFECTS, "too_late", "not_cancelled", "already_cancelled"}
)

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


@dataclass(frozen=True)
class OperatorAct:
    """One operator action the campaign took (a ``cancel`` or ``retry`` fault), as it went.

    ``done`` is the answer (:meth:`orchestrator.operations.Done.to_json`) of the
    last attempt that got one; ``lost`` counts the attempts whose answer never
    came (the store or a bank failed mid-way: what they did is unknown, and
    repeating one is safe, since a cancel with the same note is the same void).
    ``started_before``/``finished_before``: whether, when the action picked the
    transfer, the store had acknowledged its start and the client had its result;
    ``sent_at``: when it was first sent, in seconds of the workload's clock.
    """

    kind: str
    transfer_id: str
    by: str
    reason: str | None
    done: Mapping[str, Any] | None
    attempts: int = 1
    lost: int = 0
    started_before: bool = True
    finished_before: bool = False
    sent_at: float | None = None

    @property
    def outcome(self) -> str | None:
        return None if self.done is None else str(self.done.get("outcome"))

    @property
    def took_effect(self) -> bool:
        return self.done is not None and self.done.get("took_effect") is True

    def may_have_cancelled(self) -> bool:
        """Whether this cancel may have left its note on the transfer's void."""
        if self.kind != CANCEL:
            return False
        if self.took_effect or self.done is None:
            return True
        return self.lost > 0 and self.outcome not in _CERTAIN_WHATEVER_WAS_LOST

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["done"] = None if self.done is None else dict(self.done)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OperatorAct:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})


def check_operator_actions(
    acts: Sequence[OperatorAct],
    results: Mapping[str, dict[str, Any] | None],
    ledgers: Ledgers,
    seen: Mapping[tuple[str, str], dict[str, Any]],
) -> list[Violation]:
    """Every cancel and retry came to what it said (see the module docstring).

    Transfers without a terminal result are left to :func:`check_transfers`
    (``terminal``); what the ledgers hold for the rest is judged here only as
    far as a cancel's answer says something about it.
    """
    present = entries_by_op(ledgers)
    violations: list[Violation] = []
    for act in acts:
        violations += _check_saw_the_transfer(act)
        result = results.get(act.transfer_id)
        if act.kind != CANCEL or result is None or result.get("status") not in TERMINAL_STATUSES:
            continue
        if act.took_effect:
            violations += _check_cancel_took_effect(act, result, present, seen)
        elif act.outcome == "too_late":
            violations += _check_too_late(act, result, present)
    violations += _check_cancelled_only_by_a_cancel(acts, results, present)
    return violations


def _held(tid: str, present: Mapping[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    """The ledger entries of ``tid``'s steps, by step."""
    found = {step: present.get((bank, f"{tid}-{step}")) for step, bank in _STEP_BANK.items()}
    return {step: entry for step, entry in found.items() if entry is not None}


def _note(result: Mapping[str, Any]) -> tuple[Any, Any] | None:
    note = result.get("cancelled")
    return (note.get("by"), note.get("reason")) if isinstance(note, Mapping) else None


def _check_cancel_took_effect(
    act: OperatorAct,
    result: Mapping[str, Any],
    present: Mapping[tuple[str, str], dict[str, Any]],
    seen: Mapping[tuple[str, str], dict[str, Any]],
) -> list[Violation]:
    tid = act.transfer_id
    voided, expected = _CANCEL_EFFECTS.get(str(act.outcome), ("debit", "failed"))
    held = _held(tid, present)
    entries = list(held.values())
    violations = []
    status, reason, note = result.get("status"), result.get("reason"), _note(result)
    if status != expected or reason != CANCELLED or note != (act.by, act.reason):
        violations.append(
            Violation(
                CANCEL_TOOK_EFFECT,
                tid,
                f"the cancel answered {act.outcome} (took effect), so it must end {expected} "
                f"({CANCELLED}, by {act.by}: {act.reason}); it ended {status} ({reason}), "
                f"cancelled {'by ' + repr(note[0]) + ': ' + repr(note[1]) if note else 'by no one'}",
                entries,
            )
        )
    elif "debit" in held and "reversal" not in held:
        violations.append(
            Violation(
                CANCEL_TOOK_EFFECT,
                tid,
                f"cancelled, but its debit applied and was never returned (ends {status})",
                entries,
            )
        )
    bank = _STEP_BANK[voided]
    oid = f"{tid}-{voided}"
    applied = [e for e in (present.get((bank, oid)), seen.get((bank, oid))) if e is not None]
    if applied:
        where = "is on the ledger" if (bank, oid) in present else "was listed during the run"
        violations.append(
            Violation(
                VOIDED_OP_NEVER_APPLIED,
                tid,
                f"the cancel voided {oid} on the {bank} bank (answered {act.outcome}), "
                f"yet it {where}",
                applied[:1],
            )
        )
    return violations


def _check_too_late(
    act: OperatorAct, result: Mapping[str, Any], present: Mapping[tuple[str, str], dict[str, Any]]
) -> list[Violation]:
    tid = act.transfer_id
    held = _held(tid, present)
    status = result.get("status")
    if status == "committed" and {"debit", "credit"} <= set(held) and "reversal" not in held:
        return []
    return [
        Violation(
            CANCEL_TOO_LATE_COMMITTED,
            tid,
            f"the cancel answered too_late (its credit had applied), so it must end committed "
            f"with its debit and credit; it ended {status}, the ledgers hold "
            f"{', '.join(sorted(held)) or 'none of its entries'}",
            list(held.values()),
        )
    ]


def _check_saw_the_transfer(act: OperatorAct) -> list[Violation]:
    if act.done is None:
        return []
    outcome = act.outcome
    if act.finished_before and outcome != "finished":
        detail = f"the client had its result before the {act.kind}, which answered {outcome}"
    elif act.kind == RETRY and act.started_before and outcome == "unknown":
        detail = "the store had acknowledged its start before the retry, which did not find it"
    else:
        return []
    return [Violation(ACTION_SAW_THE_TRANSFER, act.transfer_id, detail)]


def _check_cancelled_only_by_a_cancel(
    acts: Sequence[OperatorAct],
    results: Mapping[str, dict[str, Any] | None],
    present: Mapping[tuple[str, str], dict[str, Any]],
) -> list[Violation]:
    by_note = {(act.transfer_id, act.by, act.reason): act for act in acts if act.kind == CANCEL}
    violations = []
    for tid, result in sorted(results.items()):
        if result is None:
            continue
        note = _note(result)
        if note is None and result.get("reason") != CANCELLED:
            continue
        entries = list(_held(tid, present).values())
        if note is None:
            detail = f"reported {result.get('status')} ({CANCELLED}) without a cancel note"
        elif (act := by_note.get((tid, *note))) is None:
            detail = f"reported cancelled by {note[0]!r} ({note[1]!r}): no cancel of the campaign"
        elif not act.may_have_cancelled():
            detail = (
                f"reported cancelled by the cancel that answered {act.outcome} "
                f"({'took effect' if act.took_effect else 'changed nothing'})"
            )
        elif result.get("reason") != CANCELLED:
            detail = (
                f"carries a cancel note but ended {result.get('status')} ({result.get('reason')})"
            )
        else:
            continue
        violations.append(Violation(CANCELLED_ONLY_BY_A_CANCEL, tid, detail, entries))
    return violations


def check_operator_records(
    acts: Sequence[OperatorAct], records: Mapping[str, Sequence[Mapping[str, Any]]]
) -> list[Violation]:
    """Every action answered without a record error has its record among ``records``.

    ``records``: the operator records read back from the store after the run
    (:func:`orchestrator.operator_log.actions_on`), as JSON, by transfer id.
    Every answer leaves one, a retry of a transfer the store does not have
    (``unknown``) too.
    """
    violations = []
    for act in acts:
        if act.done is None or act.done.get("record_error") is not None:
            continue
        wanted = (act.kind, act.transfer_id, act.by, act.reason, act.outcome)
        kept = [
            (r.get("action"), r.get("transfer_id"), r.get("by"), r.get("reason"), r.get("outcome"))
            for r in records.get(act.transfer_id, ())
        ]
        if wanted not in kept:
            violations.append(
                Violation(
                    OPERATOR_RECORD_KEPT,
                    act.transfer_id,
                    f"the {act.kind} answered {act.outcome} with its record kept, but the store "
                    f"has no such record ({len(kept)} records on the transfer)",
                )
            )
    return violations
