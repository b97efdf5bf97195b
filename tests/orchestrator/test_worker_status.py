"""Where a worker says what it runs: one file, or a file of its own in a shared directory."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest

from envsettings import SettingsError
from orchestrator.worker import DEFAULT_STATUS_EVERY, status_settings
from tests.orchestrator.cluster import Cluster


def test_a_status_directory_gives_each_worker_a_file_of_its_own(tmp_path: Path) -> None:
    file, every = status_settings({"WORKER_STATUS_DIR": str(tmp_path)})
    assert file == tmp_path / f"{socket.gethostname()}-{os.getpid()}.json"
    assert every == DEFAULT_STATUS_EVERY
    assert (
        status_settings({"WORKER_STATUS_FILE": str(tmp_path / "w.json")})[0] == tmp_path / "w.json"
    )
    assert status_settings({}) == (None, DEFAULT_STATUS_EVERY)


def test_a_file_and_a_directory_at_once_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="WORKER_STATUS_FILE or WORKER_STATUS_DIR"):
        status_settings({"WORKER_STATUS_DIR": str(tmp_path), "WORKER_STATUS_FILE": "w.json"})


def test_a_stopped_worker_takes_its_file_away_and_a_killed_one_leaves_it(
    cluster: Cluster, tmp_path: Path
) -> None:
    """In a shared directory a stopped worker leaves nothing behind to be shown as dead."""
    shared = {"WORKER_STATUS_FILE": "", "WORKER_STATUS_DIR": str(tmp_path)}
    stopped = cluster.start_worker(env=shared)
    killed = cluster.start_worker(env=shared)
    files = {w.pid: tmp_path / f"{socket.gethostname()}-{w.pid}.json" for w in (stopped, killed)}
    deadline = time.monotonic() + 20
    while not all(f.exists() for f in files.values()):
        assert time.monotonic() < deadline, sorted(p.name for p in tmp_path.iterdir())
        time.sleep(0.1)
    assert json.loads(files[killed.pid].read_text())["pid"] == killed.pid

    stopped.stop()
    killed.kill()

    assert not files[stopped.pid].exists()
    assert files[killed.pid].exists()
