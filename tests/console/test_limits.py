"""The console under hostile clients holds the limits the store and the banks hold.

A real ``crossbank console`` process, with small limits, serves a real local
system while attackers open idle connections past its open-file limit, send
request heads a byte at a time, and open event streams they never read. A
well-formed client (a page's two requests: the state and a live stream)
must keep being answered throughout, and the console's log must not flood.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.local.supervisor import ManagedProcess, free_port
from orchestrator.local.system import LocalSystem
from orchestrator.settings import Settings
from tests.promise_store.test_http_limits import wait_given_up

MAX_CONNECTIONS = 64
LIMITS = {
    "CONSOLE_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    "CONSOLE_IDLE_TIMEOUT": "1",
    "CONSOLE_HEADER_TIMEOUT": "1",
    "CONSOLE_BODY_TIMEOUT": "1",
    "CONSOLE_MAX_CLIENTS": "4",
    "CONSOLE_MAX_CLIENTS_PER_TOKEN": "2",
}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSystem]:
    with LocalSystem(tmp_path_factory.mktemp("limits"), Settings(group="limits"), workers=0) as up:
        yield up


@contextlib.contextmanager
def console(system: LocalSystem, log: Path, open_files: int | None = None) -> Iterator[int]:
    """``crossbank console`` against ``system``, with small limits (and a low open-file limit)."""
    port = free_port()
    process = ManagedProcess(
        "orchestrator",
        args=("console", "--port", str(port)),
        env={**system.child_env, **LIMITS},
        health_url=f"http://127.0.0.1:{port}/health",
        log_path=log,
    )
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if open_files is not None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, hard))  # inherited
    try:
        process.start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        yield port
    finally:
        process.stop()


class Page:
    """A well-formed page, from its own thread: reads the state again and again."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/api/state"
        self.answered = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    assert response.status == 200
                    self.answered += 1
            except Exception as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
            if time.monotonic() - started > 5:
                self.failures.append("an answer took over 5 s")
            self._stop.wait(0.1)

    def __enter__(self) -> Page:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)


def sockets_to(port: int, count: int) -> list[socket.socket]:
    opened = []
    for _ in range(count):
        with contextlib.suppress(OSError):
            opened.append(socket.create_connection(("127.0.0.1", port), timeout=5))
    return opened


def test_more_idle_connections_than_open_files(system: LocalSystem, tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    with console(system, log, open_files=256) as port, Page(port) as page:
        idle = sockets_to(port, 400)
        time.sleep(2.0)
        for sock in idle:
            sock.close()
        time.sleep(0.5)
    assert page.failures == []
    assert page.answered >= 5
    text = log.read_text()
    assert "Too many open files" not in text
    assert len(text.splitlines()) < 50


def test_slow_heads_past_the_cap_never_lock_a_page_out(system: LocalSystem, tmp_path: Path) -> None:
    with console(system, tmp_path / "console.log") as port, Page(port) as page:
        slow = sockets_to(port, MAX_CONNECTIONS + 16)
        deadline = time.monotonic() + 4
        for sock in slow:
            sock.sendall(b"GET /api/state HTTP/1.1\r\n")
        while time.monotonic() < deadline:
            for sock in slow:
                with contextlib.suppress(OSError):
                    sock.send(b"X-A: a\r\n")  # a header line now and then, never the end
            time.sleep(0.3)
        assert wait_given_up(slow) == 0
        for sock in slow:
            sock.close()
    assert page.failures == []
    assert page.answered >= 5


def test_streams_nobody_reads_take_no_page_s_place(system: LocalSystem, tmp_path: Path) -> None:
    with console(system, tmp_path / "console.log") as port:
        unread = sockets_to(port, 8)
        for sock in unread:
            sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        time.sleep(0.5)
        opened = 0
        for _ in range(40):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/events", timeout=5) as page:
                assert page.status == 200
                assert page.readline() == b"retry: 1000\n"
                opened += 1
        assert opened == 40
        for sock in unread:
            sock.close()
