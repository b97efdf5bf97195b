"""``crossbank demo``: the whole system as local processes, and the three outcomes of a transfer.

No Docker: both banks, the served promise store and a worker start with
``python -m <package>`` (as compose and the tests start them) on free ports,
with their ledgers, store and logs under one data directory. The demo then
drives them through the same functions the ``crossbank`` commands use,
printing each command as a user would type it, and stops every process it
started on the way out, whatever happens (Ctrl-C included).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestrator import commands
from orchestrator.bank_client import BankClient
from orchestrator.settings import Settings
from orchestrator.supervisor import (
    ManagedProcess,
    ServiceError,
    bank_process,
    free_port,
    local_url,
    store_process,
    worker_process,
)

WORKER_GROUP = "crossbank-demo"


def say(text: str = "") -> None:
    print(text, flush=True)


def show(reply: commands.Reply, indent: str = "    ") -> None:
    for line in reply.human.splitlines():
        say(f"{indent}{line}")


def command(text: str) -> None:
    say(f"  $ crossbank {text}")


def default_data_dir(kind: str) -> Path:
    return Path("data") / f"{kind}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


@dataclass
class LocalCluster:
    """Banks (fault injection on), the served promise store and workers, under ``data_dir``."""

    data_dir: Path
    lease_ttl: float = 3.0
    ports: dict[str, int] = field(default_factory=dict)
    services: list[ManagedProcess] = field(default_factory=list)
    workers: list[ManagedProcess] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """What a client (``crossbank ...`` in another shell) needs to reach this cluster."""
        return {
            "SOURCE_BANK_URL": local_url(self.ports["source"]),
            "TARGET_BANK_URL": local_url(self.ports["target"]),
            "RESONATE_URL": local_url(self.ports["store"]),
            "WORKER_GROUP": WORKER_GROUP,
        }

    @property
    def settings(self) -> Settings:
        return Settings.from_env({**self.env, "LEASE_TTL": str(self.lease_ttl)})

    def start(self) -> None:
        """Start the banks and the store (in parallel) and wait until each answers its health check."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.ports = {name: free_port() for name in ("source", "target", "store")}
        self.services = [
            *(
                bank_process(
                    role,
                    port=self.ports[role],
                    ledger=self.data_dir / f"{role}.db",
                    faults=True,
                    log_path=self.data_dir / f"{role}.log",
                )
                for role in ("source", "target")
            ),
            store_process(
                port=self.ports["store"],
                path=self.data_dir / "promises.db",
                log_path=self.data_dir / "store.log",
            ),
        ]
        for process in self.services:
            process.start(wait=False)
        for process in self.services:
            process.wait_healthy()

    def start_worker(self, timeout: float = 30.0) -> ManagedProcess:
        """Start a worker and wait until it listens to the store for work."""
        name = f"worker-{len(self.workers) + 1}"
        log = self.data_dir / f"{name}.log"
        worker = worker_process(
            {
                **self.env,
                "LEASE_TTL": f"{self.lease_ttl:g}",
                "STEP_ATTEMPTS": "3",
                "STEP_BACKOFF": "1",
                "STEP_BACKOFF_MAX": "2",
                "BANK_TIMEOUT": "30",
            },
            log_path=log,
            name=name,
        )
        self.workers.append(worker)
        return worker.start(timeout=timeout)

    def stop(self) -> None:
        """Stop everything this cluster started, workers first."""
        for process in [*self.workers, *reversed(self.services)]:
            with contextlib.suppress(Exception):
                process.stop(timeout=5)

    def describe(self) -> Iterator[str]:
        for process in self.services:
            url = (process.health_url or "").removesuffix("/health")
            yield f"  {process.name:<14} {url}  (log {process.log_path})"
        for worker in self.workers:
            if worker.running():
                yield f"  {worker.name:<14} pid {worker.pid}  (log {worker.log_path})"

    def bank(self, name: str) -> BankClient:
        url = self.env["SOURCE_BANK_URL" if name == "source" else "TARGET_BANK_URL"]
        return BankClient(url, timeout=30, name=name)


@contextlib.contextmanager
def running(data_dir: Path | None, kind: str, lease_ttl: float) -> Iterator[LocalCluster]:
    """Start a local cluster with one worker; stop it however the block ends."""
    cluster = LocalCluster(data_dir or default_data_dir(kind), lease_ttl=lease_ttl)
    say(f"data and logs: {cluster.data_dir}")
    say("starting the source bank, the target bank, the promise store and a worker ...")
    try:
        cluster.start()
        cluster.start_worker()
        for line in cluster.describe():
            say(line)
        say("to use it from another shell while the demo runs:")
        say("  export " + " ".join(f"{k}={v}" for k, v in cluster.env.items()))
        yield cluster
    finally:
        say("stopping every process the demo started ...")
        cluster.stop()


async def wait_for_hold(bank: BankClient, op_id: str, within: float = 60.0) -> dict[str, Any]:
    """Return once ``bank`` is holding the request for ``op_id``."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for hold in await bank.holds():
            if hold["op_id"] == op_id:
                return hold
        await asyncio.sleep(0.05)
    raise TimeoutError(f"the {bank.name} bank did not receive {op_id} within {within:.0f}s")


# -- the scenes ------------------------------------------------------------------------------


async def seed(settings: Settings) -> None:
    command("accounts seed")
    show(await commands.seed_command(settings))


async def committed(settings: Settings) -> dict[str, Any]:
    command("transfer --from alice --to carol --amount 25.00")
    reply = await commands.transfer_command(
        settings, source="alice", target="carol", amount="25.00", transfer_id=None, wait=True
    )
    show(reply)
    return dict(reply.data)


async def compensated(cluster: LocalCluster, settings: Settings) -> dict[str, Any]:
    """Close the target account while the credit is on its way: the bank refuses it, the saga reverses."""
    transfer_id = f"demo-comp-{int(time.time())}"
    credit = f"{transfer_id}-credit"
    async with cluster.bank("target") as target:
        await target.set_faults(
            [{"action": "hold_before", "kind": "credit", "op_id": credit, "times": 1}]
        )
        say(
            "  (the target bank will hold this transfer's credit so the account can close meanwhile)"
        )
        command(f"transfer --from bob --to frank --amount 40.00 --id {transfer_id} --no-wait")
        show(
            await commands.transfer_command(
                settings,
                source="bob",
                target="frank",
                amount="40.00",
                transfer_id=transfer_id,
                wait=False,
            )
        )
        await wait_for_hold(target, credit)
        say("    ... bob has been debited; the credit to frank is held at the target bank")
        command("accounts close frank --bank target")
        show(
            await commands.account_command(
                settings, "frank", bank="target", action="close", opening=None
            )
        )
        await target.clear_faults()
        say("    ... the held credit goes on, and the target bank refuses it: frank is closed")
    command(f"transfer --from bob --to frank --amount 40.00 --id {transfer_id}")
    reply = await commands.transfer_command(
        settings, source="bob", target="frank", amount="40.00", transfer_id=transfer_id, wait=True
    )
    show(reply)
    command(f"status {transfer_id}")
    show(await commands.status_command(settings, transfer_id))
    return dict(reply.data)


async def failed(settings: Settings) -> dict[str, Any]:
    command("transfer --from erin --to dave --amount 50.00")
    reply = await commands.transfer_command(
        settings, source="erin", target="dave", amount="50.00", transfer_id=None, wait=True
    )
    show(reply)
    return dict(reply.data)


async def closing(settings: Settings) -> bool:
    command("balances")
    show(await commands.balances_command(settings))
    command("audit")
    reply = await commands.audit_command(settings)
    show(reply)
    return reply.code == commands.OK


async def scenes(cluster: LocalCluster) -> bool:
    from orchestrator import crash_demo

    settings = cluster.settings
    say("\n== 1. demo accounts on both banks")
    await seed(settings)
    say("\n== 2. a transfer that commits")
    outcomes = [(await committed(settings))["status"] == "committed"]
    say("\n== 3. a transfer that is compensated (the target account closes on the way)")
    outcomes.append((await compensated(cluster, settings))["status"] == "compensated")
    say("\n== 4. a transfer that fails (erin has 10.00 and sends 50.00)")
    outcomes.append((await failed(settings))["status"] == "failed")
    say("\n== 5. the crash demo")
    outcomes.append(await crash_demo.crash(cluster))
    say("\n== 6. where the money is")
    outcomes.append(await closing(settings))
    return all(outcomes)


def run_scenes(kind: str, data_dir: Path | None, lease_ttl: float, debug: bool, body: Any) -> int:
    """Run ``body(cluster)`` against a fresh local cluster; 0 when it says all went as expected."""
    try:
        with running(data_dir, kind, lease_ttl) as cluster:
            ok = bool(asyncio.run(body(cluster)))
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except Exception as exc:
        if debug:
            traceback.print_exc()
        expected = isinstance(exc, commands.CliError | ServiceError | TimeoutError | OSError)
        what = str(exc) if expected else f"unexpected error: {type(exc).__name__}: {exc}"
        print(f"crossbank {kind}: error: {' '.join(what.split())}", file=sys.stderr)
        return 1
    say(
        f"\n{kind}: {'done: every outcome as expected' if ok else 'FINISHED WITH PROBLEMS (see above)'}"
    )
    return 0 if ok else 1


def main(*, data_dir: Path | None = None, lease_ttl: float = 3.0, debug: bool = False) -> int:
    """``crossbank demo``."""
    return run_scenes("demo", data_dir, lease_ttl, debug, scenes)
