"""Start crossbank's parts as local processes, wait until they answer, kill them.

The local demo, the crash demo, the chaos runner and the tests all need the
same thing: run ``python -m <package>`` with some environment, know when it is
ready (its ``GET /health`` answers 200), and later stop it politely or kill it
with SIGKILL to see what survives. One small class does that, and
:func:`bank_process`, :func:`store_process` and :func:`worker_process` say how
each part is started, so every caller starts the parts exactly the way
``compose.yaml`` and a user would.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from envsettings.tls import ClientTls, client_context

#: What a worker's log says once its push channel to the promise store is open
#: (the SDK logs it): from then on, work sent to the worker's group reaches it.
#: A worker has no health URL, so this line is how callers know it is ready.
WORKER_READY_LOG = "SSE connection established"
#: The same moment on Resonate on Postgres: the connector LISTENs for the
#: group's and its own outbox rows (``resonate_pg`` logs it).
POSTGRES_WORKER_READY_LOG = "postgres listening"


def worker_ready_log(env: Mapping[str, str]) -> str:
    """The ready line of a worker started with ``env`` (its backend decides it)."""
    return POSTGRES_WORKER_READY_LOG if env.get("RESONATE_PG_DSN") else WORKER_READY_LOG


#: ``CROSSBANK_LOCAL_PORTS``: a range ``LOW-HIGH`` that :func:`free_port` draws from;
#: unset, the kernel picks an ephemeral port.
LOCAL_PORTS_VARIABLE = "CROSSBANK_LOCAL_PORTS"
_next_port: dict[tuple[int, int], int] = {}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, for a process about to start.

    The kernel picks one, unless ``CROSSBANK_LOCAL_PORTS`` names a range:
    then the next free port of that range, from a random start, so that
    test runs in parallel (each given a range of its own, below the
    kernel's ephemeral ports) never hand out the same port, and no outgoing
    connection takes a port between the moment it is chosen and the
    moment its server binds it.
    """
    span = _local_ports()
    if span is None:
        return _bindable(0)
    low, high = span
    size = high - low + 1
    start = _next_port.get(span, low + random.randrange(size))
    for offset in range(size):
        port = low + (start - low + offset) % size
        with contextlib.suppress(OSError):
            _bindable(port)
            _next_port[span] = low + (port - low + 1) % size
            return port
    raise ServiceError(f"no free port left in {LOCAL_PORTS_VARIABLE}={low}-{high}")


def _local_ports() -> tuple[int, int] | None:
    raw = os.environ.get(LOCAL_PORTS_VARIABLE, "").strip()
    if not raw:
        return None
    low, sep, high = raw.partition("-")
    if not (sep and low.isdigit() and high.isdigit() and 0 < int(low) <= int(high) < 65536):
        raise ValueError(f"{LOCAL_PORTS_VARIABLE} must be LOW-HIGH, like 20000-21999, got {raw!r}")
    return int(low), int(high)


def _bindable(port: int) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))
        bound: int = sock.getsockname()[1]
        return bound


@dataclass(frozen=True)
class LocalTls:
    """TLS for local parts: the certificate they serve (for 127.0.0.1 and localhost), and its CA.

    :func:`orchestrator.local.certs.local_tls` makes one.
    """

    ca: Path
    cert: Path
    key: Path

    @property
    def client(self) -> ClientTls:
        """What a client of these parts trusts: their CA."""
        return ClientTls(ca_file=self.ca)

    def server_env(self, prefix: str = "") -> dict[str, str]:
        """The settings that make a part serve this certificate (``CONSOLE_`` for the console)."""
        return {f"{prefix}TLS_CERT_FILE": str(self.cert), f"{prefix}TLS_KEY_FILE": str(self.key)}


#: What a part started without TLS is given, so that the caller's own settings do not leak in.
_NO_TLS = {"TLS_CERT_FILE": "", "TLS_KEY_FILE": "", "TLS_CLIENT_CA_FILE": ""}


class ServiceError(RuntimeError):
    """A managed process did not start, or died while it was expected to run."""


class ManagedProcess:
    """One ``python -m module`` child process with a health URL or a ready line.

    ``env`` is added to a copy of this process's environment. Output goes to
    ``log_path`` (appended, so a restart keeps the earlier run's lines), or is
    discarded when no path is given. The process counts as ready once
    ``health_url`` answers 200 and, when ``ready_log`` is given, once that text
    appears in its log (for processes that serve no HTTP, like a worker).
    """

    def __init__(
        self,
        module: str,
        *,
        args: tuple[str, ...] = (),
        env: Mapping[str, str] | None = None,
        health_url: str | None = None,
        log_path: Path | None = None,
        name: str | None = None,
        ready_log: str | None = None,
        health_tls: ssl.SSLContext | None = None,
    ) -> None:
        if ready_log is not None and log_path is None:
            raise ValueError("ready_log needs a log_path to read it from")
        self.module = module
        self.args = args
        self.env = dict(env or {})
        self.health_url = health_url
        #: Verifies an ``https://`` health URL.
        self.health_tls = health_tls
        self.log_path = log_path
        self.name = name or module
        self.ready_log = ready_log
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_start = 0

    @property
    def pid(self) -> int:
        if self.process is None:
            raise ServiceError(f"{self.name} is not running")
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, *, wait: bool = True, timeout: float = 30.0) -> ManagedProcess:
        """Start the process; with ``wait``, return only once it is ready (see the class)."""
        if self.running():
            raise ServiceError(f"{self.name} is already running (pid {self.pid})")
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
            self._log_start = self._log.tell()
            out: IO[bytes] | int = self._log
        else:
            out = subprocess.DEVNULL
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        if wait:
            self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Poll until the process is ready (see the class); fail fast if it exits."""
        if self.health_url is None and self.ready_log is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ServiceError(
                    f"{self.name} exited with code {self.process.returncode} before it was "
                    f"ready{self._log_hint()}"
                )
            if self._ready():
                return
            time.sleep(0.05)
        waited_for = f"at {self.health_url}" if self.health_url else f"({self.ready_log!r})"
        raise ServiceError(
            f"{self.name} was not ready {waited_for} within {timeout:.0f}s{self._log_hint()}"
        )

    def _ready(self) -> bool:
        if self.health_url is not None and not is_healthy(self.health_url, tls=self.health_tls):
            return False
        if self.ready_log is None:
            return True
        assert self.log_path is not None
        # Only this run's lines count: the log is appended to across restarts.
        with self.log_path.open("rb") as log:
            log.seek(self._log_start)
            return self.ready_log.encode() in log.read()

    def kill(self) -> None:
        """SIGKILL: no clean-up, no flush; what was acknowledged must survive."""
        self.signal(signal.SIGKILL)
        self._reap()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
        if not self.running():
            self._reap()
            return
        self.signal(signal.SIGTERM)
        try:
            assert self.process is not None
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
        self._reap()

    def signal(self, signum: int) -> None:
        if self.running():
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    def restart(self, *, wait: bool = True, timeout: float = 30.0) -> ManagedProcess:
        self.stop()
        return self.start(wait=wait, timeout=timeout)

    def _reap(self) -> None:
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def _log_hint(self) -> str:
        return f" (see {self.log_path})" if self.log_path is not None else ""

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def is_healthy(url: str, timeout: float = 1.0, *, tls: ssl.SSLContext | None = None) -> bool:
    """True when ``url`` answers 200 within ``timeout`` seconds (``tls`` verifies an https one)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=tls) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


# -- the parts, started the way compose.yaml and a user start them ----------------------
# Local parts listen on 127.0.0.1 only: a demo bank's fault API has no token.


def local_url(port: int, tls: LocalTls | None = None) -> str:
    """Where a local part listening on ``port`` answers (over ``https`` when it serves ``tls``)."""
    return f"{'https' if tls is not None else 'http'}://127.0.0.1:{port}"


def bank_process(
    role: str,
    *,
    port: int,
    ledger: Path,
    token: str | None = None,
    faults: bool | Sequence[Mapping[str, object]] = False,
    log_path: Path | None = None,
    name: str | None = None,
    env: Mapping[str, str] | None = None,
    tls: LocalTls | None = None,
) -> ManagedProcess:
    """``python -m {role}_bank`` (role ``source`` or ``target``) on 127.0.0.1:``port`` over ``ledger``.

    ``token`` guards its calls; ``faults`` turns on the fault admin API
    (``BANK_FAULTS``), which the demos, tests and chaos campaigns use to break
    it, and may be a list of rules the bank starts with; ``tls`` makes it serve
    https. ``env`` adds settings (its limits, say). The token, the fault switch
    and the TLS files are always given, so a ``BANK_TOKEN`` in the caller's
    environment does not leak into the bank.
    """
    if role not in ("source", "target"):
        raise ValueError(f"a bank's role is 'source' or 'target', not {role!r}")
    bank_env = {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LEDGER_PATH": str(ledger),
        "BANK_TOKEN": token or "",
        "BANK_FAULTS": _fault_switch(faults),
        **(tls.server_env() if tls is not None else _NO_TLS),
        **(env or {}),
    }
    return ManagedProcess(
        f"{role}_bank",
        env=bank_env,
        health_url=f"{local_url(port, tls)}/health",
        health_tls=client_context(tls.client) if tls is not None else None,
        log_path=log_path,
        name=name or f"{role} bank",
    )


def _fault_switch(faults: bool | Sequence[Mapping[str, object]]) -> str:
    """``BANK_FAULTS``: empty (off), ``1`` (on), or the JSON list of rules to start with."""
    if isinstance(faults, bool):
        return "1" if faults else ""
    return json.dumps(list(faults))


def store_process(
    *,
    port: int,
    path: Path,
    token: str | None = None,
    log_path: Path | None = None,
    name: str = "promise store",
    env: Mapping[str, str] | None = None,
    tls: LocalTls | None = None,
) -> ManagedProcess:
    """``python -m promise_store`` on 127.0.0.1:``port`` journaling to ``path``; ``env`` adds settings.

    ``tls`` makes it serve https. The token and the TLS files are always given
    (empty for none), so the caller's own ``RESONATE_TOKEN`` does not leak into the store.
    """
    store_env = {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "STORE_PATH": str(path),
        "RESONATE_TOKEN": token or "",
        **(tls.server_env() if tls is not None else _NO_TLS),
        **(env or {}),
    }
    return ManagedProcess(
        "promise_store",
        env=store_env,
        health_url=f"{local_url(port, tls)}/health",
        health_tls=client_context(tls.client) if tls is not None else None,
        log_path=log_path,
        name=name,
    )


def worker_process(
    env: Mapping[str, str], *, log_path: Path, name: str, wait_ready: bool = True
) -> ManagedProcess:
    """``python -m orchestrator.worker`` with ``env`` (its settings).

    Starting it waits, by default, until it listens to the store
    (:func:`worker_ready_log`); ``wait_ready=False`` returns as soon as it runs,
    for callers that start workers while the store may be down.
    """
    return ManagedProcess(
        "orchestrator.worker",
        env=env,
        log_path=log_path,
        name=name,
        ready_log=worker_ready_log(env) if wait_ready else None,
    )
