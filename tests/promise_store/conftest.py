"""Fixtures that run the promise store and small Resonate programs as real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from orchestrator.local.supervisor import local_url
from orchestrator.local.system import STORE, LocalSystem

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 60.0


class StoreServer:
    """``python -m promise_store`` on a free port with a tmp journal."""

    def __init__(self, tmp: Path, **env: str) -> None:
        system = LocalSystem(
            tmp, run=(STORE,), workers=0, env={STORE: {"TICK_INTERVAL": "0.2", **env}}
        )
        self.port = system.ports[STORE]
        self.url = local_url(self.port)
        self.path = system.data_file(STORE)
        self.proc = system.part(STORE)
        assert self.proc.log_path is not None
        self.log = self.proc.log_path

    def start(self) -> StoreServer:
        self.proc.start(timeout=WAIT_S)
        return self

    def kill(self) -> None:
        self.proc.kill()

    def stop(self) -> None:
        self.proc.stop()


class App:
    """One run of ``tests.promise_store.workflow_app`` (stdout piped, stderr to a log)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._log_file = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.promise_store.workflow_app", *args],
            cwd=REPO,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            stdin=subprocess.DEVNULL,
        )

    def result(self, timeout: float = WAIT_S) -> dict[str, object]:
        """The JSON line the program prints once its invocation has a result."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.strip():
                parsed: dict[str, object] = json.loads(line)
                return parsed
            if self.proc.poll() is not None:
                break
        raise AssertionError(f"no result from {self.proc.args!r}; see {self.log}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log_file.close()


class Steps:
    """The file workflow steps append to, and the gate directory that holds them."""

    def __init__(self, tmp: Path) -> None:
        self.log = tmp / "steps.log"
        self.log.touch()
        self.gates = tmp / "gates"
        self.gates.mkdir()

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines()

    def count(self, line: str) -> int:
        return self.lines().count(line)

    def wait_for(self, line: str, timeout: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if line in self.lines():
                return
            time.sleep(0.05)
        raise AssertionError(f"{line!r} never appeared in {self.lines()}")

    def hold(self, step: int) -> None:
        (self.gates / f"hold-{step}").touch()

    def release(self, step: int) -> None:
        (self.gates / f"open-{step}").touch()

    def env(self, ttl_s: float = 10.0) -> dict[str, str]:
        """Environment for workflow_app; a short ``ttl_s`` only where a lease must expire."""
        return {"STEP_LOG": str(self.log), "GATE_DIR": str(self.gates), "TTL_S": str(ttl_s)}


@pytest.fixture
def steps(tmp_path: Path) -> Steps:
    return Steps(tmp_path)


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., App]]:
    """Start workflow_app processes; every one still running is killed at the end."""
    apps: list[App] = []

    def start(*args: str, env: dict[str, str]) -> App:
        app = App(list(args), env, tmp_path / f"app-{len(apps)}.log")
        apps.append(app)
        return app

    yield start
    for app in apps:
        app.kill()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., StoreServer]]:
    servers: list[StoreServer] = []

    def make(**env: str) -> StoreServer:
        server = StoreServer(tmp_path, **env)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def server(server_factory: Callable[..., StoreServer]) -> StoreServer:
    return server_factory().start()
