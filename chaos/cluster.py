"""The real processes a campaign runs against: two banks, the promise store, workers.

A :class:`~orchestrator.local.system.LocalSystem` with the campaign's
impatient settings, a fresh bank token and the fault API on. Its ports are
fixed for the whole campaign, so a restarted process comes back where its
clients expect it, and a restart reuses the same ledger and store files:
that is what makes "an acknowledged write survives a kill -9" testable.
Processes are named as the fault schedule names them (:mod:`chaos.schedule`).

On Resonate on Postgres the promise store's place is taken by the system's
private Postgres, which a fault kills and restarts on its own data.
"""

from __future__ import annotations

import secrets
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from chaos.schedule import POSTGRES, SOURCE_BANK, STORE, TARGET_BANK, worker_name
from orchestrator.local.postgres import PrivatePostgres
from orchestrator.local.system import SOURCE, STORE_BACKEND, TARGET, LocalSystem
from orchestrator.local.system import STORE as STORE_PART
from orchestrator.settings import Settings


class Part(Protocol):
    """What a fault does to a process: see whether it runs, kill it, start it, signal it."""

    def running(self) -> bool: ...
    def kill(self) -> None: ...
    def start(self) -> object: ...
    def signal(self, signum: int) -> None: ...


class PostgresPart:
    """The private Postgres as a :class:`Part`: started again on its own data after a kill."""

    def __init__(self, server: PrivatePostgres) -> None:
        self.server = server

    def running(self) -> bool:
        return self.server.running()

    def kill(self) -> None:
        self.server.kill()

    def start(self) -> PrivatePostgres:
        return self.server.restart()

    def signal(self, signum: int) -> None:
        process = self.server.process
        if self.running() and process is not None and signum != signal.SIGSTOP:
            process.send_signal(signum)


@dataclass(frozen=True)
class ClusterConfig:
    """Where the cluster keeps its files and how impatient its workers are."""

    workdir: Path
    workers: int = 2
    lease_ttl: float = 2.0
    bank_timeout: float = 1.5
    step_attempts: int = 4
    step_backoff: int = 1
    step_backoff_max: int = 2
    backend: str = STORE_BACKEND
    bank_token: str = field(default_factory=lambda: secrets.token_hex(16))
    group: str = field(default_factory=lambda: f"chaos-{secrets.token_hex(4)}")

    def settings(self) -> Settings:
        return Settings(
            store_path=self.workdir / "client-unused.db",
            bank_token=self.bank_token,
            group=self.group,
            lease_ttl=self.lease_ttl,
            step_attempts=self.step_attempts,
            step_backoff=self.step_backoff,
            step_backoff_max=self.step_backoff_max,
            bank_timeout=self.bank_timeout,
        )


class Cluster:
    """The processes of one campaign, by the schedule's names."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        # Workers are not waited for until they reach the store: the campaign
        # restarts them while the store may be down, and they find it when it is back.
        self.system = LocalSystem(
            config.workdir,
            config.settings(),
            workers=config.workers,
            faults=True,
            log_dir=config.workdir / "logs",
            worker_name=worker_name,
            wait_for_workers=False,
            backend=config.backend,
        )
        self.source_url = self.system.settings.source_bank_url
        self.target_url = self.system.settings.target_bank_url
        services = self.system.services
        postgres = self.system.postgres
        self.processes: dict[str, Part] = {
            SOURCE_BANK: services[SOURCE],
            TARGET_BANK: services[TARGET],
            **({STORE: services[STORE_PART]} if STORE_PART in services else {}),
            **({POSTGRES: PostgresPart(postgres)} if postgres is not None else {}),
            **{worker.name: worker for worker in self.system.workers},
        }

    def settings(self) -> Settings:
        return self.system.settings

    def workers(self) -> list[str]:
        return [worker_name(i) for i in range(self.config.workers)]

    def start(self) -> None:
        """Store and banks first (waiting for health), then the workers."""
        self.system.start()

    def ensure_running(self) -> None:
        """Resume anything paused and start anything that is not running (Postgres first)."""
        postgres = self.processes.get(POSTGRES)
        if postgres is not None and not postgres.running():
            postgres.start()
        self.system.ensure_running()

    def stop(self) -> None:
        """Workers first (they talk to the rest), then everything else; never leaves a child."""
        self.system.stop()
