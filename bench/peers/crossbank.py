"""crossbank itself, three ways: embedded store, served store with one worker, with two.

Embedded: this process runs the saga over ``promise_store.embedded`` (one
SQLite file, no server), exactly as ``crossbank transfer`` does without
``RESONATE_URL``. Served: ``python -m promise_store`` and
``python -m orchestrator.worker`` run as real processes and this process is
a send-only client (``role="client"``), like the CLI against a deployment.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from bench.banks import BankUrls
from bench.driver import RunTransfer
from bench.workload import TransferSpec
from orchestrator.runtime import resonate_session
from orchestrator.settings import Settings
from orchestrator.supervisor import free_port, local_url, store_process, worker_process
from orchestrator.transfers import TransferRequest, start_transfer

WORKER_GROUP = "bench-workers"


def _settings(banks: BankUrls, **overrides: Any) -> Settings:
    return Settings(
        source_bank_url=banks.source,
        target_bank_url=banks.target,
        bank_token=banks.token,
        group=WORKER_GROUP,
        **overrides,
    )


@asynccontextmanager
async def _session(settings: Settings) -> AsyncIterator[RunTransfer]:
    async with resonate_session(settings, role="client") as resonate:

        async def run(spec: TransferSpec) -> str:
            request = TransferRequest(
                spec.transfer_id, spec.source_account, spec.target_account, spec.amount
            )
            handle = await start_transfer(resonate, settings, request)
            result = await handle.result()
            return str(result["status"])

        yield run


@asynccontextmanager
async def open_embedded(banks: BankUrls, workdir: Path) -> AsyncIterator[RunTransfer]:
    store = workdir / "crossbank-embedded.db"
    store.unlink(missing_ok=True)
    async with _session(_settings(banks, store_path=store)) as run:
        yield run


@asynccontextmanager
async def _served(banks: BankUrls, workdir: Path, workers: int) -> AsyncIterator[RunTransfer]:
    store_path = workdir / f"crossbank-served-{workers}.db"
    store_path.unlink(missing_ok=True)
    port = free_port()
    url = local_url(port)
    worker_env = {
        "RESONATE_URL": url,
        "SOURCE_BANK_URL": banks.source,
        "TARGET_BANK_URL": banks.target,
        "BANK_TOKEN": banks.token or "",
        "WORKER_GROUP": WORKER_GROUP,
        "LOG_LEVEL": "WARNING",
    }
    with ExitStack() as stack:
        stack.enter_context(
            store_process(
                port=port,
                path=store_path,
                log_path=workdir / "logs" / f"promise_store-{workers}.log",
            )
        )
        for n in range(workers):
            # At LOG_LEVEL=WARNING a worker does not log that it is ready; the
            # harness's unmeasured warm-up transfers wait for the workers instead.
            log_path = workdir / "logs" / f"worker-{workers}-{n}.log"
            worker = worker_process(
                worker_env, log_path=log_path, name=f"worker {n}", wait_ready=False
            )
            stack.enter_context(worker)
        async with _session(_settings(banks, resonate_url=url)) as run:
            yield run


def open_served_one(banks: BankUrls, workdir: Path) -> AbstractAsyncContextManager[RunTransfer]:
    return _served(banks, workdir, workers=1)


def open_served_two(banks: BankUrls, workdir: Path) -> AbstractAsyncContextManager[RunTransfer]:
    return _served(banks, workdir, workers=2)
