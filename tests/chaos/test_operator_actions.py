"""How the campaign's operator picks a transfer and keeps at an action whose answer is lost.

No processes: the workload's view of its transfers is set by hand, and the
operations are stand-ins, so only the campaign's side is tested here (the
operations themselves are tested with the orchestrator; the whole on real
processes in test_operator_campaign.py).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from chaos import operator_actions
from chaos.operator_actions import OPERATOR, Operator
from chaos.schedule import CANCEL, IN_FLIGHT, NEXT_TO_START, RETRY, WAITING, Fault, PlannedTransfer
from chaos.workload import Workload
from orchestrator import operations
from orchestrator.operations import Done

PLANNED = tuple(PlannedTransfer(f"t-{i}", "src-1", "dst-1", 100) for i in range(6))


def operator(concurrency: int = 2) -> Operator:
    workload = Workload(cast(Any, None), cast(Any, None), PLANNED, concurrency=concurrency)
    runs = list(workload.runs.values())
    runs[0].start_attempts, runs[0].started_at, runs[0].result = 1, 0.1, {"status": "committed"}
    runs[1].start_attempts, runs[1].started_at = 1, 0.2  # in flight
    runs[2].start_attempts, runs[2].started_at = 1, 0.3  # in flight
    runs[3].start_attempts = 1  # its start is being sent
    return Operator(
        cast(Any, None),
        workload,
        source_url="http://127.0.0.1:1",
        target_url="http://127.0.0.1:2",
        token="t",
        campaign="chaos campaign seed 1",
    )


def fault(kind: str, target: str, pick: int, duration: float = 0.05) -> Fault:
    return Fault(1.0, kind, target, duration, pick=pick)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def done(transfer_id: str, outcome: str, took_effect: bool) -> Done:
    return Done(transfer_id, outcome, "", took_effect)


def test_a_cancel_picks_among_the_transfers_in_flight_or_the_next_to_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[tuple[str, str, str]] = []

    async def cancel(*args: Any, by: str, reason: str) -> Done:
        asked.append((args[3], by, reason))
        return done(args[3], "cancelled_before_debit", True)

    monkeypatch.setattr(operations, "cancel_transfer", cancel)
    ops = operator()
    sent: list[bool] = []
    in_flight = run(ops.act(fault(CANCEL, IN_FLIGHT, pick=4), 7, sent=lambda: sent.append(True)))
    assert in_flight.transfer_id == "t-2"  # t-1, t-2, t-3 are in flight; 4 % 3 == 1
    assert (in_flight.started_before, in_flight.finished_before) == (True, False)
    sending = run(ops.act(fault(CANCEL, IN_FLIGHT, pick=2), 9, sent=lambda: None))
    assert sending.transfer_id == "t-3"  # its start is sent, not yet acknowledged
    assert sending.started_before is False
    assert asked[0] == ("t-2", OPERATOR, "chaos campaign seed 1: fault 7 cancels t-2")
    assert in_flight.reason == asked[0][2]
    assert in_flight.took_effect
    assert (in_flight.lost, sent) == (0, [True])
    # Not started yet: t-4 and t-5 (concurrency 2), never the one being started.
    ahead = run(ops.act(fault(CANCEL, NEXT_TO_START, pick=4), 8, sent=lambda: None))
    assert ahead.transfer_id == "t-4"
    assert ahead.started_before is False


def test_an_action_with_nothing_to_pick_sends_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    ops = operator()
    for run_ in ops.workload.runs.values():
        run_.result, run_.start_attempts = {"status": "committed"}, 1
    sent: list[bool] = []
    for kind, target in ((CANCEL, IN_FLIGHT), (CANCEL, NEXT_TO_START), (RETRY, IN_FLIGHT)):
        with pytest.raises(LookupError, match="no transfer"):
            run(ops.act(fault(kind, target, pick=0), 1, sent=lambda: sent.append(True)))
    assert sent == []


def test_a_retry_prefers_a_sleeping_transfer_then_any_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    retried: list[str] = []

    async def retry(resonate: Any, transfer_id: str, *, by: str) -> Done:
        retried.append(transfer_id)
        return done(transfer_id, "retrying", True)

    sleeping = {"t-2"}

    async def is_sleeping(self: Operator, transfer_id: str) -> bool:
        return transfer_id in sleeping

    monkeypatch.setattr(operations, "retry_transfer", retry)
    monkeypatch.setattr(Operator, "_sleeping", is_sleeping)
    ops = operator()
    act = run(ops.act(fault(RETRY, WAITING, pick=0), 2, sent=lambda: None))
    assert (act.transfer_id, act.reason, act.took_effect) == ("t-2", None, True)
    sleeping.clear()  # nothing sleeps: after the fault's duration, any in flight
    act = run(ops.act(fault(RETRY, WAITING, pick=0), 3, sent=lambda: None))
    assert act.transfer_id == "t-1"
    assert retried == ["t-2", "t-1"]


def test_an_attempt_whose_answer_is_lost_is_repeated_and_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failures = [ConnectionError("store down"), TimeoutError()]

    async def cancel(*args: Any, by: str, reason: str) -> Done:
        if failures:
            raise failures.pop(0)
        return done(args[3], "cancelled_after_debit", True)

    monkeypatch.setattr(operations, "cancel_transfer", cancel)
    monkeypatch.setattr(operator_actions, "_REPEAT_PAUSE_S", 0.0)
    act = run(operator().act(fault(CANCEL, IN_FLIGHT, pick=0), 1, sent=lambda: None))
    assert (act.attempts, act.lost, act.outcome) == (3, 2, "cancelled_after_debit")

    async def never(*args: Any, by: str, reason: str) -> Done:
        raise ConnectionError("store down")

    monkeypatch.setattr(operations, "cancel_transfer", never)
    monkeypatch.setattr(operator_actions, "_PATIENCE_S", 0.0)
    act = run(operator().act(fault(CANCEL, IN_FLIGHT, pick=0), 1, sent=lambda: None))
    assert act.done is None
    assert act.lost == act.attempts == 1
    assert act.may_have_cancelled()  # its effect is unknown
