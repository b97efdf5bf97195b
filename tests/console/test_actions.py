"""The console's operator actions over HTTP: cancel and retry, and the records every action leaves.

One local system (banks, store, a worker) and its console for the module. A
transfer whose credit the target bank holds is cancelled from the console
and ends compensated, reason ``cancelled``, with who and why on the record;
retry makes a transfer that sleeps between two attempts try now; the demo's
hold, kill and release leave records too; bad input and a read-only console
change nothing.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from orchestrator.cli import commands
from orchestrator.cli.operate import actions_command
from orchestrator.console.config import ConsoleSettings
from orchestrator.console.running import ConsoleThread
from orchestrator.local.supervisor import free_port
from orchestrator.local.system import BACKENDS, POSTGRES_BACKEND, TARGET
from tests.console.conftest import LocalConsole, call, local_console
from tests.console.test_server import wait_for_row
from tests.postgres_available import require_postgres


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalConsole]:
    with local_console(tmp_path_factory.mktemp("actions")) as running:
        yield running


@pytest.fixture(scope="module", params=BACKENDS)
def each_backend(
    request: pytest.FixtureRequest,
    played: LocalConsole,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LocalConsole]:
    """Crossbank's promise store (the module's system), then Resonate on Postgres."""
    if request.param != POSTGRES_BACKEND:
        yield played
        return
    require_postgres()
    with local_console(tmp_path_factory.mktemp("actions-pg"), backend=request.param) as running:
        yield running


def by(played: LocalConsole) -> str:
    """Who the console's records name: its process's operator, marked as the console's."""
    return f"{played.system.settings.operator} (console)"


def wait_until_held(played: LocalConsole, op_id: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while op_id not in [h["op_id"] for h in played.state()["banks"]["target"]["holds"]]:
        assert time.monotonic() < deadline, f"the target bank never held {op_id}"
        time.sleep(0.1)


def detail(played: LocalConsole, transfer_id: str) -> dict[str, Any]:
    status, found = played.get(f"/api/transfers/{transfer_id}")
    assert status == 200, found
    shown: dict[str, Any] = found
    return shown


def actions(played: LocalConsole, transfer_id: str) -> list[tuple[str, str, str | None]]:
    """The transfer's operator record as the console's detail has it: (action, by, reason)."""
    return [
        (a["action"], a["by"], a["reason"]) for a in detail(played, transfer_id)["operator_actions"]
    ]


def test_cancel_a_transfer_whose_credit_is_held(each_backend: LocalConsole) -> None:
    """The debit applied, the credit waits at the target bank: cancel voids the credit's op id."""
    played = each_backend
    tid = "act-cancel-1"
    status, held = played.post(
        "/api/faults/hold-credit", {"transfer_id": tid, "reason": "to cancel it mid-transfer"}
    )
    assert status == 200, held
    assert held["record_error"] is None
    assert f'"op_id": "{tid}-credit"' in held["cli"]
    status, _ = played.post(
        "/api/transfers", {"from": "alice", "to": "dave", "amount": "3.00", "id": tid}
    )
    assert status == 200
    wait_until_held(played, f"{tid}-credit")

    status, done = played.post(f"/api/transfers/{tid}/cancel", {"reason": "customer's request"})
    assert status == 200, done
    assert done["outcome"] == "cancelled_after_debit"
    assert done["took_effect"] is True
    assert done["record_error"] is None
    assert done["by"] == by(played)
    assert done["cli"] == f"crossbank cancel {tid} --reason 'customer'\"'\"'s request'"
    assert "it ends compensated (cancelled)" in done["message"]

    status, released = played.post("/api/faults/release")
    assert status == 200, released
    assert released["released"] == [f"{tid}-credit"]
    row = wait_for_row(played, tid, "compensated")
    assert row["reason"] == "cancelled"
    assert played.op_counts(tid) == {f"{tid}-debit": 1, f"{tid}-credit": 0, f"{tid}-reversal": 1}
    assert played.state()["totals"]["equal"] is True

    shown = detail(played, tid)
    assert shown["reason"] == "cancelled"
    assert (shown["cancelled"]["by"], shown["cancelled"]["reason"]) == (
        by(played),
        "customer's request",
    )
    assert actions(played, tid) == [
        ("hold", by(played), "to cancel it mid-transfer"),
        ("cancel", by(played), "customer's request"),
        ("release", by(played), None),
    ]
    record = shown["operator_actions"][1]
    assert record["outcome"] == "cancelled_after_debit"
    assert record["at_text"].startswith(time.strftime("%Y-", time.gmtime()))
    # `crossbank status` says the same.
    status_text = asyncio.run(commands.status_command(played.system.settings, tid)).human
    assert "operator actions:" in status_text
    assert f"cancel {tid} by {by(played)} (customer's request): cancelled_after_debit" in (
        status_text
    )

    # Again, once it is finished: an answer that changes nothing, recorded too.
    status, again = played.post(f"/api/transfers/{tid}/cancel", {"reason": "once more"})
    assert status == 200
    assert (again["outcome"], again["took_effect"]) == ("finished", False)
    assert [a[0] for a in actions(played, tid)] == ["hold", "cancel", "release", "cancel"]


def test_cancel_before_it_starts_fails_it_when_it_does(played: LocalConsole) -> None:
    tid = "act-cancel-early"
    status, done = played.post(f"/api/transfers/{tid}/cancel", {"reason": "typo in the amount"})
    assert status == 200, done
    assert (done["outcome"], done["took_effect"]) == ("cancelled_before_debit", True)
    assert "it has not started" in done["message"]
    status, _ = played.post(
        "/api/transfers", {"from": "bob", "to": "frank", "amount": "9.00", "id": tid}
    )
    assert status == 200
    row = wait_for_row(played, tid, "failed")
    assert row["reason"] == "cancelled"
    assert played.op_counts(tid) == dict.fromkeys(
        (f"{tid}-{kind}" for kind in ("debit", "credit", "reversal")), 0
    )


def test_retry_wakes_a_transfer_sleeping_between_attempts(played: LocalConsole) -> None:
    """The target bank fails the credit and its fence: the saga sleeps between fence attempts."""
    tid = "act-retry-1"
    status, answer = played.post("/api/transfers/act-retry-none/retry")
    assert status == 200, answer
    assert (answer["outcome"], answer["took_effect"]) == ("unknown", False)
    assert answer["cli"] == "crossbank retry act-retry-none"

    failing = [{"action": "fail_before", "op_id": f"{tid}-credit"}]  # no kind: its voids too
    asyncio.run(set_target_faults(played, failing))
    try:
        status, _ = played.post(
            "/api/transfers", {"from": "alice", "to": "carol", "amount": "2.00", "id": tid}
        )
        assert status == 200
        deadline = time.monotonic() + 30
        outcomes = []
        while True:
            if detail(played, tid)["waiting"]:
                status, answer = played.post(f"/api/transfers/{tid}/retry", {})
                assert status == 200, answer
                outcomes.append(answer["outcome"])
                if answer["outcome"] == "retrying":
                    break
            assert time.monotonic() < deadline, f"never retried while it slept: {outcomes}"
            time.sleep(0.05)
        assert answer["took_effect"] is True
        assert answer["message"] == f"transfer {tid}: next attempt now"
        assert answer["by"] == by(played)
    finally:
        asyncio.run(set_target_faults(played, []))
    wait_for_row(played, tid, "compensated", within=40)
    assert ("retry", by(played), None) in actions(played, tid)
    status, finished = played.post(f"/api/transfers/{tid}/retry", {})
    assert (status, finished["outcome"], finished["took_effect"]) == (200, "finished", False)


async def set_target_faults(played: LocalConsole, rules: list[dict[str, Any]]) -> None:
    async with played.system.bank(TARGET) as target:
        if rules:
            await target.set_faults(rules)
        else:
            await target.clear_faults()


def test_kill_hold_and_release_from_the_console_are_recorded(played: LocalConsole) -> None:
    tid = "act-crash-1"
    status, held = played.post("/api/faults/hold-credit")  # the next credit: no transfer named
    assert status == 200, held
    status, _ = played.post(
        "/api/transfers", {"from": "alice", "to": "dave", "amount": "4.00", "id": tid}
    )
    assert status == 200
    deadline = time.monotonic() + 30
    while not {r["transfer_id"]: r for r in played.state()["transfers"]}.get(tid, {}).get("worker"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    wait_until_held(played, f"{tid}-credit")
    status, killed = played.post(
        "/api/workers/kill", {"transfer_id": tid, "reason": "show the takeover"}
    )
    assert status == 200, killed
    assert killed["record_error"] is None
    assert played.post("/api/faults/release")[0] == 200
    assert played.post("/api/workers/start")[0] == 200
    wait_for_row(played, tid, "committed", within=40)

    records = detail(played, tid)["operator_actions"]
    assert [(a["action"], a["by"], a["reason"]) for a in records] == [
        ("kill", by(played), "show the takeover"),
        ("release", by(played), None),
    ]
    assert records[0]["outcome"] == killed["message"]
    assert f"pid {killed['pid']}" in records[0]["outcome"]
    assert records[1]["outcome"] == f"released {tid}-credit, held at the target bank"
    # A hold of "the next credit" names no transfer: `crossbank audit --actions` lists it.
    listed = asyncio.run(actions_command(played.system.settings, limit=50)).data["actions"]
    holds = [a for a in listed if a["action"] == "hold" and a["transfer_id"] == "(target bank)"]
    assert holds
    assert holds[0]["outcome"] == "the target bank will hold the next credit it receives"


def raw_post(
    address: str, path: str, body: str, headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    parts = urlsplit(address)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


def test_bad_input_is_a_clear_4xx_and_changes_nothing(played: LocalConsole) -> None:
    tid = "act-bad-1"
    for path, body, status, says in (
        ("/api/transfers/bad%20id/cancel", {"reason": "r"}, 400, "must be 1-100 letters"),
        ("/api/transfers/-dash/cancel", {"reason": "r"}, 400, "starting with a letter or digit"),
        (f"/api/transfers/{'x' * 101}/retry", {}, 400, "1-100 letters"),
        (f"/api/transfers/{tid}/cancel", {}, 400, "reason is required"),
        (f"/api/transfers/{tid}/cancel", {"reason": ""}, 400, "reason is required"),
        (f"/api/transfers/{tid}/cancel", {"reason": "   "}, 400, "reason is required"),
        (f"/api/transfers/{tid}/cancel", {"reason": 7}, 400, "reason is required"),
        (f"/api/transfers/{tid}/cancel", {"reason": "r" * 201}, 400, "201 characters long"),
        (f"/api/transfers/{tid}/cancel", {"reason": "two\nlines"}, 400, "printable"),
        (f"/api/transfers/{tid}/cancel", ["reason"], 400, "must be a JSON object"),
        (f"/api/transfers/{tid}/retry", ["x"], 400, "must be a JSON object"),
        (f"/api/transfers/{tid}/explode", {}, 404, "no POST"),
    ):
        got, answer = played.post(path, body)
        assert (got, says in answer["error"]["message"]) == (status, True), (path, body, answer)
    json_type = {"Content-Type": "application/json"}
    for headers, status, code in (
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "json_only"),
        ({"Content-Type": "text/plain"}, 415, "json_only"),
        ({**json_type, "Origin": "http://evil.example"}, 403, "foreign_origin"),
    ):
        got, answer = raw_post(
            played.address, f"/api/transfers/{tid}/cancel", '{"reason": "r"}', headers
        )
        assert (got, answer["error"]["code"]) == (status, code)
    got, answer = raw_post(played.address, f"/api/transfers/{tid}/cancel", "{half", json_type)
    assert (got, answer["error"]["message"]) == (400, "the body is not JSON")

    # Nothing was voided or recorded: the transfer with that id runs and commits.
    status, _ = played.post(
        "/api/transfers", {"from": "bob", "to": "dave", "amount": "1.00", "id": tid}
    )
    assert status == 200
    wait_for_row(played, tid, "committed")
    assert actions(played, tid) == []


def test_read_only_and_tokens_refuse_cancel_and_retry(played: LocalConsole) -> None:
    tid = "act-refused-1"
    with ConsoleThread(
        played.system.settings, ConsoleSettings(port=free_port(), read_only=True)
    ) as read_only:
        for path, body in ((f"/{tid}/cancel", {"reason": "no"}), (f"/{tid}/retry", {})):
            status, answer = call(f"{read_only.address}/api/transfers{path}", body=body)
            assert status == 403
            assert answer["error"]["code"] == "read_only"
            assert "read-only" in answer["error"]["message"]
    with ConsoleThread(
        played.system.settings, ConsoleSettings(port=free_port(), token="act-token")
    ) as guarded:
        status, answer = call(f"{guarded.address}/api/transfers/{tid}/cancel", body={"reason": "x"})
        assert (status, answer["error"]["code"]) == (401, "unauthorized")
        # With it, a console that did not start the demo cancels too (no local hands needed).
        status, answer = call(
            f"{guarded.address}/api/transfers/{tid}-2/cancel",
            body={"reason": "with the token"},
            headers={"Authorization": "Bearer act-token"},
        )
        assert (status, answer["outcome"]) == (200, "cancelled_before_debit")
    status, _ = played.post(
        "/api/transfers", {"from": "bob", "to": "dave", "amount": "1.00", "id": tid}
    )
    assert status == 200
    wait_for_row(played, tid, "committed")
    assert actions(played, tid) == []


def test_a_cancel_a_bank_does_not_answer_is_not_confirmed(played: LocalConsole) -> None:
    from orchestrator.local.system import SOURCE

    tid = "act-bank-down-1"
    played.system.kill(SOURCE)
    try:
        status, answer = played.post(f"/api/transfers/{tid}/cancel", {"reason": "bank down"})
    finally:
        played.system.restart(SOURCE)
    assert status == 503, answer
    assert answer["error"]["message"].startswith("cancel not confirmed: ")
    assert "source bank" in answer["error"]["message"]
    assert answer["cli"] == f"crossbank cancel {tid} --reason 'bank down'"
    listed = asyncio.run(actions_command(played.system.settings, limit=200)).data["actions"]
    assert [a for a in listed if a["transfer_id"] == tid] == []  # nothing claimed
