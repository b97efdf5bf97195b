"""The request floor is measured on real answers from a real store, every create journaled."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from bench.request_floor import WARM_UP, measure
from orchestrator.local.supervisor import free_port, local_url, store_process


def test_every_measured_request_is_answered_and_every_create_journaled(tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "floor.db"
    with store_process(port=port, path=path, log_path=tmp_path / "store.log") as store:
        figures = asyncio.run(measure(local_url(port), store.pid, 40))

    assert list(figures) == ["promise.get (no commit)", "promise.create (one synced commit)"]
    assert all(wall > 0 for wall, _, _ in figures.values())
    with sqlite3.connect(path) as db:
        journaled = db.execute("SELECT count(*) FROM journal").fetchone()[0]
    assert journaled == 1 + WARM_UP + 40  # the promise read, then each create once
