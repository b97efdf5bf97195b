"""A bank whose ledger's disk is full refuses writes with a clear 503, says so on /health, and
recovers by itself once space returns (on a real, small tmpfs; needs root to mount it)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from bank.storage_health import is_storage_error
from chaos.disks import SmallDisk, why_no_disks
from tests.bank.conftest import (
    BankHttp,
    StartBank,
    balance,
    entry,
    error_code,
    new_id,
    open_account,
)


@pytest.fixture
def full_disk_bank(start_bank: StartBank, tmp_path: Path) -> Iterator[tuple[SmallDisk, BankHttp]]:
    reason = why_no_disks()
    if reason:
        pytest.skip(f"needs a small filesystem of its own: {reason}")
    disk = SmallDisk(tmp_path / "disk", 2).mount()
    try:
        bank = start_bank(extra_env={"LEDGER_PATH": str(disk.path / "source.db")})
        with bank.client() as http:
            yield disk, http
        bank.process.stop()
    finally:
        disk.free()
        disk.unmount()


def test_a_full_disk_refuses_the_write_and_health_says_why(full_disk_bank) -> None:
    disk, http = full_disk_bank
    account = open_account(http, 10_000)
    assert http.get("/health").status_code == 200
    disk.fill()

    op_id = new_id("op")
    refused = http.post("/entries", json=entry(op_id, account, 1_000))
    assert refused.status_code == 503, refused.text
    assert error_code(refused) == "storage_unavailable"
    assert "disk is full" in refused.json()["error"]["message"]
    # Nothing was acknowledged, and nothing was written.
    assert http.get(f"/entries/{op_id}").status_code == 404
    assert balance(http, account) == 10_000
    health = http.get("/health")
    assert health.status_code == 503
    assert health.json()["status"] == "failing"
    assert "disk is full" in health.json()["reason"]


def test_the_bank_recovers_by_itself_when_space_returns(full_disk_bank) -> None:
    disk, http = full_disk_bank
    account = open_account(http, 10_000)
    disk.fill()
    assert http.post("/entries", json=entry(new_id("op"), account, 1_000)).status_code == 503
    assert http.get("/health").status_code == 503

    disk.free()
    assert http.get("/health").status_code == 200  # no write needed: the probe sees the room
    op_id = new_id("op")
    applied = http.post("/entries", json=entry(op_id, account, 1_000))
    assert applied.status_code == 201, applied.text
    assert balance(http, account) == 9_000


def test_only_storage_errors_count_as_storage_errors() -> None:
    assert is_storage_error(sqlite3.OperationalError("database or disk is full"))
    assert is_storage_error(sqlite3.OperationalError("disk I/O error"))
    assert not is_storage_error(sqlite3.OperationalError("no such table: entries"))
    assert not is_storage_error(OSError("database or disk is full"))
