"""Fixtures for the orchestrator tests: one real cluster of processes per test module.

Starting two banks, the promise store and a worker costs seconds, so a module
shares one cluster; each test uses its own account names and transfer ids, and
gets the cluster back with no fault rules, no held requests, both banks up and
exactly one running worker.

A module that sets ``ON_EVERY_BACKEND = True`` runs each of its tests on both
backends: crossbank's promise store and Resonate on Postgres (one private
Postgres for the whole session, a fresh database per module). The Postgres
runs skip, saying what is missing, only when no PostgreSQL binaries or no
resonate.sql can be found; a resonate.sql that is not the tested one fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.local.postgres import PostgresUnavailable, PrivatePostgres
from orchestrator.local.supervisor import free_port
from orchestrator.local.system import BACKENDS, STORE_BACKEND
from tests.orchestrator.cluster import Cluster, backend_options, running_cluster
from tests.postgres_available import require_postgres, skip_for_missing_postgres


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (marked ``pytest.mark.anyio``) run on asyncio, the SDK's loop."""
    return "asyncio"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames and getattr(metafunc.module, "ON_EVERY_BACKEND", False):
        metafunc.parametrize("backend", BACKENDS, indirect=True, scope="module")


@pytest.fixture(scope="module")
def backend(request: pytest.FixtureRequest) -> str:
    """Where the module's cluster keeps transfers (the promise store unless parametrised)."""
    chosen: str = getattr(request, "param", STORE_BACKEND)
    return chosen


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivatePostgres]:
    """One private Postgres for the session, started the first time a test needs it."""
    require_postgres()
    log = tmp_path_factory.mktemp("postgres") / "postgres.log"
    server = PrivatePostgres(free_port(), log_path=log)
    try:
        server.start()
    except PostgresUnavailable as exc:
        server.stop()
        skip_for_missing_postgres(exc)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shared_cluster(
    tmp_path_factory: pytest.TempPathFactory, backend: str, request: pytest.FixtureRequest
) -> Iterator[Cluster]:
    root: Path = tmp_path_factory.mktemp(f"cluster-{backend}")
    with running_cluster(root, **backend_options(backend, request)) as started:
        yield started


@pytest.fixture
def cluster(shared_cluster: Cluster) -> Iterator[Cluster]:
    """The module's cluster, reset to a calm state before and after the test."""
    shared_cluster.reset()
    yield shared_cluster
    shared_cluster.reset()
