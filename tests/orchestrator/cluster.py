"""A whole crossbank as real local processes, for tests and benchmarks.

Both banks (fault injection on, a bearer token), the served promise store and
any number of workers, each started with ``python -m <package>`` exactly as a
user or compose would, on free ports under one temporary directory. The test
process itself is only a send-only client: it starts transfers and waits, so
killing a worker really takes a saga away from where it ran.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
from resonate.resonate import Resonate

from orchestrator import audit
from orchestrator.bank_client import BankClient
from orchestrator.runtime import close_resonate, open_resonate
from orchestrator.settings import Settings
from orchestrator.supervisor import (
    ManagedProcess,
    bank_process,
    free_port,
    local_url,
    store_process,
    worker_process,
)
from orchestrator.transfers import TransferRequest, start_transfer, transfer_record

TOKEN = "test-bank-token"
STORE_TOKEN = "test-store-token"

#: The environment every worker gets unless a test overrides it: short leases so
#: a standby takes over quickly, a small retry budget with no pause between tries so fences come soon, and a
#: bank timeout long enough that a held request is never abandoned by a timeout.
WORKER_DEFAULTS = {
    "LEASE_TTL": "2",
    "STEP_ATTEMPTS": "3",
    "STEP_BACKOFF": "0",
    "STEP_BACKOFF_MAX": "1",
    "BANK_TIMEOUT": "30",
    "ATTENTION_AFTER": "300",
    "LOG_LEVEL": "INFO",
}


@dataclass
class Cluster:
    """The processes of one crossbank and what a client needs to reach them."""

    root: Path
    source: ManagedProcess
    target: ManagedProcess
    store: ManagedProcess
    settings: Settings
    worker_env: dict[str, str]
    workers: list[ManagedProcess] = field(default_factory=list)

    # -- processes -------------------------------------------------------------

    def start_worker(self, **env: str) -> ManagedProcess:
        """Start one more worker in the group and wait until it listens to the store."""
        name = f"worker{len(self.workers) + 1}"
        log = self.root / f"{name}.log"
        worker = worker_process({**self.worker_env, **env}, log_path=log, name=name)
        self.workers.append(worker)
        return worker.start()

    def running_workers(self) -> list[ManagedProcess]:
        return [worker for worker in self.workers if worker.running()]

    def reset(self) -> None:
        """The store and both banks up, no fault rules or holds, exactly one running worker."""
        if not self.store.running():
            self.store.start()
        for bank in (self.source, self.target):
            if not bank.running():
                bank.start()
            clear_faults(bank)
        running = self.running_workers()
        for extra in running[1:]:
            extra.stop()
        if not running:
            self.start_worker()

    def stop_all(self) -> None:
        for process in [*self.workers, self.store, self.source, self.target]:
            process.stop(timeout=5)

    # -- clients ---------------------------------------------------------------

    @asynccontextmanager
    async def client(self) -> AsyncIterator[Resonate]:
        """A send-only Resonate client (it never runs sagas)."""
        resonate = open_resonate(self.settings, role="client")
        try:
            yield resonate
        finally:
            await close_resonate(resonate)

    @asynccontextmanager
    async def banks(self) -> AsyncIterator[tuple[BankClient, BankClient]]:
        s = self.settings
        async with (
            BankClient(s.source_bank_url, token=s.bank_token, timeout=30, name="source") as src,
            BankClient(s.target_bank_url, token=s.bank_token, timeout=30, name="target") as tgt,
        ):
            yield src, tgt

    async def seed(
        self, source: dict[str, int], target: dict[str, int], closed: tuple[str, ...] = ()
    ) -> None:
        """Open accounts with opening balances; names in ``closed`` are created closed."""
        async with self.banks() as (src, tgt):
            for bank, accounts in ((src, source), (tgt, target)):
                for account, balance in accounts.items():
                    status = "closed" if account in closed else "open"
                    await bank.put_account(account, status, balance)

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

    async def violations(self) -> list[audit.Violation]:
        return audit.check(await audit.collect(self.settings))

    async def balances(self) -> dict[str, int]:
        """``{"source:alice": 100, "target:bob": 0, ...}``."""
        async with self.banks() as (src, tgt):
            out: dict[str, int] = {}
            for name, bank in (("source", src), ("target", tgt)):
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


def clear_faults(bank: ManagedProcess) -> None:
    """Drop a bank's fault rules and release its held requests (a plain sync call)."""
    assert bank.health_url is not None
    base = bank.health_url.removesuffix("/health")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    httpx.delete(f"{base}/admin/faults", headers=headers, timeout=10).raise_for_status()


async def wait_until(predicate: Any, within: float = 30, interval: float = 0.05) -> Any:
    """Await ``predicate()`` (async) until it returns something truthy; return that."""
    deadline = time.monotonic() + within
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {within}s")
        await asyncio.sleep(interval)


async def wait_for_hold(bank: BankClient, op_id: str, stage: str) -> dict[str, Any]:
    """Wait until ``bank`` parks the request for ``op_id`` at ``stage``."""

    async def held() -> dict[str, Any] | None:
        return next(
            (h for h in await bank.holds() if h["op_id"] == op_id and h["stage"] == stage), None
        )

    hold: dict[str, Any] = await wait_until(held)
    return hold


@contextmanager
def running_cluster(root: Path, *, workers: int = 1, **worker_env: str) -> Iterator[Cluster]:
    """Start banks, store and ``workers`` workers under ``root``; stop everything on exit."""
    ports = {name: free_port() for name in ("source", "target", "store")}
    source, target = (
        bank_process(
            role,
            port=ports[role],
            ledger=root / f"{role}.db",
            token=TOKEN,
            faults=True,
            log_path=root / f"{role}.log",
        )
        for role in ("source", "target")
    )
    store = store_process(
        port=ports["store"],
        path=root / "promises.db",
        token=STORE_TOKEN,
        log_path=root / "store.log",
    )
    client_env = {
        "RESONATE_URL": local_url(ports["store"]),
        "RESONATE_TOKEN": STORE_TOKEN,
        "SOURCE_BANK_URL": local_url(ports["source"]),
        "TARGET_BANK_URL": local_url(ports["target"]),
        "BANK_TOKEN": TOKEN,
        "WORKER_GROUP": "test-workers",
    }
    worker_settings = {**client_env, **WORKER_DEFAULTS, **worker_env}
    cluster = Cluster(
        root=root,
        source=source,
        target=target,
        store=store,
        settings=Settings.from_env(worker_settings),
        worker_env=worker_settings,
    )
    try:
        for process in (source, target, store):
            process.start(wait=False)
        for process in (source, target, store):
            process.wait_healthy()
        for _ in range(workers):
            cluster.start_worker()
        yield cluster
    finally:
        cluster.stop_all()


def with_settings(cluster: Cluster, **changes: Any) -> Cluster:
    """The same cluster seen through different client settings."""
    return replace(cluster, settings=replace(cluster.settings, **changes))


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
