"""The promise store under hostile clients, with its default limits: memory, descriptors, service.

    .venv/bin/python -m bench.hostile_store [--only NAME...]

Each attack runs against a fresh ``python -m promise_store`` (a token set; the
attacker has none unless the attack says so) and prints the store's resident
memory before, at its peak during and 1 s after the attack (its connections
closed), its open descriptors at the peak, how long the attack took to send,
and whether a well-formed request on a new connection was answered while the
attack's connections were still open (and how fast). The figures of the
hostile-client finding were taken this way.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import resource
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from orchestrator.local.supervisor import ManagedProcess, free_port, store_process

TOKEN = "bench-hostile-token"
MB = 1 << 20


@dataclass
class Figures:
    rss_before_mb: float
    rss_peak_mb: float
    rss_after_mb: float
    fds_peak: int
    attack_s: float
    answered: str
    log_lines: int


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


class Peak:
    """RSS and descriptors of ``pid``, sampled from a thread; keeps the highest."""

    def __init__(self, pid: int) -> None:
        self.pid, self.rss_mb, self.fds = pid, rss_mb(pid), fds(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            with contextlib.suppress(OSError):
                self.rss_mb = max(self.rss_mb, rss_mb(self.pid))
                self.fds = max(self.fds, fds(self.pid))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def post(port: int, kind: str, data: dict[str, object]) -> int:
    """One token-holding request on a new connection; its HTTP status."""
    body = json.dumps({"kind": kind, "head": {"corrId": "w", "version": "1"}, "data": data})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/", body, {"Authorization": f"Bearer {TOKEN}"})
        return conn.getresponse().status
    finally:
        conn.close()


def well_formed(port: int) -> str:
    """A ``promise.get`` on a new connection: its latency, or why it got no answer."""
    started = time.monotonic()
    try:
        status = post(port, "promise.get", {"id": "none"})
    except OSError as exc:
        return f"no ({type(exc).__name__} after {time.monotonic() - started:.1f} s)"
    return f"yes, {status} in {(time.monotonic() - started) * 1000:.0f} ms"


def connect(port: int) -> socket.socket | None:
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=10)
    except OSError:
        return None


def send_all(sock: socket.socket, pieces: Iterator[bytes], stall_s: float = 2.0) -> None:
    """Send until done, refused, or a send stalls ``stall_s`` (the store stopped reading)."""
    sock.settimeout(stall_s)
    with contextlib.suppress(OSError):
        for piece in pieces:
            sock.sendall(piece)


def chunks(total: int, size: int = 256 << 10) -> Iterator[bytes]:
    piece = b"a" * size
    for _ in range(total // size):
        yield piece


# -- attacks: each returns the sockets to hold open while the well-formed request runs ------


def unterminated_headers(port: int) -> list[socket.socket]:
    """8 connections, each sending a 64 MB header that never ends."""
    sockets = [s for s in (connect(port) for _ in range(8)) if s is not None]
    threads = []
    for sock in sockets:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Filler: "
        )
        thread = threading.Thread(target=send_all, args=(sock, chunks(64 * MB)))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    return sockets


def pipelined_bodies(port: int, token: bool = False) -> list[socket.socket]:
    """300 pipelined requests with a 1 MiB body each; no answer is ever read.

    With the token, each asks for a promise holding 512 KiB, so the answers fill
    the socket buffers after a few and the store can no longer send.
    """
    if token:
        param = {"headers": {}, "data": "v" * (512 << 10)}
        post(port, "promise.create", {"id": "big", "timeoutAt": 2**62, "param": param})
    body = json.dumps(
        {
            "kind": "promise.get",
            "head": {"corrId": "p", "version": "1"},
            "data": {"id": "big", "pad": "x" * (MB - 200)},
        }
    ).encode()
    auth = f"Authorization: Bearer {TOKEN}\r\n".encode() if token else b""
    request = (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n"
        % (auth, len(body))
        + body
    )
    sock = connect(port)
    assert sock is not None
    send_all(sock, iter([request] * 300))
    return [sock]


def huge_url(port: int) -> list[socket.socket]:
    """One request whose URL is 128 MB."""
    sock = connect(port)
    assert sock is not None
    sock.sendall(b"GET /")
    send_all(sock, chunks(128 * MB))
    with contextlib.suppress(OSError):
        sock.sendall(b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return [sock]


def idle_connections(count: int) -> Callable[[int], list[socket.socket]]:
    def attack(port: int) -> list[socket.socket]:
        return [s for s in (connect(port) for _ in range(count)) if s is not None]

    attack.__doc__ = f"{count:,} connections that send nothing"
    return attack


ATTACKS: dict[str, tuple[Callable[[int], list[socket.socket]], int | None]] = {
    "8 unterminated 64 MB headers": (unterminated_headers, None),
    "300 pipelined 1 MiB bodies, no token": (pipelined_bodies, None),
    "300 pipelined 1 MiB bodies, with the token": (
        lambda port: pipelined_bodies(port, token=True),
        None,
    ),
    "128 MB URL": (huge_url, None),
    "3,000 idle connections": (idle_connections(3000), None),
    "ulimit -n 1024, 1,100 idle connections": (idle_connections(1100), 1024),
}


@contextlib.contextmanager
def running_store(tmp: Path, nofile: int | None) -> Iterator[ManagedProcess]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if nofile is not None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))  # the store inherits it
    try:
        store = store_process(
            port=free_port(), path=tmp / "store.db", token=TOKEN, log_path=tmp / "store.log"
        ).start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        yield store
    finally:
        store.stop()


def run(name: str, attack: Callable[[int], list[socket.socket]], nofile: int | None) -> Figures:
    with tempfile.TemporaryDirectory() as tmp, running_store(Path(tmp), nofile) as store:
        port = int(store.env["PORT"])
        well_formed(port)  # warm
        time.sleep(0.5)
        before = rss_mb(store.pid)
        peak = Peak(store.pid)
        started = time.monotonic()
        sockets = attack(port)
        attack_s = time.monotonic() - started
        answered = well_formed(port)
        for sock in sockets:
            sock.close()
        time.sleep(1.0)
        peak.stop()
        after = rss_mb(store.pid)
        log_lines = len((Path(tmp) / "store.log").read_text().splitlines())
    return Figures(before, peak.rss_mb, after, peak.fds, attack_s, answered, log_lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", help="run the attacks whose names contain these")
    args = parser.parse_args()
    print(
        "| attack | RSS before, peak, after (MB) | peak fds | sent in | "
        "well-formed request meanwhile | store log lines |"
    )
    print("| --- | --- | ---: | ---: | --- | ---: |")
    for name, (attack, nofile) in ATTACKS.items():
        if args.only and not any(word in name for word in args.only):
            continue
        f = run(name, attack, nofile)
        print(
            f"| {name} | {f.rss_before_mb:.0f} / {f.rss_peak_mb:.0f} / {f.rss_after_mb:.0f} | "
            f"{f.fds_peak} | {f.attack_s:.1f} s | {f.answered} | {f.log_lines} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
