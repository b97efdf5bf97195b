"""Banks whose answers are scripted, and the real saga over the embedded store with them.

For the in-process saga tests: the saga, the SDK and the promise store are
the real ones (a real SQLite file); only the bank clients are stand-ins, and
they record every call they get.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, cast

from resonate.resonate import Resonate

from orchestrator.bank_client import (
    BankClient,
    BankUnavailable,
    EntryKind,
    EntryOutcome,
    VoidOutcome,
)
from orchestrator.saga import SAGA_NAME, SagaDeps
from orchestrator.saga_versions import SAGAS
from orchestrator.settings import Settings
from promise_store.embedded import EmbeddedStore

#: Three tries per bounded step, no waiting between them: a saga runs in milliseconds.
FAST_SETTINGS = Settings(step_attempts=3, step_backoff=0, step_backoff_max=0, lease_ttl=30.0)

#: One scripted answer to ``POST /entries``: applied, a rejection's code, or no answer.
Post = Literal["applied", "unknown"] | tuple[Literal["rejected"], str]
#: What the void fence finds.
Fence = Literal["applied", "voided"]
#: One scripted answer to ``POST /entries/{op_id}/void``: what the fence finds, or no answer.
Void = Fence | Literal["unknown"]


@dataclass
class ScriptedBank:
    """A bank whose answers are a script per entry kind; it records every call it gets.

    The last answer of a script repeats once the script runs out. A void of a
    kind with a script in ``voids`` answers from it ("unknown" raises
    :class:`BankUnavailable`, as a bank that did not answer); otherwise it
    finds what ``fences`` says (default: voided).
    """

    posts: dict[EntryKind, list[Post]] = field(default_factory=dict)
    fences: dict[EntryKind, Fence] = field(default_factory=dict)
    voids: dict[EntryKind, list[Void]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    async def post_entry(
        self, op_id: str, account_id: str, amount: int, kind: EntryKind
    ) -> EntryOutcome:
        self.calls.append(f"post {op_id}")
        script = self.posts.get(kind) or ["applied"]
        answer = script.pop(0) if len(script) > 1 else script[0]
        if answer == "unknown":
            raise BankUnavailable(f"scripted: no answer to {op_id}")
        if answer == "applied":
            return EntryOutcome("applied", entry=_entry(op_id, account_id, amount, kind))
        return EntryOutcome("rejected", code=answer[1], message=f"scripted {answer[1]}")

    async def void(self, op_id: str) -> VoidOutcome:
        self.calls.append(f"void {op_id}")
        kind = cast(EntryKind, op_id.rsplit("-", 1)[1])
        script: list[Void] = self.voids.get(kind) or [self.fences.get(kind, "voided")]
        answer = script.pop(0) if len(script) > 1 else script[0]
        if answer == "unknown":
            raise BankUnavailable(f"scripted: no answer to the void of {op_id}")
        if answer == "applied":
            return VoidOutcome("applied", entry=_entry(op_id, "?", 0, kind))
        return VoidOutcome("voided")


def _entry(op_id: str, account_id: str, amount: int, kind: EntryKind) -> dict[str, Any]:
    return {"op_id": op_id, "account_id": account_id, "amount": amount, "kind": kind}


@asynccontextmanager
async def saga_runtime(
    store_path: Path, source: ScriptedBank, target: ScriptedBank, settings: Settings
) -> AsyncIterator[Resonate]:
    """A Resonate over the embedded store at ``store_path`` that runs the saga with these banks."""
    pid = uuid.uuid4().hex
    store = EmbeddedStore(store_path, pid=pid, group="saga-table")
    resonate = Resonate(network=store, pid=pid, group="saga-table", ttl=timedelta(seconds=30))
    for version, body in SAGAS.items():
        resonate.register(body, name=SAGA_NAME, version=version)
    resonate.with_dependency(
        SagaDeps(
            source=cast(BankClient, source), target=cast(BankClient, target), settings=settings
        )
    )
    try:
        yield resonate
    finally:
        await resonate.stop()
