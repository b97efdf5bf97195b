"""The saga as a Restate service, served over HTTP/2 by hypercorn (see ``restate_peer``).

``Transfers/run`` takes a transfer and returns its terminal status. Each bank
call is a ``ctx.run`` journaled by the Restate server; a rejected step is a
value (journaled, not retried), an unknown outcome raises and is retried.
Bank URLs come from ``SOURCE_BANK_URL`` / ``TARGET_BANK_URL``, read once.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import restate
from restate import Context, RunOptions

from bench.peers import bank_steps, saga
from bench.peers.bank_steps import StepResult
from bench.workload import TransferSpec

BANK_URLS = {
    "source": os.environ.get("SOURCE_BANK_URL", "http://127.0.0.1:5001"),
    "target": os.environ.get("TARGET_BANK_URL", "http://127.0.0.1:5002"),
}
STEP_OPTIONS: RunOptions[Any] = RunOptions(
    type_hint=dict,
    max_attempts=10,
    initial_retry_interval=timedelta(milliseconds=50),
)

_http: bank_steps.BankHttp | None = None


def _client() -> bank_steps.BankHttp:
    """Created on first use, inside the server's event loop, then reused by every step."""
    global _http
    if _http is None:
        _http = bank_steps.client(os.environ.get("BANK_TOKEN") or None)
    return _http


transfers = restate.Service("Transfers")


@transfers.handler()
async def run(ctx: Context, request: dict[str, Any]) -> str:
    spec = TransferSpec(**request)

    async def run_step(
        name: str, bank: str, op_id: str, account_id: str, amount: int, kind: str
    ) -> StepResult:
        result: StepResult = await ctx.run_typed(
            name,
            bank_steps.post_entry,
            STEP_OPTIONS,
            _client(),
            BANK_URLS[bank],
            op_id,
            account_id,
            amount,
            kind,
        )
        return result

    return await saga.transfer(run_step, spec)


app = restate.app(services=[transfers])
