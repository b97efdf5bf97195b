"""The embedded front door: durable Resonate promises in-process, no server.

Build a Resonate over it like this (the store is both its network and its
source)::

    store = EmbeddedStore("data/promises.db", pid="worker-1", group="workers")
    resonate = Resonate(network=store, group="workers", pid="worker-1",
                        ttl=timedelta(seconds=30))

Pass the same ``pid`` and ``group`` to both, so the address the store
advertises names the process that leases tasks. Construct the store inside or
outside an event loop; :class:`Resonate` starts and stops it.

Leases: the SDK gives ``NoopHeartbeat`` only to its own ``LocalConnection``.
This store is deliberately *not* one, so Resonate heartbeats it like a
remote server, and that is what we want: leases here are real and durable.
A live process renews its tasks' leases every ``ttl/2`` (each renewal is
journaled), so a step longer than ``ttl`` does not lose its task; a process
killed mid-step stops renewing, and when the file is reopened after the old
lease has expired, the clock tick releases the task and this process runs the
workflow again from its last durable checkpoint.

One journal has one owner: constructing a second store on the same path while
another process (or object) holds it raises :class:`~promise_store.StoreLocked`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

import msgspec
from resonate.connections.local import OutgoingMessage

from promise_store.protocol import handle
from promise_store.rules import next_deadline
from promise_store.state import DEFAULT_SNAPSHOT_EVERY, JournaledState

logger = logging.getLogger(__name__)

#: Address scheme of the embedded store. Every message goes to every receiver
#: in this process (there is nobody else to route to), so addresses are labels.
SCHEME = "embedded"


class EmbeddedStore:
    """A Resonate ``Network`` and ``Source`` over a journaled state in one SQLite file."""

    def __init__(
        self,
        path: str | Path,
        *,
        pid: str | None = None,
        group: str | None = None,
        tick_interval: float = 1.0,
        snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
    ) -> None:
        self.store = JournaledState(path, snapshot_every=snapshot_every)
        self._pid = pid if pid is not None else "default"
        self._group = group if group is not None else "default"
        self._tick_interval = tick_interval
        self._receivers: list[Callable[[str], None]] = []
        self._ticker: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- Source ---------------------------------------------------------------

    def unicast(self) -> str:
        return f"{SCHEME}://uni@{self._group}/{self._pid}"

    def resolve_target(self, target: str) -> str:
        return f"{SCHEME}://any@{target}"

    def recv(self, callback: Callable[[str], None]) -> None:
        self._receivers.append(callback)

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        # Resonate starts its connections as background tasks, so a process that
        # opens and closes at once can reach start() after stop(): a closed store
        # must stay closed rather than tick on a file it no longer holds.
        if self._ticker is None and not self._closed:
            self._ticker = asyncio.create_task(self._tick_loop())

    async def stop(self) -> None:
        """Stop ticking, flush the journal, close the file and release its lock."""
        self._closed = True
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        self._receivers.clear()
        await self.store.close()

    # -- Network --------------------------------------------------------------

    async def send(self, req: str, headers: dict[str, str] | None = None) -> str:
        """Apply one request envelope durably and return the response envelope."""
        answer = await handle(self.store, req)
        self._deliver(answer.outgoing)
        return answer.body.decode()

    # -- internals --------------------------------------------------------------

    async def _tick_loop(self) -> None:
        while True:
            try:
                self._deliver(await self.store.tick())
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("embedded store tick failed")
            await asyncio.sleep(self._next_wait())

    def _next_wait(self) -> float:
        """Sleep until the next tick, or sooner when a timeout falls due before it."""
        deadline = next_deadline(self.store.state)
        if deadline is None:
            return self._tick_interval
        due_in = (deadline - self.store.clock()) / 1000
        return min(self._tick_interval, max(due_in, 0.01))

    def _deliver(self, messages: list[OutgoingMessage]) -> None:
        if not messages or not self._receivers:
            return
        payloads = [msgspec.json.encode(m.message).decode() for m in messages]
        receivers = list(self._receivers)

        async def run() -> None:
            for payload in payloads:
                for receiver in receivers:
                    receiver(payload)

        task = asyncio.create_task(run())
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)
