"""The saga's decisions, in process: every combination of step outcomes, in milliseconds.

The real saga runs on the real SDK over the embedded promise store (a real
SQLite file); only the banks are scripted. Each row says what each bank call
answers and asserts the transfer's status and reason and the exact calls each
bank saw, in order -- so a change to ``orchestrator/saga.py`` that moves money
differently, retries what it must not, or skips a fence fails here first.
The cluster tests break the same paths with real banks and real kills.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, cast

import pytest
from resonate.resonate import Resonate

from orchestrator.bank_client import (
    BankClient,
    BankUnavailable,
    EntryKind,
    EntryOutcome,
    VoidOutcome,
)
from orchestrator.saga import SAGA_NAME, SagaDeps, transfer
from orchestrator.settings import Settings
from promise_store.embedded import EmbeddedStore

pytestmark = pytest.mark.anyio

#: One scripted answer to ``POST /entries``: applied, a rejection's code, or no answer.
Post = Literal["applied", "unknown"] | tuple[Literal["rejected"], str]
#: What the void fence finds.
Fence = Literal["applied", "voided"]

#: Three tries per bounded step, no waiting between them: the table runs in seconds.
SETTINGS = Settings(step_attempts=3, step_backoff=0, step_backoff_max=0, lease_ttl=30.0)
UNKNOWN_UNTIL_FENCED: list[Post] = ["unknown"] * SETTINGS.step_attempts


@dataclass
class ScriptedBank:
    """A bank whose answers are a script per entry kind; it records every call it gets.

    The last answer of a script repeats once the script runs out.
    """

    posts: dict[EntryKind, list[Post]] = field(default_factory=dict)
    fences: dict[EntryKind, Fence] = field(default_factory=dict)
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
        if self.fences.get(kind, "voided") == "applied":
            return VoidOutcome("applied", entry=_entry(op_id, "?", 0, kind))
        return VoidOutcome("voided")


def _entry(op_id: str, account_id: str, amount: int, kind: EntryKind) -> dict[str, Any]:
    return {"op_id": op_id, "account_id": account_id, "amount": amount, "kind": kind}


@dataclass(frozen=True)
class Row:
    name: str
    source: ScriptedBank
    target: ScriptedBank
    status: str
    reason: str | None
    source_calls: list[str]
    target_calls: list[str]


def posts(kind: EntryKind, times: int = 1) -> list[str]:
    return [f"post t-{kind}"] * times


def void(kind: EntryKind) -> list[str]:
    return [f"void t-{kind}"]


N = SETTINGS.step_attempts
TABLE = [
    Row(
        "debit and credit applied",
        ScriptedBank(),
        ScriptedBank(),
        "committed",
        None,
        posts("debit"),
        posts("credit"),
    ),
    Row(
        "debit rejected: fenced, nothing else",
        ScriptedBank(posts={"debit": [("rejected", "insufficient_funds")]}),
        ScriptedBank(),
        "failed",
        "insufficient_funds",
        posts("debit") + void("debit"),
        [],
    ),
    Row(
        "debit rejected, but the fence finds an earlier attempt applied",
        ScriptedBank(
            posts={"debit": [("rejected", "account_closed")]}, fences={"debit": "applied"}
        ),
        ScriptedBank(),
        "committed",
        None,
        posts("debit") + void("debit"),
        posts("credit"),
    ),
    Row(
        "debit unknown once, then applied on retry",
        ScriptedBank(posts={"debit": ["unknown", "applied"]}),
        ScriptedBank(),
        "committed",
        None,
        posts("debit", 2),
        posts("credit"),
    ),
    Row(
        "debit unknown until retries run out, fence voids it",
        ScriptedBank(posts={"debit": list(UNKNOWN_UNTIL_FENCED)}),
        ScriptedBank(),
        "failed",
        "debit_voided_after_timeouts",
        posts("debit", N) + void("debit"),
        [],
    ),
    Row(
        "debit unknown until retries run out, fence finds it applied",
        ScriptedBank(posts={"debit": list(UNKNOWN_UNTIL_FENCED)}, fences={"debit": "applied"}),
        ScriptedBank(),
        "committed",
        None,
        posts("debit", N) + void("debit"),
        posts("credit"),
    ),
    Row(
        "credit rejected: fenced, debit reversed",
        ScriptedBank(),
        ScriptedBank(posts={"credit": [("rejected", "account_closed")]}),
        "compensated",
        "account_closed",
        posts("debit") + posts("reversal"),
        posts("credit") + void("credit"),
    ),
    Row(
        "credit rejected, but the fence finds it applied",
        ScriptedBank(),
        ScriptedBank(
            posts={"credit": [("rejected", "unknown_account")]}, fences={"credit": "applied"}
        ),
        "committed",
        None,
        posts("debit"),
        posts("credit") + void("credit"),
    ),
    Row(
        "credit unknown until retries run out, fence voids it: reversed",
        ScriptedBank(),
        ScriptedBank(posts={"credit": list(UNKNOWN_UNTIL_FENCED)}),
        "compensated",
        "credit_voided_after_timeouts",
        posts("debit") + posts("reversal"),
        posts("credit", N) + void("credit"),
    ),
    Row(
        "credit unknown until retries run out, fence finds it applied: never reversed",
        ScriptedBank(),
        ScriptedBank(posts={"credit": list(UNKNOWN_UNTIL_FENCED)}, fences={"credit": "applied"}),
        "committed",
        None,
        posts("debit"),
        posts("credit", N) + void("credit"),
    ),
    Row(
        "reversal refused once, then applied: retried until it is",
        ScriptedBank(posts={"reversal": [("rejected", "unknown_account"), "applied"]}),
        ScriptedBank(posts={"credit": [("rejected", "account_closed")]}),
        "compensated",
        "account_closed",
        posts("debit") + posts("reversal", 2),
        posts("credit") + void("credit"),
    ),
    Row(
        "reversal unknown once, then applied",
        ScriptedBank(posts={"reversal": ["unknown", "applied"]}),
        ScriptedBank(posts={"credit": [("rejected", "account_closed")]}),
        "compensated",
        "account_closed",
        posts("debit") + posts("reversal", 2),
        posts("credit") + void("credit"),
    ),
]


async def run_saga(store_path: Path, source: ScriptedBank, target: ScriptedBank) -> dict[str, Any]:
    pid = uuid.uuid4().hex
    store = EmbeddedStore(store_path, pid=pid, group="saga-table")
    resonate = Resonate(network=store, pid=pid, group="saga-table", ttl=timedelta(seconds=30))
    resonate.register(transfer, name=SAGA_NAME)
    resonate.with_dependency(
        SagaDeps(
            source=cast(BankClient, source), target=cast(BankClient, target), settings=SETTINGS
        )
    )
    try:
        request = {
            "transfer_id": "t",
            "source_account": "alice",
            "target_account": "bob",
            "amount": 1250,
        }
        handle = resonate.run("t", transfer, request)
        return cast(dict[str, Any], await asyncio.wait_for(handle.result(), 30))
    finally:
        await resonate.stop()


@pytest.mark.parametrize("row", TABLE, ids=[row.name for row in TABLE])
async def test_saga_decides_from_its_steps(row: Row, tmp_path: Path) -> None:
    result = await run_saga(tmp_path / "promises.db", row.source, row.target)

    assert (result["status"], result["reason"]) == (row.status, row.reason)
    assert (result["amount"], result["source_account"], result["target_account"]) == (
        1250,
        "alice",
        "bob",
    )
    assert row.source.calls == row.source_calls
    assert row.target.calls == row.target_calls


async def test_a_finished_transfer_is_not_run_again(tmp_path: Path) -> None:
    """Started again with the same id, the store answers with the first result: no bank call."""
    store_path = tmp_path / "promises.db"
    first = await run_saga(store_path, ScriptedBank(), ScriptedBank())
    source, target = ScriptedBank(), ScriptedBank()

    again = await run_saga(store_path, source, target)

    assert again == first
    assert (source.calls, target.calls) == ([], [])
