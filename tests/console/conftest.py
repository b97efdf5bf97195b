"""A local crossbank with its console, as ``crossbank demo`` runs them, for the console's tests.

Starting the banks, the store, a worker and the console costs seconds, so a
module shares one; each test uses its own transfers and leaves the system as
it found it (one live worker, both banks up, no fault rules).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By

from orchestrator.cli import commands
from orchestrator.console.browser import DESKTOP, chromium, wait_for
from orchestrator.console.config import ConsoleSettings
from orchestrator.console.local import LocalControl
from orchestrator.console.running import ConsoleThread
from orchestrator.local.stage import demo_settings
from orchestrator.local.supervisor import LocalTls, free_port
from orchestrator.local.system import STORE_BACKEND, LocalSystem
from orchestrator.settings import Settings


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (marked ``pytest.mark.anyio``) run on asyncio, the SDK's loop."""
    return "asyncio"


#: Short leases: a killed worker's transfer moves to a new worker two seconds later.
LEASE_TTL = 2.0


@dataclass
class LocalConsole:
    """A running local system and the address of its console."""

    system: LocalSystem
    address: str

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        return call(self.address + path, headers=headers)

    def post(
        self, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        return call(self.address + path, body=body if body is not None else {}, headers=headers)

    def state(self) -> dict[str, Any]:
        status, body = self.get("/api/state")
        assert status == 200, body
        sections: dict[str, Any] = body["sections"]
        return sections

    def op_counts(self, transfer_id: str) -> dict[str, int]:
        """How many entries both ledgers hold for each of the transfer's op ids."""
        entries = asyncio.run(self.system.entries(f"{transfer_id}-"))
        counts = dict.fromkeys((f"{transfer_id}-{k}" for k in ("debit", "credit", "reversal")), 0)
        for entry in entries:
            counts[entry["op_id"]] += 1
        return counts


def call(url: str, *, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """One HTTP call; ``body`` makes it a JSON POST. Returns the status and the JSON answer."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


@contextlib.contextmanager
def local_console(
    data_dir: Path,
    *,
    backend: str = STORE_BACKEND,
    console: ConsoleSettings | None = None,
    settings: Settings | None = None,
    tls: LocalTls | None = None,
) -> Iterator[LocalConsole]:
    """A seeded local system (fault injection on) with one worker and its console.

    ``settings`` (default: the demo's) may give the banks and the store tokens;
    ``tls`` makes them serve https.
    """
    system = LocalSystem(
        data_dir,
        settings or demo_settings(LEASE_TTL),
        faults=True,
        backend=backend,
        tls=tls,
    )
    with system:
        asyncio.run(commands.seed_command(system.settings))
        serving = console or ConsoleSettings(port=free_port())
        with ConsoleThread(system.settings, serving, LocalControl(system)) as running:
            assert running.address is not None
            yield LocalConsole(system, running.address)


@contextlib.contextmanager
def page_of(played: LocalConsole) -> Iterator[Chrome]:
    """A headless browser on ``played``'s page, once the page has its first state."""
    with chromium(DESKTOP) as driver:
        driver.get(played.address)
        wait_for(
            lambda: driver.find_element(By.CSS_SELECTOR, "body[data-loaded]"),
            what="the first state",
        )
        yield driver
