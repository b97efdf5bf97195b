"""crossbank itself: embedded store, served store with one worker, with two, over TLS, observed.

Embedded: this process runs the saga over ``promise_store.embedded`` (one
SQLite file, no server), exactly as ``crossbank transfer`` does without
``RESONATE_URL``. Served: ``python -m promise_store`` and
``python -m orchestrator.worker`` run as real processes and this process is
a send-only client (``role="client"``), like the CLI against a deployment.
:func:`served` takes the backend, so Resonate on Postgres
(:mod:`bench.peers.resonate_postgres`) is the same served system with the
store's place taken by a private Postgres.

Served over TLS is the one-worker system with every link on https: its own
two banks, the store and the worker serve and verify certificates from a CA
made for the run, so the row beside "served, 1 worker" says what TLS costs.
The shared banks stay plain for every other system. The observed systems
(:func:`observed`) are the one-worker system on banks of its own with
nothing, metrics, or traces on: the rows side by side say what each costs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from bench.banks import BankUrls, LedgerError
from bench.driver import RunTransfer
from bench.otlp_sink import OtlpSink
from bench.workload import TransferSpec, source_accounts, target_accounts
from orchestrator.accounts import open_accounts, opening_total
from orchestrator.local.certs import local_tls
from orchestrator.local.supervisor import free_port
from orchestrator.local.system import SOURCE, STORE, STORE_BACKEND, TARGET, WORKERS, LocalSystem
from orchestrator.runtime import resonate_session
from orchestrator.settings import Settings
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
async def served(
    banks: BankUrls,
    workdir: Path,
    workers: int,
    backend: str = STORE_BACKEND,
    postgres_dsn: str | None = None,
) -> AsyncIterator[RunTransfer]:
    """``workers`` worker processes on ``backend`` and this process as their client.

    On Postgres, ``postgres_dsn`` names a database already holding Resonate
    (default: a private Postgres of the system's own).
    """
    # At LOG_LEVEL=WARNING a worker does not log that it is ready; the
    # harness's unmeasured warm-up transfers wait for the workers instead.
    system = LocalSystem(
        workdir / f"crossbank-served-{backend}-{workers}",
        _settings(banks),
        run=(STORE,),
        workers=workers,
        env={WORKERS: {"LOG_LEVEL": "WARNING"}},
        wait_for_workers=False,
        fresh=True,
        backend=backend,
        postgres_dsn=postgres_dsn,
    )
    with system:
        async with _session(system.settings) as run:
            yield run


@asynccontextmanager
async def open_served_tls(banks: BankUrls, workdir: Path) -> AsyncIterator[RunTransfer]:
    """One worker with every link on https, on banks of its own seeded like the shared ones."""
    root = workdir / "crossbank-served-tls"
    system = LocalSystem(
        root,
        _settings(banks),  # the system points it at the banks it starts
        workers=1,
        env={WORKERS: {"LOG_LEVEL": "WARNING"}},
        wait_for_workers=False,
        fresh=True,
        tls=local_tls(workdir / "tls"),
    )
    with system:
        async with _on_own_banks(system) as run:
            yield run


@asynccontextmanager
async def _on_own_banks(system: LocalSystem) -> AsyncIterator[RunTransfer]:
    """Transfers on ``system``'s own banks, seeded like the shared ones; conservation checked."""
    accounts = [*source_accounts(), *target_accounts()]
    async with system.banks() as (source, target):
        await open_accounts(source, target, accounts)
    async with _session(system.settings) as run:
        yield run
    balances = await system.balances()
    if min(balances.values()) < 0 or sum(balances.values()) != opening_total(accounts):
        raise LedgerError(f"money not conserved on the system's own banks: {balances}")


@asynccontextmanager
async def observed(
    banks: BankUrls, workdir: Path, *, metrics: bool, traces: bool
) -> AsyncIterator[RunTransfer]:
    """One worker on banks of its own (seeded like the shared ones), observed.

    ``metrics``: the worker serves ``/metrics`` and every part's ``/metrics``
    is scraped each second, as a Prometheus with a 1 s interval would (15 s
    is the usual). ``traces``: the worker and the banks export every span
    over OTLP/HTTP to a local sink (:mod:`bench.otlp_sink`).
    """
    with OtlpSink() as sink:
        tracing = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url} if traces else {}
        metrics_port = free_port()
        worker_env = {"LOG_LEVEL": "WARNING", **tracing}
        if metrics:
            worker_env["METRICS_PORT"] = str(metrics_port)
        system = LocalSystem(
            workdir / f"crossbank-served-observed-{metrics}-{traces}",
            _settings(banks),
            workers=1,
            env={SOURCE: tracing, TARGET: tracing, WORKERS: worker_env},
            wait_for_workers=False,
            fresh=True,
        )
        with system:
            settings = system.settings
            targets = [
                (f"http://127.0.0.1:{system.ports[SOURCE]}/metrics", settings.bank_token),
                (f"http://127.0.0.1:{system.ports[TARGET]}/metrics", settings.bank_token),
                (f"http://127.0.0.1:{system.ports[STORE]}/metrics", settings.resonate_token),
                (f"http://127.0.0.1:{metrics_port}/metrics", None),
            ]
            scraping = asyncio.create_task(_scrape_every_second(targets)) if metrics else None
            try:
                async with _on_own_banks(system) as run:
                    yield run
            finally:
                if scraping is not None:
                    scraping.cancel()
        if traces and sink.requests == 0:
            raise LedgerError("no span reached the OTLP sink: tracing was not on")


def open_served_own_banks(
    banks: BankUrls, workdir: Path
) -> AbstractAsyncContextManager[RunTransfer]:
    return observed(banks, workdir, metrics=False, traces=False)


def open_served_metrics(banks: BankUrls, workdir: Path) -> AbstractAsyncContextManager[RunTransfer]:
    return observed(banks, workdir, metrics=True, traces=False)


def open_served_traced(banks: BankUrls, workdir: Path) -> AbstractAsyncContextManager[RunTransfer]:
    return observed(banks, workdir, metrics=False, traces=True)


async def _scrape_every_second(targets: list[tuple[str, str | None]]) -> None:
    """GET each ``/metrics`` once a second, as a scraper would, until cancelled."""
    async with aiohttp.ClientSession() as session:
        while True:
            for url, token in targets:
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(url, headers=headers) as answer:
                        await answer.read()
            await asyncio.sleep(1)


def open_served_one(banks: BankUrls, workdir: Path) -> AbstractAsyncContextManager[RunTransfer]:
    return served(banks, workdir, workers=1)


def open_served_two(banks: BankUrls, workdir: Path) -> AbstractAsyncContextManager[RunTransfer]:
    return served(banks, workdir, workers=2)
