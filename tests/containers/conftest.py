"""Container tests: run only where a Docker engine answers, always against fresh images.

Tests marked ``containers`` are skipped, with the reason in the report, when no
Docker engine answers. When one does, the images are built first if they are
missing or older than the source (``scripts/ci-docker.sh build``), so the tests
never exercise stale code; when they cannot be built because the
``python:3.13-slim`` base image is absent and cannot be pulled, the tests are
skipped saying so and how to make it (``scripts/ci-docker.sh setup``).

Testcontainers' reaper (Ryuk) is off by default: its image usually cannot be
pulled where crossbank is tested, and every fixture here removes what it started.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from docker.client import DockerClient, from_env
from docker.errors import APIError, ImageNotFound

from orchestrator.local.postgres import (
    PostgresUnavailable,
    ResonateSqlMismatch,
    resonate_sql,
    resonate_sql_path,
)
from tests.containers.system import PARTS, ContainerSystem, image

# Read by testcontainers when it first starts a container, after this module loads.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "scripts" / "ci-docker.sh"
#: What goes into the images (see .dockerignore): a change here makes them stale.
IMAGE_SOURCES = (
    "pyproject.toml",
    "bank",
    "source_bank",
    "target_bank",
    "promise_store",
    "orchestrator",
    "deploy/Dockerfile",
    "deploy/healthcheck.py",
    "deploy/postgres",
    "deploy/prometheus",
    "envsettings",
)
BASE_IMAGE = "python:3.13-slim"


def engine_problem() -> str | None:
    """Why no Docker engine can be used, or None when one answers."""
    try:
        client = from_env(timeout=5)
        client.ping()
        client.close()
    except Exception as exc:
        where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        return (
            f"no Docker engine answers at {where} ({type(exc).__name__}); "
            "start one (on a machine with no engine or registry: scripts/ci-docker.sh setup)"
        )
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    marked = [item for item in items if item.get_closest_marker("containers")]
    if not marked:
        return
    problem = engine_problem()
    if problem is None:
        return
    skip = pytest.mark.skip(reason=f"container tests skipped: {problem}")
    for item in marked:
        item.add_marker(skip)


def newest_source_change() -> float:
    newest = 0.0
    for name in IMAGE_SOURCES:
        path = ROOT / name
        files = (
            [path]
            if path.is_file()
            else [p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        )
        newest = max([newest, *(p.stat().st_mtime for p in files)])
    return newest


def built_at(attrs: dict[str, Any]) -> float:
    """When an image was built: scripts/ci-docker.sh's label, else Docker's creation time
    (which a build entirely from cache leaves at the first build's time)."""
    label = (attrs["Config"].get("Labels") or {}).get("crossbank.built-at")
    if label:
        return float(label)
    return datetime.fromisoformat(attrs["Created"]).timestamp()


def stale_images(client: DockerClient) -> list[str]:
    """The images that are missing or were built before the latest source change."""
    changed = newest_source_change()
    stale = []
    for part in PARTS:
        try:
            attrs = client.images.get(image(part)).attrs
        except ImageNotFound:
            stale.append(image(part))
            continue
        if built_at(attrs) < changed:
            stale.append(image(part))
    return stale


@contextlib.contextmanager
def one_builder_at_a_time() -> Iterator[None]:
    """Hold a lock that every test process on this machine shares while it checks and builds.

    Parallel workers each run this session fixture: the first builds, the
    others wait and then find the images fresh.
    """
    with (Path(tempfile.gettempdir()) / "crossbank-image-build.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def crossbank_images() -> None:
    """Fresh images, built now if needed; a skip that says why when they cannot be."""
    with one_builder_at_a_time():
        _build_if_stale()


def _build_if_stale() -> None:
    client = from_env()
    try:
        stale = stale_images(client)
        if not stale:
            return
        try:
            client.images.get(BASE_IMAGE)
        except ImageNotFound:
            try:
                client.images.pull(BASE_IMAGE)
            except APIError as exc:
                pytest.skip(
                    f"container tests skipped: {', '.join(stale)} must be built, and the base "
                    f"image {BASE_IMAGE} is absent and cannot be pulled ({exc.explanation}); "
                    "make it with scripts/ci-docker.sh setup, then build with scripts/ci-docker.sh build"
                )
    finally:
        client.close()
    built = subprocess.run(
        [str(BUILD_SCRIPT), "build"], capture_output=True, text=True, check=False
    )
    if built.returncode != 0:
        pytest.fail(f"building the images failed:\n{built.stderr[-3000:]}")


@pytest.fixture
def system(crossbank_images: None) -> Iterator[ContainerSystem]:
    """A fresh deployment on its own network, removed (with its volumes) afterwards."""
    deployment = ContainerSystem()
    try:
        yield deployment
    finally:
        deployment.close()


@pytest.fixture
def postgres_system(crossbank_images: None) -> Iterator[ContainerSystem]:
    """A fresh deployment on Resonate's server on Postgres, resonate.sql mounted from
    ``RESONATE_SQL`` (checked by sha256; skipped, saying so, when it is not there)."""
    try:
        resonate_sql()
    except PostgresUnavailable as exc:
        pytest.skip(f"container tests on Postgres skipped: {exc}")
    except ResonateSqlMismatch as exc:
        pytest.fail(str(exc))
    deployment = ContainerSystem(
        backend="postgres", resonate_sql=resonate_sql_path(), lease_ttl=3.0
    )
    try:
        yield deployment
    finally:
        deployment.close()
