"""The operator record: every action an operator takes on a transfer, kept in the promise store.

``crossbank cancel`` and ``crossbank retry``, and the console's cancel,
retry, kill and hold, each leave one record: what was done, to which
transfer, by whom (``CROSSBANK_OPERATOR`` or ``--by``), when, why, and what
came of it. A record is a promise of its own, created and resolved at once,
in whatever keeps the transfers (the served store, Resonate on Postgres or
the embedded store), so it is as durable as the transfers are and is found
with the store's own search (``crossbank:operator`` and
``crossbank:transfer`` tags), never by a scan of its own.

A record is written after the action it records: an action whose record
could not be written still happened (the bank decided it) and the command
says so, but a record never claims an action that did not happen.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

from resonate.resonate import Resonate
from resonate.types import PromiseRecord, Value

Action = Literal["cancel", "retry", "kill", "hold", "release"]
ACTIONS: frozenset[str] = frozenset(get_args(Action))

#: Tags every record carries: what it is, the action, and the transfer it acts on.
RECORD_TAG = ("crossbank:record", "operator-action")
ACTION_TAG = "crossbank:operator"
TRANSFER_TAG = "crossbank:transfer"

#: A record's promise never times out in practice (it is resolved at once).
_NEVER_MS = 2**62
#: Promises asked of the store per page while reading records back.
_PAGE = 200


@dataclass(frozen=True)
class OperatorAction:
    """One operator action: ``outcome`` says what came of it, in words."""

    action: Action
    transfer_id: str
    by: str
    at: float
    reason: str | None
    outcome: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: Any) -> OperatorAction | None:
        """A record read back; None for anything that is not one (a record is never trusted blindly)."""
        if not isinstance(value, dict) or value.get("action") not in ACTIONS:
            return None
        try:
            return cls(
                action=value["action"],
                transfer_id=str(value["transfer_id"]),
                by=str(value["by"]),
                at=float(value["at"]),
                reason=value.get("reason") if isinstance(value.get("reason"), str) else None,
                outcome=str(value["outcome"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


def now_action(
    action: Action, transfer_id: str, *, by: str, reason: str | None, outcome: str
) -> OperatorAction:
    """An action taken now."""
    return OperatorAction(action, transfer_id, by, time.time(), reason, outcome)


async def record(resonate: Resonate, entry: OperatorAction) -> None:
    """Keep ``entry`` durably: its promise is created and resolved before this returns."""
    promise_id = f"operator-{entry.action}-{uuid.uuid4().hex}"
    data = entry.to_json()
    tags = dict([RECORD_TAG]) | {ACTION_TAG: entry.action, TRANSFER_TAG: entry.transfer_id}
    await resonate.promises.create(promise_id, _NEVER_MS, Value(headers=None, data=data), tags)
    await resonate.promises.resolve(promise_id, Value(headers=None, data=data))


async def actions_on(resonate: Resonate, transfer_id: str) -> list[OperatorAction]:
    """Every recorded action on ``transfer_id``, oldest first."""
    found = [a async for a in _search(resonate, {TRANSFER_TAG: transfer_id})]
    return sorted(found, key=lambda a: a.at)


async def all_actions(resonate: Resonate, *, limit: int) -> list[OperatorAction]:
    """The newest ``limit`` recorded actions, whatever they acted on, newest first."""
    found: list[OperatorAction] = []
    async for entry in _search(resonate, dict([RECORD_TAG])):
        found.append(entry)
        if len(found) >= limit:
            break
    return found


async def _search(resonate: Resonate, tags: dict[str, str]) -> AsyncIterator[OperatorAction]:
    cursor: str | None = None
    while True:
        page = await resonate.promises.search("resolved", tags, _PAGE, cursor)
        for promise in page.promises:
            entry = _parse(promise)
            if entry is not None:
                yield entry
        cursor = page.cursor
        if cursor is None:
            return


def _parse(promise: PromiseRecord) -> OperatorAction | None:
    return OperatorAction.from_json(promise.value.data)
