"""The saga's records and the one rule that turns a transfer's steps into its status.

A bank step ends in one of three states, however it got there:

- ``applied``: the entry is on the ledger (the bank said so, or the fence found it);
- ``rejected``: the bank refused it, and the fence made sure no earlier attempt
  applies it later (``code`` says why);
- ``voided``: its outcome stayed unknown until the fence voided the op id: it
  never happened and never will.

``settled_by`` says how the state is known: the bank's answer to the entry,
the void ``fence``, or (for the audits) a ``ledger`` listing read afterwards.

:func:`decide` is the only place that says what a transfer's steps amount to
(and what the saga does next): the saga runs it in its body, the steps run
it to log the outcome they decided, and ``transfers``, the views, the audit
and the chaos checks read their statuses through it.

Wire form: the SDK checkpoints each step's value as JSON and, on a replay,
hands back the JSON it stored, coerced to the step's return annotation with
``msgspec.convert``. Steps therefore return :meth:`StepRecord.to_json` (a
plain dict) and the saga reads it back with :meth:`StepRecord.from_json`,
which also reads the records written before these types existed (a fence
step was ``{"step": "debit-fence", "state": ...}``; a settled step carried the
fence's ``state`` folded into ``status``). A dataclass annotation would make
the SDK reject those old values on replay, and it retries a value it cannot
convert forever.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, cast, get_args

from orchestrator.bank_client import EntryKind

StepStatus = Literal["applied", "rejected", "voided"]
SettledBy = Literal["bank", "fence", "ledger"]
TerminalStatus = Literal["committed", "compensated", "failed"]
#: A transfer's status: terminal, or how far it got (``compensating``: the
#: credit did not land and the debit is not reversed yet).
TransferStatus = TerminalStatus | Literal["in_progress", "compensating"]

STEP_KINDS: tuple[EntryKind, ...] = get_args(EntryKind)
TERMINAL_STATUSES: frozenset[str] = frozenset(get_args(TerminalStatus))
_STEP_STATUSES: frozenset[str] = frozenset(get_args(StepStatus))
_SETTLED_BY: frozenset[str] = frozenset(get_args(SettledBy))

#: The ``step`` name of the record that says when compensation began.
COMPENSATING = "compensating"

#: The reason of a transfer an operator cancelled (``crossbank cancel``).
CANCELLED = "cancelled"


def op_id(transfer_id: str, kind: EntryKind) -> str:
    """The bank op id of one step: ``{transfer_id}-debit`` / ``-credit`` / ``-reversal``."""
    return f"{transfer_id}-{kind}"


@dataclass(frozen=True)
class StepRecord:
    """How one bank step (debit, credit or reversal) settled."""

    kind: EntryKind
    op_id: str
    status: StepStatus
    settled_by: SettledBy = "bank"
    entry: dict[str, Any] | None = None
    code: str | None = None
    message: str | None = None
    #: When an operator cancelled the transfer by voiding this op id: the note
    #: the bank keeps with the void (``{"by", "reason", "at"}``).
    cancelled: dict[str, str] | None = None

    @property
    def applied(self) -> bool:
        return self.status == "applied"

    @property
    def reason(self) -> str | None:
        """Why the step did not apply, as the transfer's result reports it."""
        if self.cancelled is not None and not self.applied:
            return CANCELLED
        if self.status == "rejected":
            return self.code
        if self.status == "voided" and self.settled_by == "fence":
            return f"{self.kind}_voided_after_timeouts"
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.kind,
            "op_id": self.op_id,
            "status": self.status,
            "settled_by": self.settled_by,
            "entry": self.entry,
            "code": self.code,
            "message": self.message,
            "cancelled": self.cancelled,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any], *, kind: str | None = None) -> StepRecord:
        """A step's value, as written now or before the records were typed.

        ``kind`` names the slot a value was found in (``steps["credit"]``) when
        the value itself may not say; a value for another kind is refused.
        """
        step = value.get("step", kind)
        if not isinstance(step, str):
            raise ValueError(f"a step record names no step: {value!r}")
        fence_step = step.endswith("-fence")  # the old fence step's own record
        name = step.removesuffix("-fence")
        status = value.get("state") if fence_step else value.get("status", value.get("state"))
        settled_by = value.get("settled_by") or ("fence" if fence_step else "bank")
        if name not in STEP_KINDS or (kind is not None and name != kind):
            raise ValueError(f"not a {kind or 'bank'} step record: {value!r}")
        if status not in _STEP_STATUSES or settled_by not in _SETTLED_BY:
            raise ValueError(f"a {name} step record with no known status: {value!r}")
        return cls(
            kind=name,  # each checked above
            op_id=str(value.get("op_id") or ""),
            status=cast(StepStatus, status),
            settled_by=cast(SettledBy, settled_by),
            entry=value.get("entry"),
            code=value.get("code"),
            message=value.get("message"),
            cancelled=value.get("cancelled"),
        )


@dataclass(frozen=True)
class Compensation:
    """When the saga began reversing the debit, and why (the credit's reason)."""

    since: float
    reason: str | None

    def to_json(self) -> dict[str, Any]:
        return {"step": COMPENSATING, "since": self.since, "reason": self.reason}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Compensation:
        since = value.get("since")
        if value.get("step") != COMPENSATING or not isinstance(since, int | float):
            raise ValueError(f"not a compensation record: {value!r}")
        reason = value.get("reason")
        return cls(since=float(since), reason=reason if isinstance(reason, str) else None)


def parse_step_value(value: Any) -> StepRecord | Compensation | None:
    """A recorded step's value as a record; None for what is no record of this saga."""
    if not isinstance(value, Mapping):
        return None
    try:
        if value.get("step") == COMPENSATING:
            return Compensation.from_json(value)
        return StepRecord.from_json(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class TransferSteps:
    """The latest record of each bank step; None for a step not settled (or not run)."""

    debit: StepRecord | None = None
    credit: StepRecord | None = None
    reversal: StepRecord | None = None

    def with_step(self, record: StepRecord) -> TransferSteps:
        return replace(self, **{record.kind: record})

    def get(self, kind: EntryKind) -> StepRecord | None:
        record: StepRecord | None = getattr(self, kind)
        return record

    def cancellation(self) -> dict[str, str] | None:
        """Who cancelled the transfer, when and why (the void's note), if an operator did."""
        for record in (self.debit, self.credit):
            if record is not None and not record.applied and record.cancelled is not None:
                return record.cancelled
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            kind: record.to_json() if (record := self.get(kind)) else None for kind in STEP_KINDS
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> TransferSteps:
        """A result's ``steps`` (``{"debit": ..., "credit": ..., "reversal": ...}``)."""
        steps = cls()
        for kind in STEP_KINDS:
            if isinstance(step := value.get(kind), Mapping):
                steps = steps.with_step(StepRecord.from_json(step, kind=kind))
        return steps

    @classmethod
    def from_values(cls, values: Iterable[Any]) -> TransferSteps:
        """The steps as far as the recorded step values go, in the order they ran."""
        steps = cls()
        for value in values:
            if isinstance(record := parse_step_value(value), StepRecord):
                steps = steps.with_step(record)
        return steps

    @classmethod
    def on_ledgers(cls, transfer_id: str, present: Collection[str]) -> TransferSteps:
        """A transfer's steps as the ledgers show them once it is finished.

        An op that is on its ledger applied; one that is not did not and never
        will: the saga fences every op it did not see applied, and posts a
        reversal only until it is applied.
        """
        return cls(
            **{
                kind: StepRecord(
                    kind,
                    op_id(transfer_id, kind),
                    "applied" if kind in present else "voided",
                    settled_by="ledger",
                )
                for kind in STEP_KINDS
            }
        )


@dataclass(frozen=True)
class Decision:
    """What a transfer's steps amount to: its status, why, and what the saga does next."""

    status: TransferStatus
    reason: str | None = None
    #: The step the saga runs next; None once the transfer is finished.
    next_step: EntryKind | None = None
    #: The steps whose entries the decision rests on being applied: the ledger
    #: entries a transfer with this outcome holds, no more and no fewer.
    applied: frozenset[EntryKind] = frozenset()

    @property
    def finished(self) -> bool:
        return self.next_step is None

    def terminal_status(self) -> TerminalStatus:
        if self.status == "committed" or self.status == "compensated" or self.status == "failed":
            return self.status
        raise ValueError(f"the transfer is not finished: {self.status}")


def decide(steps: TransferSteps) -> Decision:
    """The transfer's status from its steps: the saga's whole rule, in one place.

    A debit that did not apply fails the transfer; a credit that applied
    commits it, whatever else happened; a credit that did not apply means
    reversing the debit, and the transfer is compensated once that applied.
    """
    debit, credit, reversal = steps.debit, steps.credit, steps.reversal
    if debit is None:
        return Decision("in_progress", next_step="debit")
    if not debit.applied:
        return Decision("failed", debit.reason)
    if credit is None:
        return Decision("in_progress", next_step="credit", applied=frozenset({"debit"}))
    if credit.applied:
        return Decision("committed", applied=frozenset({"debit", "credit"}))
    if reversal is None or not reversal.applied:
        return Decision(
            "compensating", credit.reason, next_step="reversal", applied=frozenset({"debit"})
        )
    return Decision("compensated", credit.reason, applied=frozenset({"debit", "reversal"}))


@dataclass(frozen=True)
class TransferResult:
    """A finished transfer: what it moved (or not) and the step records it rests on."""

    transfer_id: str
    status: TerminalStatus
    reason: str | None
    amount: int
    source_account: str
    target_account: str
    steps: TransferSteps

    def to_json(self) -> dict[str, Any]:
        """The saga's result as the store keeps it and ``crossbank transfer --json`` prints it."""
        return {
            "transfer_id": self.transfer_id,
            "status": self.status,
            "reason": self.reason,
            "amount": self.amount,
            "source_account": self.source_account,
            "target_account": self.target_account,
            "steps": self.steps.to_json(),
            "cancelled": self.steps.cancellation(),
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> TransferResult:
        status = value.get("status")
        if status not in TERMINAL_STATUSES:
            raise ValueError(f"not a finished transfer's result: status {status!r}")
        steps = value.get("steps")
        return cls(
            transfer_id=str(value["transfer_id"]),
            status=status,
            reason=value.get("reason"),
            amount=int(value["amount"]),
            source_account=str(value["source_account"]),
            target_account=str(value["target_account"]),
            steps=TransferSteps.from_json(steps if isinstance(steps, Mapping) else {}),
        )
