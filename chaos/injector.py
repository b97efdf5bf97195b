"""Carry out a fault schedule against a running :class:`~chaos.cluster.Cluster`.

Each fault is its own task, started at its offset, so faults may overlap the
way real failures do (a bank is slow while a worker dies). A per-process lock
keeps the process-level faults on one process in order: a pause and a kill of
the same process never interleave, and a bank rule or an account closure
waits until its bank is back from a kill or a pause. A fault that still could
not be carried out is recorded as skipped, not counted as injected.

Link faults set a proxy's mode for their duration (one fault per link at a
time), disk faults fill a part's small filesystem and free it, clock faults
step a process's clock and step it back; each is undone when it ends, and
:meth:`Injector.recover` undoes whatever is left. A power cut takes every
process's lock, kills them all, drops every unsynced byte, and starts them all
again after its downtime. An operator action (``cancel``, ``retry``) is handed
to the campaign's :class:`~chaos.operator_actions.Operator`, and what it
answered is kept with its record.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from chaos.checks import OperatorAct
from chaos.cluster import Cluster, link_name
from chaos.operator_actions import Operator
from chaos.proxy import PASS
from chaos.schedule import (
    BANK_RULE_KINDS,
    CLOCK_KINDS,
    CLOSE_ACCOUNT,
    DISK_KINDS,
    KILL_POSTGRES,
    KILL_SOURCE_BANK,
    KILL_STORE,
    KILL_TARGET_BANK,
    KILL_WORKER,
    LINK_KINDS,
    OPERATOR_PICKS,
    PAUSE,
    POWER_CUT,
    SOURCE_BANK,
    TARGET_BANK,
    Fault,
)
from orchestrator.bank_client import BankClient, BankError
from orchestrator.local.supervisor import is_healthy

_KILLS = frozenset({KILL_WORKER, KILL_SOURCE_BANK, KILL_TARGET_BANK, KILL_STORE, KILL_POSTGRES})
#: How long an admin call keeps trying a bank that is down or paused.
_ADMIN_PATIENCE_S = 4.0
#: How long a part whose disk was full may take to serve again by itself once freed.
_RECOVERY_GRACE_S = 3.0


@dataclass
class FaultRecord:
    fault: Fault
    injected: bool = False
    started_at: float | None = None
    error: str | None = None
    #: A disk fault whose part did not serve again by itself once space returned.
    restarted: bool = False
    #: A power cut: how many ledger entries had been acknowledged (listed by a bank)
    #: before it. Each must still be there at the end.
    acknowledged: int | None = None
    #: An operator action: the transfer it picked and what it answered.
    act: OperatorAct | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.fault.to_dict(),
            "injected": self.injected,
            "started_at": self.started_at,
            "error": self.error,
            "restarted": self.restarted,
            "acknowledged": self.acknowledged,
            "act": None if self.act is None else self.act.to_dict(),
        }


class Injector:
    """Runs faults; afterwards :meth:`recover` undoes every lasting effect."""

    def __init__(
        self,
        cluster: Cluster,
        *,
        log: Any = None,
        acknowledged: Callable[[], int] = lambda: 0,
        operator: Operator | None = None,
    ) -> None:
        """``acknowledged`` counts the ledger entries acknowledged so far (for power cuts);
        ``operator`` carries out the operator actions (without one they are skipped)."""
        self.cluster = cluster
        self.operator = operator
        self._acknowledged = acknowledged
        self.records: list[FaultRecord] = []
        self._locks = {name: asyncio.Lock() for name in cluster.processes}
        # One fault at a time per link, per disk and per clock.
        self._locks.update({f"link:{name}": asyncio.Lock() for name in cluster.proxies.proxies})
        self._locks.update({f"disk:{name}": asyncio.Lock() for name in cluster.disks})
        self._locks.update({f"clock:{name}": asyncio.Lock() for name in cluster.clocks})
        self._rules: dict[str, dict[int, dict[str, Any]]] = {SOURCE_BANK: {}, TARGET_BANK: {}}
        self._closed: set[str] = set()
        self._admin = {
            SOURCE_BANK: BankClient(
                cluster.source_url, token=cluster.config.bank_token, timeout=1.0, name="source"
            ),
            TARGET_BANK: BankClient(
                cluster.target_url, token=cluster.config.bank_token, timeout=1.0, name="target"
            ),
        }
        self._log = log or (lambda message: None)
        self._started = 0.0

    async def run(self, faults: tuple[Fault, ...]) -> None:
        """Start every fault at its offset; return when all have finished."""
        self._started = time.monotonic()
        tasks = []
        for fault in faults:
            delay = fault.at - (time.monotonic() - self._started)
            if delay > 0:
                await asyncio.sleep(delay)
            record = FaultRecord(fault)
            self.records.append(record)
            tasks.append(asyncio.create_task(self._carry_out(record)))
        await asyncio.gather(*tasks)

    def injected_by_kind(self) -> dict[str, int]:
        return dict(Counter(r.fault.kind for r in self.records if r.injected))

    def skipped_by_kind(self) -> dict[str, int]:
        return dict(Counter(r.fault.kind for r in self.records if not r.injected))

    async def _carry_out(self, record: FaultRecord) -> None:
        fault = record.fault
        record.started_at = round(time.monotonic() - self._started, 3)
        try:
            if fault.kind in _KILLS:
                await self._kill_and_restart(record)
            elif fault.kind == PAUSE:
                await self._pause(record)
            elif fault.kind in BANK_RULE_KINDS:
                await self._bank_rule(record)
            elif fault.kind == CLOSE_ACCOUNT:
                await self._close_account(record)
            elif fault.kind in LINK_KINDS:
                await self._cut_link(record)
            elif fault.kind in DISK_KINDS:
                await self._fill_disk(record)
            elif fault.kind in CLOCK_KINDS:
                await self._step_clock(record)
            elif fault.kind == POWER_CUT:
                await self._cut_power(record)
            elif fault.kind in OPERATOR_PICKS:
                await self._operate(record)
            else:
                raise ValueError(f"unknown fault kind {fault.kind!r}")
        except Exception as exc:
            record.error = f"{type(exc).__name__}: {exc}"
        if not record.injected:
            self._log(f"skipped {fault.describe()}: {record.error}")
        elif record.error:
            self._log(f"after {fault.describe()}: {record.error}")

    def _injected(self, record: FaultRecord) -> None:
        record.injected = True
        self._log(f"fault {record.fault.describe()}")

    async def _kill_and_restart(self, record: FaultRecord) -> None:
        fault = record.fault
        process = self.cluster.processes[fault.target]
        async with self._locks[fault.target]:
            if not process.running():
                record.error = "not running"
                return
            await asyncio.to_thread(process.kill)
            self._injected(record)
            await asyncio.sleep(fault.duration)
            await asyncio.to_thread(process.start)
            if fault.target in self._rules:
                # A restarted bank forgot its rules; the ones still in force come back.
                await self._push_rules(fault.target)

    async def _pause(self, record: FaultRecord) -> None:
        fault = record.fault
        process = self.cluster.processes[fault.target]
        async with self._locks[fault.target]:
            if not process.running():
                record.error = "not running"
                return
            process.signal(signal.SIGSTOP)
            self._injected(record)
            try:
                await asyncio.sleep(fault.duration)
            finally:
                process.signal(signal.SIGCONT)

    async def _bank_rule(self, record: FaultRecord) -> None:
        fault = record.fault
        rules = self._rules[fault.target]
        key = id(record)
        rules[key] = fault.bank_rule()
        try:
            async with self._locks[fault.target]:  # not while it is being killed or paused
                await self._push_rules(fault.target)
            self._injected(record)
            await asyncio.sleep(fault.duration)
        finally:
            rules.pop(key, None)
            # If this fails, recover() clears every bank's rules at the end anyway.
            with contextlib.suppress(BankError):
                await self._push_rules(fault.target)

    async def _push_rules(self, bank: str) -> None:
        rules = list(self._rules[bank].values())
        client = self._admin[bank]
        if rules:
            await _patiently(lambda: client.set_faults(rules))
        else:
            await _patiently(client.clear_faults)

    async def _close_account(self, record: FaultRecord) -> None:
        fault = record.fault
        client = self._admin[TARGET_BANK]
        self._closed.add(fault.target)
        async with self._locks[TARGET_BANK]:  # not while it is being killed or paused
            await _patiently(lambda: client.put_account(fault.target, "closed"))
        self._injected(record)
        await asyncio.sleep(fault.duration)
        try:
            await _patiently(lambda: client.put_account(fault.target, "open"))
        except BankError:
            return  # still closed: recover() reopens it
        self._closed.discard(fault.target)

    async def _cut_link(self, record: FaultRecord) -> None:
        fault = record.fault
        link = link_name(fault.target, LINK_KINDS[fault.kind].far)
        proxies = self.cluster.proxies
        async with self._locks[f"link:{link}"]:
            await asyncio.wrap_future(proxies.set_mode_soon(link, LINK_KINDS[fault.kind].mode))
            self._injected(record)
            try:
                await asyncio.sleep(fault.duration)
            finally:
                await asyncio.wrap_future(proxies.set_mode_soon(link, PASS))

    async def _fill_disk(self, record: FaultRecord) -> None:
        fault = record.fault
        disk = self.cluster.disks.get(fault.target)
        if disk is None:
            record.error = self.cluster.no_disks or f"no small disk for {fault.target}"
            return
        async with self._locks[f"disk:{fault.target}"]:
            try:
                await asyncio.to_thread(disk.fill)
                self._injected(record)
                await asyncio.sleep(fault.duration)
            finally:
                await asyncio.to_thread(disk.free)
        await self._unless_it_recovers(record)

    async def _unless_it_recovers(self, record: FaultRecord) -> None:
        """Give a part whose disk was full a while to serve again; else restart it.

        That is what a supervisor watching ``/health`` does with a part that
        does not come back by itself. Every part should (the banks probe their
        disk, the store retries its journal every ``WRITE_RETRY_INTERVAL``), so
        a restart here is a finding, and the record says so.
        """
        target = record.fault.target
        process = self.cluster.processes[target]
        url = getattr(process, "health_url", None)
        if url is None:
            return
        deadline = time.monotonic() + _RECOVERY_GRACE_S
        while time.monotonic() < deadline:
            if not process.running() or await asyncio.to_thread(is_healthy, url):
                return
            await asyncio.sleep(0.1)
        async with self._locks[target]:
            if not process.running() or await asyncio.to_thread(is_healthy, url):
                return
            record.restarted = True
            record.error = (
                f"{target} still unhealthy {_RECOVERY_GRACE_S:g}s after space returned: restarted"
            )
            await asyncio.to_thread(process.kill)
            await asyncio.to_thread(process.start)

    async def _step_clock(self, record: FaultRecord) -> None:
        fault = record.fault
        clock = self.cluster.clocks.get(fault.target)
        if clock is None:
            record.error = self.cluster.no_clocks or f"no stepped clock for {fault.target}"
            return
        async with self._locks[f"clock:{fault.target}"]:
            clock.step(fault.clock_step)
            self._injected(record)
            try:
                await asyncio.sleep(fault.duration)
            finally:
                clock.reset()

    async def _cut_power(self, record: FaultRecord) -> None:
        if not self.cluster.power:
            record.error = self.cluster.no_power_cuts or "no power-cut filesystem"
            return
        async with contextlib.AsyncExitStack() as every_process:
            # In one order, so two cuts cannot each hold half of the locks.
            for name in sorted(self.cluster.processes):
                await every_process.enter_async_context(self._locks[name])
            record.acknowledged = self._acknowledged()
            await asyncio.to_thread(self.cluster.cut_power)
            self._injected(record)
            await asyncio.sleep(record.fault.duration)
            await asyncio.to_thread(self.cluster.ensure_running)
            for bank in self._rules:
                await self._push_rules(bank)

    async def _operate(self, record: FaultRecord) -> None:
        if self.operator is None:
            record.error = "no operator: the campaign runs no client to send commands from"
            return
        number = next(i for i, r in enumerate(self.records) if r is record)
        try:
            record.act = await self.operator.act(
                record.fault, number, sent=lambda: self._injected(record)
            )
        except LookupError as exc:  # nothing fitting turned up: nothing was sent
            record.error = str(exc)
            return
        if record.act.done is None:
            record.error = f"no answer in {record.act.attempts} attempts: its effect is unknown"

    async def recover(self) -> None:
        """The faults are over: links heal, disks have room, clocks are right, every process
        runs, no rule, no closed account."""
        await asyncio.to_thread(self.cluster.proxies.heal_all)
        for disk in self.cluster.disks.values():
            await asyncio.to_thread(disk.free)
        for clock in self.cluster.clocks.values():
            clock.reset()
        await asyncio.to_thread(self.cluster.ensure_running)
        for bank, client in self._admin.items():
            self._rules[bank].clear()
            await _patiently(client.clear_faults, patience=30.0)
        target = self._admin[TARGET_BANK]
        for account_id in sorted(self._closed):
            await _patiently(partial(target.put_account, account_id, "open"), patience=30.0)
        self._closed.clear()

    async def aclose(self) -> None:
        for client in self._admin.values():
            await client.aclose()


async def _patiently[T](
    call: Callable[[], Awaitable[T]], *, patience: float = _ADMIN_PATIENCE_S
) -> T:
    """Retry an admin call while the bank is unreachable (killed or paused), for a while."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return await call()
        except BankError:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.2)
