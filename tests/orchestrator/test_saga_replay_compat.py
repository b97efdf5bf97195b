"""Transfers the saga recorded before its records were typed still finish, and still read back.

``fixtures/old_saga_store.db`` was written by the old saga (see
``fixtures/README.md``): ``old-done`` finished (compensated after its credit
was voided by the fence), ``old-mid`` stopped after its debit applied and
``old-fenced-mid`` after its debit was settled by the old fence step. The
SDK hands the resumed saga the values it stored then, in their old shape;
the saga must carry on from them -- credit once, never debit again -- and
``transfer_record``, the views and the chaos checks must read them.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from chaos.checks import applied_entries
from orchestrator.cli import views
from orchestrator.transfers import TransferRequest, start_transfer, transfer_record
from tests.orchestrator.scripted_bank import FAST_SETTINGS, ScriptedBank, saga_runtime

pytestmark = pytest.mark.anyio

FIXTURE = Path(__file__).parent / "fixtures" / "old_saga_store.db"

#: What the old saga was asked to do, per transfer id.
REQUESTS = {
    "old-done": TransferRequest("old-done", "alice", "bob", 700),
    "old-mid": TransferRequest("old-mid", "alice", "bob", 1250),
    "old-fenced-mid": TransferRequest("old-fenced-mid", "alice", "bob", 300),
}


@pytest.fixture
def old_store(tmp_path: Path) -> Path:
    store = tmp_path / "promises.db"
    shutil.copy(FIXTURE, store)
    return store


def timeline(record: dict[str, Any]) -> list[str]:
    """Each recorded step as the ``status`` view describes it."""
    view = {**record, "ledger": {}, "timeline": []}
    text = views.describe_status(view)
    step_line = re.compile(rf"\s+{re.escape(record['transfer_id'])}:\d+\s+(.*)")
    return [m.group(1) for line in text.splitlines() if (m := step_line.fullmatch(line))]


async def test_old_records_read_back(old_store: Path) -> None:
    async with saga_runtime(old_store, ScriptedBank(), ScriptedBank(), FAST_SETTINGS) as resonate:
        done = await transfer_record(resonate, "old-done")
        mid = await transfer_record(resonate, "old-mid")
        fenced = await transfer_record(resonate, "old-fenced-mid")
    assert done is not None
    assert mid is not None
    assert fenced is not None

    assert (done["state"], done["status"], done["result"]["reason"]) == (
        "resolved",
        "compensated",
        "credit_voided_after_timeouts",
    )
    assert isinstance(done["compensating_since"], float)
    steps = timeline(done)
    assert steps[:3] + steps[4:] == [
        "debit: applied",
        "rejected: scripted: no answer to old-done-credit",
        "credit: voided, settled by the fence",
        "reversal: applied",
    ]
    assert steps[3].startswith("compensating since ")
    assert steps[3].endswith(" (credit_voided_after_timeouts)")
    assert [entry["op_id"] for entry in applied_entries(done["result"])] == [
        "old-done-debit",
        "old-done-reversal",
    ]
    assert (mid["state"], mid["status"]) == ("pending", "in_progress")
    assert views.status_word(mid) == "in progress"
    assert (fenced["state"], fenced["status"]) == ("pending", "in_progress")
    assert timeline(fenced)[-1] == ("debit: applied, settled by the fence")


async def test_old_transfers_resume_where_they_stopped(old_store: Path) -> None:
    source, target = ScriptedBank(), ScriptedBank()
    async with saga_runtime(old_store, source, target, FAST_SETTINGS) as resonate:
        results = {}
        for transfer_id, request in REQUESTS.items():
            handle = await start_transfer(resonate, FAST_SETTINGS, request)
            results[transfer_id] = await asyncio.wait_for(handle.result(), 30)
        records = {tid: await transfer_record(resonate, tid) for tid in REQUESTS}

    assert {tid: (r["status"], r["reason"]) for tid, r in results.items()} == {
        "old-done": ("compensated", "credit_voided_after_timeouts"),
        "old-mid": ("committed", None),
        "old-fenced-mid": ("committed", None),
    }
    assert source.calls == []  # no debit twice, no reversal of a finished transfer
    assert target.calls == ["post old-mid-credit", "post old-fenced-mid-credit"]
    fenced_debit = results["old-fenced-mid"]["steps"]["debit"]
    assert (fenced_debit["status"], fenced_debit["settled_by"]) == ("applied", "fence")
    for transfer_id, record in records.items():
        assert record is not None
        assert record["status"] == results[transfer_id]["status"]
        assert record["result"] == results[transfer_id]


# -- transfers recorded by the saga with typed records (the loop over decide()) --------

TYPED_FIXTURE = Path(__file__).parent / "fixtures" / "typed_saga_store.db"

TYPED_REQUESTS = {
    "typed-done": TransferRequest("typed-done", "alice", "bob", 700),
    "typed-mid": TransferRequest("typed-mid", "alice", "bob", 1250),
    "typed-fenced-mid": TransferRequest("typed-fenced-mid", "alice", "bob", 300),
    "typed-compensating": TransferRequest("typed-compensating", "alice", "bob", 450),
}


async def test_typed_transfers_resume_where_they_stopped(tmp_path: Path) -> None:
    """``typed_saga_store.db`` (fixtures/README.md): cut after the debit, after a fenced
    debit, and after compensation began; each finishes from its checkpoints."""
    store = tmp_path / "promises.db"
    shutil.copy(TYPED_FIXTURE, store)
    source, target = ScriptedBank(), ScriptedBank()
    async with saga_runtime(store, source, target, FAST_SETTINGS) as resonate:
        before = {tid: await transfer_record(resonate, tid) for tid in TYPED_REQUESTS}
        results = {}
        for transfer_id, request in TYPED_REQUESTS.items():
            handle = await start_transfer(resonate, FAST_SETTINGS, request)
            results[transfer_id] = await asyncio.wait_for(handle.result(), 30)

    assert {tid: r["status"] if r else None for tid, r in before.items()} == {
        "typed-done": "compensated",
        "typed-mid": "in_progress",
        "typed-fenced-mid": "in_progress",
        "typed-compensating": "compensating",
    }
    assert {tid: (r["status"], r["reason"]) for tid, r in results.items()} == {
        "typed-done": ("compensated", "credit_voided_after_timeouts"),
        "typed-mid": ("committed", None),
        "typed-fenced-mid": ("committed", None),
        "typed-compensating": ("compensated", "account_closed"),
    }
    # Each resumed from its last checkpoint: no debit twice, no credit after a refusal.
    assert source.calls == ["post typed-compensating-reversal"]
    assert target.calls == ["post typed-mid-credit", "post typed-fenced-mid-credit"]
    compensating = results["typed-compensating"]["steps"]
    assert compensating["credit"]["status"] == "rejected"
    assert compensating["reversal"]["status"] == "applied"
