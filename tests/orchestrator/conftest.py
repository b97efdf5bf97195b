"""Fixtures for the orchestrator tests: a real cluster of processes per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.orchestrator.cluster import Cluster, running_cluster


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (marked ``pytest.mark.anyio``) run on asyncio, the SDK's loop."""
    return "asyncio"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Both banks, the served promise store and one worker, stopped after the test."""
    with running_cluster(tmp_path) as started:
        yield started
