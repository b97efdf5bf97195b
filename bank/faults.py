"""Fault injection: rules that slow, fail, drop or park ledger requests on purpose.

Tests and demos need the awkward cases on demand: a 5xx before anything was
written, a 5xx or a dropped connection *after* the write committed (the caller
cannot know whether it happened), and a hold that parks a request at an exact
point so another process can be killed there instead of sleeping and hoping.

The matching is pure (:func:`plan_stage`); :class:`FaultInjector` adds the
lock, the sleeping and the parking.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from bank.validation import (
    ENTRY_KINDS,
    InvalidRequest,
    check_choice,
    check_fields,
    check_id,
    check_int,
)

Action = Literal["latency", "fail_before", "fail_after", "drop_after", "hold_before", "hold_after"]
Stage = Literal["before", "after"]
Outcome = Literal["fail", "drop"]

ACTIONS: tuple[Action, ...] = (
    "latency",
    "fail_before",
    "fail_after",
    "drop_after",
    "hold_before",
    "hold_after",
)
#: Which stage of a request each action belongs to: before or after the ledger write.
STAGE_OF: dict[Action, Stage] = {
    "latency": "before",
    "fail_before": "before",
    "hold_before": "before",
    "fail_after": "after",
    "drop_after": "after",
    "hold_after": "after",
}
#: A parked request continues on its own after this long, so nothing hangs forever.
HOLD_TIMEOUT_S = 120.0
MAX_LATENCY_MS = 600_000
MAX_RULES = 100


@dataclass(frozen=True)
class Target:
    """What a rule is matched against: an entry (``kind`` set) or a void (``kind`` None)."""

    op_id: str
    kind: str | None


@dataclass
class FaultRule:
    action: Action
    kind: str | None = None
    op_id: str | None = None
    latency_ms: int | None = None
    times: int | None = None
    hits: int = 0

    def matches(self, target: Target) -> bool:
        """Entries match on kind and op id; a void matches only rules without a kind."""
        if self.times is not None and self.hits >= self.times:
            return False
        if self.op_id is not None and self.op_id != target.op_id:
            return False
        return self.kind is None or self.kind == target.kind

    def to_json(self) -> dict[str, object]:
        return {
            "action": self.action,
            "kind": self.kind,
            "op_id": self.op_id,
            "latency_ms": self.latency_ms,
            "times": self.times,
            "hits": self.hits,
        }


@dataclass(frozen=True)
class Plan:
    """What to do to one request at one stage."""

    latency_ms: int = 0
    hold: bool = False
    outcome: Outcome | None = None


def plan_stage(rules: Iterable[FaultRule], target: Target, stage: Stage) -> Plan:
    """Fire every matching rule of ``stage`` (counting its hit) and combine them.

    Latencies add up; any hold parks the request; the first fail/drop rule in
    list order decides the answer.
    """
    latency, hold = 0, False
    outcome: Outcome | None = None
    for rule in rules:
        if STAGE_OF[rule.action] != stage or not rule.matches(target):
            continue
        rule.hits += 1
        if rule.action == "latency":
            latency += rule.latency_ms or 0
        elif rule.action in ("hold_before", "hold_after"):
            hold = True
        elif outcome is None:
            outcome = "drop" if rule.action == "drop_after" else "fail"
    return Plan(latency_ms=latency, hold=hold, outcome=outcome)


def parse_rule(value: object, where: str = "rule") -> FaultRule:
    """One rule from JSON, with errors naming the offending field."""
    if not isinstance(value, Mapping):
        raise InvalidRequest(where, "must be an object")
    check_fields(value, required=("action",), optional=("kind", "op_id", "latency_ms", "times"))
    action = check_choice(f"{where}.action", value["action"], ACTIONS)
    kind = value.get("kind")
    op_id = value.get("op_id")
    latency = value.get("latency_ms")
    times = value.get("times")
    if action == "latency" and latency is None:
        raise InvalidRequest(f"{where}.latency_ms", "is required for a latency rule")
    return FaultRule(
        action=action,
        kind=None if kind is None else check_choice(f"{where}.kind", kind, ENTRY_KINDS),
        op_id=None if op_id is None else check_id(f"{where}.op_id", op_id),
        latency_ms=None
        if latency is None
        else check_int(f"{where}.latency_ms", latency, low=0, high=MAX_LATENCY_MS),
        times=None if times is None else check_int(f"{where}.times", times, low=1, high=10**9),
    )


def parse_rules(value: object) -> list[FaultRule]:
    """A JSON list of rules (the body's ``faults`` field, or ``BANK_FAULTS``)."""
    if not isinstance(value, list):
        raise InvalidRequest("faults", "must be a list of rules")
    if len(value) > MAX_RULES:
        raise InvalidRequest("faults", f"must have at most {MAX_RULES} rules")
    return [parse_rule(item, f"faults[{index}]") for index, item in enumerate(value)]


@dataclass(eq=False)
class _Hold:
    target: Target
    stage: Stage
    since: str
    released: threading.Event = field(default_factory=threading.Event)

    def to_json(self) -> dict[str, object]:
        return {
            "op_id": self.target.op_id,
            "kind": self.target.kind or "void",
            "stage": self.stage,
            "since": self.since,
        }


class FaultInjector:
    """The live rules of one bank, shared by its request threads."""

    def __init__(
        self, rules: Iterable[FaultRule] = (), *, hold_timeout: float = HOLD_TIMEOUT_S
    ) -> None:
        self._lock = threading.Lock()
        self._rules = list(rules)
        self._holds: list[_Hold] = []
        self._hold_timeout = hold_timeout
        self._closed = False

    def rules(self) -> list[dict[str, object]]:
        with self._lock:
            return [rule.to_json() for rule in self._rules]

    def replace(self, rules: Iterable[FaultRule]) -> list[dict[str, object]]:
        with self._lock:
            self._rules = list(rules)
            return [rule.to_json() for rule in self._rules]

    def clear(self) -> None:
        """Forget every rule and let every parked request go on."""
        with self._lock:
            self._rules = []
        self.release(None)

    def held(self) -> list[dict[str, object]]:
        with self._lock:
            return [hold.to_json() for hold in self._holds]

    def release(self, op_id: str | None) -> int:
        """Release parked requests for ``op_id`` (all of them when None); how many were."""
        with self._lock:
            chosen = [h for h in self._holds if op_id is None or h.target.op_id == op_id]
            self._holds = [h for h in self._holds if h not in chosen]
        for hold in chosen:
            hold.released.set()
        return len(chosen)

    def close(self) -> None:
        """On shutdown: release everything and park nothing new."""
        with self._lock:
            self._closed = True
        self.release(None)

    def before(self, target: Target) -> Outcome | None:
        """Run the before-write stage: sleep, park, then maybe ``"fail"``."""
        return self._run(target, "before")

    def after(self, target: Target) -> Outcome | None:
        """Run the after-commit stage: park, then maybe ``"fail"`` or ``"drop"``."""
        return self._run(target, "after")

    def _run(self, target: Target, stage: Stage) -> Outcome | None:
        with self._lock:
            if not self._rules:
                return None
            plan = plan_stage(self._rules, target, stage)
        if plan.latency_ms:
            time.sleep(plan.latency_ms / 1000)
        if plan.hold:
            self._park(_Hold(target, stage, _now()))
        return plan.outcome

    def _park(self, hold: _Hold) -> None:
        """Wait until released (or the hold times out); listed in :meth:`held` meanwhile."""
        with self._lock:
            if self._closed:
                return
            self._holds.append(hold)
        if not hold.released.wait(self._hold_timeout):
            with self._lock:
                if hold in self._holds:
                    self._holds.remove(hold)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
