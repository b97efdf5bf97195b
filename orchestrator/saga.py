"""The transfer saga: debit the source, credit the target, reverse the debit if the target says no.

The workflow body (:func:`transfer`) is straight-line code over durable steps
and nothing else: every bank call, clock read and log line happens inside a
``ctx.run`` step, so a replay after a crash walks the same path and skips the
steps whose results are already recorded.

Each bank call has three outcomes (see :mod:`orchestrator.bank_client`):

- applied or rejected: the step returns it and the promise store records it.
  A rejection is fenced (its op id voided) inside the same step before it is
  returned, so an earlier attempt still in flight can never apply it later;
- unknown: the step raises :class:`BankUnavailable` and the SDK retries it
  with capped exponential backoff, ``settings.step_attempts`` tries in all.
  When they run out the outcome is *settled*, not guessed: a second step voids
  the op id on the bank (retried until the bank answers). ``voided`` means it
  never happened and never will; ``applied`` means it did. Compensating
  without that fence would create money whenever the credit had in fact
  landed and only its answer was lost.

A reversal is retried until it is applied: returning money must not give up.
The saga records when compensation began so a reversal stuck for longer than
``settings.attention_after`` is reported as needing attention.
"""

# No ``from __future__ import annotations`` here: the SDK builds a DurableFunction
# for every ctx.run and evaluates string annotations each time (about 7% of a
# loaded worker's CPU); real annotation objects are taken as they are.
import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from resonate.context import Context
from resonate.retry import Exponential, RetryPolicy

from orchestrator.bank_client import BankClient, BankError, EntryKind
from orchestrator.records import Compensation, StepRecord, TransferResult, TransferSteps, decide
from orchestrator.records import op_id as op_id  # where callers have always found it
from orchestrator.settings import Settings

logger = logging.getLogger("orchestrator.saga")

#: The name the saga is registered and dispatched under.
SAGA_NAME = "transfer"

#: Effectively "forever" for the SDK's retry counter: a reversal or a fence
#: retries until the bank answers.
UNBOUNDED_RETRIES = 1 << 30

BankName = Literal["source", "target"]


def signature_once[Step: Callable[..., Any]](step: Step) -> Step:
    """Compute ``step``'s signature once and keep it on the function as ``__signature__``.

    The SDK builds a DurableFunction for every ``ctx.run`` and calls
    ``inspect.signature`` on the step each time (about 7% of a worker's CPU);
    ``inspect.signature`` returns a function's ``__signature__`` as it is, so
    the work is done here, at import, instead. The signature is the one
    ``inspect`` would compute, so argument checking and coercion are unchanged.
    """
    step.__signature__ = inspect.signature(step)  # type: ignore[attr-defined]
    return step


@dataclass(frozen=True)
class SagaDeps:
    """What the steps need from the process running them: one pooled client per bank.

    Handed to the SDK with ``resonate.with_dependency`` and read back in steps
    with ``ctx.get_dependency(SagaDeps)``, so every transfer in a worker shares
    the same connections.
    """

    source: BankClient
    target: BankClient
    settings: Settings

    def bank(self, name: BankName) -> BankClient:
        return self.source if name == "source" else self.target


class ReversalRefused(BankError):
    """The source bank definitively refused a reversal; it is retried until someone fixes that."""


def bounded_policy(settings: Settings) -> RetryPolicy:
    """``step_attempts`` tries in all, backing off exponentially up to ``step_backoff_max``."""
    return Exponential(
        delay=settings.step_backoff,
        factor=2,
        max_delay=settings.step_backoff_max,
        max_retries=settings.step_attempts - 1,
    )


def unbounded_policy(settings: Settings) -> RetryPolicy:
    """Retry until it works; never faster than once a second so a down bank is not hammered."""
    return Exponential(
        delay=max(settings.step_backoff, 1),
        factor=2,
        max_delay=max(settings.step_backoff_max, 1),
        max_retries=UNBOUNDED_RETRIES,
    )


# -- steps: each runs inside ctx.run, so its result is checkpointed ----------------
#
# Each bank step is handed the steps settled before it (``before``): a local
# ctx.run's arguments are never serialised, so this costs nothing, and it lets
# the step that decides the transfer log the outcome (:func:`_settled`).


@signature_once
async def apply_entry(
    ctx: Context,
    bank: BankName,
    transfer_id: str,
    account_id: str,
    amount: int,
    kind: EntryKind,
    before: TransferSteps,
) -> dict[str, Any]:
    """POST one entry; applied or rejected is the step's value, an unknown outcome raises."""
    deps = ctx.get_dependency(SagaDeps)
    if kind == "debit":
        logger.info("transfer %s started: %s cents from source:%s", transfer_id, amount, account_id)
    client = deps.bank(bank)
    oid = op_id(transfer_id, kind)
    outcome = await client.post_entry(oid, account_id, amount, kind)
    record = StepRecord(kind, oid, outcome.status, entry=outcome.entry)
    if not outcome.applied:
        # A rejection is only final once the op id is fenced: an earlier attempt of this
        # step (timed out here, still parked in the bank) or a worker that lost its lease
        # could otherwise apply it after the saga moved on. ``applied`` means one did.
        fenced = await client.void(oid)
        if fenced.state == "applied":
            record = StepRecord(kind, oid, "applied", settled_by="fence", entry=fenced.entry)
        else:
            record = StepRecord(kind, oid, "rejected", code=outcome.code, message=outcome.message)
    return _settled(transfer_id, before, record)


@signature_once
async def fence_entry(
    ctx: Context, bank: BankName, transfer_id: str, kind: EntryKind, before: TransferSteps
) -> dict[str, Any]:
    """Void the op id so its outcome is settled for good: ``applied`` or ``voided``."""
    deps = ctx.get_dependency(SagaDeps)
    logger.warning("transfer %s: %s outcome unknown after retries, fencing it", transfer_id, kind)
    oid = op_id(transfer_id, kind)
    outcome = await deps.bank(bank).void(oid)
    record = StepRecord(kind, oid, outcome.state, settled_by="fence", entry=outcome.entry)
    return _settled(transfer_id, before, record)


@signature_once
async def begin_compensation(ctx: Context, transfer_id: str, reason: str | None) -> dict[str, Any]:
    """Record when compensation began (a clock read, hence a step) so a stuck one can be flagged."""
    logger.info("transfer %s: credit not applied (%s), reversing the debit", transfer_id, reason)
    return Compensation(since=time.time(), reason=reason).to_json()


@signature_once
async def reverse_debit(
    ctx: Context,
    transfer_id: str,
    account_id: str,
    amount: int,
    since: float,
    before: TransferSteps,
) -> dict[str, Any]:
    """Return the debited money; any answer but applied raises, so the SDK keeps retrying."""
    deps = ctx.get_dependency(SagaDeps)
    waited = time.time() - since
    if waited > deps.settings.attention_after:
        logger.error(
            "transfer %s NEEDS ATTENTION: reversal of %s cents to source:%s still not applied "
            "after %.0f s",
            transfer_id,
            amount,
            account_id,
            waited,
        )
    oid = op_id(transfer_id, "reversal")
    outcome = await deps.source.post_entry(oid, account_id, amount, "reversal")
    if not outcome.applied:
        raise ReversalRefused(
            f"source bank refused reversal {oid}: {outcome.code}: {outcome.message}"
        )
    return _settled(
        transfer_id, before, StepRecord("reversal", oid, "applied", entry=outcome.entry)
    )


def _settled(transfer_id: str, before: TransferSteps, record: StepRecord) -> dict[str, Any]:
    """The step's value (its wire form); logs the transfer's outcome if this step decided it.

    The one place the outcome is logged. It runs inside the step, not in the
    workflow body: a step's body runs again only when its result was never
    recorded (a crash between the bank's answer and the checkpoint), so the
    line appears once per outcome, rarely twice, where the body runs again
    on every replay. A step of its own for the line would cost two more
    promise-store round trips per transfer.
    """
    decision = decide(before.with_step(record))
    if decision.finished:
        reason = f" ({decision.reason})" if decision.reason else ""
        logger.info("transfer %s finished: %s%s", transfer_id, decision.status, reason)
    return record.to_json()


# -- the workflow ----------------------------------------------------------------------


async def transfer(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    """Move ``request["amount"]`` cents from the source account to the target account, or not at all.

    :func:`~orchestrator.records.decide` says, from the steps so far, which
    step runs next; this body only runs it. Steps and result are wire-form
    dicts (see :mod:`orchestrator.records`), read back into records here.
    """
    settings = ctx.get_dependency(SagaDeps).settings
    transfer_id: str = request["transfer_id"]
    source_account: str = request["source_account"]
    target_account: str = request["target_account"]
    amount: int = request["amount"]
    steps = TransferSteps()

    async def settled_step(bank: BankName, account_id: str, kind: EntryKind) -> StepRecord:
        """Applied / rejected from the bank, or, once retries run out, applied / voided by the fence."""
        try:
            value = await ctx.options(retry_policy=bounded_policy(settings)).run(
                apply_entry, bank, transfer_id, account_id, amount, kind, steps
            )
        # Broad on purpose: when the retries run out the SDK re-raises the step's
        # last exception as it was, whatever its type (BankUnavailable when the
        # bank did not answer; anything else the client, the SDK or a bug raised
        # mid-step). Each leaves the op's outcome unknown, and the fence is the
        # one safe answer to all of them: letting one escape would reject the
        # transfer with its money possibly moved and never settled.
        except Exception:
            value = await ctx.options(retry_policy=unbounded_policy(settings)).run(
                fence_entry, bank, transfer_id, kind, steps
            )
        return StepRecord.from_json(value, kind=kind)

    async def reversal(reason: str | None) -> StepRecord:
        began = Compensation.from_json(await ctx.run(begin_compensation, transfer_id, reason))
        value = await ctx.options(retry_policy=unbounded_policy(settings)).run(
            reverse_debit, transfer_id, source_account, amount, began.since, steps
        )
        return StepRecord.from_json(value, kind="reversal")

    while (decision := decide(steps)).next_step is not None:
        match decision.next_step:
            case "debit":
                record = await settled_step("source", source_account, "debit")
            case "credit":
                record = await settled_step("target", target_account, "credit")
            case "reversal":
                record = await reversal(decision.reason)
        steps = steps.with_step(record)
    return TransferResult(
        transfer_id,
        decision.terminal_status(),
        decision.reason,
        amount,
        source_account,
        target_account,
        steps,
    ).to_json()
