"""Hostile clients against one bank: can a well-formed client still get answers?

Starts ``python -m source_bank`` with a token and a private temp directory,
then runs two attacks and prints what a well-formed client saw:

- ``--idle`` connections that send nothing, and ``--slowloris`` connections
  that send one header line every ``--trickle`` seconds and never finish;
  with them open, ``--probes`` requests from a fresh well-formed client, each
  allowed ``--probe-timeout`` seconds: how many were answered.
- ``--parallel`` uploads of ``--body-mb`` MB with no token: what each got
  back, and the most temp-disk space the bank held at once (measured from the
  bank's open files under its temp directory, which it deletes on open).

    .venv/bin/python bench/hostile_bank.py --idle 200 --slowloris 300 \\
        --parallel 4 --body-mb 1000

The attack helpers are also what ``tests/bank/test_hostile.py`` uses.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests

from orchestrator.local.supervisor import local_url
from orchestrator.local.system import SOURCE, LocalSystem
from orchestrator.settings import Settings

TOKEN = "bench-token"
#: Bytes per send of a large body: small enough to notice an early answer.
UPLOAD_CHUNK = 256 * 1024


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


@contextlib.contextmanager
def idle_connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections that connect and then say nothing."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sockets.append(_connect(port))
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


@contextlib.contextmanager
def slowloris_connections(
    port: int, count: int, trickle_seconds: float = 1.0
) -> Iterator[list[socket.socket]]:
    """``count`` connections that start a request and add a header line every ``trickle_seconds``.

    A connection the bank closes is replaced, as an attacker would do, so the
    count stays at ``count`` for as long as the block runs.
    """
    sockets: list[socket.socket] = []
    stop = threading.Event()

    def start_one() -> socket.socket:
        sock = _connect(port)
        sock.sendall(b"GET /accounts HTTP/1.1\r\nHost: bank\r\n")
        return sock

    def trickle() -> None:
        line = 0
        while not stop.wait(trickle_seconds):
            line += 1
            for index, sock in enumerate(sockets):
                if stop.is_set():
                    return
                try:
                    sock.sendall(f"X-Slow-{line}: x\r\n".encode())
                except OSError:
                    sock.close()
                    with contextlib.suppress(OSError):
                        sockets[index] = start_one()

    for _ in range(count):
        sockets.append(start_one())
    thread = threading.Thread(target=trickle, name="slowloris", daemon=True)
    thread.start()
    try:
        yield sockets
    finally:
        stop.set()
        thread.join(timeout=trickle_seconds + 10)
        for sock in sockets:
            sock.close()


def well_formed_answers(
    url: str, probes: int, timeout: float, *, token: str = TOKEN, pause: float = 0.2
) -> int:
    """How many of ``probes`` authorised ``GET /accounts``, each on a new connection, got a 200."""
    answered = 0
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(probes):
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{url}/accounts", headers=headers, timeout=timeout).status_code == 200:
                answered += 1
        time.sleep(pause)
    return answered


@dataclass(frozen=True)
class Upload:
    status: int | None  # None: no answer came back
    bytes_sent: int
    seconds: float


def upload_without_token(port: int, body_bytes: int, path: str = "/entries") -> Upload:
    """POST ``body_bytes`` of body with no token, reading the answer as soon as there is one."""
    started = time.monotonic()
    sent = 0
    head = (
        f"POST {path} HTTP/1.1\r\nHost: bank\r\nContent-Type: application/json\r\n"
        f"Content-Length: {body_bytes}\r\n\r\n"
    ).encode()
    chunk = b"x" * UPLOAD_CHUNK
    with _connect(port) as sock:
        sock.settimeout(30)
        with contextlib.suppress(OSError):
            sock.sendall(head)
            while sent < body_bytes and not _readable(sock):
                piece = chunk[: body_bytes - sent]
                sock.sendall(piece)
                sent += len(piece)
        status = _read_status(sock)
    return Upload(status, sent, time.monotonic() - started)


def _readable(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


def _read_status(sock: socket.socket) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        line = sock.recv(4096).split(b"\r\n", 1)[0]
        return int(line.split()[1])
    return None


def temp_bytes_held(pid: int, temp_dir: Path) -> int:
    """Disk space of the files ``pid`` has open under ``temp_dir`` (deleted ones included)."""
    total = 0
    fd_dir = Path(f"/proc/{pid}/fd")
    prefix = str(temp_dir)
    with contextlib.suppress(OSError):
        for fd in fd_dir.iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd).startswith(prefix):
                    total += fd.stat().st_blocks * 512
    return total


@contextlib.contextmanager
def peak_temp_bytes(pid: int, temp_dir: Path, every: float = 0.02) -> Iterator[list[int]]:
    """Sample :func:`temp_bytes_held` while the block runs; ``result[0]`` is the peak."""
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], temp_bytes_held(pid, temp_dir))
            stop.wait(every)

    thread = threading.Thread(target=sample, name="temp-sampler", daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join(timeout=5)
        peak[0] = max(peak[0], temp_bytes_held(pid, temp_dir))


def hostile_bank(directory: Path, extra_env: dict[str, str] | None = None) -> LocalSystem:
    """A source bank alone, with :data:`TOKEN`, its ledger, log and temp files under ``directory``."""
    temp_dir = directory / "tmp"
    temp_dir.mkdir(parents=True, exist_ok=True)
    return LocalSystem(
        directory,
        Settings(bank_token=TOKEN),
        run=(SOURCE,),
        workers=0,
        env={SOURCE: {"TMPDIR": str(temp_dir), **(extra_env or {})}},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--idle", type=int, default=200)
    parser.add_argument("--slowloris", type=int, default=300)
    parser.add_argument("--trickle", type=float, default=1.0, help="seconds between header lines")
    parser.add_argument("--probes", type=int, default=11)
    parser.add_argument("--probe-timeout", type=float, default=2.0)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--body-mb", type=int, default=1000)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="hostile-bank-") as name:
        directory = Path(name)
        with hostile_bank(directory) as system:
            bank, port = system.part(SOURCE), system.ports[SOURCE]
            url = local_url(port)
            with idle_connections(port, args.idle):
                answered = well_formed_answers(url, args.probes, args.probe_timeout)
            print(f"{args.idle} idle connections: {answered} of {args.probes} answered")
            with slowloris_connections(port, args.slowloris, args.trickle):
                answered = well_formed_answers(url, args.probes, args.probe_timeout)
            print(f"{args.slowloris} slowloris connections: {answered} of {args.probes} answered")

            body = args.body_mb * 1_000_000
            with (
                peak_temp_bytes(bank.pid, directory / "tmp") as peak,
                ThreadPoolExecutor(args.parallel) as pool,
            ):
                uploads = list(
                    pool.map(lambda _: upload_without_token(port, body), range(args.parallel))
                )
            statuses = sorted(str(upload.status) for upload in uploads)
            slowest = max(upload.seconds for upload in uploads)
            most_sent = max(upload.bytes_sent for upload in uploads)
            print(
                f"{args.parallel} parallel {args.body_mb} MB bodies with no token: "
                f"answers {', '.join(statuses)}; peak temp disk {peak[0] / 1e6:.1f} MB; "
                f"at most {most_sent / 1e6:.1f} MB sent before the answer; {slowest:.1f} s"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
