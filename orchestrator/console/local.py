"""The console's hands in the local demo: the processes ``crossbank demo`` started, and their faults.

Only a console started by the demo has a :class:`LocalControl`: it can SIGKILL
the worker running a transfer, start another, and make the target bank hold
the next credit, because it owns those processes and that bank's fault API.
A console in front of a deployment has none of these actions.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from orchestrator.local.system import TARGET, LocalSystem
from orchestrator.records import op_id

#: The rule the crash demo sets: the target bank parks the next credit before applying it.
HOLD_NEXT_CREDIT: dict[str, Any] = {"action": "hold_before", "kind": "credit", "times": 1}


def hold_credit_rule(transfer_id: str | None = None) -> dict[str, Any]:
    """The target bank parks the next credit, or only ``transfer_id``'s credit, before applying it.

    A rule with a kind never matches a void (bank/faults.py), so a held credit's op id can
    still be voided (``crossbank cancel``) while the credit waits.
    """
    if transfer_id is None:
        return dict(HOLD_NEXT_CREDIT)
    return {**HOLD_NEXT_CREDIT, "op_id": op_id(transfer_id, "credit")}


class ActionRefused(Exception):
    """An action that cannot be done now (no such worker, nothing running the transfer)."""


class LocalControl:
    """What the page may do to a local system, and who runs what in it."""

    def __init__(self, system: LocalSystem) -> None:
        self.system = system

    async def workers(self) -> dict[str, Any]:
        """Every worker the system started: alive or not, and the transfers it says it runs."""
        shown = []
        for worker in list(self.system.workers):
            alive = worker.running()
            running = self._running(worker.name) if alive else []
            pid = worker.process.pid if worker.process is not None else None
            shown.append({"name": worker.name, "pid": pid, "alive": alive, "running": running})
        return {"workers": shown, "source": "each worker's WORKER_STATUS_FILE"}

    def _running(self, name: str) -> list[str]:
        return running_in(read_status(self.system.status_file(name)))

    async def kill_worker_running(self, transfer_id: str) -> dict[str, Any]:
        """SIGKILL the live worker that runs ``transfer_id`` now."""
        for worker in list(self.system.workers):
            if worker.running() and transfer_id in self._running(worker.name):
                pid = worker.pid
                await asyncio.to_thread(worker.kill)
                return {"worker": worker.name, "pid": pid}
        raise ActionRefused(f"no live worker is running transfer {transfer_id} now")

    async def start_worker(self) -> dict[str, Any]:
        """One more worker in the group, returned once it listens to the store."""
        worker = await asyncio.to_thread(self.system.start_worker)
        return {"worker": worker.name, "pid": worker.pid}

    async def hold_next_credit(self, transfer_id: str | None = None) -> dict[str, Any]:
        """The target bank parks the next credit it receives (only ``transfer_id``'s, if
        given) until released (or 120 s)."""
        rule = hold_credit_rule(transfer_id)
        async with self.system.bank(TARGET) as target:
            await target.set_faults([rule])
        return {"faults": [rule]}

    async def release_holds(self) -> dict[str, Any]:
        """Drop the target bank's fault rules and let every held request go on.

        ``released`` names the op ids the bank held just before (a request parked in
        between is released too, unnamed).
        """
        async with self.system.bank(TARGET) as target:
            held = await target.holds()
            await target.clear_faults()
        return {"faults": [], "released": [str(hold["op_id"]) for hold in held]}


#: A status file older than this says its worker is gone (workers rewrite theirs every 5 s).
STATUS_STALE_SECONDS = 15.0
#: Status files a console reads from one directory, at most.
MAX_STATUS_FILES = 100
#: The local systems' status files end so (``worker-1.status.json``).
STATUS_SUFFIX = ".status.json"


def read_status(path: Path) -> dict[str, Any]:
    """A worker's status file (``orchestrator.worker``), or {} when absent or unreadable."""
    try:
        status = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return status if isinstance(status, dict) else {}


def running_in(status: dict[str, Any]) -> list[str]:
    running = status.get("running")
    return [str(tid) for tid in running] if isinstance(running, list) else []


def status_directory_workers(directory: Path) -> dict[str, Any]:
    """The workers whose status files are in ``directory``: alive while their file is fresh."""
    now = time.time()
    shown = []
    for path in sorted(directory.glob("*.json"))[:MAX_STATUS_FILES]:
        status = read_status(path)
        at = status.get("at")
        alive = isinstance(at, (int, float)) and now - at <= STATUS_STALE_SECONDS
        name = path.name.removesuffix(STATUS_SUFFIX).removesuffix(".json")
        shown.append(
            {
                "name": name,
                "pid": status.get("pid"),
                "alive": alive,
                "running": running_in(status) if alive else [],
            }
        )
    return {
        "workers": shown,
        "source": f"the workers' WORKER_STATUS_FILE in {directory} (CONSOLE_WORKER_STATUS_DIR)",
    }
