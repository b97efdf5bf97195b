"""A whole crossbank as real local processes, for the orchestrator's tests.

A :class:`~orchestrator.local.system.LocalSystem` with both banks (fault
injection on, a bearer token), the served promise store (a token too) and
impatient workers (:data:`~orchestrator.local.system.IMPATIENT`), each
started with ``python -m <package>`` exactly as a user or compose would, on
free ports under one temporary directory. The test process itself is only a
send-only client: it starts transfers and waits, so killing a worker really
takes a saga away from where it ran.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from resonate.resonate import Resonate

from orchestrator.bank_client import BankClient
from orchestrator.local import system as local_system
from orchestrator.local.postgres import PrivatePostgres
from orchestrator.local.supervisor import LocalTls, ManagedProcess
from orchestrator.local.system import (
    IMPATIENT,
    POSTGRES_BACKEND,
    SOURCE,
    STORE,
    STORE_BACKEND,
    TARGET,
    WORKERS,
    LocalSystem,
    wait_until,
)
from orchestrator.runtime import close_resonate, open_resonate
from orchestrator.settings import Settings
from orchestrator.transfers import TransferRequest, start_transfer, transfer_record

__all__ = ["Cluster", "running_cluster", "wait_for_hold", "wait_until"]

TOKEN = "test-bank-token"
STORE_TOKEN = "test-store-token"

#: What every test cluster's workers and clients share.
TEST_SETTINGS = replace(
    IMPATIENT,
    bank_token=TOKEN,
    resonate_token=STORE_TOKEN,
    group="test-workers",
    attention_after=300.0,
)


class Cluster(LocalSystem):
    """The processes of one crossbank, by the names the tests use, and what a test asks of it."""

    @property
    def root(self) -> Path:
        return self.data_dir

    @property
    def source(self) -> ManagedProcess:
        return self.services[SOURCE]

    @property
    def target(self) -> ManagedProcess:
        return self.services[TARGET]

    @property
    def store(self) -> ManagedProcess:
        return self.services[STORE]

    @property
    def worker_env(self) -> dict[str, str]:
        """The environment of a worker, or of a ``crossbank`` command run against this cluster."""
        return self.child_env

    def reset(self) -> None:
        """The store and both banks up, no fault rules or holds, exactly one running worker."""
        self.ensure_running(*(part for part in (STORE, SOURCE, TARGET) if part in self.services))
        for part in (SOURCE, TARGET):
            clear_faults(self, part)
        running = self.running_workers()
        for extra in running[1:]:
            extra.stop()
        if not running:
            self.start_worker()

    def stop_all(self) -> None:
        self.stop()

    def client(self) -> AbstractAsyncContextManager[Resonate]:
        """A send-only Resonate client (it never runs sagas)."""
        return self.session()

    async def transfer(
        self, transfer_id: str, source: str, target: str, amount: int, within: float = 60
    ) -> dict[str, Any]:
        """Start a transfer from a fresh client and wait for its result."""
        async with self.client() as resonate:
            request = TransferRequest(transfer_id, source, target, amount)
            handle = await start_transfer(resonate, self.settings, request)
            result: dict[str, Any] = await asyncio.wait_for(handle.result(), within)
            return result

    async def record(self, transfer_id: str) -> dict[str, Any] | None:
        async with self.client() as resonate:
            return await transfer_record(
                resonate, transfer_id, attention_after=self.settings.attention_after
            )


def clear_faults(cluster: LocalSystem, part: str) -> None:
    """Drop a bank's fault rules and release its held requests."""

    async def clear() -> None:
        async with cluster.bank(part) as bank:
            await bank.clear_faults()

    asyncio.run(clear())


async def wait_for_hold(bank: BankClient, op_id: str, stage: str) -> dict[str, Any]:
    """Wait until ``bank`` parks the request for ``op_id`` at ``stage``."""
    return await local_system.wait_for_hold(bank, op_id, stage=stage, within=30)


_databases = itertools.count(1)


def backend_options(backend: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """:func:`running_cluster`'s options for ``backend``: on Postgres, a fresh database
    with resonate.sql on the session's Postgres (the ``postgres_server`` fixture)."""
    if backend != POSTGRES_BACKEND:
        return {"backend": backend}
    server: PrivatePostgres = request.getfixturevalue("postgres_server")
    dsn = server.create_database(f"crossbank_{next(_databases)}")
    return {"backend": backend, "postgres_dsn": dsn}


@contextmanager
def running_cluster(
    root: Path,
    *,
    workers: int = 1,
    backend: str = STORE_BACKEND,
    postgres_dsn: str | None = None,
    tls: LocalTls | None = None,
) -> Iterator[Cluster]:
    """Start banks, store and ``workers`` workers under ``root``; stop everything on exit.

    ``backend="postgres"`` keeps transfers in the Resonate database at
    ``postgres_dsn`` instead of a promise store; ``tls`` puts every link on https.
    """
    cluster = Cluster(
        root,
        TEST_SETTINGS,
        workers=workers,
        faults=True,
        env={WORKERS: {"LOG_LEVEL": "INFO"}},
        backend=backend,
        postgres_dsn=postgres_dsn,
        tls=tls,
    )
    with cluster:
        yield cluster


async def _embedded_transfer(args: list[str]) -> None:
    """Start one transfer with the embedded store (settings from the environment) and wait."""
    transfer_id, source, target, amount = args
    settings = Settings.from_env()
    resonate = open_resonate(settings, role="client")
    try:
        request = TransferRequest(transfer_id, source, target, int(amount))
        handle = await start_transfer(resonate, settings, request)
        print(await handle.result(), flush=True)
    finally:
        await close_resonate(resonate)


if __name__ == "__main__":
    # ``python -m tests.orchestrator.cluster ID SOURCE TARGET CENTS``: a process that
    # runs one transfer over the embedded store, for tests that SIGKILL it mid-saga.
    import sys

    asyncio.run(_embedded_transfer(sys.argv[1:]))
