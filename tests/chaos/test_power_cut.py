"""Power cuts, for real: what a disk that keeps its syncs holds after the power goes.

The power-cut filesystem (:mod:`chaos.powerfs`) holds every byte not yet
synced in memory and drops it on a cut, so these tests tell a synced write
from one that was only written, which a SIGKILL cannot (the page cache
survives it). Each claim comes with its control: the same run with SQLite's
``synchronous=OFF`` must lose acknowledged writes, and be reported.
They need /dev/fuse, fusermount3 and libfuse 3 (Debian: fuse3), and skip,
saying what is missing, without them.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from chaos.checks import ACKNOWLEDGED_WRITE_SURVIVED
from chaos.powercut import PowerFs, why_no_power_cuts
from chaos.runner import run_campaign
from chaos.schedule import KILL_WORKER, POWER_CUT, CampaignParams
from orchestrator.local.supervisor import ManagedProcess, bank_process, free_port, local_url
from tests.bank.conftest import TOKEN, BankHttp, entry, new_id, open_account


@pytest.fixture
def power(tmp_path: Path) -> Iterator[PowerFs]:
    reason = why_no_power_cuts()
    if reason is not None:
        pytest.skip(reason)
    fs = PowerFs(tmp_path / "disk", tmp_path / "mnt", log_path=tmp_path / "powerfs.log").mount()
    yield fs
    fs.unmount()


def test_a_cut_keeps_what_was_synced_and_nothing_else(power: PowerFs) -> None:
    mount = power.mountpoint
    (mount / "never-synced").write_bytes(b"lost")
    with (mount / "half-synced").open("wb") as half:
        half.write(b"kept")
        half.flush()
        os.fsync(half.fileno())
        half.write(b" and lost")
        half.flush()
        assert (mount / "half-synced").read_bytes() == b"kept and lost"  # readable before
    with (mount / "shrunk").open("wb") as shrunk:
        shrunk.write(b"0123456789" * 1000)
        os.fsync(shrunk.fileno())
        shrunk.truncate(5)
        os.fsync(shrunk.fileno())
    power.cut()
    assert (mount / "never-synced").read_bytes() == b""  # created (directories are kept)
    assert (mount / "half-synced").read_bytes() == b"kept"
    assert (mount / "shrunk").read_bytes() == b"01234"
    assert power.cuts == 1


@pytest.mark.parametrize(("synchronous", "kept"), [("FULL", 200), ("OFF", None)])
def test_sqlite_keeps_every_commit_only_when_it_syncs(
    power: PowerFs, synchronous: str, kept: int | None
) -> None:
    db = sqlite3.connect(power.mountpoint / "t.db", isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA synchronous = {synchronous}")
    db.execute("CREATE TABLE t (x INTEGER)")
    for x in range(200):
        db.execute("INSERT INTO t VALUES (?)", (x,))
    power.cut()  # the connection is still open: the power does not wait for it
    after = sqlite3.connect(power.mountpoint / "t.db")
    try:
        rows = after.execute("SELECT count(*) FROM t").fetchone()[0]
    except sqlite3.OperationalError:
        rows = None  # not even the table was kept
    finally:
        after.close()
        db.close()
    assert rows == kept


def _bank_on(power: PowerFs, log: Path, *, synced: bool) -> ManagedProcess:
    bank = bank_process(
        "source",
        port=free_port(),
        ledger=power.mountpoint / "source.db",
        token=TOKEN,
        log_path=log,
    )
    if not synced:
        bank.module, bank.args = "chaos.unsynced_bank", ("source",)
    return bank.start()


@pytest.mark.parametrize("synced", [True, False], ids=["synchronous_full", "unsynced_control"])
def test_a_bank_keeps_every_entry_it_acknowledged_through_a_power_cut(
    power: PowerFs, tmp_path: Path, synced: bool
) -> None:
    bank = _bank_on(power, tmp_path / "bank.log", synced=synced)
    url = local_url(int(bank.env["PORT"]))
    try:
        with BankHttp(url, token=TOKEN, timeout=10) as http:
            account_id = open_account(http, 10_000)
            acknowledged = []
            for _ in range(20):
                response = http.post("/entries", json=entry(new_id("ack"), account_id, 7))
                assert response.status_code == 201
                acknowledged.append(response.json())
        bank.kill()
        power.cut()
        bank.start()
        with BankHttp(url, token=TOKEN, timeout=10) as http:
            found = [http.get(f"/entries/{stored['op_id']}") for stored in acknowledged]
            survived = [
                stored
                for stored, response in zip(acknowledged, found, strict=True)
                if response.status_code == 200 and response.json()["entry"] == stored
            ]
    finally:
        bank.stop()
    if synced:
        assert survived == acknowledged
    else:
        assert len(survived) < len(acknowledged), "the control lost nothing: cuts are not real"


#: A short power-cut campaign: two cuts and a worker kill under live transfers.
SHORT = CampaignParams(
    seed=20261206,
    transfers=60,
    concurrency=6,
    faults=3,
    duration=20.0,
    quiesce_timeout=90.0,
    rate=4.0,
    kinds=(POWER_CUT, KILL_WORKER),
)


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.usefixtures("quiet_sdk_retries")
@pytest.mark.parametrize("unsynced_bank", [False, True], ids=["synced", "unsynced_control"])
def test_a_power_cut_campaign_loses_no_acknowledged_write(
    tmp_path: Path, unsynced_bank: bool
) -> None:
    reason = why_no_power_cuts()
    if reason is not None:
        pytest.skip(reason)
    params = replace(SHORT, unsynced_bank=unsynced_bank)
    outcome = asyncio.run(run_campaign(params, workdir=tmp_path / "run", log=print))
    print(outcome.summary())
    cuts = outcome.acknowledged_before_cuts()
    assert len(cuts) == outcome.injected_by_kind().get(POWER_CUT, 0) >= 1
    assert cuts[-1] > 0, "no entry was acknowledged before the last cut: nothing was at stake"
    lost = [v for v in outcome.violations if v.invariant == ACKNOWLEDGED_WRITE_SURVIVED]
    if unsynced_bank:
        assert lost, "the control lost nothing: the campaign cannot see a power cut's loss"
    else:
        assert outcome.violations == []
        assert sum(outcome.by_outcome().values()) == SHORT.transfers
