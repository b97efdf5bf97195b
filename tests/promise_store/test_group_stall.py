"""A listener that joins the workers' group and swallows what it is dealt must
not stall transfers: work it sat on is offered to the group's other listeners
well within a lease, not after the state machine's 30 s retry."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from promise_store.delivery import Delivery, Listener, Mailboxes
from tests.promise_store.conftest import App, Steps, StoreServer
from tests.promise_store.test_served import app_env

#: The orchestrator's default lease (``LEASE_TTL``): a transfer a swallowing
#: listener was dealt must still finish within it.
LEASE_S = 15.0
SWALLOWERS = 5


class Swallower:
    """A raw SSE client in the group that reads every message and acts on none."""

    def __init__(self, server: StoreServer, pid: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        request = f"GET /poll/workers/{pid} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        self.sock.sendall(request.encode())
        self.received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._swallow, daemon=True)
        self._thread.start()

    def _swallow(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            self.received += chunk.count(b'"kind":"execute"')

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def swallowers(server: StoreServer) -> Iterator[list[Swallower]]:
    group = [Swallower(server, f"swallower-{i}") for i in range(SWALLOWERS)]
    wait_for_log(server, "listener connected: workers/swallower-", SWALLOWERS)
    yield group
    for s in group:
        s.close()


def result_by(app: App, deadline: float) -> dict[str, object]:
    """``app``'s result, failing at ``deadline`` (its blocking read is left to the teardown)."""
    results: list[dict[str, object]] = []
    reader = threading.Thread(target=lambda: results.append(app.result()), daemon=True)
    reader.start()
    reader.join(max(deadline - time.monotonic(), 0.0))
    assert results, f"no result within the lease; see {app.log}"
    return results[0]


def wait_for_log(server: StoreServer, text: str, times: int = 1) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.log.read_text().count(text) >= times:
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared {times} time(s) in {server.log}")


def test_swallowing_listeners_cost_a_transfer_less_than_a_lease(
    server: StoreServer,
    swallowers: list[Swallower],
    launch: Callable[..., App],
    steps: Steps,
) -> None:
    env = app_env(server, steps, ttl_s=LEASE_S)
    # The swallowers joined first, so round-robin deals them the first messages.
    launch("worker", env=env)
    wait_for_log(server, "listener connected: workers/worker-")

    deadline = time.monotonic() + LEASE_S
    clients = [launch("run", f"g-{i}", "2", "0", env=env) for i in range(3)]
    for i, client in enumerate(clients):
        assert result_by(client, deadline) == {"id": f"g-{i}", "total": 30}
    assert sum(s.received for s in swallowers) >= 1, "no swallower was dealt any work"
    for i in range(3):
        assert steps.count(f"done g-{i} 1") == 1
        assert steps.count(f"done g-{i} 2") == 1


# -- the bounds of re-offered work -----------------------------------------------


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_reoffered_work_is_bounded_and_forgotten_once_taken() -> None:
    clock = FakeTime()
    mailboxes = Mailboxes(reoffer_after=1.0, max_watched=3, clock=clock)
    listeners = [mailboxes.connect("workers", f"p{i}") for i in range(8)]
    for n in range(5):
        mailboxes.route("poll://any@workers", f"m{n}", task=(f"t{n}", 0))
    assert mailboxes.watched_count() == 3, "outstanding dispatches are not bounded"

    taken = {"t3"}

    def still_pending(task_id: str, version: int) -> bool:
        return task_id not in taken

    # t2..t4 are watched (t0, t1 were shed); t3 was taken, so t2 and t4 are
    # offered to one more listener each.
    clock.now = 1.5
    assert mailboxes.reoffer_due(still_pending) == 2
    assert mailboxes.watched_count() == 2
    assert mailboxes.next_reoffer() == pytest.approx(2.5)
    assert sum(lis.queue.qsize() for lis in listeners) == 5 + 2
    # Each round offers the work to twice as many untried listeners; work that
    # every listener has had is no longer watched.
    clock.now = 3.0
    assert mailboxes.reoffer_due(still_pending) == 4
    assert mailboxes.watched_count() == 2
    clock.now = 5.0
    assert mailboxes.reoffer_due(still_pending) == 8
    assert mailboxes.watched_count() == 0
    assert mailboxes.next_reoffer() is None
    for lis in listeners:
        payloads = []
        while not lis.queue.empty():
            delivery = lis.queue.get_nowait()
            assert delivery is not None
            payloads.append(delivery.payload)
        assert len(payloads) == len(set(payloads)), "a listener was offered the same work twice"


def test_listeners_that_took_work_are_offered_it_first() -> None:
    clock = FakeTime()
    mailboxes = Mailboxes(reoffer_after=1.0, clock=clock)
    listeners = {pid: mailboxes.connect("workers", pid) for pid in ("s0", "s1", "s2", "w")}
    pending = {"t0", "t1", "t2", "t3", "t4"}

    def still_pending(task_id: str, version: int) -> bool:
        return task_id in pending

    for n in range(4):  # round-robin: t0->s0, t1->s1, t2->s2, t3->w
        mailboxes.route("poll://any@workers", f"m{n}", task=(f"t{n}", 0))
    pending.discard("t3")  # w took its own; s0..s2 sat on theirs
    clock.now = 1.0
    assert mailboxes.reoffer_due(still_pending) == 3
    # w proved itself in this very round, so every swallowed task went to it.
    offered = {pid: [d.payload for d in drain(lis)] for pid, lis in listeners.items()}
    assert offered == {"s0": ["m0"], "s1": ["m1"], "s2": ["m2"], "w": ["m3", "m0", "m1", "m2"]}


def drain(listener: Listener) -> list[Delivery]:
    out = []
    while not listener.queue.empty():
        delivery = listener.queue.get_nowait()
        assert delivery is not None
        out.append(delivery)
    return out
