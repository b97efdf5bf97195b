"""Resonate on Postgres: crossbank's workers and saga on Resonate's own server.

The same served system as ``crossbank served, 1 worker``
(:func:`bench.peers.crossbank.served`: the same worker processes, the same
saga, the same op ids, this process a send-only client), with the promise
store's place taken by a private Postgres with ``resonate.sql`` applied
(:mod:`orchestrator.local.postgres`). Its server processes are children of
the harness, so ``bench.process_cpu`` counts them. Skipped, saying what is
missing, when no Postgres binaries or no ``resonate.sql`` can be found.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bench.banks import BankUrls
from bench.driver import RunTransfer
from bench.peers import Unavailable
from bench.peers.crossbank import served
from orchestrator.local.postgres import (
    PostgresUnavailable,
    ResonateSqlMismatch,
    postgres_bindir,
    resonate_sql,
)
from orchestrator.local.system import POSTGRES_BACKEND


@asynccontextmanager
async def open_resonate_postgres(banks: BankUrls, workdir: Path) -> AsyncIterator[RunTransfer]:
    try:
        postgres_bindir()
        resonate_sql()
    except (PostgresUnavailable, ResonateSqlMismatch) as exc:
        raise Unavailable(str(exc)) from None
    async with served(banks, workdir, workers=1, backend=POSTGRES_BACKEND) as run:
        yield run
