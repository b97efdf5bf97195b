"""The transfer saga: debit the source, credit the target, reverse the debit if the target says no.

The workflow body (:func:`transfer`) reads top to bottom, one ``await`` per
durable step in the order they run::

    debit = settle(debit at the source)         not applied -> "failed"
    credit = settle(credit at the target)       applied     -> "committed"
        otherwise: begin compensation, reverse the debit -> "compensated"

Every bank call, clock read and log line happens inside a ``ctx.run`` step,
so a replay after a crash walks the same path and skips the steps whose
results are already recorded.

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

The fence and the reversal may wait for a long time, so they wait durably
(:func:`until_done`): each failed attempt is recorded, then the saga sleeps
on a timer promise for the backoff. Nothing is held in a worker meanwhile,
and ``crossbank retry`` settles that timer to make the next attempt now.
An operator's cancel is a void with a note (the fence again), so the bank
decides every race between a cancel and a step.

Versions: this body is version :data:`SAGA_VERSION`. A change that alters
the sequence of durable steps, or what a step is called with, is a new
version, and the old body stays, frozen, for the transfers that started on
it (:mod:`orchestrator.saga_v1`; the registry is :mod:`orchestrator.saga_versions`).

The body is its own rule. :func:`orchestrator.records.decide` says the same
thing for the readers of a transfer's status (the CLI, the console, the
audit), and the saga table test holds the two to each other on every row.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from resonate.context import Context
from resonate.retry import Exponential, Never, RetryPolicy

from orchestrator.bank_client import BankClient, BankError, BankName, EntryKind, VoidOutcome
from orchestrator.metrics import WorkerMetrics
from orchestrator.records import (
    Compensation,
    StepRecord,
    TerminalStatus,
    TransferResult,
    TransferSteps,
    op_id,
)
from orchestrator.settings import Settings
from orchestrator.tracing import traced_saga, traced_step, transfer_event

logger = logging.getLogger("orchestrator.saga")

#: The name the saga is registered and dispatched under.
SAGA_NAME = "transfer"

#: The version the body below is registered under (see "Versions" above).
SAGA_VERSION = 2

#: Effectively "forever" for the SDK's retry counter: a reversal or a fence
#: retries until the bank answers.
UNBOUNDED_RETRIES = 1 << 30


@dataclass(frozen=True)
class SagaDeps:
    """What the steps need from the process running them: one pooled client per bank,
    and the process's metrics.

    Handed to the SDK with ``resonate.with_dependency`` and read back in steps
    with ``ctx.get_dependency(SagaDeps)``, so every transfer in a worker shares
    the same connections.
    """

    source: BankClient
    target: BankClient
    settings: Settings
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)

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


def unbounded_backoff(settings: Settings, attempt: int) -> float:
    """Seconds to wait after failed attempt ``attempt`` (0-based) of :func:`until_done`:
    the same ladder as :func:`unbounded_policy`."""
    delay = unbounded_policy(settings).next(attempt + 1)
    assert delay is not None, "an unbounded policy always has a next attempt"
    return delay


# -- the workflow ----------------------------------------------------------------------


@traced_saga
async def transfer(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    """Move ``request["amount"]`` cents from the source account to the target account, or not at all."""
    transfer_id: str = request["transfer_id"]
    source_account: str = request["source_account"]
    target_account: str = request["target_account"]
    amount: int = request["amount"]

    def finished(
        status: TerminalStatus, reason: str | None, steps: TransferSteps
    ) -> dict[str, Any]:
        result = TransferResult(
            transfer_id, status, reason, amount, source_account, target_account, steps
        )
        return result.to_json()

    debit = await settled_step(ctx, "source", transfer_id, source_account, amount, "debit")
    if not debit.applied:
        return finished("failed", debit.reason, TransferSteps(debit))

    credit = await settled_step(ctx, "target", transfer_id, target_account, amount, "credit")
    if not credit.applied:
        # Compensation: the target refused the credit, or the fence voided it. Either
        # way it never lands, so the debited money goes back to the source.
        began = await ctx.run(begin_compensation, transfer_id, credit.reason)
        reversal = await until_done(
            ctx, reverse_debit, transfer_id, source_account, amount, Compensation.from_json(began)
        )
        steps = TransferSteps(debit, credit, StepRecord.from_json(reversal, kind="reversal"))
        return finished("compensated", credit.reason, steps)

    return finished("committed", None, TransferSteps(debit, credit))


async def settled_step(
    ctx: Context,
    bank: BankName,
    transfer_id: str,
    account_id: str,
    amount: int,
    kind: EntryKind,
) -> StepRecord:
    """One bank entry, settled: applied or rejected as the bank answered it, or, once
    the retries run out, applied or voided as the fence finds it.

    :func:`apply_entry` with bounded retries (seconds, inside the worker),
    then, only if it never got a definitive answer, :func:`fence_entry` until
    the bank answers.
    """
    settings = ctx.get_dependency(SagaDeps).settings
    try:
        value = await ctx.options(retry_policy=bounded_policy(settings)).run(
            apply_entry, bank, transfer_id, account_id, amount, kind
        )
    # Broad on purpose: when the retries run out the SDK re-raises the step's last
    # exception as it was, whatever its type (BankUnavailable when the bank did not
    # answer; anything else the client, the SDK or a bug raised mid-step). Each
    # leaves the op's outcome unknown, and the fence is the one safe answer to all
    # of them: letting one escape would reject the transfer with its money possibly
    # moved and never settled.
    except Exception:
        value = await until_done(ctx, fence_entry, bank, transfer_id, kind)
    return StepRecord.from_json(value, kind=kind)


async def until_done(
    ctx: Context, step: Callable[..., Awaitable[dict[str, Any]]], *args: Any
) -> dict[str, Any]:
    """Run ``step`` until it returns, waiting durably between attempts.

    Each attempt is one durable step, not retried by the SDK: its failure is
    recorded, and then the saga sleeps durably for the backoff
    (:func:`wait_before_retry`). The sequence of durable steps depends only
    on what was recorded, so a replay walks it again whatever the backoff
    settings are now. No limit on attempts, on purpose: it is used for the
    fence and the reversal, which must not give up.
    """
    settings = ctx.get_dependency(SagaDeps).settings
    attempt = 0
    while True:
        try:
            value: dict[str, Any] = await ctx.options(retry_policy=Never()).run(step, *args)
            return value
        except Exception:
            await wait_before_retry(ctx, unbounded_backoff(settings, attempt))
            attempt += 1


async def wait_before_retry(ctx: Context, seconds: float) -> None:
    """Sleep ``seconds`` durably, or less if ``crossbank retry`` ends the sleep first.

    The sleep is a timer promise that the store settles at its deadline;
    anyone with its id may settle it earlier, which is all ``crossbank retry``
    does. The worker lets the transfer go meanwhile; whichever worker of the
    version's group the store hands it to next makes the attempt.
    """
    await ctx.sleep(timedelta(seconds=seconds))


# -- steps: each runs inside ctx.run, so its result is checkpointed ----------------
#
# Steps return their record's wire form (a plain dict, see orchestrator.records):
# the SDK hands a replayed step's stored JSON back coerced to the step's return
# annotation, and records written by older code must still read back.


@traced_step
async def apply_entry(
    ctx: Context,
    bank: BankName,
    transfer_id: str,
    account_id: str,
    amount: int,
    kind: EntryKind,
) -> dict[str, Any]:
    """POST one entry; applied or rejected is the step's value, an unknown outcome raises."""
    deps = ctx.get_dependency(SagaDeps)
    client = deps.bank(bank)
    if kind == "debit":
        logger.info("transfer %s started: %s cents from source:%s", transfer_id, amount, account_id)
        deps.metrics.transfer_started(transfer_id)
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
            record = StepRecord(
                kind,
                oid,
                "rejected",
                code=outcome.code,
                message=outcome.message,
                cancelled=note_of(fenced),
            )
    report_if_decisive(deps.metrics, transfer_id, record)
    return record.to_json()


@traced_step
async def fence_entry(
    ctx: Context, bank: BankName, transfer_id: str, kind: EntryKind
) -> dict[str, Any]:
    """Void the op id so its outcome is settled for good: ``applied`` or ``voided``."""
    logger.warning("transfer %s: %s outcome unknown after retries, fencing it", transfer_id, kind)
    oid = op_id(transfer_id, kind)
    deps = ctx.get_dependency(SagaDeps)
    outcome = await deps.bank(bank).void(oid)
    record = StepRecord(
        kind,
        oid,
        outcome.state,
        settled_by="fence",
        entry=outcome.entry,
        cancelled=note_of(outcome),
    )
    report_if_decisive(deps.metrics, transfer_id, record)
    return record.to_json()


@traced_step
async def begin_compensation(ctx: Context, transfer_id: str, reason: str | None) -> dict[str, Any]:
    """Record when compensation began (a clock read, hence a step) so a stuck one can be flagged."""
    logger.info("transfer %s: credit not applied (%s), reversing the debit", transfer_id, reason)
    return Compensation(since=time.time(), reason=reason).to_json()


@traced_step
async def reverse_debit(
    ctx: Context, transfer_id: str, account_id: str, amount: int, began: Compensation
) -> dict[str, Any]:
    """Return the debited money; any answer but applied raises, so the SDK keeps retrying."""
    deps = ctx.get_dependency(SagaDeps)
    waited = time.time() - began.since
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
        deps.metrics.reversal_refused(transfer_id, began.since)
        raise ReversalRefused(
            f"source bank refused reversal {oid}: {outcome.code}: {outcome.message}"
        )
    reason = f" ({began.reason})" if began.reason else ""
    logger.info("transfer %s finished: compensated%s", transfer_id, reason)
    deps.metrics.transfer_finished(transfer_id, "compensated", began.reason)
    transfer_event("transfer compensated")
    return StepRecord("reversal", oid, "applied", entry=outcome.entry).to_json()


def note_of(void: VoidOutcome) -> dict[str, str] | None:
    """An operator's cancel note on a void (who, why, when), as a step record keeps it."""
    return None if void.cancelled is None else asdict(void.cancelled)


def report_if_decisive(metrics: WorkerMetrics, transfer_id: str, record: StepRecord) -> None:
    """Log and count the transfer's outcome when this settled debit or credit decides it.

    A debit that did not apply fails the transfer; a credit that applied
    commits it (a reversal reports its own). Reported inside the step, not in
    the body: a step's body runs again only when its result was never recorded
    (a crash between the bank's answer and the checkpoint), so an outcome is
    reported once, rarely twice, where the body runs again on every replay.
    """
    if record.kind == "debit" and not record.applied:
        logger.info("transfer %s finished: failed (%s)", transfer_id, record.reason)
        metrics.transfer_finished(transfer_id, "failed", record.reason)
        transfer_event("transfer failed")
    elif record.kind == "credit" and record.applied:
        logger.info("transfer %s finished: committed", transfer_id)
        metrics.transfer_finished(transfer_id, "committed", None)
        transfer_event("transfer committed")
