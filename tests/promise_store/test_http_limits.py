"""The served store under hostile clients: it stays up, stays bounded and keeps answering.

Each test runs one attack against a real store process started with small
limits (its own settings), while a well-formed client -- the product's own
store link, :class:`orchestrator.store_network.StoreNetwork` -- keeps reading
one promise. Then it checks that the store still runs, that its resident
memory and open file descriptors stayed bounded while under attack, that
every well-formed request was answered, and that the promise did not change.
Loopback only; every loop is bounded by a count and a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestrator.store_network import StoreNetwork
from promise_store.http import FD_RESERVE
from tests.promise_store.conftest import StoreServer
from tests.promise_store.test_served import envelope

TOKEN = "hostile-suite-token"
MAX_CONNECTIONS = 64
LIMITS = {
    "RESONATE_TOKEN": TOKEN,
    "MAX_HEADER_BYTES": "8192",
    "MAX_URL_BYTES": "2048",
    "MAX_BODY_BYTES": "262144",
    "MAX_PIPELINED_REQUESTS": "2",
    "MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    "IDLE_TIMEOUT": "1",
    "HEADER_TIMEOUT": "1",
    "BODY_TIMEOUT": "1",
}
#: What an attack may add to the store's resident memory. Every attack below
#: sends at least 40 MB that an unbounded store would hold.
RSS_GROWTH_BOUND_KB = 16 * 1024
#: What an attack may add to its open descriptors: the connection cap and the
#: descriptors the store keeps free of connections.
FD_GROWTH_BOUND = MAX_CONNECTIONS + FD_RESERVE
#: A well-formed request unanswered this long counts as not answered.
ANSWER_WITHIN_S = 5.0
#: How long the store has to close a connection it should give up on.
CLOSE_WITHIN_S = 6.0
KEPT_ID = "kept-1"


# -- what is measured ---------------------------------------------------------------


@dataclass
class Footprint:
    rss_kb: int
    fds: int


def footprint(pid: int) -> Footprint:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return Footprint(int(rss.split()[1]), len(list(Path(f"/proc/{pid}/fd").iterdir())))


class PeakFootprint:
    """Samples a process's footprint from a thread while an attack runs; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = footprint(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            with contextlib.suppress(OSError):
                now = footprint(self.pid)
                self.peak = Footprint(
                    max(self.peak.rss_kb, now.rss_kb), max(self.peak.fds, now.fds)
                )

    def __enter__(self) -> PeakFootprint:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


class WellFormedClient:
    """The product's store link reading one promise in a loop, from its own thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[dict[str, Any]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        network = StoreNetwork(self.url, token=TOKEN)
        await network.start()
        request = envelope("promise.get", {"id": KEPT_ID}).decode()
        try:
            while not self._stop.is_set():
                try:
                    reply = await asyncio.wait_for(network.send(request), ANSWER_WITHIN_S)
                    self.answers.append(json.loads(reply))
                except TimeoutError:
                    self.failures.append(f"no answer within {ANSWER_WITHIN_S}s")
                await asyncio.sleep(0.05)
        finally:
            await network.stop()

    def __enter__(self) -> WellFormedClient:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(ANSWER_WITHIN_S + 5)


# -- talking to the store -------------------------------------------------------------


def post(server: StoreServer, body: bytes) -> dict[str, Any]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAuthorization: Bearer %s\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (TOKEN.encode(), len(body), body)
        )
        raw = b"".join(iter(lambda: sock.recv(65536), b""))
    reply: dict[str, Any] = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    return reply


def kept_promise(server: StoreServer) -> dict[str, Any]:
    promise: dict[str, Any] = post(server, envelope("promise.get", {"id": KEPT_ID}))["data"][
        "promise"
    ]
    return promise


def open_socket(server: StoreServer, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=timeout)


def given_up_on(sock: socket.socket) -> bool:
    """Whether the store answered (a refusal) or closed ``sock``; never blocks."""
    sock.settimeout(0)
    try:
        sock.recv(65536)
    except BlockingIOError:
        return False
    except OSError:
        return True  # reset
    return True  # an answer, or the end of the stream


def wait_given_up(sockets: list[socket.socket], within: float = CLOSE_WITHIN_S) -> int:
    """How many of ``sockets`` the store still holds after waiting up to ``within`` s."""
    holding = list(sockets)
    deadline = time.monotonic() + within
    while holding and time.monotonic() < deadline:
        holding = [sock for sock in holding if not given_up_on(sock)]
        time.sleep(0.1)
    return len(holding)


def send_until_blocked(sock: socket.socket, pieces: Iterator[bytes], stall_s: float = 1.0) -> int:
    """Send ``pieces`` until they run out, the store hangs up, or a send stalls ``stall_s``."""
    sock.settimeout(stall_s)
    sent = 0
    with contextlib.suppress(OSError):  # timeout (the store stopped reading) or reset
        for piece in pieces:
            sock.sendall(piece)
            sent += len(piece)
    return sent


# -- the harness around each attack ---------------------------------------------------


@pytest.fixture
def hostile(server_factory: Callable[..., StoreServer]) -> Callable[..., StoreServer]:
    """A store with small limits and one promise in it; ``env`` overrides settings."""

    def start(**env: str) -> StoreServer:
        server = server_factory(**{**LIMITS, **env}).start()
        created = post(
            server,
            envelope("promise.create", {"id": KEPT_ID, "timeoutAt": 2**62, "param": {}}),
        )
        assert created["head"]["status"] == 201
        return server

    return start


@contextlib.contextmanager
def attacked(server: StoreServer) -> Iterator[None]:
    """Run the block as an attack; then assert the store is unharmed (see the module)."""
    promise_before = kept_promise(server)
    with WellFormedClient(server.url) as client:
        deadline = time.monotonic() + ANSWER_WITHIN_S
        while not client.answers and time.monotonic() < deadline:
            time.sleep(0.05)  # connected and answered once before the attack
        assert client.answers, "the well-formed client got no answer before the attack"
        before = footprint(server.proc.pid)
        with PeakFootprint(server.proc.pid) as sampler:
            yield
            time.sleep(0.3)  # the well-formed client asks at least once more
    assert server.proc.running(), "the store died under attack"
    grown_kb = sampler.peak.rss_kb - before.rss_kb
    assert grown_kb < RSS_GROWTH_BOUND_KB, f"RSS grew {grown_kb} KB under attack"
    grown_fds = sampler.peak.fds - before.fds
    assert grown_fds < FD_GROWTH_BOUND, f"{grown_fds} more open descriptors under attack"
    assert client.failures == []
    assert len(client.answers) >= 2
    assert all(a["data"]["promise"] == promise_before for a in client.answers)
    assert kept_promise(server) == promise_before


# -- the attacks ------------------------------------------------------------------------


def test_unterminated_huge_headers(hostile: Callable[..., StoreServer]) -> None:
    server = hostile()
    filler = b"a" * (256 << 10)
    with attacked(server):
        sockets = [open_socket(server) for _ in range(4)]
        for sock in sockets:
            sock.sendall(
                b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Filler: "
            )
            send_until_blocked(sock, iter([filler] * 64))  # 16 MiB, never terminated
        assert wait_given_up(sockets) == 0
        for sock in sockets:
            sock.close()


def test_huge_url(hostile: Callable[..., StoreServer]) -> None:
    server = hostile()
    with attacked(server):
        sock = open_socket(server)
        sock.sendall(b"GET /")
        send_until_blocked(sock, iter([b"a" * (256 << 10)] * 160))  # 40 MiB
        with contextlib.suppress(OSError):
            sock.sendall(b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        sock.settimeout(CLOSE_WITHIN_S)
        with contextlib.suppress(OSError):
            assert sock.recv(100).startswith(b"HTTP/1.1 414 ")
        assert wait_given_up([sock]) == 0
        sock.close()


def test_pipelined_bodies_with_no_reads(hostile: Callable[..., StoreServer]) -> None:
    """A token holder pipelines 300 bodies of 200 KiB (60 MB) and never reads an answer.

    Each asks for a promise whose answer is 200 KiB too, so the answers fill the
    socket buffers after a few dozen and the store can no longer send.
    """
    server = hostile()
    pad = "x" * (200 << 10)
    created = post(
        server,
        envelope("promise.create", {"id": "big-1", "timeoutAt": 2**62, "param": {"data": pad}}),
    )
    assert created["head"]["status"] == 201
    body = envelope("promise.get", {"id": "big-1", "pad": pad})
    request = (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n"
        % (TOKEN.encode(), len(body))
        + body
    )
    with attacked(server):
        sock = open_socket(server)
        send_until_blocked(sock, iter([request] * 300))
        sock.close()


def test_thousands_of_idle_connections(hostile: Callable[..., StoreServer]) -> None:
    server = hostile()
    with attacked(server):
        sockets = []
        for _ in range(3000):
            with contextlib.suppress(OSError):
                sockets.append(open_socket(server))
        # Past the cap the oldest idle ones were closed; the rest time out idle.
        assert wait_given_up(sockets[-MAX_CONNECTIONS:]) == 0
        for sock in sockets:
            sock.close()


def test_more_idle_connections_than_open_files(hostile: Callable[..., StoreServer]) -> None:
    """The store started with 256 open files allowed and 400 idle clients."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))  # inherited by the store
    try:
        server = hostile(MAX_CONNECTIONS="1000", IDLE_TIMEOUT="30")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    with attacked(server):
        sockets = []
        for _ in range(400):
            with contextlib.suppress(OSError):
                sockets.append(open_socket(server))
        time.sleep(1.0)
        for sock in sockets:
            sock.close()
    log = server.log.read_text()
    assert "out of system resource" not in log
    assert len(log.splitlines()) < 50


def test_slowloris_and_slow_bodies(hostile: Callable[..., StoreServer]) -> None:
    """More slow senders than the connection cap: headers, or a body, a byte at a time."""
    server = hostile()
    with attacked(server):
        slow_heads = [open_socket(server) for _ in range(MAX_CONNECTIONS + 16)]
        for sock in slow_heads:
            sock.sendall(
                b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            )
        slow_bodies = [open_socket(server) for _ in range(8)]
        for sock in slow_bodies:
            sock.sendall(
                b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAuthorization: Bearer %s\r\n"
                b"Content-Length: 1000\r\n\r\n{" % TOKEN.encode()
            )
        holding = slow_heads + slow_bodies
        deadline = time.monotonic() + CLOSE_WITHIN_S
        while holding and time.monotonic() < deadline:
            for sock in holding:
                with contextlib.suppress(OSError):
                    sock.send(b"a" if sock in slow_bodies else b"X-A: a\r\n")
            holding = [sock for sock in holding if not given_up_on(sock)]
            time.sleep(0.2)
        assert holding == []
        for sock in slow_heads + slow_bodies:
            sock.close()
