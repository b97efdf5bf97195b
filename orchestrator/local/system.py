"""crossbank's parts as local processes: the one builder behind the demos, chaos, tests and benches.

A local crossbank is two banks, the promise store and some workers, each
started with ``python -m <package>`` (see :mod:`orchestrator.local.supervisor`) on
127.0.0.1 with its files under one data directory. Callers differ only in
options: the settings workers and clients share (tokens, lease, bank timeout,
retry budget, group), whether the banks take fault rules, which parts run
here, and extra settings for one part (a bank's limits, the store's
``SNAPSHOT_EVERY``). The order is the same for all: the store and the banks
start together and are waited for together, then the workers; on the way
out, workers first. Workers get their settings as
:meth:`~orchestrator.settings.Settings.to_env` writes them, so nobody types a
variable name and nothing leaks in from the caller's environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from pathlib import Path
from typing import Any

from resonate.resonate import Resonate

from orchestrator import audit
from orchestrator.accounts import Account, open_accounts
from orchestrator.bank_client import BankClient, BankName, bank_clients
from orchestrator.local.postgres import PrivatePostgres
from orchestrator.local.supervisor import (
    LocalTls,
    ManagedProcess,
    bank_process,
    free_port,
    local_url,
    store_process,
    worker_process,
)
from orchestrator.runtime import resonate_session
from orchestrator.settings import Settings

SOURCE, TARGET, STORE = "source", "target", "store"
BANKS = (SOURCE, TARGET)
#: Every part but the workers, in the order they start.
SERVICES = (STORE, SOURCE, TARGET)
#: The key of the workers' extra settings in ``LocalSystem(env=...)``.
WORKERS = "workers"
#: Where transfers are kept: crossbank's promise store, or Resonate on Postgres.
STORE_BACKEND, POSTGRES_BACKEND = "store", "postgres"
BACKENDS = (STORE_BACKEND, POSTGRES_BACKEND)
#: The database a system's own private Postgres serves Resonate from.
POSTGRES_DATABASE = "crossbank"

#: Workers that give up and take over quickly, for tests and benchmarks: short
#: leases so a standby takes a dead worker's transfers soon, a small retry
#: budget with no pause so fences come soon, and a bank timeout longer than any
#: hold a test sets, so a held request is never abandoned by a timeout.
IMPATIENT = Settings(
    lease_ttl=2.0, step_attempts=3, step_backoff=0, step_backoff_max=1, bank_timeout=30.0
)

#: Seconds the system's own bank clients wait for an answer: an admin call
#: (seed, faults, holds) may meet a bank that is busy with held requests.
ADMIN_TIMEOUT = 30.0
#: How long a part may take to answer its health check (or a worker to listen).
START_TIMEOUT = 30.0


def numbered_worker(index: int) -> str:
    """The default worker names: ``worker-1``, ``worker-2``, ..."""
    return f"worker-{index + 1}"


def with_fresh_tokens(settings: Settings) -> Settings:
    """``settings`` with a new random bank token and store token, for one run."""
    return replace(settings, bank_token=secrets.token_hex(16), resonate_token=secrets.token_hex(16))


class LocalSystem:
    """The processes of one local crossbank under ``data_dir``, and the clients to reach it.

    ``settings`` are the workers' and the clients' settings; the system puts
    in the URLs of the parts it runs (``run``; the others are wherever
    ``settings`` says) and starts the banks with ``settings.bank_token`` and
    the store with ``settings.resonate_token``. ``faults`` turns on the banks'
    fault admin API (or gives the rules they start with). ``ports`` fixes a
    part's port (default: a free one, kept across restarts). ``env`` adds
    settings by part (``SOURCE``, ``TARGET``, ``STORE`` or ``WORKERS``).
    ``start()`` starts ``workers`` workers named by ``worker_name``; with
    ``wait_for_workers`` each is waited for until it listens to the store.
    ``fresh`` removes ledgers and store files an earlier run left. Logs go to
    ``log_dir`` (default ``data_dir``), one file per part, appended across
    restarts.

    ``backend="postgres"`` keeps transfers in Resonate on Postgres instead of
    the promise store (the store part is then not run): in the database at
    ``postgres_dsn`` (resonate.sql applied) when given, else in a private
    Postgres this system starts first and stops last
    (:mod:`orchestrator.local.postgres`).

    ``tls`` makes the banks and the store serve https with its certificate,
    and the settings trust its CA.
    """

    def __init__(
        self,
        data_dir: Path,
        settings: Settings | None = None,
        *,
        run: Sequence[str] = SERVICES,
        workers: int = 1,
        faults: bool | Sequence[Mapping[str, object]] = False,
        ports: Mapping[str, int] | None = None,
        env: Mapping[str, Mapping[str, str]] | None = None,
        log_dir: Path | None = None,
        worker_name: Callable[[int], str] = numbered_worker,
        wait_for_workers: bool = True,
        fresh: bool = False,
        backend: str = STORE_BACKEND,
        postgres_dsn: str | None = None,
        tls: LocalTls | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        unknown = sorted({*run, *(env or {})} - {*SERVICES, WORKERS})
        if unknown:
            raise ValueError(f"a local system has no part {unknown[0]!r}; parts: {SERVICES}")
        if workers < 0:
            raise ValueError(f"workers must not be negative, got {workers}")
        self.data_dir = data_dir
        self.log_dir = log_dir or data_dir
        self.faults = faults
        self.fresh = fresh
        self._extra = {part: dict(values) for part, values in (env or {}).items()}
        self._worker_name = worker_name
        self._wait_for_workers = wait_for_workers
        self.backend = backend
        self.tls = tls
        chosen = [part for part in SERVICES if part in run and self._uses(part)]
        self.ports = {part: (ports or {}).get(part) or free_port() for part in chosen}
        self.postgres: PrivatePostgres | None = None
        if backend == POSTGRES_BACKEND and postgres_dsn is None:
            self.postgres = PrivatePostgres(free_port(), log_path=self.log_dir / "postgres.log")
            postgres_dsn = self.postgres.dsn(POSTGRES_DATABASE)
        self.postgres_dsn = postgres_dsn
        self.settings = self._pointed_here(settings or Settings())
        self.services = {part: self._service(part) for part in chosen}
        self.workers: list[ManagedProcess] = []
        for _ in range(workers):
            self._add_worker({})

    def _uses(self, part: str) -> bool:
        """Whether this backend has ``part`` (Postgres takes the promise store's place)."""
        return not (part == STORE and self.backend == POSTGRES_BACKEND)

    def _pointed_here(self, settings: Settings) -> Settings:
        """``settings`` with the URL of every part this system runs."""

        ports, tls = self.ports, self.tls
        if self.backend == POSTGRES_BACKEND:
            settings = replace(settings, resonate_url=None, resonate_pg_dsn=self.postgres_dsn)
        if tls is not None:
            settings = replace(settings, tls=tls.client)
        return replace(
            settings,
            source_bank_url=local_url(ports[SOURCE], tls)
            if SOURCE in ports
            else settings.source_bank_url,
            target_bank_url=local_url(ports[TARGET], tls)
            if TARGET in ports
            else settings.target_bank_url,
            resonate_url=local_url(ports[STORE], tls) if STORE in ports else settings.resonate_url,
            resonate_pg_dsn=settings.resonate_pg_dsn if self.backend == POSTGRES_BACKEND else None,
        )

    # -- files -------------------------------------------------------------------------

    def data_file(self, part: str) -> Path:
        """A bank's ledger (``source.db``, ``target.db``) or the store's file (``promises.db``)."""
        return self.data_dir / ("promises.db" if part == STORE else f"{part}.db")

    def _service(self, part: str) -> ManagedProcess:
        log = self.log_dir / f"{part}.log"
        extra = self._extra.get(part)
        if part == STORE:
            return store_process(
                port=self.ports[part],
                path=self.data_file(part),
                token=self.settings.resonate_token,
                log_path=log,
                env=extra,
                tls=self.tls,
            )
        return bank_process(
            part,
            port=self.ports[part],
            ledger=self.data_file(part),
            token=self.settings.bank_token,
            faults=self.faults,
            log_path=log,
            env=extra,
            tls=self.tls,
        )

    # -- processes ---------------------------------------------------------------------

    @property
    def child_env(self) -> dict[str, str]:
        """What a worker, or a ``crossbank`` command run as a child process, is given."""
        return {**self.settings.to_env(), **self._extra.get(WORKERS, {})}

    def shell_env(self) -> dict[str, str]:
        """The settings a person exports in another shell to use this system (those off default)."""
        defaults = Settings().to_env()
        return {k: v for k, v in self.settings.to_env().items() if v != defaults.get(k)}

    @property
    def processes(self) -> dict[str, ManagedProcess]:
        """Every part by name: the services, then the workers."""
        return {**self.services, **{worker.name: worker for worker in self.workers}}

    def part(self, name: str) -> ManagedProcess:
        try:
            return self.processes[name]
        except KeyError:
            raise KeyError(f"no part {name!r} in this system: {sorted(self.processes)}") from None

    def running_workers(self) -> list[ManagedProcess]:
        return [worker for worker in self.workers if worker.running()]

    def start(self, timeout: float = START_TIMEOUT) -> LocalSystem:
        """The store and the banks (together), then the first ``workers`` workers (together)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.fresh:
            self._remove_data()
        if self.postgres is not None and not self.postgres.running():
            self.postgres.start(timeout)
            self.postgres.create_database(POSTGRES_DATABASE)
        _start_together(self.services.values(), timeout)
        _start_together(self.workers, timeout)
        return self

    def start_worker(
        self, *, env: Mapping[str, str] | None = None, timeout: float = START_TIMEOUT
    ) -> ManagedProcess:
        """One more worker in the group (``env`` adds settings), started and waited for."""
        return self._add_worker(env or {}).start(timeout=timeout)

    def _add_worker(self, env: Mapping[str, str]) -> ManagedProcess:
        name = self._worker_name(len(self.workers))
        status = {"WORKER_STATUS_FILE": str(self.status_file(name))}
        worker = worker_process(
            {**status, **self.child_env, **env},
            log_path=self.log_dir / f"{name}.log",
            name=name,
            wait_ready=self._wait_for_workers,
        )
        self.workers.append(worker)
        return worker

    def status_file(self, worker: str) -> Path:
        """Where worker ``worker`` says which transfers it runs (``WORKER_STATUS_FILE``)."""
        return self.log_dir / f"{worker}.status.json"

    def kill(self, name: str) -> None:
        """SIGKILL one part: nothing flushed, nothing cleaned up."""
        self.part(name).kill()

    def restart(self, name: str, timeout: float = START_TIMEOUT) -> ManagedProcess:
        """Start a stopped or killed part again, on the same port and files."""
        process = self.part(name)
        process.signal(signal.SIGCONT)
        return process.restart(timeout=timeout)

    def ensure_running(self, *names: str, timeout: float = START_TIMEOUT) -> None:
        """Resume what is paused, start what is not running, wait for all (default: every part)."""
        chosen = {name: self.part(name) for name in names} if names else self.processes
        services = [p for name, p in chosen.items() if name in self.services]
        workers = [p for name, p in chosen.items() if name not in self.services]
        for group in (services, workers):
            for process in group:
                process.signal(signal.SIGCONT)
            _start_together([p for p in group if not p.running()], timeout)
            for process in group:
                process.wait_healthy(timeout)

    def stop(self) -> None:
        """Workers first (they talk to the rest), then the store and the banks; no child is left."""
        for process in [*self.workers, *self.services.values()]:
            process.signal(signal.SIGCONT)  # a paused process cannot act on SIGTERM
            try:
                process.stop(timeout=5.0)
            except Exception:
                process.kill()
        if self.postgres is not None:
            self.postgres.stop()

    def _remove_data(self) -> None:
        for part in self.services:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{self.data_file(part)}{suffix}").unlink(missing_ok=True)

    def __enter__(self) -> LocalSystem:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- clients -----------------------------------------------------------------------

    def bank_clients(self, patience: float = ADMIN_TIMEOUT) -> tuple[BankClient, BankClient]:
        """The source and target banks' clients, with the token (the caller closes them).

        ``patience`` is each call's time limit in seconds.
        """
        return bank_clients(replace(self.settings, bank_timeout=patience))

    @contextlib.asynccontextmanager
    async def banks(
        self, patience: float = ADMIN_TIMEOUT
    ) -> AsyncIterator[tuple[BankClient, BankClient]]:
        source, target = self.bank_clients(patience)
        async with source, target:
            yield source, target

    def bank(self, name: str, patience: float = ADMIN_TIMEOUT) -> BankClient:
        """One bank's client by part name (``SOURCE`` or ``TARGET``); use it with ``async with``."""
        source, target = self.bank_clients(patience)
        return source if name == SOURCE else target

    def session(self) -> AbstractAsyncContextManager[Resonate]:
        """A send-only Resonate client of this system (it never runs sagas)."""
        return resonate_session(self.settings, role="client")

    async def seed(
        self,
        source: Mapping[str, int],
        target: Mapping[str, int],
        closed: Iterable[str] = (),
    ) -> None:
        """Open accounts with opening balances; names in ``closed`` are created closed."""
        shut = set(closed)
        banks: tuple[tuple[BankName, Mapping[str, int]], ...] = (
            ("source", source),
            ("target", target),
        )
        accounts = [
            Account(bank, account_id, balance, "closed" if account_id in shut else "open")
            for bank, named in banks
            for account_id, balance in named.items()
        ]
        async with self.banks() as (src, tgt):
            await open_accounts(src, tgt, accounts)

    async def balances(self) -> dict[str, int]:
        """``{"source:alice": 100, "target:bob": 0, ...}``."""
        out: dict[str, int] = {}
        async with self.banks() as (src, tgt):
            for name, bank in ((SOURCE, src), (TARGET, tgt)):
                for account in await bank.list_accounts():
                    out[f"{name}:{account['account_id']}"] = account["balance"]
        return out

    async def entries(self, op_prefix: str) -> list[dict[str, Any]]:
        """Every ledger entry (both banks) whose op id starts with ``op_prefix``."""
        async with self.banks() as (src, tgt):
            return [
                entry
                for bank in (src, tgt)
                async for entry in bank.iter_entries()
                if entry["op_id"].startswith(op_prefix)
            ]

    async def violations(self) -> list[audit.Violation]:
        """What the audit finds on both ledgers now."""
        return audit.check(await audit.collect(self.settings))


def _start_together(processes: Iterable[ManagedProcess], timeout: float) -> None:
    """Start every process, then wait for each: they boot side by side."""
    started = list(processes)
    for process in started:
        process.start(wait=False)
    for process in started:
        process.wait_healthy(timeout)


async def wait_until[T](
    predicate: Callable[[], Awaitable[T | None]],
    *,
    within: float = 30.0,
    interval: float = 0.05,
    what: str = "the condition",
) -> T:
    """Await ``predicate()`` until it returns something truthy; return that."""
    deadline = time.monotonic() + within
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} was not met within {within:g}s")
        await asyncio.sleep(interval)


async def wait_for_hold(
    bank: BankClient, op_id: str, *, stage: str | None = None, within: float = 60.0
) -> dict[str, Any]:
    """Return once ``bank`` holds the request for ``op_id`` (at ``stage``, when given)."""

    async def held() -> dict[str, Any] | None:
        return next(
            (
                hold
                for hold in await bank.holds()
                if hold["op_id"] == op_id and stage in (None, hold["stage"])
            ),
            None,
        )

    what = f"the {bank.name} bank holding {op_id}"
    hold: dict[str, Any] = await wait_until(held, within=within, what=what)
    return hold
