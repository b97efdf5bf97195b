"""No answer before its journal entry's commit has returned: what the power-cut claim rests on.

A SIGKILL is tested for real elsewhere (``test_served.py``). A power cut
cannot be, so this checks the two things the claim is made of: the file is
written with WAL and ``synchronous=FULL`` (SQLite syncs the WAL before a
commit returns), and no request's answer is handed back before the commit
holding its entry returned, one at a time and eight at once, with the
commit on the event loop (the default) and on a thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from promise_store.journal import Entry, Journal, Snapshot
from promise_store.state import JournaledState


def test_the_journal_syncs_every_commit(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "sync.db")
    try:
        assert journal._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert journal._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        journal.close()


@pytest.mark.parametrize("in_flight", [1, 8])
@pytest.mark.parametrize("commit_in_thread", [False, True])
def test_no_answer_before_the_commit_of_its_entry_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_flight: int, commit_in_thread: bool
) -> None:
    committed: list[int] = []  # the last seq of each commit, once it has returned
    real_write = Journal.write

    def slow_write(
        self: Journal, entries: Sequence[Entry], snapshot: Snapshot | None = None
    ) -> None:
        time.sleep(0.01)  # a slow sync: any answer sent early would be seen
        real_write(self, entries, snapshot)
        if entries:
            committed.append(entries[-1].seq)

    monkeypatch.setattr(Journal, "write", slow_write)
    appended_by: dict[asyncio.Task[Any] | None, int] = {}  # the last entry each task appended
    real_append = JournaledState._append

    def noting_append(self: JournaledState, now: int, kind: str, body: bytes) -> None:
        real_append(self, now, kind, body)
        appended_by[asyncio.current_task()] = self.seq

    monkeypatch.setattr(JournaledState, "_append", noting_append)
    store = JournaledState(tmp_path / "order.db", commit_in_thread=commit_in_thread)
    early: list[tuple[int, int]] = []

    async def one(i: int) -> None:
        request = {"kind": "promise.create", "corrId": f"c{i}", "id": f"p{i}", "tags": {}}
        applied = await store.apply({**request, "timeoutAt": 2**62})
        assert applied.response is not None
        mine = appended_by[asyncio.current_task()]
        if not committed or committed[-1] < mine:
            early.append((mine, committed[-1] if committed else 0))

    async def run() -> None:
        async def lane(k: int) -> None:
            for i in range(k, 24, in_flight):
                await one(i)

        await asyncio.gather(*(lane(k) for k in range(in_flight)))
        await store.close()

    asyncio.run(run())
    assert early == [], "(entry, last commit returned) when its answer came back"
    assert committed[-1] == 24
    if in_flight > 1:
        assert len(committed) < 24, "concurrent requests share commits"
    with sqlite3.connect(tmp_path / "order.db") as db:
        assert db.execute("SELECT count(*) FROM journal").fetchone()[0] == 24
