"""The real processes a campaign runs against: two banks, the promise store, workers.

A :class:`~orchestrator.local.system.LocalSystem` with the campaign's
impatient settings, a fresh bank token and the fault API on. Its ports are
fixed for the whole campaign, so a restarted process comes back where its
clients expect it, and a restart reuses the same ledger and store files:
that is what makes "an acknowledged write survives a kill -9" testable.
Processes are named as the fault schedule names them (:mod:`chaos.schedule`).

On Resonate on Postgres the promise store's place is taken by the system's
private Postgres, which a fault kills and restarts on its own data.

Every network link a fault can cut goes through its own proxy
(:mod:`chaos.proxy`): each worker is given its own URLs for the store (or its
own DSN for Postgres) and for each bank, and the campaign's client its own
store URL, so one worker can be cut from one part alone. The banks' ledgers
and the store's journal sit on small filesystems of their own
(:mod:`chaos.disks`, when run as root), and the store and ``worker-0`` run
under libfaketime (:mod:`chaos.clock`, when installed), so the injector can
fill their disks and step their clocks.

A campaign that may cut the power puts those data files on the power-cut
filesystem instead (:mod:`chaos.powercut`, over the small disk when there is
one), so a cut loses exactly what was not synced.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from chaos.clock import SteppedClock, libfaketime
from chaos.disks import SmallDisk, why_no_disks
from chaos.powercut import PowerFs, why_no_power_cuts
from chaos.proxy import ProxySet
from chaos.schedule import (
    CLIENT,
    CLOCK_WORKER,
    POSTGRES,
    SOURCE_BANK,
    STORE,
    TARGET_BANK,
    worker_name,
)
from envsettings import integer
from orchestrator.local.postgres import PrivatePostgres
from orchestrator.local.supervisor import local_url, worker_process
from orchestrator.local.system import (
    SOURCE,
    STORE_BACKEND,
    TARGET,
    LocalSystem,
)
from orchestrator.local.system import STORE as STORE_PART
from orchestrator.settings import Settings

#: Size of each small filesystem (a bank's ledger, the store's journal), in MB:
#: room for a large campaign's files, small enough to fill in a moment.
DISK_MB_SETTING = "CHAOS_DISK_MB"
DEFAULT_DISK_MB = 256
#: The data file each disk holds, by part.
_DISK_FILES = {SOURCE_BANK: "source.db", TARGET_BANK: "target.db", STORE: "promises.db"}
_PATH_SETTING = {SOURCE_BANK: "LEDGER_PATH", TARGET_BANK: "LEDGER_PATH", STORE: "STORE_PATH"}
_SYSTEM_PART = {SOURCE_BANK: SOURCE, TARGET_BANK: TARGET, STORE: STORE_PART}


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
    #: Put ledgers and the store's journal on small filesystems (skipped, with a
    #: reason in :attr:`Cluster.no_disks`, when this process cannot mount).
    small_disks: bool = True
    #: Run the store and worker-0 under libfaketime, so their clocks can be stepped.
    stepped_clocks: bool = True
    #: Put ledgers and the store's journal on the power-cut filesystem (skipped, with
    #: a reason in :attr:`Cluster.no_power_cuts`, when it cannot be mounted here).
    power_cuts: bool = False
    #: Run the source bank with a ledger that never syncs: the power cuts' control run.
    unsynced_bank: bool = False
    disk_mb: int = field(
        default_factory=lambda: integer(os.environ, DISK_MB_SETTING, DEFAULT_DISK_MB, low=1)
    )
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
    """The processes of one campaign, by the schedule's names, with their links, disks, clocks."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        workdir = config.workdir
        #: Why the disk faults cannot be carried out here (None: they can).
        self.no_disks = why_no_disks() if config.small_disks else "small disks are off"
        data_parts = (SOURCE_BANK, TARGET_BANK) + (
            (STORE,) if config.backend == STORE_BACKEND else ()
        )
        self.disks: dict[str, SmallDisk] = {}
        if self.no_disks is None:
            self.disks = {
                part: SmallDisk(workdir / "disks" / part, config.disk_mb) for part in data_parts
            }
        #: Why power cuts cannot be carried out here (None: they can).
        self.no_power_cuts = why_no_power_cuts() if config.power_cuts else "power cuts are off"
        self.power: dict[str, PowerFs] = {}
        if self.no_power_cuts is None:
            self.power = {
                part: PowerFs(
                    self._data_dir(part),
                    workdir / "power" / part,
                    log_path=workdir / "logs" / f"powerfs-{part}.log",
                )
                for part in data_parts
            }
        library = libfaketime() if config.stepped_clocks else None
        #: Why the clock faults cannot be carried out here (None: they can).
        self.no_clocks = None if library else "libfaketime is not installed (Debian: faketime)"
        self.clocks: dict[str, SteppedClock] = {}
        if library is not None:
            names = (CLOCK_WORKER, STORE) if config.backend == STORE_BACKEND else (CLOCK_WORKER,)
            self.clocks = {
                name: SteppedClock(workdir / "clocks" / f"{name}.offset", library) for name in names
            }
        env: dict[str, dict[str, str]] = {}
        for part in data_parts:
            where = self.power[part].mountpoint if part in self.power else self._data_dir(part)
            if part in self.power or part in self.disks:
                env.setdefault(_SYSTEM_PART[part], {})[_PATH_SETTING[part]] = str(
                    where / _DISK_FILES[part]
                )
        if STORE in self.clocks:
            env.setdefault(STORE_PART, {}).update(self.clocks[STORE].env())
        # Workers are not waited for until they reach the store: the campaign
        # restarts them while the store may be down, and they find it when it is back.
        self.system = LocalSystem(
            workdir,
            config.settings(),
            workers=0,
            faults=True,
            log_dir=workdir / "logs",
            worker_name=worker_name,
            wait_for_workers=False,
            backend=config.backend,
            env=env,
        )
        if config.unsynced_bank:
            source = self.system.services[SOURCE]
            source.module, source.args = "chaos.unsynced_bank", ("source",)
        self.source_url = self.system.settings.source_bank_url
        self.target_url = self.system.settings.target_bank_url
        self.proxies = ProxySet()
        try:
            self._client_settings = self._proxied(CLIENT, self.system.settings)
            for index in range(config.workers):
                self._add_worker(worker_name(index))
        except BaseException:
            self.proxies.close()
            raise
        services = self.system.services
        postgres = self.system.postgres
        self.processes: dict[str, Part] = {
            SOURCE_BANK: services[SOURCE],
            TARGET_BANK: services[TARGET],
            **({STORE: services[STORE_PART]} if STORE_PART in services else {}),
            **({POSTGRES: PostgresPart(postgres)} if postgres is not None else {}),
            **{worker.name: worker for worker in self.system.workers},
        }

    def _data_dir(self, part: str) -> Path:
        """Where a part's data file is kept: its small disk, else the work dir's own folder."""
        disk = self.disks.get(part)
        return disk.path if disk is not None else self.config.workdir / "data" / part

    def _far_ports(self) -> dict[str, int]:
        """The real port of every part a link leads to."""
        ports = self.system.ports
        far = {SOURCE_BANK: ports[SOURCE], TARGET_BANK: ports[TARGET]}
        if STORE_PART in ports:
            far[STORE] = ports[STORE_PART]
        if self.system.postgres is not None:
            far[POSTGRES] = self.system.postgres.port
        return far

    def _proxied(self, near: str, settings: Settings) -> Settings:
        """``settings`` with every part ``near`` talks to reached through a proxy of its own."""
        far = self._far_ports()
        port = {part: self.proxies.add(link_name(near, part), p).port for part, p in far.items()}
        if near == CLIENT:  # the client only talks to the store (the audit reads banks directly)
            for bank in (SOURCE_BANK, TARGET_BANK):
                del port[bank]
        settings = replace(
            settings,
            source_bank_url=local_url(port[SOURCE_BANK])
            if SOURCE_BANK in port
            else settings.source_bank_url,
            target_bank_url=local_url(port[TARGET_BANK])
            if TARGET_BANK in port
            else settings.target_bank_url,
        )
        if STORE in port:
            return replace(settings, resonate_url=local_url(port[STORE]))
        dsn = settings.resonate_pg_dsn
        if POSTGRES in port and dsn is not None:
            dsn = dsn.replace(f"127.0.0.1:{far[POSTGRES]}/", f"127.0.0.1:{port[POSTGRES]}/")
            return replace(settings, resonate_pg_dsn=dsn)
        return settings

    def _add_worker(self, name: str) -> None:
        settings = self._proxied(name, self.system.settings)
        env = settings.to_env()
        if name in self.clocks:
            env.update(self.clocks[name].env())
        worker = worker_process(
            env, log_path=self.system.log_dir / f"{name}.log", name=name, wait_ready=False
        )
        self.system.workers.append(worker)

    def settings(self) -> Settings:
        """The campaign client's settings: the store (or Postgres) through the client's proxy."""
        return self._client_settings

    def workers(self) -> list[str]:
        return [worker_name(i) for i in range(self.config.workers)]

    def start(self) -> None:
        """Disks mounted, then store and banks (waiting for health), then the workers."""
        for disk in self.disks.values():
            disk.mount()
        for power in self.power.values():
            power.mount()
        self.system.start()

    def cut_power(self) -> None:
        """The power goes: every process is SIGKILLed and every unsynced byte is lost.

        The filesystems are mounted again at once, holding what was synced;
        the processes stay down until :meth:`ensure_running`.
        """
        for process in self.processes.values():
            if process.running():
                process.kill()
        for power in self.power.values():
            power.cut()

    def ensure_running(self) -> None:
        """Resume anything paused and start anything that is not running (Postgres first)."""
        postgres = self.processes.get(POSTGRES)
        if postgres is not None and not postgres.running():
            postgres.start()
        self.system.ensure_running()

    def stop(self) -> None:
        """Workers first (they talk to the rest), then everything else; never leaves a child.

        Then the proxies close and the small filesystems are removed (their
        files copied to the work dir first, so a failed campaign keeps them).
        """
        try:
            self.system.stop()
        finally:
            self.proxies.close()
            for power in self.power.values():
                power.unmount()
            for part, disk in self.disks.items():
                disk.free()
                with contextlib.suppress(OSError):
                    _copy_files(disk.path, self.config.workdir / f"{part}-disk")
                disk.unmount()


def link_name(near: str, far: str) -> str:
    """A proxy's name: ``worker-0/store``, ``client/store``, ``worker-1/target_bank``."""
    return f"{near}/{far}"


def _copy_files(source: Path, destination: Path) -> None:
    destination.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.is_file():
            (destination / path.name).write_bytes(path.read_bytes())
