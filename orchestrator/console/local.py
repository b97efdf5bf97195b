"""The console's hands in the local demo: the processes ``crossbank demo`` started, and their faults.

Only a console started by the demo has a :class:`LocalControl`: it can SIGKILL
the worker running a transfer, start another, and make the target bank hold
the next credit, because it owns those processes and that bank's fault API.
A console in front of a deployment has none of these actions.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from orchestrator.local.system import TARGET, LocalSystem

#: The rule the crash demo sets: the target bank parks the next credit before applying it.
HOLD_NEXT_CREDIT: dict[str, Any] = {"action": "hold_before", "kind": "credit", "times": 1}


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
        try:
            status = json.loads(self.system.status_file(name).read_text())
        except (OSError, ValueError):
            return []
        running = status.get("running") if isinstance(status, dict) else None
        return [str(tid) for tid in running] if isinstance(running, list) else []

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

    async def hold_next_credit(self) -> dict[str, Any]:
        """The target bank parks the next credit it receives until released (or 120 s)."""
        async with self.system.bank(TARGET) as target:
            await target.set_faults([HOLD_NEXT_CREDIT])
        return {"faults": [HOLD_NEXT_CREDIT]}

    async def release_holds(self) -> dict[str, Any]:
        """Drop the target bank's fault rules and let every held request go on."""
        async with self.system.bank(TARGET) as target:
            await target.clear_faults()
        return {"faults": []}
