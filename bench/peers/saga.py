"""The transfer saga's shape, shared by every peer: debit, credit, reverse on rejection.

Each runtime supplies ``run_step``, which makes one bank call durable its own
way (a DBOS step, a Restate ``ctx.run``, or a plain call for the baseline);
the control flow and op ids are identical everywhere.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bench.peers.bank_steps import StepResult
from bench.workload import TransferSpec

RunStep = Callable[[str, str, str, str, int, str], Awaitable[StepResult]]
"""``run_step(step_name, bank, op_id, account_id, amount, kind)``; bank is ``source``/``target``."""


async def transfer(run_step: RunStep, spec: TransferSpec) -> str:
    """Run the saga and return its terminal status."""
    debit = await run_step(
        "debit", "source", spec.debit_op, spec.source_account, spec.amount, "debit"
    )
    if debit["outcome"] != "applied":
        return "failed"
    credit = await run_step(
        "credit", "target", spec.credit_op, spec.target_account, spec.amount, "credit"
    )
    if credit["outcome"] == "applied":
        return "committed"
    await run_step(
        "reversal", "source", spec.reversal_op, spec.source_account, spec.amount, "reversal"
    )
    return "compensated"
