"""The console's HTTP side, without a browser: tokens, read-only, refusals, limits, both backends."""

from __future__ import annotations

import asyncio
import http.client
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from orchestrator.cli import commands
from orchestrator.console.config import ConsoleSettings
from orchestrator.console.running import ConsoleThread
from orchestrator.local.supervisor import free_port
from orchestrator.local.system import BACKENDS, POSTGRES_BACKEND
from tests.console.conftest import LocalConsole, call, local_console
from tests.postgres_available import require_postgres


@pytest.fixture(scope="module", params=BACKENDS)
def played(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalConsole]:
    """The same tests on crossbank's promise store and on Resonate on Postgres."""
    if request.param == POSTGRES_BACKEND:
        require_postgres()
    with local_console(tmp_path_factory.mktemp("console"), backend=request.param) as running:
        yield running


def wait_for_row(
    played: LocalConsole, transfer_id: str, status: str, within: float = 30.0
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    row = None
    while time.monotonic() < deadline:
        rows = {r["transfer_id"]: r for r in played.state()["transfers"]}
        row = rows.get(transfer_id)
        if row is not None and row["status"] == status:
            found: dict[str, Any] = row
            return found
        time.sleep(0.1)
    raise AssertionError(f"{transfer_id} not {status} within {within}s: {row}")


def test_a_transfer_started_by_the_console_is_listed_and_timed(played: LocalConsole) -> None:
    status, started = played.post(
        "/api/transfers", {"from": "bob", "to": "frank", "amount": "5.00", "id": "http-1"}
    )
    assert status == 200, started
    assert (
        started["cli"]
        == "crossbank transfer --from bob --to frank --amount 5.00 --id http-1 --no-wait"
    )
    row = wait_for_row(played, "http-1", "committed")
    assert row["amount_text"] == "5.00"
    assert row["ops"] == ["debit", "credit"]
    status, detail = played.get("/api/transfers/http-1")
    assert status == 200
    assert [r["step"] for r in detail["timeline"]] == [
        "started",
        "debit: applied",
        "credit: applied",
        "done: committed",
    ]
    kept_in = (
        "Resonate on Postgres" if played.system.backend == POSTGRES_BACKEND else "promise store"
    )
    assert detail["kept_in"] == kept_in
    assert detail["text"].startswith("transfer http-1: committed")


def test_a_transfer_started_elsewhere_is_found_from_the_ledgers(played: LocalConsole) -> None:
    reply = asyncio.run(
        commands.transfer_command(
            played.system.settings,
            source="bob",
            target="dave",
            amount="1.00",
            transfer_id="cli-1",
            wait=True,
        )
    )
    assert reply.data["status"] == "committed"
    wait_for_row(played, "cli-1", "committed")


def test_a_refusal_is_the_clis_and_changes_nothing(played: LocalConsole) -> None:
    before = played.state()["totals"]
    for body, message in (
        ({"from": "bob", "to": "frank", "amount": "0.001"}, "at most two decimal places"),
        ({"from": "bob", "to": "bob", "amount": "1"}, "source and target are the same account"),
        (
            {"from": "bob", "to": "nobody", "amount": "1"},
            "'nobody' does not exist on the target bank",
        ),
        ({"from": "bob", "to": "frank", "amount": "1", "id": "bad id"}, "transfer id 'bad id'"),
    ):
        status, answer = played.post("/api/transfers", body)
        assert status == 400, answer
        assert message in answer["error"]["message"]
    status, answer = played.post("/api/transfers", {"from": "bob"})
    assert status == 400
    assert "to is required" in answer["error"]["message"]
    assert played.state()["totals"] == before


def test_actions_take_json_only(played: LocalConsole) -> None:
    parts = urlsplit(played.address)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    connection.request(
        "POST",
        "/api/transfers",
        body="from=bob&to=frank&amount=1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    response = connection.getresponse()
    assert response.status == 415
    connection.close()


def test_the_workers_say_what_they_run(played: LocalConsole) -> None:
    workers = played.state()["workers"]
    assert [w["alive"] for w in workers["workers"]] == [True]


@pytest.fixture(scope="module")
def guarded(played: LocalConsole) -> Iterator[str]:
    """A second console on the same system, with a token."""
    settings = ConsoleSettings(port=free_port(), token="s3cret-console")
    with ConsoleThread(played.system.settings, settings) as console:
        assert console.address is not None
        yield console.address


def page_status(address: str) -> int:
    parts = urlsplit(address)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    connection.request("GET", "/")
    status = connection.getresponse().status
    connection.close()
    return status


def test_with_a_token_nothing_is_read_or_done_without_it(guarded: str) -> None:
    assert call(guarded + "/health")[0] == 200
    assert page_status(guarded) == 200  # the page itself is open: it asks for the token
    _, session = call(guarded + "/api/session")
    assert session == {"needs_token": True, "authorized": False, "read_only": False, "local": False}
    assert call(guarded + "/api/state")[0] == 401
    assert call(guarded + "/api/transfers/http-1")[0] == 401
    status, _ = call(guarded + "/api/transfers", body={"from": "bob", "to": "frank", "amount": "1"})
    assert status == 401
    assert call(guarded + "/api/login", body={"token": "guess"})[0] == 401
    bearer = {"Authorization": "Bearer s3cret-console"}
    assert call(guarded + "/api/state", headers=bearer)[0] == 200


def test_login_gives_a_session_cookie(guarded: str) -> None:
    parts = urlsplit(guarded)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    connection.request(
        "POST",
        "/api/login",
        body='{"token": "s3cret-console"}',
        headers={"Content-Type": "application/json"},
    )
    response = connection.getresponse()
    response.read()
    cookie = response.getheader("Set-Cookie") or ""
    assert response.status == 200
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "s3cret-console" not in cookie
    connection.request("GET", "/api/state", headers={"Cookie": cookie.split(";")[0]})
    assert connection.getresponse().status == 200
    connection.close()


def login(address: str, token: str, source: str = "127.0.0.1") -> http.client.HTTPResponse:
    """``POST /api/login`` from the client address ``source`` (any of 127.0.0.0/8)."""
    parts = urlsplit(address)
    connection = http.client.HTTPConnection(
        parts.hostname or "", parts.port, timeout=10, source_address=(source, 0)
    )
    connection.request(
        "POST",
        "/api/login",
        body=f'{{"token": "{token}"}}',
        headers={"Content-Type": "application/json"},
    )
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_wrong_tokens_are_throttled_per_address(guarded: str) -> None:
    """Five wrong guesses a minute from one address; then even the right one waits."""
    assert [login(guarded, f"guess-{n}").status for n in range(5)] == [401] * 5
    throttled = login(guarded, "s3cret-console")
    assert throttled.status == 429
    assert 1 <= int(throttled.getheader("Retry-After") or "0") <= 60
    # Another address is not held back by this one's guesses.
    assert login(guarded, "s3cret-console", source="127.0.0.2").status == 200


def test_a_login_link_works_once(played: LocalConsole) -> None:
    settings = ConsoleSettings(port=free_port(), token="s3cret-console")
    with ConsoleThread(played.system.settings, settings) as console:
        assert console.login_link is not None
        link = urlsplit(console.login_link)
        assert "s3cret-console" not in console.login_link
        connection = http.client.HTTPConnection(link.hostname or "", link.port, timeout=10)
        connection.request("GET", f"{link.path}?{link.query}")
        first = connection.getresponse()
        first.read()
        cookie = (first.getheader("Set-Cookie") or "").split(";")[0]
        assert (first.status, first.getheader("Location")) == (303, "/")
        connection.request("GET", "/api/state", headers={"Cookie": cookie})
        state = connection.getresponse()
        state.read()
        assert state.status == 200
        connection.request("GET", f"{link.path}?{link.query}")
        again = connection.getresponse()
        again.read()
        assert again.status == 401
        connection.close()


def test_local_actions_need_the_local_demo(guarded: str) -> None:
    bearer = {"Authorization": "Bearer s3cret-console"}
    status, answer = call(guarded + "/api/workers/start", body={}, headers=bearer)
    assert status == 403
    assert "local demo" in answer["error"]["message"]


def test_read_only_refuses_every_action(played: LocalConsole) -> None:
    settings = ConsoleSettings(port=free_port(), read_only=True)
    with ConsoleThread(played.system.settings, settings) as console:
        status, answer = call(
            f"{console.address}/api/transfers", body={"from": "bob", "to": "frank", "amount": "1"}
        )
        assert status == 403
        assert "read-only" in answer["error"]["message"]
        assert call(f"{console.address}/api/session")[1]["read_only"] is True


def test_a_new_page_always_gets_the_feed_and_the_oldest_makes_room(
    played: LocalConsole,
) -> None:
    """Streams nobody reads, past CONSOLE_MAX_CLIENTS, never lock a page out."""
    settings = ConsoleSettings(port=free_port(), max_clients=2, max_clients_per_holder=2)
    with ConsoleThread(played.system.settings, settings) as console:
        parts = urlsplit(console.address or "")
        unread = [open_stream(parts.hostname or "", parts.port or 0) for _ in range(8)]
        for _ in range(10):
            page = open_stream(parts.hostname or "", parts.port or 0)
            assert page.getresponse().status == 200
            page.close()
        # The oldest streams were let go: their connections end, not hang.
        assert unread[0].getresponse().read() is not None
        for stream in unread:
            stream.close()


def open_stream(host: str, port: int) -> http.client.HTTPConnection:
    connection = http.client.HTTPConnection(host, port, timeout=10)
    connection.request("GET", "/api/events")
    return connection


def test_the_embedded_store_is_refused(tmp_path: Path) -> None:
    from orchestrator.cli.commands import CliError
    from orchestrator.settings import Settings

    with pytest.raises(CliError, match="needs a served promise store"):
        ConsoleThread(Settings(store_path=tmp_path / "p.db"), ConsoleSettings(port=0)).start()


def test_the_crash_through_the_consoles_actions_on_each_backend(played: LocalConsole) -> None:
    """Hold the credit, SIGKILL the worker running the transfer, start another: it finishes once."""
    transfer_id = f"http-crash-{played.system.backend}"
    assert played.post("/api/faults/hold-credit")[0] == 200
    status, _ = played.post(
        "/api/transfers", {"from": "alice", "to": "dave", "amount": "7.00", "id": transfer_id}
    )
    assert status == 200
    deadline = time.monotonic() + 30
    while True:
        sections = played.state()
        holds = [hold["op_id"] for hold in sections["banks"]["target"]["holds"]]
        row = {r["transfer_id"]: r for r in sections["transfers"]}.get(transfer_id) or {}
        if f"{transfer_id}-credit" in holds and row.get("worker"):
            break
        assert time.monotonic() < deadline, sections
        time.sleep(0.1)
    status, killed = played.post("/api/workers/kill", {"transfer_id": transfer_id})
    assert status == 200, killed
    assert killed["worker"] == row["worker"]
    assert killed["cli"] == f"kill -9 {killed['pid']}"
    status, refused = played.post("/api/workers/kill", {"transfer_id": transfer_id})
    assert status == 409
    assert "no live worker is running" in refused["error"]["message"]
    assert played.post("/api/faults/release")[0] == 200
    assert played.post("/api/workers/start")[0] == 200

    wait_for_row(played, transfer_id, "committed", within=40)
    assert played.op_counts(transfer_id) == {
        f"{transfer_id}-debit": 1,
        f"{transfer_id}-credit": 1,
        f"{transfer_id}-reversal": 0,
    }
    assert played.state()["totals"]["equal"] is True


def test_workers_from_a_status_directory_outside_the_demo(played: LocalConsole) -> None:
    """A console the demo did not start reads the workers' status files from a directory."""
    settings = ConsoleSettings(port=free_port(), worker_status_dir=played.system.log_dir)
    with ConsoleThread(played.system.settings, settings) as console:
        deadline = time.monotonic() + 20
        while not (sections := call(f"{console.address}/api/state")[1]["sections"]):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        workers = {w["name"]: w for w in sections["workers"]["workers"]}
        live = [w for w in played.system.workers if w.running()]
        assert [workers[w.name]["pid"] for w in live] == [w.pid for w in live]
        assert all(workers[w.name]["alive"] for w in live)
        assert sections["system"]["local"] is False  # it reads files; it acts on nothing


def test_a_stale_status_file_is_a_dead_worker(tmp_path: Path) -> None:
    import json

    from orchestrator.console.local import STATUS_STALE_SECONDS, status_directory_workers

    now = time.time()
    (tmp_path / "w1.status.json").write_text(json.dumps({"pid": 1, "running": ["t1"], "at": now}))
    old = now - STATUS_STALE_SECONDS - 1
    (tmp_path / "w2.json").write_text(json.dumps({"pid": 2, "running": ["t2"], "at": old}))
    (tmp_path / "w3.json").write_text("{half")
    shown = {w["name"]: w for w in status_directory_workers(tmp_path)["workers"]}
    assert shown["w1"] == {"name": "w1", "pid": 1, "alive": True, "running": ["t1"]}
    assert shown["w2"]["alive"] is False
    assert shown["w2"]["running"] == []
    assert shown["w3"]["alive"] is False


def test_an_action_on_a_bank_that_is_down_says_so(played: LocalConsole) -> None:
    from orchestrator.local.system import TARGET

    played.system.kill(TARGET)
    try:
        status, answer = played.post("/api/faults/hold-credit")
        assert status == 503
        assert "target bank" in answer["error"]["message"]
    finally:
        played.system.restart(TARGET)
