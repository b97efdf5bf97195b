"""Fault injection: each action, matching by kind and op id, holds and releases."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
import requests

from orchestrator.local.supervisor import ServiceError
from tests.bank.conftest import (
    BankHttp,
    RunningBank,
    StartBank,
    balance,
    entry,
    error_code,
    new_id,
    open_account,
)


def set_faults(http: BankHttp, *rules: dict[str, object]) -> list[dict[str, object]]:
    response = http.put("/admin/faults", json={"faults": list(rules)})
    assert response.status_code == 200, response.text
    faults: list[dict[str, object]] = response.json()["faults"]
    return faults


def wait_for_hold(http: BankHttp, op_id: str, stage: str) -> dict[str, object]:
    """Poll GET /admin/holds until ``op_id`` is parked at ``stage``."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        for hold in http.get("/admin/holds").json()["held"]:
            if hold["op_id"] == op_id and hold["stage"] == stage:
                held: dict[str, object] = hold
                return held
        time.sleep(0.02)
    pytest.fail(f"{op_id} was never held at stage {stage}")


def in_background(
    call: Callable[[], requests.Response],
) -> tuple[ThreadPoolExecutor, Future[requests.Response]]:
    pool = ThreadPoolExecutor(max_workers=1)
    return pool, pool.submit(call)


def test_rules_round_trip_with_hit_counts(faults: BankHttp) -> None:
    rules = set_faults(
        faults,
        {"action": "latency", "latency_ms": 1, "kind": "credit"},
        {"action": "fail_before", "op_id": "never-used", "times": 2},
    )
    assert rules == [
        {
            "action": "latency",
            "kind": "credit",
            "op_id": None,
            "latency_ms": 1,
            "times": None,
            "hits": 0,
        },
        {
            "action": "fail_before",
            "kind": None,
            "op_id": "never-used",
            "latency_ms": None,
            "times": 2,
            "hits": 0,
        },
    ]
    account_id = open_account(faults, 0)
    faults.post("/entries", json=entry(new_id("c"), account_id, 5, "credit")).raise_for_status()
    listed = faults.get("/admin/faults").json()["faults"]
    assert [rule["hits"] for rule in listed] == [1, 0]
    assert faults.delete("/admin/faults").json() == {"faults": []}
    assert faults.get("/admin/faults").json() == {"faults": []}


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"action": "explode"}, "faults[0].action"),
        ({"action": "latency"}, "faults[0].latency_ms"),
        ({"action": "latency", "latency_ms": -1}, "faults[0].latency_ms"),
        ({"action": "fail_before", "kind": "refund"}, "faults[0].kind"),
        ({"action": "fail_before", "times": 0}, "faults[0].times"),
        ({"action": "fail_before", "op_id": ""}, "faults[0].op_id"),
        ({"action": "fail_before", "colour": "red"}, "colour"),
        ("fail_before", "faults[0]"),
    ],
)
def test_bad_rules_are_refused(faults: BankHttp, rule: object, field: str) -> None:
    set_faults(faults, {"action": "fail_before", "op_id": "keep-me"})
    response = faults.put("/admin/faults", json={"faults": [rule]})
    assert response.status_code == 400
    assert error_code(response) == "invalid_request"
    assert response.json()["error"]["field"] == field
    assert [r["op_id"] for r in faults.get("/admin/faults").json()["faults"]] == ["keep-me"]


def test_latency_slows_matching_requests(faults: BankHttp) -> None:
    account_id = open_account(faults, 100)
    op_id = new_id("slow")
    set_faults(faults, {"action": "latency", "latency_ms": 300, "op_id": op_id})
    started = time.monotonic()
    response = faults.post("/entries", json=entry(op_id, account_id, 1))
    assert response.status_code == 201
    assert time.monotonic() - started >= 0.3
    assert faults.get("/admin/faults").json()["faults"][0]["hits"] == 1


def test_fail_before_writes_nothing_and_times_limits_it(faults: BankHttp) -> None:
    account_id = open_account(faults, 100)
    request = entry(new_id("fb"), account_id, 10)
    set_faults(faults, {"action": "fail_before", "kind": "debit", "times": 1})
    failed = faults.post("/entries", json=request)
    assert failed.status_code == 503
    assert error_code(failed) == "injected_fault"
    assert faults.get(f"/entries/{request['op_id']}").status_code == 404
    assert balance(faults, account_id) == 100
    assert faults.post("/entries", json=request).status_code == 201
    assert balance(faults, account_id) == 90


def test_rules_match_on_kind(faults: BankHttp) -> None:
    account_id = open_account(faults, 100)
    set_faults(faults, {"action": "fail_before", "kind": "credit"})
    assert (
        faults.post("/entries", json=entry(new_id("d"), account_id, 1, "debit")).status_code == 201
    )
    credit = faults.post("/entries", json=entry(new_id("c"), account_id, 1, "credit"))
    assert credit.status_code == 503
    # A rule with a kind never matches a void, which has none.
    assert faults.post(f"/entries/{new_id('v')}/void").status_code == 200


def test_fail_after_applies_then_answers_503(faults: BankHttp) -> None:
    account_id = open_account(faults, 100)
    request = entry(new_id("fa"), account_id, 25)
    set_faults(faults, {"action": "fail_after", "op_id": request["op_id"], "times": 1})
    response = faults.post("/entries", json=request)
    assert response.status_code == 503
    assert error_code(response) == "injected_fault"
    assert balance(faults, account_id) == 75
    stored = faults.get(f"/entries/{request['op_id']}").json()
    assert stored["state"] == "applied"
    retry = faults.post("/entries", json=request)
    assert retry.status_code == 200
    assert retry.json() == stored["entry"]


def test_drop_after_applies_then_drops_the_connection(faults: BankHttp) -> None:
    account_id = open_account(faults, 100)
    request = entry(new_id("drop"), account_id, 40)
    set_faults(faults, {"action": "drop_after", "kind": "debit", "op_id": request["op_id"]})
    with pytest.raises((requests.ConnectionError, requests.Timeout)):
        faults.post("/entries", json=request)
    assert balance(faults, account_id) == 60
    assert faults.get(f"/entries/{request['op_id']}").json()["state"] == "applied"


def test_void_can_be_failed_by_op_id(faults: BankHttp) -> None:
    op_id = new_id("void-fail")
    set_faults(faults, {"action": "fail_before", "op_id": op_id, "times": 1})
    assert faults.post(f"/entries/{op_id}/void").status_code == 503
    assert faults.get(f"/entries/{op_id}").status_code == 404
    assert faults.post(f"/entries/{op_id}/void").json()["state"] == "voided"


def test_hold_before_parks_until_released(bank: RunningBank, faults: BankHttp) -> None:
    account_id = open_account(faults, 100)
    request = entry(new_id("hb"), account_id, 10)
    set_faults(faults, {"action": "hold_before", "op_id": request["op_id"]})
    with bank.client(timeout=30) as other:
        pool, pending = in_background(lambda: other.post("/entries", json=request))
        with pool:
            hold = wait_for_hold(faults, str(request["op_id"]), "before")
            assert hold["kind"] == "debit"
            assert faults.get(f"/entries/{request['op_id']}").status_code == 404
            assert balance(faults, account_id) == 100
            assert not pending.done()
            released = faults.post("/admin/holds/release", json={"op_id": request["op_id"]})
            assert released.json() == {"released": 1}
            assert pending.result(timeout=15).status_code == 201
    assert balance(faults, account_id) == 90
    assert faults.get("/admin/holds").json() == {"held": []}


def test_hold_after_parks_a_committed_write(bank: RunningBank, faults: BankHttp) -> None:
    account_id = open_account(faults, 100)
    request = entry(new_id("ha"), account_id, 10, "credit")
    set_faults(faults, {"action": "hold_after", "kind": "credit"})
    with bank.client(timeout=30) as other:
        pool, pending = in_background(lambda: other.post("/entries", json=request))
        with pool:
            wait_for_hold(faults, str(request["op_id"]), "after")
            # Committed before the answer: visible to everyone else already.
            assert faults.get(f"/entries/{request['op_id']}").json()["state"] == "applied"
            assert balance(faults, account_id) == 110
            assert not pending.done()
            assert faults.post("/admin/holds/release", json={}).json() == {"released": 1}
            assert pending.result(timeout=15).status_code == 201


def test_clearing_faults_releases_every_hold(bank: RunningBank, faults: BankHttp) -> None:
    account_id = open_account(faults, 100)
    requests = [entry(new_id(f"held{i}"), account_id, 1) for i in range(3)]
    set_faults(faults, {"action": "hold_before", "kind": "debit"})
    with bank.client(timeout=30) as other, ThreadPoolExecutor(max_workers=3) as pool:
        pending = [pool.submit(other.post, "/entries", json=r) for r in requests]
        for request in requests:
            wait_for_hold(faults, str(request["op_id"]), "before")
        faults.delete("/admin/faults").raise_for_status()
        assert [p.result(timeout=15).status_code for p in pending] == [201, 201, 201]
    assert balance(faults, account_id) == 97


def test_faults_from_the_environment(start_bank: StartBank) -> None:
    started = start_bank(faults=[{"action": "fail_before", "kind": "credit"}])
    with started.client() as http:
        account_id = open_account(http, 0)
        response = http.post("/entries", json=entry(new_id("c"), account_id, 1, "credit"))
        assert response.status_code == 503
        assert http.get("/admin/faults").json()["faults"][0]["hits"] == 1


def test_bad_faults_environment_stops_the_bank(start_bank: StartBank) -> None:
    with pytest.raises(ServiceError, match="exited with code 2"):
        start_bank(faults=[{"action": "explode"}])
