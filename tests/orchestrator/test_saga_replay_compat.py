"""Transfers recorded by earlier sagas, and by every version of today's, still read back and finish.

Every promise store in ``fixtures/`` (see ``fixtures/README.md``) is
declared in :data:`RECORDED_BY` with the saga version that recorded it, and
replayed here against today's code. The guards at the end fail when a file
there is not declared, or when a version in ``SAGAS`` has no recorded history.

``fixtures/old_saga_store.db`` was written by the old saga: ``old-done``
finished (compensated after its credit was voided by the fence), ``old-mid``
stopped after its debit applied and ``old-fenced-mid`` after its debit was
settled by the old fence step. The SDK hands the resumed saga the values it
stored then, in their old shape; the saga must carry on from them -- credit
once, never debit again -- and ``transfer_record``, the views and the chaos
checks must read them.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from resonate.resonate import Resonate

from chaos.checks import applied_entries
from orchestrator.cli import views
from orchestrator.records import TERMINAL_STATUSES
from orchestrator.saga_versions import SAGAS
from orchestrator.transfer_search import list_transfers
from orchestrator.transfers import TransferRequest, start_transfer, transfer_record
from promise_store.embedded import EmbeddedStore
from tests.orchestrator.scripted_bank import FAST_SETTINGS, ScriptedBank, saga_runtime

pytestmark = pytest.mark.anyio

FIXTURES = Path(__file__).parent / "fixtures"

#: Every recorded history in ``fixtures/``, and the saga version that recorded it.
#: The first two were recorded before versions existed: version 1.
RECORDED_BY = {
    "old_saga_store.db": 1,
    "typed_saga_store.db": 1,
    "v2_saga_store.db": 2,
}


def copy_of(fixture: str, tmp_path: Path) -> Path:
    """A copy of ``fixtures/{fixture}`` to open (opening a store writes to it)."""
    assert fixture in RECORDED_BY, f"{fixture} is not declared in RECORDED_BY"
    store = tmp_path / "promises.db"
    shutil.copy(FIXTURES / fixture, store)
    return store


@asynccontextmanager
async def reader(store_path: Path) -> AsyncIterator[Resonate]:
    """A Resonate over the store that is never started: it reads, and nothing resumes meanwhile."""
    store = EmbeddedStore(store_path, pid="reader", group="reader")
    try:
        yield Resonate(
            network=store,
            pid="reader",
            group="reader",
            ttl=timedelta(seconds=30),
            autostart=False,
        )
    finally:
        await store.stop()


#: What the old saga was asked to do, per transfer id.
REQUESTS = {
    "old-done": TransferRequest("old-done", "alice", "bob", 700),
    "old-mid": TransferRequest("old-mid", "alice", "bob", 1250),
    "old-fenced-mid": TransferRequest("old-fenced-mid", "alice", "bob", 300),
}


@pytest.fixture
def old_store(tmp_path: Path) -> Path:
    return copy_of("old_saga_store.db", tmp_path)


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

TYPED_REQUESTS = {
    "typed-done": TransferRequest("typed-done", "alice", "bob", 700),
    "typed-mid": TransferRequest("typed-mid", "alice", "bob", 1250),
    "typed-fenced-mid": TransferRequest("typed-fenced-mid", "alice", "bob", 300),
    "typed-compensating": TransferRequest("typed-compensating", "alice", "bob", 450),
}


async def test_typed_transfers_resume_where_they_stopped(tmp_path: Path) -> None:
    """``typed_saga_store.db`` (fixtures/README.md): cut after the debit, after a fenced
    debit, and after compensation began; each finishes from its checkpoints."""
    store = copy_of("typed_saga_store.db", tmp_path)
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


# -- transfers recorded by saga version 2: its durable waits between attempts ---------

V2_REQUESTS = {
    "v2-done": TransferRequest("v2-done", "alice", "bob", 700),
    "v2-fence-cut": TransferRequest("v2-fence-cut", "alice", "bob", 1250),
    "v2-reversal-cut": TransferRequest("v2-reversal-cut", "alice", "bob", 450),
    "v2-asleep": TransferRequest("v2-asleep", "alice", "bob", 300),
}

#: What version 2 recorded (``fixtures/README.md``), as the ``status`` view shows each step.
V2_RECORDED = {
    "v2-done": [
        "debit: applied",
        "rejected: scripted: no answer to v2-done-credit",
        "rejected: scripted: no answer to the void of v2-done-credit",
        "waited",
        "credit: voided, settled by the fence",
        "compensating since T (credit_voided_after_timeouts)",
        "rejected: source bank refused reversal v2-done-reversal: unknown_account: "
        "scripted unknown_account",
        "waited",
        "reversal: applied",
    ],
    "v2-fence-cut": [
        "debit: applied",
        "rejected: scripted: no answer to v2-fence-cut-credit",
        "rejected: scripted: no answer to the void of v2-fence-cut-credit",
        "waited",
    ],
    "v2-reversal-cut": [
        "debit: applied",
        "credit: rejected (account_closed)",
        "compensating since T (account_closed)",
        "rejected: source bank refused reversal v2-reversal-cut-reversal: unknown_account: "
        "scripted unknown_account",
        "waited",
    ],
    "v2-asleep": [
        "rejected: scripted: no answer to v2-asleep-debit",
        "rejected: scripted: no answer to the void of v2-asleep-debit",
        "waited",  # pending in the file, due a second after it was written (see below)
    ],
}


def steps_of(record: dict[str, Any]) -> list[str]:
    """:func:`timeline` with the clock of a compensation step left out."""
    since = re.compile(r"compensating since \d\d:\d\d:\d\d ")
    return [since.sub("compensating since T ", step) for step in timeline(record)]


async def test_v2_records_read_back(tmp_path: Path) -> None:
    """``v2_saga_store.db`` reads back as version 2 recorded it, its sleeps as timer steps."""
    async with reader(copy_of("v2_saga_store.db", tmp_path)) as resonate:
        records = {tid: await transfer_record(resonate, tid) for tid in V2_REQUESTS}
    found = {tid: r for tid, r in records.items() if r is not None}
    assert found.keys() == V2_REQUESTS.keys()

    assert {tid: r["saga_version"] for tid, r in found.items()} == dict.fromkeys(V2_REQUESTS, 2)
    assert {tid: (r["state"], r["status"]) for tid, r in found.items()} == {
        "v2-done": ("resolved", "compensated"),
        "v2-fence-cut": ("pending", "in_progress"),
        "v2-reversal-cut": ("pending", "compensating"),
        "v2-asleep": ("pending", "in_progress"),
    }
    assert found["v2-done"]["result"]["reason"] == "credit_voided_after_timeouts"
    assert {tid: steps_of(r) for tid, r in found.items()} == V2_RECORDED
    timers = {tid: [s["id"] for s in r["steps"] if s["timer"]] for tid, r in found.items()}
    assert timers == {
        "v2-done": ["v2-done:4", "v2-done:8"],
        "v2-fence-cut": ["v2-fence-cut:4"],
        "v2-reversal-cut": ["v2-reversal-cut:5"],
        "v2-asleep": ["v2-asleep:3"],
    }
    # v2-asleep's process died during its sleep, so the file holds that timer pending;
    # its deadline (a second later) has long passed, and the store settles an overdue
    # timer resolved as soon as it is read (or at its next tick): "waited".
    asleep = found["v2-asleep"]["steps"][-1]
    assert asleep["state"] == "resolved"
    assert asleep["wait_until"] < time.time() * 1000
    assert [entry["op_id"] for entry in applied_entries(found["v2-done"]["result"])] == [
        "v2-done-debit",
        "v2-done-reversal",
    ]


@pytest.mark.parametrize("attach_on", SAGAS, ids=[f"attached-as-v{v}" for v in SAGAS])
async def test_v2_transfers_resume_on_version_2(attach_on: int, tmp_path: Path) -> None:
    """Each unfinished transfer of ``v2_saga_store.db`` makes the attempt it was cut (or
    killed) before, on version 2, and finishes; no bank call is repeated.

    Version 2 whatever ``SAGA_VERSION`` the process attaching to it says: the
    version a transfer runs on is the one in its root promise.
    """
    store = copy_of("v2_saga_store.db", tmp_path)
    settings = replace(FAST_SETTINGS, saga_version=attach_on)
    source, target = ScriptedBank(fences={"debit": "applied"}), ScriptedBank()
    async with saga_runtime(store, source, target, settings) as resonate:
        results = {}
        for transfer_id, request in V2_REQUESTS.items():
            handle = await start_transfer(resonate, settings, request)
            results[transfer_id] = await asyncio.wait_for(handle.result(), 30)
        records = {tid: await transfer_record(resonate, tid) for tid in V2_REQUESTS}

    assert {tid: (r["status"], r["reason"]) for tid, r in results.items()} == {
        "v2-done": ("compensated", "credit_voided_after_timeouts"),
        "v2-fence-cut": ("compensated", "credit_voided_after_timeouts"),
        "v2-reversal-cut": ("compensated", "account_closed"),
        "v2-asleep": ("committed", None),
    }
    # The unfinished ones resume at once (the sleeps are over) and concurrently, so the
    # calls are compared as sets of calls, each exactly once: the fence's second
    # attempt, the reversal's second attempt, and what follows them; nothing before.
    assert sorted(source.calls) == [
        "post v2-fence-cut-reversal",
        "post v2-reversal-cut-reversal",
        "void v2-asleep-debit",
    ]
    assert sorted(target.calls) == ["post v2-asleep-credit", "void v2-fence-cut-credit"]

    found = {tid: r for tid, r in records.items() if r is not None}
    assert found.keys() == V2_REQUESTS.keys()
    assert {tid: r["saga_version"] for tid, r in found.items()} == dict.fromkeys(V2_REQUESTS, 2)
    for transfer_id, record in found.items():
        assert record["result"] == results[transfer_id]
    # What each recorded after the file's last step: version 2's layout, from its checkpoints.
    assert {tid: steps_of(r)[len(V2_RECORDED[tid]) :] for tid, r in found.items()} == {
        "v2-done": [],
        "v2-fence-cut": [
            "credit: voided, settled by the fence",
            "compensating since T (credit_voided_after_timeouts)",
            "reversal: applied",
        ],
        "v2-reversal-cut": ["reversal: applied"],
        "v2-asleep": ["debit: applied, settled by the fence", "credit: applied"],
    }


# -- guards: every recorded history is replayed, every version has one ----------------


def test_every_fixture_is_declared_and_replayed() -> None:
    """A store added to ``fixtures/`` must be declared in RECORDED_BY, which replays it
    (below), and should get a test of its own that holds its exact bank calls."""
    found = {path.name for path in FIXTURES.glob("*.db")}
    assert set(RECORDED_BY) == found, (
        f"in {FIXTURES} but not in RECORDED_BY: {sorted(found - set(RECORDED_BY))}; "
        f"in RECORDED_BY but not there: {sorted(set(RECORDED_BY) - found)}"
    )


def test_every_saga_version_has_a_recorded_history() -> None:
    """Adding a saga version fails here until a fixture recorded by it is (fixtures/README.md)."""
    recorded = set(RECORDED_BY.values())
    missing = sorted(set(SAGAS) - recorded)
    assert not missing, f"no fixture in {FIXTURES} was recorded by saga version(s) {missing}"
    assert recorded <= set(SAGAS), "a fixture was recorded by a version this code lacks"


@pytest.mark.parametrize("fixture", sorted(RECORDED_BY))
async def test_every_recorded_transfer_finishes_on_its_version(
    fixture: str, tmp_path: Path
) -> None:
    """Every transfer in every fixture runs on the version RECORDED_BY names, and, resumed
    against banks that answer everything, finishes on it."""
    store = copy_of(fixture, tmp_path)
    async with reader(store) as resonate:
        page = await list_transfers(resonate, limit=100)
    assert page.transfers, f"{fixture} holds no transfer"
    assert page.cursor is None
    version = RECORDED_BY[fixture]
    assert {row["saga_version"] for row in page.transfers} == {version}

    requests = [TransferRequest.from_json(row["request"]) for row in page.transfers]
    async with saga_runtime(store, ScriptedBank(), ScriptedBank(), FAST_SETTINGS) as resonate:
        for request in requests:
            handle = await start_transfer(resonate, FAST_SETTINGS, request)
            result = await asyncio.wait_for(handle.result(), 30)
            record = await transfer_record(resonate, request.transfer_id)
            assert record is not None
            assert result["status"] in TERMINAL_STATUSES
            assert (record["state"], record["saga_version"]) == ("resolved", version)
