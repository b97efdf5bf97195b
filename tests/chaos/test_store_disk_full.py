"""The promise store on a real, small, full disk: it refuses writes, never acknowledges, says so.

Run as root (it mounts a tmpfs). While its journal cannot be written the store
refuses every request that would change something, answers reads from what the
journal holds, and answers /health 503 with the reason; a restart recovers
every acknowledged write, and a store started on a full disk starts all the
same; once space returns it takes writes again by itself (it writes a probe)
(promise_store/README.md, "Durability").
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from resonate.resonate import Resonate
from resonate.types import Value

from chaos.disks import SmallDisk, why_no_disks
from orchestrator.local.supervisor import ManagedProcess, free_port, is_healthy, store_process
from orchestrator.runtime import close_resonate, open_resonate
from orchestrator.settings import Settings

#: How long a store may take to serve again by itself once its disk has room.
RECOVERY_S = 5.0


@pytest.fixture
def store_on_small_disk(tmp_path: Path) -> Iterator[tuple[SmallDisk, ManagedProcess, Settings]]:
    reason = why_no_disks()
    if reason:
        pytest.skip(f"needs a small filesystem of its own: {reason}")
    disk = SmallDisk(tmp_path / "disk", 8).mount()
    port = free_port()
    store = store_process(
        port=port, path=disk.path / "promises.db", log_path=tmp_path / "store.log"
    )
    try:
        store.start()
        yield disk, store, Settings(resonate_url=f"http://127.0.0.1:{port}")
    finally:
        store.stop()
        disk.free()
        disk.unmount()


async def _create(resonate: Resonate, promise_id: str) -> object:
    deadline = int(time.time() * 1000) + 600_000
    return await asyncio.wait_for(resonate.promises.create(promise_id, deadline, Value(), {}), 10)


async def _fill_then_write(disk: SmallDisk, settings: Settings) -> BaseException | None:
    resonate = open_resonate(settings, role="client")
    try:
        await _create(resonate, "before-full")
        disk.fill()
        try:
            await _create(resonate, "while-full")
        except Exception as exc:
            return exc
        return None
    finally:
        await close_resonate(resonate)


async def _ids(settings: Settings, *promise_ids: str) -> dict[str, bool]:
    resonate = open_resonate(settings, role="client")
    found = {}
    try:
        for promise_id in promise_ids:
            try:
                await asyncio.wait_for(resonate.promises.get(promise_id), 10)
                found[promise_id] = True
            except Exception:
                found[promise_id] = False
    finally:
        await close_resonate(resonate)
    return found


@pytest.mark.timeout(120)
def test_a_full_journal_refuses_writes_reports_it_and_loses_nothing(store_on_small_disk) -> None:
    disk, store, settings = store_on_small_disk
    health = f"{settings.resonate_url}/health"
    refused = asyncio.run(_fill_then_write(disk, settings))
    assert refused is not None, "the store acknowledged a write its disk could not hold"
    assert not is_healthy(health)
    disk.free()
    store.kill()
    store.start()
    found = asyncio.run(_ids(settings, "before-full", "while-full"))
    assert found == {"before-full": True, "while-full": False}


@pytest.mark.timeout(120)
def test_the_store_serves_again_by_itself_once_space_returns(store_on_small_disk) -> None:
    disk, _, settings = store_on_small_disk
    health = f"{settings.resonate_url}/health"
    asyncio.run(_fill_then_write(disk, settings))
    disk.free()
    _takes_writes_again(health, settings)
    found = asyncio.run(_ids(settings, "before-full", "while-full", "after-full"))
    assert found == {"before-full": True, "while-full": False, "after-full": True}


def _takes_writes_again(health: str, settings: Settings) -> None:
    """Once its disk has room: healthy within RECOVERY_S, and it keeps a new promise."""
    deadline = time.monotonic() + RECOVERY_S
    while not is_healthy(health) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert is_healthy(health)
    asyncio.run(_create_one(settings, "after-full"))


async def _create_one(settings: Settings, promise_id: str) -> None:
    resonate = open_resonate(settings, role="client")
    try:
        await _create(resonate, promise_id)
    finally:
        await close_resonate(resonate)


@pytest.mark.timeout(120)
def test_a_store_started_on_a_full_disk_serves_reads_then_writes_once_there_is_room(
    store_on_small_disk,
) -> None:
    disk, store, settings = store_on_small_disk
    health = f"{settings.resonate_url}/health"
    asyncio.run(_create_one(settings, "before-full"))
    store.stop()
    disk.fill()
    store.start(wait=False)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not _answers(health):
        time.sleep(0.1)
    assert store.running(), store.log_path and store.log_path.read_text()[-2000:]
    status, body = _health(health)
    assert status == 503
    assert "cannot be written" in body["reason"]
    assert asyncio.run(_ids(settings, "before-full")) == {"before-full": True}
    assert asyncio.run(_fill_then_write_nothing(settings)) is not None
    disk.free()
    _takes_writes_again(health, settings)
    assert asyncio.run(_ids(settings, "before-full", "after-full")) == {
        "before-full": True,
        "after-full": True,
    }


def _answers(url: str) -> bool:
    return _health(url)[0] != 0


def _health(url: str) -> tuple[int, dict[str, str]]:
    """``/health``'s status and body; (0, {}) while nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return 0, {}


async def _fill_then_write_nothing(settings: Settings) -> BaseException | None:
    """A write while the disk is full: the error it gets (None would mean it was taken)."""
    resonate = open_resonate(settings, role="client")
    try:
        await _create(resonate, "while-full")
    except Exception as exc:
        return exc
    finally:
        await close_resonate(resonate)
    return None
