"""The real processes a campaign runs against: two banks, the promise store, workers.

Each part is started the way a user starts it (``python -m <package>``, env
vars) through :class:`orchestrator.supervisor.ManagedProcess`, on fixed
ports for the whole campaign so a restarted process comes back where its
clients expect it. Restarting reuses the same ledger and store files: that
is what makes "an acknowledged write survives a kill -9" testable.
"""

from __future__ import annotations

import secrets
import signal
from dataclasses import dataclass, field
from pathlib import Path

from chaos.schedule import SOURCE_BANK, STORE, TARGET_BANK, worker_name
from orchestrator.settings import Settings
from orchestrator.supervisor import (
    ManagedProcess,
    bank_process,
    free_port,
    local_url,
    store_process,
    worker_process,
)


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
    bank_token: str = field(default_factory=lambda: secrets.token_hex(16))
    group: str = field(default_factory=lambda: f"chaos-{secrets.token_hex(4)}")


class Cluster:
    """The processes of one campaign, by name (see :mod:`chaos.schedule`'s names)."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        workdir = config.workdir
        self.ports = {SOURCE_BANK: free_port(), TARGET_BANK: free_port(), STORE: free_port()}
        self.source_url = self._url(SOURCE_BANK)
        self.target_url = self._url(TARGET_BANK)
        self.store_url = self._url(STORE)
        logs = workdir / "logs"
        self.processes: dict[str, ManagedProcess] = {
            SOURCE_BANK: self._bank("source", SOURCE_BANK, workdir / "source.db", logs),
            TARGET_BANK: self._bank("target", TARGET_BANK, workdir / "target.db", logs),
            STORE: store_process(
                port=self.ports[STORE],
                path=workdir / "promises.db",
                log_path=logs / "store.log",
                name=STORE,
            ),
        }
        for index in range(config.workers):
            name = worker_name(index)
            # Not waiting for a worker to reach the store: the campaign restarts
            # workers while the store may be down, and they find it when it is back.
            self.processes[name] = worker_process(
                self.worker_env(), log_path=logs / f"{name}.log", name=name, wait_ready=False
            )

    def _url(self, name: str) -> str:
        return local_url(self.ports[name])

    def _bank(self, role: str, name: str, ledger: Path, logs: Path) -> ManagedProcess:
        return bank_process(
            role,
            port=self.ports[name],
            ledger=ledger,
            token=self.config.bank_token,
            faults=True,
            log_path=logs / f"{name}.log",
            name=name,
        )

    def worker_env(self) -> dict[str, str]:
        """What a worker (and the client's :class:`Settings`) is configured with."""
        config = self.config
        return {
            "RESONATE_URL": self.store_url,
            "SOURCE_BANK_URL": self.source_url,
            "TARGET_BANK_URL": self.target_url,
            "BANK_TOKEN": config.bank_token,
            "WORKER_GROUP": config.group,
            "LEASE_TTL": str(config.lease_ttl),
            "BANK_TIMEOUT": str(config.bank_timeout),
            "STEP_ATTEMPTS": str(config.step_attempts),
            "STEP_BACKOFF": str(config.step_backoff),
            "STEP_BACKOFF_MAX": str(config.step_backoff_max),
            "STORE_PATH": str(self.config.workdir / "client-unused.db"),
        }

    def settings(self) -> Settings:
        return Settings.from_env(self.worker_env())

    def workers(self) -> list[str]:
        return [worker_name(i) for i in range(self.config.workers)]

    def start(self) -> None:
        """Store and banks first (waiting for health), then the workers."""
        for name in (STORE, SOURCE_BANK, TARGET_BANK, *self.workers()):
            self.processes[name].start()

    def ensure_running(self) -> None:
        """Resume anything paused and start anything that is not running."""
        for process in self.processes.values():
            process.signal(signal.SIGCONT)
        for name in (STORE, SOURCE_BANK, TARGET_BANK, *self.workers()):
            process = self.processes[name]
            if not process.running():
                process.start()
            else:
                process.wait_healthy()

    def stop(self) -> None:
        """Workers first (they talk to the rest), then everything else; never leaves a child."""
        for name in (*self.workers(), STORE, SOURCE_BANK, TARGET_BANK):
            process = self.processes[name]
            process.signal(signal.SIGCONT)
            try:
                process.stop(timeout=5.0)
            except Exception:
                process.kill()
