"""The served store: real SDK workers and clients over HTTP + SSE against ``python -m promise_store``."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from promise_store import StoreLocked
from promise_store.embedded import EmbeddedStore
from tests.promise_store.conftest import App, Steps, StoreServer


def post(url: str, body: bytes, token: str | None = None) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url + "/", data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def envelope(kind: str, data: dict[str, Any], corr: str = "c-1") -> bytes:
    return json.dumps(
        {"kind": kind, "head": {"corrId": corr, "version": "2026-04-01"}, "data": data}
    ).encode()


def journal_rows(path: Path) -> int:
    """The journal's rows, read once the store is stopped (it keeps its file locked while it runs)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT count(*) FROM journal").fetchone()[0])


def wait_until_exists(server: StoreServer, promise_id: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if post(server.url, envelope("promise.get", {"id": promise_id}))[0] == 200:
            return
        time.sleep(0.05)
    raise AssertionError(f"promise {promise_id} was never created")


def app_env(server: StoreServer, steps: Steps, ttl_s: float = 10.0, **extra: str) -> dict[str, str]:
    return {**steps.env(ttl_s), "RESONATE_URL": server.url, **extra}


def test_result_survives_a_store_sigkill_and_restart(
    server: StoreServer, launch: Callable[..., App], steps: Steps
) -> None:
    env = app_env(server, steps)
    launch("worker", env=env)
    assert launch("run", "s-1", "2", "0", env=env).result() == {"id": "s-1", "total": 30}

    server.kill()
    server.start()
    assert launch("run", "s-1", "2", "0", env=env).result() == {"id": "s-1", "total": 30}
    assert steps.count("start s-1 1") == 1
    assert steps.count("start s-1 2") == 1


def test_second_worker_finishes_a_killed_workers_saga_without_rerunning_done_steps(
    server: StoreServer, launch: Callable[..., App], steps: Steps
) -> None:
    env = app_env(server, steps, ttl_s=2)
    steps.hold(2)
    first = launch("worker", env=env)
    client = launch("run", "s-2", "3", "0", env=env)
    steps.wait_for("start s-2 2")
    first.kill()
    steps.release(2)
    launch("worker", env=env)

    assert client.result() == {"id": "s-2", "total": 60}
    assert steps.count("start s-2 1") == 1, "a completed step ran again"
    assert steps.count("start s-2 2") == 2
    assert steps.count("done s-2 2") == 1
    assert steps.count("start s-2 3") == 1


def test_same_id_started_twice_runs_once(
    server: StoreServer, launch: Callable[..., App], steps: Steps
) -> None:
    env = app_env(server, steps)
    steps.hold(1)
    launch("worker", env=env)
    a = launch("run", "s-3", "1", "0", env=env)
    b = launch("run", "s-3", "1", "0", env=env)
    steps.wait_for("start s-3 1")
    steps.release(1)
    assert a.result() == b.result() == {"id": "s-3", "total": 10}
    assert steps.count("start s-3 1") == 1


def test_work_for_a_group_with_no_listener_is_held_until_one_connects(
    server: StoreServer, launch: Callable[..., App], steps: Steps
) -> None:
    env = app_env(server, steps)
    client = launch("run", "s-4", "1", "0", env=env)
    # Once the invocation exists, its execute message went to poll://any@workers,
    # where nobody listens yet: it must be held, not dropped.
    wait_until_exists(server, "s-4")
    assert steps.lines() == []
    launch("worker", env=env)
    assert client.result() == {"id": "s-4", "total": 10}


def test_durable_sleep_survives_a_store_restart(
    server: StoreServer, launch: Callable[..., App], steps: Steps
) -> None:
    env = app_env(server, steps)
    launch("worker", env=env)
    client = launch("run", "s-5", "1", "2", env=env)
    steps.wait_for("done s-5 0")
    server.kill()
    assert steps.count("woke s-5") == 0
    server.start()
    assert client.result() == {"id": "s-5", "total": 10}
    assert steps.count("woke s-5") == 1
    assert steps.count("start s-5 1") == 1


def test_bad_requests_get_protocol_errors_and_never_break_replay(server: StoreServer) -> None:
    good = envelope("promise.create", {"id": "p-ok", "timeoutAt": 2**62, "param": {}, "tags": {}})
    assert post(server.url, good)[1]["head"]["status"] == 201

    cases: list[tuple[bytes, int, str]] = [
        (b"{not json", 400, "invalid JSON"),
        (b"[1, 2, 3]", 400, "JSON object"),
        (b'{"head": {}, "data": {}}', 400, "kind"),
        (envelope("promise.explode", {"id": "x"}), 400, "unknown request kind"),
        (envelope("promise.create", {"timeoutAt": 5}), 400, "id"),
        (envelope("task.create", {"action": {"id": "p-ok"}}), 400, "pid"),
        (
            b'{"kind": "promise.create", "head": {"corrId": "c"}, "data": '
            + b'"'
            + b"x" * (2 << 20)
            + b'"}',
            413,
            "exceeds",
        ),
    ]
    for body, status, words in cases:
        code, answer = post(server.url, body)
        assert code == status, answer
        assert answer["head"]["status"] == status
        assert words in answer["data"]["error"]
    # The kind and corrId are echoed when readable, as the SDK requires.
    _, unknown = post(server.url, envelope("promise.explode", {}, corr="c-9"))
    assert (unknown["kind"], unknown["head"]["corrId"]) == ("promise.explode", "c-9")

    server.kill()
    server.start()
    code, answer = post(server.url, envelope("promise.get", {"id": "p-ok"}))
    assert code == 200
    assert answer["data"]["promise"]["state"] == "pending"
    assert "quarantine" not in server.log.read_text()


def test_acknowledged_writes_survive_a_torn_wal_tail(server: StoreServer) -> None:
    for i in range(20):
        body = envelope("promise.create", {"id": f"t-{i}", "timeoutAt": 2**62, "tags": {}})
        assert post(server.url, body)[1]["head"]["status"] == 201
    server.kill()
    wal = Path(f"{server.path}-wal")
    assert wal.exists()
    with wal.open("ab") as f:
        f.write(b"\x00\xffhalf-written frame" * 300)
    server.start()
    for i in range(20):
        _, answer = post(server.url, envelope("promise.get", {"id": f"t-{i}"}))
        assert answer["head"]["status"] == 200, i


def test_a_damaged_journal_row_stops_replay_there_and_is_quarantined(
    server: StoreServer,
) -> None:
    for i in range(5):
        post(server.url, envelope("promise.create", {"id": f"d-{i}", "timeoutAt": 2**62}))
    server.stop()
    with contextlib.closing(sqlite3.connect(server.path)) as db, db:
        last = db.execute("SELECT max(seq) FROM journal").fetchone()[0]
        db.execute("UPDATE journal SET body = x'7b6761726261676521' WHERE seq = ?", (last,))
    server.start()
    log = server.log.read_text()
    assert f"journal entry {last} is damaged" in log
    states = [post(server.url, envelope("promise.get", {"id": f"d-{i}"}))[1] for i in range(5)]
    assert [s["head"]["status"] for s in states] == [200, 200, 200, 200, 404]
    # New work after the quarantine is journaled and survives the next restart.
    post(server.url, envelope("promise.create", {"id": "d-new", "timeoutAt": 2**62}))
    server.kill()
    server.start()
    assert post(server.url, envelope("promise.get", {"id": "d-new"}))[1]["head"]["status"] == 200
    server.stop()
    with contextlib.closing(sqlite3.connect(server.path)) as db:
        assert db.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 1


def test_bearer_token_is_required_when_configured(
    server_factory: Callable[..., StoreServer], launch: Callable[..., App], steps: Steps
) -> None:
    server = server_factory(RESONATE_TOKEN="s3cret").start()
    body = envelope("promise.get", {"id": "nope"})
    assert post(server.url, body)[0] == 401
    assert post(server.url, body, token="wrong")[0] == 401
    assert post(server.url, body, token="s3cret")[1]["head"]["status"] == 404
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(f"{server.url}/poll/workers/p1", timeout=5)
    assert denied.value.code == 401

    env = app_env(server, steps, RESONATE_TOKEN="s3cret")
    launch("worker", env=env)
    assert launch("run", "a-1", "1", "0", env=env).result() == {"id": "a-1", "total": 10}


def test_served_store_holds_the_file_lock_and_stops_gracefully(server: StoreServer) -> None:
    with pytest.raises(StoreLocked):
        EmbeddedStore(server.path)
    assert server.proc.process is not None
    server.stop()
    assert server.proc.process.returncode == 0
    assert "store closed" in server.log.read_text()
    EmbeddedStore(server.path).store.close_sync()


def test_reads_are_not_journaled(server: StoreServer) -> None:
    post(server.url, envelope("promise.create", {"id": "r-1", "timeoutAt": 2**62}))
    server.stop()
    rows = journal_rows(server.path)
    server.start()
    for _ in range(5):
        post(server.url, envelope("promise.get", {"id": "r-1"}))
        post(server.url, envelope("schedule.search", {}))
    server.stop()
    assert journal_rows(server.path) == rows
