"""An operator's handles on a running transfer: cancel it, or make its next attempt now.

Both are shared by ``crossbank cancel``/``crossbank retry`` and the console,
and both leave a record (:mod:`orchestrator.operator_log`).

Cancel is the saga's own fence, sent by the operator with a note: the bank
decides every race. Voiding the debit's op id first means the debit can
never apply (even if the transfer has not started yet, or its worker is
dead): the saga finds the op voided and fails with reason ``cancelled``.
If the debit applied already, voiding the credit's op id means the credit
can never apply: the saga compensates with reason ``cancelled``. If the
credit applied, the money has moved, and nothing is voided.

Retry settles the timer a transfer sleeps on between two attempts (saga
version 2 and later, :func:`orchestrator.saga.wait_before_retry`), so the
next attempt starts now. It changes nothing about what that attempt may do.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Literal

from resonate.error import ResonateError, ServerError
from resonate.resonate import Resonate
from resonate.types import Value

from orchestrator import operator_log, transfers
from orchestrator.bank_client import BankClient, CancelNote, VoidOutcome
from orchestrator.records import op_id

CancelOutcome = Literal[
    "cancelled_before_debit",  # the debit's op id is voided: it fails, cancelled
    "cancelled_after_debit",  # the credit's op id is voided: it is compensated, cancelled
    "already_cancelled",  # someone cancelled it before (the note names who)
    "not_cancelled",  # its own refusal got there first: it fails or compensates for that
    "too_late",  # the credit applied: the money has moved
    "finished",  # the transfer is finished: nothing left to cancel
]
RetryOutcome = Literal["retrying", "not_waiting", "in_memory_wait", "finished", "unknown"]


@dataclass(frozen=True)
class Done:
    """What an operator's action came to: ``took_effect`` is False when it changed nothing."""

    transfer_id: str
    outcome: str
    message: str
    took_effect: bool
    record_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "transfer_id": self.transfer_id,
            "outcome": self.outcome,
            "message": self.message,
            "took_effect": self.took_effect,
            "record_error": self.record_error,
        }


async def cancel_transfer(
    resonate: Resonate,
    source: BankClient,
    target: BankClient,
    transfer_id: str,
    *,
    by: str,
    reason: str,
) -> Done:
    """Cancel ``transfer_id`` if its credit has not applied; see the module docstring."""
    record = await transfers.transfer_record(resonate, transfer_id)
    if record is not None and record["state"] != "pending":
        return await _recorded(
            resonate,
            "cancel",
            by,
            reason,
            Done(
                transfer_id,
                "finished",
                f"transfer {transfer_id} is already finished ({record['status']}): "
                "nothing to cancel",
                took_effect=False,
            ),
        )
    note = CancelNote(by=by, reason=reason)
    debit = await source.void(op_id(transfer_id, "debit"), cancel=note)
    if debit.state == "voided":
        done = _voided(transfer_id, debit, note, "debit", started=record is not None)
    else:
        credit = await target.void(op_id(transfer_id, "credit"), cancel=note)
        if credit.state == "voided":
            done = _voided(transfer_id, credit, note, "credit", started=True)
        else:
            done = Done(
                transfer_id,
                "too_late",
                f"transfer {transfer_id} cannot be cancelled: its credit has applied, "
                "the money has moved",
                took_effect=False,
            )
    if done.took_effect:
        # A transfer sleeping between attempts learns now; one that cannot be woken
        # (the store did not answer) learns at its next attempt: the void is what counts.
        with contextlib.suppress(ResonateError):
            now = await transfers.transfer_record(resonate, transfer_id)  # it may sleep by now
            await wake(resonate, now["steps"] if now is not None else [])
    return await _recorded(resonate, "cancel", by, reason, done)


def _voided(
    transfer_id: str, outcome: VoidOutcome, note: CancelNote, kind: str, *, started: bool
) -> Done:
    """What a void that answered ``voided`` means for the transfer."""
    stored = outcome.cancelled
    if stored is None:
        return Done(
            transfer_id,
            "not_cancelled",
            f"transfer {transfer_id}'s {kind} was already refused or voided by its saga: "
            f"it {'fails' if kind == 'debit' else 'is compensated'} for that reason, "
            "not cancelled",
            took_effect=False,
        )
    if (stored.by, stored.reason) != (note.by, note.reason):
        return Done(
            transfer_id,
            "already_cancelled",
            f"transfer {transfer_id} was already cancelled by {stored.by} at {stored.at}: "
            f"{stored.reason}",
            took_effect=False,
        )
    if kind == "debit":
        fate = (
            "its debit can never apply: it ends failed (cancelled)"
            if started
            else "it has not started; if it ever does, it fails (cancelled) without a debit"
        )
        return Done(transfer_id, "cancelled_before_debit", f"cancelled {transfer_id}: {fate}", True)
    return Done(
        transfer_id,
        "cancelled_after_debit",
        f"cancelled {transfer_id}: its credit can never apply; the debit is returned "
        "and it ends compensated (cancelled)",
        True,
    )


async def retry_transfer(resonate: Resonate, transfer_id: str, *, by: str) -> Done:
    """Make ``transfer_id``'s next attempt now, if it is sleeping between two."""
    record = await transfers.transfer_record(resonate, transfer_id)
    if record is None:
        done = Done(transfer_id, "unknown", f"no transfer {transfer_id}", took_effect=False)
    elif record["state"] != "pending":
        done = Done(
            transfer_id,
            "finished",
            f"transfer {transfer_id} is finished ({record['status']}): nothing to retry",
            took_effect=False,
        )
    elif await wake(resonate, record["steps"]):
        done = Done(transfer_id, "retrying", f"transfer {transfer_id}: next attempt now", True)
    elif record["saga_version"] == 1:
        done = Done(
            transfer_id,
            "in_memory_wait",
            f"transfer {transfer_id} runs saga version 1, which waits between attempts in its "
            "worker's memory, where no command reaches; it retries on its own "
            "(STEP_BACKOFF_MAX seconds apart at most)",
            took_effect=False,
        )
    else:
        done = Done(
            transfer_id,
            "not_waiting",
            f"transfer {transfer_id} is not waiting between attempts (a step is running)",
            took_effect=False,
        )
    return await _recorded(resonate, "retry", by, None, done)


async def wake(resonate: Resonate, steps: list[dict[str, Any]]) -> bool:
    """Settle the timer a transfer sleeps on, if any, among its ``steps`` (as
    :func:`orchestrator.transfers.transfer_record` lists them): True when it was sleeping."""
    for step in reversed(steps):
        if step["state"] != "pending" or not step["timer"]:
            continue
        try:
            await resonate.promises.resolve(step["id"], Value(headers=None, data=None))
        except ServerError as exc:
            if exc.code != 409:  # 409: it ran out by itself meanwhile, which is as good
                raise
        return True
    return False


async def _recorded(
    resonate: Resonate, action: operator_log.Action, by: str, reason: str | None, done: Done
) -> Done:
    """``done``, once its record is kept (or with why it could not be)."""
    entry = operator_log.now_action(
        action, done.transfer_id, by=by, reason=reason, outcome=done.outcome
    )
    try:
        await operator_log.record(resonate, entry)
    except ResonateError as exc:  # the action stands; the command says it went unrecorded
        return Done(
            done.transfer_id, done.outcome, done.message, done.took_effect, record_error=str(exc)
        )
    return done
