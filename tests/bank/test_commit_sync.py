"""Every ledger connection syncs every commit: what the power-cut claim rests on (invariant 6).

A SIGKILL is tested for real in ``test_durability.py``, a power cut in
``tests/chaos/test_power_cut.py``. The ledger's answer is sent after its
``COMMIT`` returns, so the claim holds when every connection that commits has
WAL and ``synchronous=FULL`` (SQLite syncs the WAL before the commit
returns). This opens connections from several threads, as waitress does, and
reads the settings each one has.
"""

from __future__ import annotations

import threading
from pathlib import Path

from bank.ledger import Ledger

FULL = 2


def test_every_ledger_connection_syncs_every_commit(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    seen: list[tuple[str, int]] = []

    def look() -> None:
        db = ledger._conn()
        seen.append(
            (
                db.execute("PRAGMA journal_mode").fetchone()[0],
                db.execute("PRAGMA synchronous").fetchone()[0],
            )
        )

    threads = [threading.Thread(target=look) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    look()
    ledger.close()
    assert seen == [("wal", FULL)] * 5
