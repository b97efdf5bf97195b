"""Fixtures for the orchestrator tests: one real cluster of processes per test module.

Starting two banks, the promise store and a worker costs seconds, so a module
shares one cluster; each test uses its own account names and transfer ids, and
gets the cluster back with no fault rules, no held requests, both banks up and
exactly one running worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.orchestrator.cluster import Cluster, running_cluster


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (marked ``pytest.mark.anyio``) run on asyncio, the SDK's loop."""
    return "asyncio"


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root: Path = tmp_path_factory.mktemp("cluster")
    with running_cluster(root) as started:
        yield started


@pytest.fixture
def cluster(shared_cluster: Cluster) -> Iterator[Cluster]:
    """The module's cluster, reset to a calm state before and after the test."""
    shared_cluster.reset()
    yield shared_cluster
    shared_cluster.reset()
