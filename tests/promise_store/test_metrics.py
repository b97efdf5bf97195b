"""``GET /metrics`` of the served store: a real ``python -m promise_store`` over real HTTP.

Each test sends a known sequence of requests and reads back exact figures,
parsed as Prometheus parses them.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families
from resonate.connections.local import DurablePromise, Task, TaskState
from resonate.types import PromiseState

from promise_store.delivery import Mailboxes
from promise_store.indexed import IndexedServerState, PromiseTable
from promise_store.metrics import COUNT_SLICE, StoreMetrics
from promise_store.snapshot import decode_state, encode_state
from promise_store.state import JournaledState
from tests.promise_store.conftest import StoreServer

#: A label set, as a sorted tuple of (name, value), to the sample's value.
Samples = dict[tuple[tuple[str, str], ...], float]

PROMISE_STATES: tuple[PromiseState, ...] = (
    "pending",
    "resolved",
    "rejected",
    "rejected_canceled",
    "rejected_timedout",
)
TASK_STATES: tuple[TaskState, ...] = ("pending", "acquired", "suspended", "halted", "fulfilled")


def request(
    server: StoreServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str, bytes]:
    """(status, Content-Type, body) of one request on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, body, headers or {})
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        conn.close()


def send(server: StoreServer, kind: str, data: dict[str, Any], token: str | None = None) -> int:
    """POST one protocol request; returns the protocol status in the answer's head."""
    body = json.dumps(
        {"kind": kind, "head": {"corrId": "corr-x", "version": "2026-04-01"}, "data": data}
    ).encode()
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    _, _, answer = request(server, "POST", "/", body, headers)
    status: int = json.loads(answer)["head"]["status"]
    return status


def scrape(server: StoreServer, token: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    status, content_type, body = request(server, "GET", "/metrics", headers=headers)
    assert status == 200, body
    assert content_type.startswith("text/plain; version=")
    return body.decode()


def samples(text: str, name: str) -> Samples:
    """Every sample called ``name`` (a family's sample, e.g. ``..._total``), by its labels."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def by(label: str, found: Samples) -> dict[str, float]:
    """``found`` keyed by the one label each sample has."""
    return {dict(key)[label]: value for key, value in found.items()}


def one(text: str, name: str) -> float:
    found = samples(text, name)
    assert list(found) == [()], found
    return found[()]


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_request_counts_states_and_sizes_after_a_known_sequence(server: StoreServer) -> None:
    forever = 2**62
    target = {"resonate:target": "poll://any@metrics-test"}
    assert send(server, "promise.create", {"id": "secret-alpha", "timeoutAt": forever}) == 201
    assert send(server, "promise.create", {"id": "secret-beta", "timeoutAt": forever}) == 201
    created = {"id": "secret-gamma", "timeoutAt": forever, "tags": target}
    assert send(server, "promise.create", created) == 201  # and a pending task
    assert send(server, "promise.get", {"id": "secret-missing"}) == 404
    resolve = {"id": "secret-alpha", "state": "resolved", "value": {"data": "c2VjcmV0LXZhbHVl"}}
    assert send(server, "promise.settle", resolve) == 200
    assert send(server, "promise.settle", {"id": "secret-beta", "state": "rejected"}) == 200
    status, _, _ = request(server, "POST", "/", b"{not json", {"Content-Type": "application/json"})
    assert status == 400

    text = scrape(server)

    requests = samples(text, "crossbank_store_requests_total")
    assert {(dict(k)["kind"], dict(k)["status"]): v for k, v in requests.items()} == {
        ("promise.create", "201"): 3,
        ("promise.get", "404"): 1,
        ("promise.settle", "200"): 2,
        ("other", "400"): 1,
    }
    assert by("kind", samples(text, "crossbank_store_request_seconds_count")) == {
        "promise.create": 3,
        "promise.get": 1,
        "promise.settle": 2,
        "other": 1,
    }
    seconds = by("kind", samples(text, "crossbank_store_request_seconds_sum"))
    assert all(0 < total < 10 for total in seconds.values()), seconds
    assert by("state", samples(text, "crossbank_store_promises")) == {
        "pending": 1,
        "resolved": 1,
        "rejected": 1,
        "rejected_canceled": 0,
        "rejected_timedout": 0,
    }
    assert by("state", samples(text, "crossbank_store_tasks")) == {
        "pending": 1,
        "acquired": 0,
        "suspended": 0,
        "halted": 0,
        "fulfilled": 0,
    }
    # Three creates and two settles were journaled; the get and the bad request were not.
    assert one(text, "crossbank_store_commit_batch_entries_sum") == 5
    assert 1 <= one(text, "crossbank_store_commit_batch_entries_count") <= 5
    assert one(text, "crossbank_store_journal_bytes") == server.path.stat().st_size > 0
    assert one(text, "crossbank_store_wal_bytes") > 0
    assert one(text, "crossbank_store_push_channels") == 0
    assert one(text, "crossbank_store_writable") == 1
    # Counts, sizes and durations only: no id, corrId, tag or value.
    for secret in ("secret", "corr-x", "metrics-test", "c2VjcmV0LXZhbHVl"):
        assert secret not in text
    # A scrape is not a protocol request: scraping again counts nothing more.
    assert samples(scrape(server), "crossbank_store_requests_total") == requests


def test_an_open_push_channel_shows_until_it_closes(server: StoreServer) -> None:
    def channels() -> float:
        return one(scrape(server), "crossbank_store_push_channels")

    assert channels() == 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as first:
        first.sendall(b"GET /poll/workers/pid-1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received = b""
        while b": connected" not in received:
            received += first.recv(4096)
        assert channels() == 1
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as second:
            second.sendall(b"GET /poll/workers/pid-2 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            wait_for(lambda: channels() == 2)
        wait_for(lambda: channels() == 1)
        assert b"pid-1" not in scrape(server).encode()
    wait_for(lambda: channels() == 0)


def test_metrics_need_the_token_and_an_allowed_host(
    server_factory: Callable[..., StoreServer],
) -> None:
    server = server_factory(RESONATE_TOKEN="s3cret").start()
    assert request(server, "GET", "/metrics")[0] == 401
    assert request(server, "GET", "/metrics", headers={"Authorization": "Bearer wrong"})[0] == 401
    wrong_host = {"Authorization": "Bearer s3cret", "Host": "evil.example"}
    assert request(server, "GET", "/metrics", headers=wrong_host)[0] == 400
    post = {"Authorization": "Bearer s3cret", "Content-Type": "application/json"}
    assert request(server, "POST", "/metrics", b"{}", post)[0] == 405
    assert send(server, "promise.get", {"id": "nope"}) == 401
    assert send(server, "promise.get", {"id": "nope"}, token="s3cret") == 404
    # /health stays open, and is not counted.
    assert request(server, "GET", "/health")[0] == 200

    requests = samples(scrape(server, token="s3cret"), "crossbank_store_requests_total")
    assert {(dict(k)["kind"], dict(k)["status"]): v for k, v in requests.items()} == {
        ("other", "401"): 3,  # two scrapes and a request without the right token
        ("other", "400"): 1,  # the wrong Host
        ("promise.get", "404"): 1,
    }


def _promise(promise_id: str, state: PromiseState) -> DurablePromise:
    return DurablePromise(
        id=promise_id,
        state=state,
        param={"data": "e30="},
        value=None,
        tags={"resonate:branch": promise_id},
        timeout_at=2**62,
        created_at=1,
        settled_at=None,
        awaiters=set(),
        subscribers=set(),
    )


def test_states_are_counted_without_decoding_a_restored_promise(tmp_path: Path) -> None:
    """More promises than one slice, some decoded, most still the snapshot's bytes."""
    state = IndexedServerState()
    total = 2 * COUNT_SLICE + 7
    for n in range(total):
        state.promises[f"p-{n}"] = _promise(f"p-{n}", PROMISE_STATES[n % 5])
    for n in range(0, total, 10):
        state.tasks[f"p-{n}"] = Task(
            id=f"p-{n}", state=TASK_STATES[n % 4], version=1, pid=None, ttl=None, resumes=set()
        )
    restored = decode_state(encode_state(state))
    for n in range(0, total, 3):  # read, so decoded; every 15th one settled since
        promise = restored.promises[f"p-{n}"]
        if n % 15 == 0:
            promise.state = "resolved"

    store = JournaledState(tmp_path / "store.db")
    try:
        store.state = restored
        metrics = StoreMetrics(store, Mailboxes())
        text = asyncio.run(metrics.render()).decode()
    finally:
        store.close_sync()

    expected = dict.fromkeys(PROMISE_STATES, 0)
    for n in range(total):
        expected["resolved" if n % 15 == 0 else PROMISE_STATES[n % 5]] += 1
    assert by("state", samples(text, "crossbank_store_promises")) == expected
    tasks = dict.fromkeys(TASK_STATES, 0)
    for n in range(0, total, 10):
        tasks[TASK_STATES[n % 4]] += 1
    assert by("state", samples(text, "crossbank_store_tasks")) == tasks
    table = restored.promises
    assert isinstance(table, PromiseTable)
    still_encoded = sum(type(p) is msgspec.Raw for p in table.stored())
    assert still_encoded == total - len(range(0, total, 3))


def test_writable_follows_the_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = JournaledState(tmp_path / "store.db")
    try:
        metrics = StoreMetrics(store, Mailboxes())
        text = asyncio.run(metrics.render()).decode()
        assert one(text, "crossbank_store_writable") == 1
        assert one(text, "crossbank_store_journal_bytes") == (tmp_path / "store.db").stat().st_size
        failing = property(lambda self: "the journal cannot be written: disk full")
        monkeypatch.setattr(JournaledState, "write_failure", failing)
        assert one(asyncio.run(metrics.render()).decode(), "crossbank_store_writable") == 0
    finally:
        store.close_sync()
