"""The operator as a fault: ``cancel`` and ``retry`` sent to transfers while everything else fails.

An operator's cancel (:func:`orchestrator.operations.cancel_transfer`) races the
saga for the transfer's op ids at the banks, and a retry
(:func:`orchestrator.operations.retry_transfer`) settles the timer a saga sleeps
on, so the next attempt of its fence or reversal runs at once: both are
commands to the system rather than failures of it, and both must keep every
invariant whatever else is failing meanwhile. The campaign carries them out
like its other faults, at their planned offsets, and
:func:`chaos.checks.check_operator_actions` judges what they said against how
each transfer ended.

Which transfer an action picks depends on the moment it strikes (as the
interleaving does): among those that fit its plan's ``target``
(:data:`chaos.schedule.OPERATOR_PICKS`), the ``pick``-th, modulo their number:

- ``in_flight``: the client has sent its start (the store may or may not have
  acknowledged it yet: a store that is down holds starts back) and has no result;
- ``next_to_start``: one of the next transfers the client has not started: a
  cancel then leaves a tombstone (the debit's op id voided before any debit),
  or races the start;
- ``waiting``: in flight and sleeping on a timer between two attempts (read
  from the store, :func:`orchestrator.transfers.transfer_record`); if none is
  found within the fault's duration, any one in flight (looked for as long again).

The operator reaches the store through the campaign client's own link (its
faults apply) and the banks directly, as the injector's admin calls do. An
attempt that gets no answer (the store or a bank is down, paused or cut) is
repeated, with the same note: a cancel voids the same op ids with the same
note, so a repeat answers what the first did, or finds the transfer finished.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from resonate.resonate import Resonate

from chaos.checks import OperatorAct
from chaos.schedule import CANCEL, IN_FLIGHT, NEXT_TO_START, RETRY, WAITING, Fault
from chaos.workload import TransferRun, Workload
from orchestrator import operations, operator_log, transfers
from orchestrator.bank_client import BankClient

#: Who the campaign's actions are by (the bank keeps it with a cancel's void).
OPERATOR = "chaos-campaign"
#: One attempt of an action may take this long before its answer counts as lost.
_ATTEMPT_TIMEOUT_S = 10.0
#: Attempts are repeated for this long after the first (then the answer stays lost).
_PATIENCE_S = 30.0
_REPEAT_PAUSE_S = 0.5
#: How often an action looks again for a transfer that fits, and how long one read may take.
_LOOK_EVERY_S = 0.25
_READ_TIMEOUT_S = 3.0
#: A bank call of the operator's gives up after this long (the attempt is then repeated).
_BANK_TIMEOUT_S = 2.0

Log = Callable[[str], None]


class Operator:
    """Carries out ``cancel`` and ``retry`` faults against the workload's transfers."""

    def __init__(
        self,
        resonate: Resonate,
        workload: Workload,
        *,
        source_url: str,
        target_url: str,
        token: str,
        campaign: str,
        log: Log = lambda message: None,
    ) -> None:
        """``campaign`` names the campaign in every cancel's reason (``chaos campaign seed 7``)."""
        self.resonate = resonate
        self.workload = workload
        self.campaign = campaign
        self.source = BankClient(source_url, token=token, timeout=_BANK_TIMEOUT_S, name="source")
        self.target = BankClient(target_url, token=token, timeout=_BANK_TIMEOUT_S, name="target")
        self._log = log

    async def act(self, fault: Fault, number: int, *, sent: Callable[[], None]) -> OperatorAct:
        """Carry out ``fault`` (the ``number``-th of the schedule); ``sent`` once it is sent.

        Raises :class:`LookupError` when no transfer fitting the plan turned up
        within the fault's duration (nothing was sent).
        """
        run = await self._pick(fault)
        tid = run.planned.transfer_id
        started_before, finished_before = run.started_at is not None, run.result is not None
        call: Callable[[], Awaitable[operations.Done]]
        reason: str | None = None
        if fault.kind == CANCEL:
            reason = note = f"{self.campaign}: fault {number} cancels {tid}"
            call = partial(
                operations.cancel_transfer,
                self.resonate,
                self.source,
                self.target,
                tid,
                by=OPERATOR,
                reason=note,
            )
        elif fault.kind == RETRY:
            call = partial(operations.retry_transfer, self.resonate, tid, by=OPERATOR)
        else:
            raise ValueError(f"a {fault.kind} fault is no operator action")
        sent()
        sent_at = round(time.monotonic() - self.workload.clock_zero, 3)
        done, attempts, lost = await _repeated(call)
        self._log(
            f"{fault.kind} {tid} ({fault.target}): "
            + (f"{done.outcome}: {done.message}" if done else f"no answer in {attempts} attempts")
            + (f" [record not kept: {done.record_error}]" if done and done.record_error else "")
        )
        return OperatorAct(
            kind=fault.kind,
            transfer_id=tid,
            by=OPERATOR,
            reason=reason,
            done=None if done is None else done.to_json(),
            attempts=attempts,
            lost=lost,
            started_before=started_before,
            finished_before=finished_before,
            sent_at=sent_at,
        )

    async def _pick(self, fault: Fault) -> TransferRun:
        """The transfer ``fault`` acts on, looked for until its duration runs out.

        A ``waiting`` pick looks for a sleeping transfer for the fault's
        duration, then for any in flight for as long again.
        """
        started = time.monotonic()
        patience = fault.duration * (2 if fault.target == WAITING else 1)
        while True:
            looked_for = fault.target
            if fault.target == WAITING and time.monotonic() - started >= fault.duration:
                looked_for = IN_FLIGHT
            candidates = await self._candidates(looked_for)
            if candidates:
                return candidates[fault.pick % len(candidates)]
            if time.monotonic() - started >= patience:
                which = "waiting or in flight" if fault.target == WAITING else fault.target
                raise LookupError(f"no transfer {which.replace('_', ' ')} to {fault.kind}")
            await asyncio.sleep(_LOOK_EVERY_S)

    async def _candidates(self, target: str) -> list[TransferRun]:
        runs = list(self.workload.runs.values())
        in_flight = [r for r in runs if r.start_attempts and r.result is None and r.error is None]
        if target == IN_FLIGHT:
            return in_flight
        if target == NEXT_TO_START:
            unstarted = [r for r in runs if r.start_attempts == 0]
            return unstarted[: self.workload.concurrency]
        if target == WAITING:
            return [r for r in in_flight if await self._sleeping(r.planned.transfer_id)]
        raise ValueError(f"no transfer can be picked as {target!r}")

    async def _sleeping(self, transfer_id: str) -> bool:
        """Whether the transfer sleeps on a timer between two attempts now (a read of the store)."""
        try:
            record = await asyncio.wait_for(
                transfers.transfer_record(self.resonate, transfer_id), _READ_TIMEOUT_S
            )
        except Exception:  # the store is down or cut: not known to be waiting
            return False
        if record is None or record["state"] != "pending":
            return False
        return any(step["timer"] and step["state"] == "pending" for step in record["steps"])

    async def read_records(self, transfer_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The operator records the store keeps for each of ``transfer_ids``, as JSON.

        Raises what the store raised (a store without ``promise.search`` among it).
        """
        kept: dict[str, list[dict[str, Any]]] = {}
        for tid in sorted(set(transfer_ids)):
            found = await asyncio.wait_for(
                operator_log.actions_on(self.resonate, tid), _ATTEMPT_TIMEOUT_S
            )
            kept[tid] = [entry.to_json() for entry in found]
        return kept

    async def aclose(self) -> None:
        await self.source.aclose()
        await self.target.aclose()


async def _repeated(
    call: Callable[[], Awaitable[operations.Done]],
) -> tuple[operations.Done | None, int, int]:
    """``call``'s answer, repeated while none comes: (answer or None, attempts, answers lost)."""
    deadline = time.monotonic() + _PATIENCE_S
    attempts = lost = 0
    while True:
        attempts += 1
        try:
            return await asyncio.wait_for(call(), _ATTEMPT_TIMEOUT_S), attempts, lost
        except Exception:  # no answer: the store or a bank failed mid-way
            lost += 1
        if time.monotonic() >= deadline:
            return None, attempts, lost
        await asyncio.sleep(_REPEAT_PAUSE_S)
