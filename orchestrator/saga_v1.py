"""Version 1 of the transfer saga, frozen: the body every transfer started before version 2 replays.

Kept as it was when version 2 replaced it, and never to be edited: a
transfer finishes on the code it started with, and a replay that met
different code would walk a different sequence of durable steps. Its steps
are the current ones (:mod:`orchestrator.saga`); a change to a step must keep
reading the values this body recorded.

What version 2 changed: here a fence or a reversal that keeps failing is
retried by the SDK inside the worker that runs it (``unbounded_policy``), so
its waits between attempts live in that worker's memory and only a new
attempt can end them. Version 2 waits durably, where ``crossbank retry`` can
reach the wait.
"""

from __future__ import annotations

from typing import Any

from resonate.context import Context

from orchestrator.bank_client import BankName, EntryKind
from orchestrator.records import (
    Compensation,
    StepRecord,
    TerminalStatus,
    TransferResult,
    TransferSteps,
)
from orchestrator.saga import (
    SagaDeps,
    apply_entry,
    begin_compensation,
    bounded_policy,
    fence_entry,
    reverse_debit,
    unbounded_policy,
)
from orchestrator.tracing import traced_saga

#: The version this body is registered under.
VERSION = 1


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
        settings = ctx.get_dependency(SagaDeps).settings
        began = await ctx.run(begin_compensation, transfer_id, credit.reason)
        reversal = await ctx.options(retry_policy=unbounded_policy(settings)).run(
            reverse_debit, transfer_id, source_account, amount, Compensation.from_json(began)
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
    """One bank entry, settled: :func:`apply_entry` with bounded retries, then the fence."""
    settings = ctx.get_dependency(SagaDeps).settings
    try:
        value = await ctx.options(retry_policy=bounded_policy(settings)).run(
            apply_entry, bank, transfer_id, account_id, amount, kind
        )
    except Exception:
        value = await ctx.options(retry_policy=unbounded_policy(settings)).run(
            fence_entry, bank, transfer_id, kind
        )
    return StepRecord.from_json(value, kind=kind)
