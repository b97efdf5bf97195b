"""No request can break the store: values it could not persist are refused, an
error inside one request fails that request alone, and a store that cannot
write says so on ``/health``."""

from __future__ import annotations

import asyncio
import json
import resource
import secrets
import sqlite3
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promise_store import snapshot as snapshot_module
from promise_store.journal import REQUEST, Entry, Journal
from promise_store.protocol import handle
from promise_store.snapshot import canonical_state
from promise_store.state import JournaledState
from tests.promise_store.conftest import StoreServer
from tests.promise_store.test_served import envelope, post

FAR = 2**62
BEYOND_64_BITS = 10**30


def health(server: StoreServer) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{server.url}/health", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def create(promise_id: str, **fields: Any) -> bytes:
    return envelope("promise.create", {"id": promise_id, "timeoutAt": FAR, "tags": {}, **fields})


def refused(server: StoreServer, body: bytes, *words: str) -> None:
    code, answer = post(server.url, body)
    assert code == 400, answer
    assert answer["head"]["status"] == 400
    for word in words:
        assert word in answer["data"]["error"], answer


def status_of(server: StoreServer, promise_id: str) -> int:
    _, answer = post(server.url, envelope("promise.get", {"id": promise_id}))
    return int(answer["head"]["status"])


HOSTILE: list[tuple[bytes, tuple[str, ...]]] = [
    (create("h-1", timeoutAt=BEYOND_64_BITS), ("timeoutAt",)),
    (create("h-2", timeoutAt=-BEYOND_64_BITS), ("timeoutAt",)),
    (
        create(
            "h-3",
            tags={"resonate:target": "poll://any@nobody", "resonate:delay": "9" * 30},
        ),
        ("resonate:delay",),
    ),
    (create("h-4", param={"args": [1, BEYOND_64_BITS]}), ("param.args[1]",)),
    (
        envelope(
            "task.create",
            {"pid": "p", "ttl": 1000, "action": {"id": "h-5", "timeoutAt": BEYOND_64_BITS}},
        ),
        ("timeoutAt",),
    ),
    (
        envelope(
            "schedule.create",
            {
                "id": "h-6",
                "cron": "* * * * *",
                "promiseId": "h-6.{{.timestamp}}",
                "promiseTimeout": BEYOND_64_BITS,
                "promiseTags": {"resonate:target": "poll://any@nobody"},
            },
        ),
        ("promiseTimeout",),
    ),
    (b'{"kind": "promise.create", "head": {"corrId": "c"}, "data": ' + b"[" * 5000, ("",)),
    (
        b'{"kind": "promise.create", "head": {"corrId": "c"}, "data": {"id": "h-7", "param": '
        + b"[" * 20_000
        + b"]" * 20_000
        + b"}}",
        ("deep",),
    ),
    (
        b'{"kind": "promise.create", "head": {"corrId": "c"}, '
        b'"data": {"id": "h-8", "timeoutAt": 5, "id": "h-9"}}',
        ("duplicate key", "'id'"),
    ),
    (
        b'{"kind": "promise.create", "head": {"corrId": "c"}, "data": {"id": "h-10", '
        b'"tags": {"k": "a", "k": "b"}}}',
        ("duplicate key", "'k'"),
    ),
    # The state machine would read these as "no timeout": a promise that never times out.
    (create("h-11", timeoutAt=1.5), ("timeoutAt: must be an integer", "1.5")),
    (create("h-12", timeoutAt=-0.0), ("timeoutAt: must be an integer", "-0.0")),
    (
        envelope("task.acquire", {"id": "h-13", "version": 1.0, "pid": "w", "ttl": 1000}),
        ("version: must be an integer",),
    ),
]


def test_a_value_the_store_could_not_persist_is_refused_and_the_store_stays_up(
    server_factory: Callable[..., StoreServer],
) -> None:
    server = server_factory(SNAPSHOT_EVERY="3").start()
    for i in range(4):
        assert post(server.url, create(f"old-{i}"))[1]["head"]["status"] == 201

    for body, words in HOSTILE:
        refused(server, body, *words)
    for i in range(1, 13):
        assert status_of(server, f"h-{i}") == 404, f"a refused request left h-{i} behind"

    for i in range(40):
        assert post(server.url, create(f"new-{i}"))[1]["head"]["status"] == 201
        assert status_of(server, f"old-{i % 4}") == 200
    assert health(server)[0] == 200

    server.kill()
    server.start()
    for i in range(4):
        assert status_of(server, f"old-{i}") == 200
    for i in range(40):
        assert status_of(server, f"new-{i}") == 200
    assert post(server.url, create("after-restart"))[1]["head"]["status"] == 201
    assert health(server) == (200, {"status": "ok"})


def test_a_store_that_cannot_write_is_unhealthy(server: StoreServer) -> None:
    assert post(server.url, create("w-1"))[1]["head"]["status"] == 201
    assert health(server)[0] == 200
    # The file system refuses every further write past one byte (EFBIG), as a
    # full disk or an exhausted quota would; running as root does not help.
    resource.prlimit(server.proc.pid, resource.RLIMIT_FSIZE, (1, resource.RLIM_INFINITY))
    code, answer = post(server.url, create("w-2"))
    assert code == 503, answer
    code, report = health(server)
    assert code == 503
    assert report["status"] == "failing"
    assert "journal" in report["reason"]

    server.kill()
    server.start()
    assert status_of(server, "w-1") == 200
    assert health(server)[0] == 200


# -- in-process: errors inside one request ------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        self.now += 7
        return self.now


def raw_create(promise_id: str, **fields: Any) -> bytes:
    return create(promise_id, **fields)


async def answer_of(store: JournaledState, body: bytes) -> tuple[int, dict[str, Any]]:
    answer = await handle(store, body)
    decoded: dict[str, Any] = msgspec.json.decode(answer.body)
    return answer.http_status, decoded


def assert_replay_equals_live(store: JournaledState, path: Path) -> None:
    expected, seq = canonical_state(store.state), store.seq
    store.close_sync()
    reopened = JournaledState(path, clock=Clock())
    try:
        assert reopened.seq == seq
        assert canonical_state(reopened.state) == expected
    finally:
        reopened.close_sync()


def test_an_error_inside_the_state_machine_fails_that_request_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "inject.db"
    store = JournaledState(path, snapshot_every=4, clock=Clock())
    original = store.state.promise_create

    def half_done_then_crash(now: int, corr_id: Any, req: Any) -> dict[str, Any]:
        if req.get("id") == "boom":
            original(now, corr_id, {**req, "id": "half-written"})
            raise RuntimeError("injected fault")
        return original(now, corr_id, req)

    monkeypatch.setattr(store.state, "promise_create", half_done_then_crash)

    async def run() -> None:
        for i in range(3):
            assert (await answer_of(store, raw_create(f"a-{i}")))[1]["head"]["status"] == 201
        code, answer = await answer_of(store, raw_create("boom"))
        assert code == 500
        assert answer["head"]["status"] == 500
        for i in range(10):
            assert (await answer_of(store, raw_create(f"b-{i}")))[1]["head"]["status"] == 201
            got = await answer_of(store, envelope("promise.get", {"id": f"a-{i % 3}"}))
            assert got[1]["head"]["status"] == 200
        await store.flush()

    asyncio.run(run())
    assert "half-written" not in store.state.promises, "the failed request's effects stayed"
    assert "boom" not in store.state.promises
    assert store.write_failure is None
    assert_replay_equals_live(store, path)


def test_a_snapshot_that_cannot_be_encoded_is_skipped_and_the_store_keeps_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "snap.db"
    store = JournaledState(path, snapshot_every=2, clock=Clock())
    real_encode = snapshot_module.encode_state

    def broken_encode(state: Any) -> bytes:
        raise OverflowError("injected: the snapshot cannot hold this")

    monkeypatch.setattr("promise_store.state.encode_state", broken_encode)

    async def run(prefix: str) -> None:
        for i in range(7):
            assert (await answer_of(store, raw_create(f"{prefix}-{i}")))[1]["head"]["status"] == 201
        await store.flush()

    asyncio.run(run("s"))
    assert store.snapshot_failure is not None
    assert "injected" in store.snapshot_failure
    assert store.write_failure is None

    monkeypatch.setattr("promise_store.state.encode_state", real_encode)
    asyncio.run(run("t"))
    assert store.snapshot_failure is None
    assert_replay_equals_live(store, path)


def test_a_snapshot_the_file_refuses_is_skipped_and_the_entries_still_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "toobig.db"
    store = JournaledState(path, snapshot_every=3, clock=Clock())
    # SQLite refuses any value longer than this: the entries fit, a snapshot does not.
    store._journal._db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 2000)

    async def run() -> None:
        for i in range(12):
            # Random, so the snapshot's compression cannot bring it under the limit.
            body = raw_create(f"big-{i}", param={"data": secrets.token_hex(300)})
            assert (await answer_of(store, body))[1]["head"]["status"] == 201
        await store.flush()

    asyncio.run(run())
    assert store.write_failure is None
    assert store.snapshot_failure is not None
    assert "not written" in store.snapshot_failure
    assert_replay_equals_live(store, path)


def test_a_store_bricked_by_an_old_entry_heals_on_restart(tmp_path: Path) -> None:
    path = tmp_path / "bricked.db"
    flat = {"kind": "promise.create", "corrId": "c", "id": "old-hostile", "tags": {}}
    journal = Journal(path)
    journal.write(
        [
            Entry(seq=1, now=5, kind=REQUEST, body=msgspec.json.encode({**flat, "id": "fine"})),
            Entry(
                seq=2, now=6, kind=REQUEST, body=msgspec.json.encode({**flat, "timeoutAt": 10**30})
            ),
        ]
    )
    journal.close()

    store = JournaledState(path, snapshot_every=1, clock=Clock())
    assert set(store.state.promises) == {"fine"}

    async def run() -> int:
        status = (await answer_of(store, raw_create("after")))[1]["head"]["status"]
        await store.flush()
        return int(status)

    assert asyncio.run(run()) == 201
    assert store.snapshot_failure is None
    assert_replay_equals_live(store, path)


# -- property: no mix of extreme numbers breaks a snapshot or replay ------------

EXTREMES = [
    0,
    -1,
    2**31,
    2**53 + 1,
    2**63 - 1,
    2**63,
    2**64 - 1,
    2**64,
    -(2**63),
    -(2**63) - 1,
    BEYOND_64_BITS,
    -BEYOND_64_BITS,
]
numbers = st.one_of(st.sampled_from(EXTREMES), st.integers())
ids = st.sampled_from(["p-1", "p-2", "p-3"])
tags = st.fixed_dictionaries(
    {},
    optional={
        "resonate:target": st.just("poll://any@workers"),
        "resonate:delay": numbers.map(str),
        "resonate:branch": ids,
    },
)
payload = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, st.floats(allow_nan=False, allow_infinity=False)),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)
promise_fields = st.fixed_dictionaries(
    {"id": ids, "timeoutAt": numbers}, optional={"tags": tags, "param": payload}
)
requests = st.one_of(
    promise_fields.map(lambda d: ("promise.create", d)),
    st.fixed_dictionaries({"pid": st.just("w"), "ttl": numbers, "action": promise_fields}).map(
        lambda d: ("task.create", d)
    ),
    st.fixed_dictionaries({"id": ids, "version": numbers, "pid": st.just("w"), "ttl": numbers}).map(
        lambda d: ("task.acquire", d)
    ),
    st.fixed_dictionaries(
        {
            "pid": st.just("w"),
            "tasks": st.lists(st.fixed_dictionaries({"id": ids, "version": numbers})),
        }
    ).map(lambda d: ("task.heartbeat", d)),
    st.fixed_dictionaries(
        {
            "id": ids,
            "version": numbers,
            "action": st.fixed_dictionaries(
                {"kind": st.just("promise.create"), "data": promise_fields}
            ),
        }
    ).map(lambda d: ("task.fence", d)),
    st.fixed_dictionaries({"id": ids, "state": st.just("resolved"), "value": payload}).map(
        lambda d: ("promise.settle", d)
    ),
    st.fixed_dictionaries(
        {
            "id": ids,
            "cron": st.just("* * * * *"),
            "promiseId": ids,
            "promiseTimeout": numbers,
            "promiseParam": payload,
            "promiseTags": st.just({"resonate:target": "poll://any@workers"}),
        }
    ).map(lambda d: ("schedule.create", d)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(requests, min_size=1, max_size=8))
def test_no_mix_of_extreme_numbers_breaks_a_snapshot_or_replay(
    batch: list[tuple[str, dict[str, Any]]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.db"
        store = JournaledState(path, snapshot_every=1, clock=Clock())

        async def run() -> None:
            for kind, data in batch:
                code, answer = await answer_of(store, envelope(kind, data))
                assert code in (200, 400), answer
            await store.tick()
            await store.flush()

        asyncio.run(run())
        assert store.snapshot_failure is None
        assert store.write_failure is None
        snapshot_module.encode_state(store.state)
        assert_replay_equals_live(store, path)
