"""Settings and files for the whole run.

Parallel workers (pytest-xdist) each get ports of their own; certificates
for the TLS tests are made once per run, by a CA made at the same time.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.local.certs import LOCAL_HOSTS, KeyPair, issue, make_ca
from orchestrator.local.supervisor import LOCAL_PORTS_VARIABLE

#: Ports for worker gwN: PORTS_PER_WORKER of them from PORTS_LOW + N * PORTS_PER_WORKER,
#: all below the kernel's ephemeral range (32768 and up on Linux).
PORTS_LOW = 20_000
PORTS_PER_WORKER = 1_000


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slow: runs for half a minute or more; scheduled first, so that a parallel run "
        "does not end waiting on it",
    )
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw"):
        low = PORTS_LOW + int(worker[2:]) * PORTS_PER_WORKER
        os.environ[LOCAL_PORTS_VARIABLE] = f"{low}-{low + PORTS_PER_WORKER - 1}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slow tests first (a stable sort: the rest keep their order)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@dataclass(frozen=True)
class TlsFiles:
    """A private CA with what it signed, and what a client must refuse."""

    ca: KeyPair
    #: For 127.0.0.1 and localhost: what every local server presents.
    server: KeyPair
    client: KeyPair
    expired: KeyPair
    #: Valid, but for another host name.
    other_host: KeyPair
    #: A CA nobody trusts, and a server certificate it signed for the local names.
    unknown_ca: KeyPair
    unknown_server: KeyPair


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    directory: Path = tmp_path_factory.mktemp("tls")
    ca = make_ca(directory)
    elsewhere = directory / "unknown"
    elsewhere.mkdir()
    unknown_ca = make_ca(elsewhere, name="a CA nobody trusts")
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    return TlsFiles(
        ca=ca,
        server=issue(ca, directory, "server", LOCAL_HOSTS),
        client=issue(ca, directory, "client", ("crossbank-client",)),
        expired=issue(ca, directory, "expired", LOCAL_HOSTS, valid_from=long_ago, days=1),
        other_host=issue(ca, directory, "other-host", ("bank.example",)),
        unknown_ca=unknown_ca,
        unknown_server=issue(unknown_ca, elsewhere, "server", LOCAL_HOSTS),
    )


@pytest.fixture
def quiet_sdk_retries() -> Iterator[None]:
    """The SDK's retry warnings silenced: in tests that take its server away on purpose."""
    logger = logging.getLogger("resonate")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)
