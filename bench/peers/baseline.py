"""The ceiling: the saga's HTTP calls in order, with no durability at all."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bench.banks import BankUrls
from bench.driver import RunTransfer
from bench.peers import bank_steps, saga
from bench.peers.bank_steps import StepResult
from bench.workload import TransferSpec


@asynccontextmanager
async def open_baseline(banks: BankUrls, workdir: Path) -> AsyncIterator[RunTransfer]:
    del workdir  # nothing is kept anywhere: that is the point
    urls = {"source": banks.source, "target": banks.target}
    async with bank_steps.client(banks.token) as http:

        async def run_step(
            name: str, bank: str, op_id: str, account_id: str, amount: int, kind: str
        ) -> StepResult:
            del name
            return await bank_steps.post_entry(http, urls[bank], op_id, account_id, amount, kind)

        async def run(spec: TransferSpec) -> str:
            return await saga.transfer(run_step, spec)

        yield run
