"""Settings for the whole run: parallel workers (pytest-xdist) each get ports of their own."""

from __future__ import annotations

import os

import pytest

from orchestrator.local.supervisor import LOCAL_PORTS_VARIABLE

#: Ports for worker gwN: PORTS_PER_WORKER of them from PORTS_LOW + N * PORTS_PER_WORKER,
#: all below the kernel's ephemeral range (32768 and up on Linux).
PORTS_LOW = 20_000
PORTS_PER_WORKER = 1_000


def pytest_configure(config: pytest.Config) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw"):
        low = PORTS_LOW + int(worker[2:]) * PORTS_PER_WORKER
        os.environ[LOCAL_PORTS_VARIABLE] = f"{low}-{low + PORTS_PER_WORKER - 1}"
