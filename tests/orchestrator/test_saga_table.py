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
import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from orchestrator.bank_client import EntryKind
from orchestrator.records import TransferResult, decide
from orchestrator.saga import SAGA_NAME
from orchestrator.saga_versions import NEWEST, SAGAS
from tests.orchestrator.scripted_bank import FAST_SETTINGS, Post, ScriptedBank, saga_runtime

pytestmark = pytest.mark.anyio

SETTINGS = FAST_SETTINGS
UNKNOWN_UNTIL_FENCED: list[Post] = ["unknown"] * SETTINGS.step_attempts
#: What every step of a result carries (orchestrator/README.md documents them).
STEP_KEYS = {"step", "op_id", "status", "settled_by", "entry", "code", "message", "cancelled"}


@dataclass(frozen=True)
class Row:
    name: str
    source: ScriptedBank
    target: ScriptedBank
    status: str
    reason: str | None
    source_calls: list[str]
    target_calls: list[str]
    #: Each step in the result: ``"{status} by {settled_by}"``; a step not listed is None.
    steps: dict[str, str]


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
        {"debit": "applied by bank", "credit": "applied by bank"},
    ),
    Row(
        "debit rejected: fenced, nothing else",
        ScriptedBank(posts={"debit": [("rejected", "insufficient_funds")]}),
        ScriptedBank(),
        "failed",
        "insufficient_funds",
        posts("debit") + void("debit"),
        [],
        {"debit": "rejected by bank"},
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
        {"debit": "applied by fence", "credit": "applied by bank"},
    ),
    Row(
        "debit unknown once, then applied on retry",
        ScriptedBank(posts={"debit": ["unknown", "applied"]}),
        ScriptedBank(),
        "committed",
        None,
        posts("debit", 2),
        posts("credit"),
        {"debit": "applied by bank", "credit": "applied by bank"},
    ),
    Row(
        "debit unknown until retries run out, fence voids it",
        ScriptedBank(posts={"debit": list(UNKNOWN_UNTIL_FENCED)}),
        ScriptedBank(),
        "failed",
        "debit_voided_after_timeouts",
        posts("debit", N) + void("debit"),
        [],
        {"debit": "voided by fence"},
    ),
    Row(
        "debit unknown until retries run out, fence finds it applied",
        ScriptedBank(posts={"debit": list(UNKNOWN_UNTIL_FENCED)}, fences={"debit": "applied"}),
        ScriptedBank(),
        "committed",
        None,
        posts("debit", N) + void("debit"),
        posts("credit"),
        {"debit": "applied by fence", "credit": "applied by bank"},
    ),
    Row(
        "credit rejected: fenced, debit reversed",
        ScriptedBank(),
        ScriptedBank(posts={"credit": [("rejected", "account_closed")]}),
        "compensated",
        "account_closed",
        posts("debit") + posts("reversal"),
        posts("credit") + void("credit"),
        {"debit": "applied by bank", "credit": "rejected by bank", "reversal": "applied by bank"},
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
        {"debit": "applied by bank", "credit": "applied by fence"},
    ),
    Row(
        "credit unknown until retries run out, fence voids it: reversed",
        ScriptedBank(),
        ScriptedBank(posts={"credit": list(UNKNOWN_UNTIL_FENCED)}),
        "compensated",
        "credit_voided_after_timeouts",
        posts("debit") + posts("reversal"),
        posts("credit", N) + void("credit"),
        {"debit": "applied by bank", "credit": "voided by fence", "reversal": "applied by bank"},
    ),
    Row(
        "credit unknown until retries run out, fence finds it applied: never reversed",
        ScriptedBank(),
        ScriptedBank(posts={"credit": list(UNKNOWN_UNTIL_FENCED)}, fences={"credit": "applied"}),
        "committed",
        None,
        posts("debit"),
        posts("credit", N) + void("credit"),
        {"debit": "applied by bank", "credit": "applied by fence"},
    ),
    Row(
        "reversal refused once, then applied: retried until it is",
        ScriptedBank(posts={"reversal": [("rejected", "unknown_account"), "applied"]}),
        ScriptedBank(posts={"credit": [("rejected", "account_closed")]}),
        "compensated",
        "account_closed",
        posts("debit") + posts("reversal", 2),
        posts("credit") + void("credit"),
        {"debit": "applied by bank", "credit": "rejected by bank", "reversal": "applied by bank"},
    ),
    Row(
        "reversal unknown once, then applied",
        ScriptedBank(posts={"reversal": ["unknown", "applied"]}),
        ScriptedBank(posts={"credit": [("rejected", "account_closed")]}),
        "compensated",
        "account_closed",
        posts("debit") + posts("reversal", 2),
        posts("credit") + void("credit"),
        {"debit": "applied by bank", "credit": "rejected by bank", "reversal": "applied by bank"},
    ),
]


async def run_saga(
    store_path: Path, source: ScriptedBank, target: ScriptedBank, version: int = NEWEST
) -> dict[str, Any]:
    async with saga_runtime(store_path, source, target, SETTINGS) as resonate:
        request = {
            "transfer_id": "t",
            "source_account": "alice",
            "target_account": "bob",
            "amount": 1250,
        }
        handle = resonate.options(version=version).run("t", SAGA_NAME, request)
        return cast(dict[str, Any], await asyncio.wait_for(handle.result(), 30))


def settled(step: dict[str, Any] | None) -> str | None:
    return None if step is None else f"{step['status']} by {step['settled_by']}"


@pytest.mark.parametrize("version", SAGAS, ids=[f"v{version}" for version in SAGAS])
@pytest.mark.parametrize("table_row", TABLE, ids=[row.name for row in TABLE])
async def test_saga_decides_from_its_steps(
    table_row: Row, version: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every version of the saga makes the same bank calls and decisions on every row."""
    row = copy.deepcopy(table_row)  # its scripted banks record their calls
    with caplog.at_level(logging.INFO, logger="orchestrator.saga"):
        result = await run_saga(tmp_path / "promises.db", row.source, row.target, version)

    assert (result["status"], result["reason"]) == (row.status, row.reason)
    # The body is its own rule; decide() is the readers' rule. They must agree.
    decision = decide(TransferResult.from_json(result).steps)
    assert (decision.status, decision.reason, decision.finished) == (row.status, row.reason, True)
    assert (result["amount"], result["source_account"], result["target_account"]) == (
        1250,
        "alice",
        "bob",
    )
    assert row.source.calls == row.source_calls
    assert row.target.calls == row.target_calls
    kinds: list[EntryKind] = ["debit", "credit", "reversal"]
    assert {kind: settled(result["steps"][kind]) for kind in kinds} == {
        kind: row.steps.get(kind) for kind in kinds
    }
    assert all(set(step) == STEP_KEYS for step in result["steps"].values() if step is not None), (
        result["steps"]
    )
    finished = [r.getMessage() for r in caplog.records if " finished: " in r.getMessage()]
    reason = f" ({row.reason})" if row.reason else ""
    assert finished == [f"transfer t finished: {row.status}{reason}"]


async def test_a_finished_transfer_is_not_run_again(tmp_path: Path) -> None:
    """Started again with the same id, the store answers with the first result: no bank call."""
    store_path = tmp_path / "promises.db"
    first = await run_saga(store_path, ScriptedBank(), ScriptedBank())
    source, target = ScriptedBank(), ScriptedBank()

    again = await run_saga(store_path, source, target)

    assert again == first
    assert (source.calls, target.calls) == ([], [])
