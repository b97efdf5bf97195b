"""Send the campaign's transfers as a send-only client, and keep at it through faults.

The client starts each transfer (the transfer id makes a retried start
idempotent) and waits for its result. When the promise store is down or
paused, a start or a read fails or hangs: it is retried with a short backoff,
because that is what a real client of a durable system does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from resonate.resonate import Resonate

from chaos.schedule import PlannedTransfer
from orchestrator.settings import Settings
from orchestrator.transfers import TransferConflict, TransferRequest, start_transfer

#: A single client call (start, or one read) that takes longer is abandoned and retried.
_CALL_TIMEOUT_S = 5.0
_RETRY_PAUSE_S = 0.25


@dataclass
class TransferRun:
    """What the client saw of one transfer."""

    planned: PlannedTransfer
    start_attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    result: dict[str, Any] | None = None
    error: str | None = None

    @property
    def status(self) -> str:
        if self.result is not None:
            return str(self.result.get("status"))
        return "unfinished"


class Workload:
    """Runs planned transfers at a fixed concurrency; :attr:`runs` fills in as they finish."""

    def __init__(
        self,
        resonate: Resonate,
        settings: Settings,
        transfers: tuple[PlannedTransfer, ...],
        *,
        concurrency: int,
        rate: float = 0.0,
        log: Callable[[str], None] = lambda message: None,
    ) -> None:
        self.resonate = resonate
        self.settings = settings
        self.runs = {t.transfer_id: TransferRun(t) for t in transfers}
        self.concurrency = concurrency
        #: At most this many starts per second (0: no limit), so a long run keeps traffic up.
        self.rate = rate
        self._next_start = 0.0
        self._log = log
        self.clock_zero = time.monotonic()
        #: Monotonic times of the latest start and of the latest start or finish.
        self.last_started = self.clock_zero
        self.last_progress = self.clock_zero

    async def run(self) -> None:
        queue: Iterator[TransferRun] = iter(list(self.runs.values()))
        await asyncio.gather(*(self._slot(queue) for _ in range(self.concurrency)))

    def unfinished(self) -> list[str]:
        return [tid for tid, run in self.runs.items() if run.result is None]

    async def _slot(self, queue: Iterator[TransferRun]) -> None:
        for run in queue:
            await self._drive(run)

    async def _pace(self) -> None:
        """Wait for this start's slot when a rate is set (slots are 1/rate apart)."""
        if self.rate <= 0:
            return
        now = time.monotonic()
        slot = max(now, self._next_start)
        self._next_start = slot + 1.0 / self.rate
        await asyncio.sleep(slot - now)

    async def _drive(self, run: TransferRun) -> None:
        await self._pace()
        planned = run.planned
        request = TransferRequest(
            planned.transfer_id, planned.source_account, planned.target_account, planned.amount
        )
        while True:
            run.start_attempts += 1
            try:
                handle = await asyncio.wait_for(
                    start_transfer(self.resonate, self.settings, request), _CALL_TIMEOUT_S
                )
                break
            except Exception:  # store down or paused: the id makes a retry safe
                await asyncio.sleep(_RETRY_PAUSE_S)
        run.started_at = self._now()
        self.last_started = self.last_progress = time.monotonic()
        try:
            result = await handle.result()
        except TransferConflict as exc:  # the id belonged to another transfer
            run.error = str(exc)
            return
        except Exception as exc:  # the handle gave up; read the promise until it settles
            self._log(f"{planned.transfer_id}: handle failed ({exc!r}); polling the store")
            result = await self.poll_result(planned.transfer_id)
        run.result = result if isinstance(result, dict) else {"status": repr(result)}
        run.finished_at = self._now()
        self.last_progress = time.monotonic()

    async def poll_result(self, transfer_id: str) -> dict[str, Any]:
        """The transfer's result, reading its root promise until it is settled."""
        while True:
            result = await self.read_result(transfer_id)
            if result is not None:
                return result
            await asyncio.sleep(_RETRY_PAUSE_S)

    async def read_result(self, transfer_id: str) -> dict[str, Any] | None:
        """The result if the root promise is settled now; None while pending or unreachable."""
        try:
            record = await asyncio.wait_for(
                self.resonate.promises.get(transfer_id), _CALL_TIMEOUT_S
            )
        except Exception:
            return None
        if record.state == "pending":
            return None
        data = record.value.data
        if record.state == "resolved" and isinstance(data, dict):
            return data
        return {"status": record.state, "error": repr(data)}

    def _now(self) -> float:
        return round(time.monotonic() - self.clock_zero, 3)
