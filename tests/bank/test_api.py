"""Every row of the Bank API table and every error code, against a live bank."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
import requests

from tests.bank.conftest import (
    BankHttp,
    StartBank,
    balance,
    entry,
    error_code,
    new_id,
    open_account,
)


def test_health_names_the_bank(client: BankHttp) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "bank": "source"}


def test_target_bank_starts_and_reports_target(start_bank: StartBank) -> None:
    target = start_bank("target_bank", faults=False)
    with target.client() as http:
        assert http.get("/health").json() == {"status": "ok", "bank": "target"}
        # Without BANK_FAULTS the admin endpoints do not exist.
        assert http.get("/admin/faults").status_code == 404
        assert error_code(http.put("/admin/faults", json={"faults": []})) == "not_found"


# -- accounts ---------------------------------------------------------------------


def test_put_account_creates_then_updates(client: BankHttp) -> None:
    account_id = new_id("alice")
    created = client.put(f"/accounts/{account_id}", json={"status": "open", "opening_balance": 500})
    assert created.status_code == 201
    record = {"account_id": account_id, "balance": 500, "status": "open", "opening_balance": 500}
    assert created.json() == record
    assert client.get(f"/accounts/{account_id}").json() == record

    closed = client.put(f"/accounts/{account_id}", json={"status": "closed"})
    assert closed.status_code == 200
    assert closed.json() == {**record, "status": "closed"}
    same_opening = client.put(
        f"/accounts/{account_id}", json={"status": "open", "opening_balance": 500}
    )
    assert same_opening.status_code == 200
    assert same_opening.json() == record


def test_opening_balance_defaults_to_zero(client: BankHttp) -> None:
    account_id = new_id("zero")
    response = client.put(f"/accounts/{account_id}", json={"status": "open"})
    assert response.status_code == 201
    assert response.json()["balance"] == 0


def test_opening_balance_cannot_change(client: BankHttp) -> None:
    account_id = open_account(client, 100)
    response = client.put(f"/accounts/{account_id}", json={"status": "open", "opening_balance": 7})
    assert response.status_code == 409
    assert error_code(response) == "opening_balance_fixed"
    assert client.get(f"/accounts/{account_id}").json()["opening_balance"] == 100


def test_unknown_account_is_404(client: BankHttp) -> None:
    response = client.get(f"/accounts/{new_id('nobody')}")
    assert response.status_code == 404
    assert error_code(response) == "unknown_account"


def test_list_accounts_sorted_by_id(client: BankHttp) -> None:
    first = open_account(client, 1, prefix="list-b")
    second = open_account(client, 2, prefix="list-a")
    accounts = client.get("/accounts").json()["accounts"]
    ids = [account["account_id"] for account in accounts]
    assert ids == sorted(ids)
    by_id = {account["account_id"]: account for account in accounts}
    assert by_id[first]["balance"] == 1
    assert by_id[second] == {
        "account_id": second,
        "balance": 2,
        "status": "open",
        "opening_balance": 2,
    }


# -- entries ----------------------------------------------------------------------


def test_debit_credit_and_reversal_move_the_balance(client: BankHttp) -> None:
    account_id = open_account(client, 1000)
    debit = client.post("/entries", json=entry(new_id("d"), account_id, 300, "debit"))
    assert debit.status_code == 201
    assert debit.json()["balance_after"] == 700
    credit = client.post("/entries", json=entry(new_id("c"), account_id, 50, "credit"))
    assert credit.json()["balance_after"] == 750
    reversal = client.post("/entries", json=entry(new_id("r"), account_id, 300, "reversal"))
    assert reversal.json()["balance_after"] == 1050
    assert balance(client, account_id) == 1050


def test_entry_record_shape(client: BankHttp) -> None:
    account_id = open_account(client, 10)
    op_id = new_id("shape")
    body = client.post("/entries", json=entry(op_id, account_id, 4)).json()
    assert set(body) == {
        "seq",
        "op_id",
        "account_id",
        "kind",
        "amount",
        "balance_after",
        "created_at",
    }
    assert body["op_id"] == op_id
    assert body["kind"] == "debit"
    assert body["amount"] == 4
    assert isinstance(body["seq"], int)
    assert body["seq"] >= 1
    assert datetime.fromisoformat(body["created_at"]).utcoffset() is not None


def test_identical_replay_returns_the_very_same_entry(client: BankHttp) -> None:
    account_id = open_account(client, 100)
    request = entry(new_id("replay"), account_id, 30)
    first = client.post("/entries", json=request)
    assert first.status_code == 201
    for _ in range(3):
        again = client.post("/entries", json=request)
        assert again.status_code == 200
        assert again.json() == first.json()
    assert balance(client, account_id) == 70


@pytest.mark.parametrize(
    "change",
    [{"amount": 31}, {"kind": "credit"}, {"account_id": "other"}],
    ids=["amount", "kind", "account"],
)
def test_conflicting_replay_is_refused_and_changes_nothing(
    client: BankHttp, change: dict[str, object]
) -> None:
    account_id = open_account(client, 100)
    other = open_account(client, 100)
    op_id = new_id("conflict")
    first = client.post("/entries", json=entry(op_id, account_id, 30)).json()
    conflicting = {**entry(op_id, account_id, 30), **change}
    if change.get("account_id") == "other":
        conflicting["account_id"] = other
    response = client.post("/entries", json=conflicting)
    assert response.status_code == 409
    assert error_code(response) == "op_id_conflict"
    assert balance(client, account_id) == 70
    assert balance(client, other) == 100
    assert client.get(f"/entries/{op_id}").json()["entry"] == first


def test_insufficient_funds_writes_nothing_and_can_succeed_later(client: BankHttp) -> None:
    account_id = open_account(client, 100)
    request = entry(new_id("big"), account_id, 150)
    refused = client.post("/entries", json=request)
    assert refused.status_code == 422
    assert error_code(refused) == "insufficient_funds"
    assert balance(client, account_id) == 100
    assert client.get(f"/entries/{request['op_id']}").status_code == 404
    client.post("/entries", json=entry(new_id("top-up"), account_id, 50, "credit"))
    assert client.post("/entries", json=request).status_code == 201
    assert balance(client, account_id) == 0


def test_debit_of_the_whole_balance_is_allowed(client: BankHttp) -> None:
    account_id = open_account(client, 100)
    response = client.post("/entries", json=entry(new_id("all"), account_id, 100))
    assert response.status_code == 201
    assert response.json()["balance_after"] == 0


def test_closed_account_refuses_debit_and_credit_but_takes_reversal(client: BankHttp) -> None:
    account_id = open_account(client, 100)
    client.put(f"/accounts/{account_id}", json={"status": "closed"}).raise_for_status()
    for kind in ("debit", "credit"):
        response = client.post("/entries", json=entry(new_id(kind), account_id, 10, kind))
        assert response.status_code == 422
        assert error_code(response) == "account_closed"
    assert balance(client, account_id) == 100
    reversal = client.post("/entries", json=entry(new_id("rev"), account_id, 10, "reversal"))
    assert reversal.status_code == 201
    assert balance(client, account_id) == 110


def test_entry_on_unknown_account_is_422(client: BankHttp) -> None:
    response = client.post("/entries", json=entry(new_id("x"), new_id("ghost"), 10, "credit"))
    assert response.status_code == 422
    assert error_code(response) == "unknown_account"


# -- void fence -------------------------------------------------------------------


def test_void_before_apply_fences_the_op_forever(client: BankHttp) -> None:
    account_id = open_account(client, 100)
    op_id = new_id("fenced")
    voided = client.post(f"/entries/{op_id}/void")
    assert voided.status_code == 200
    assert voided.json() == {"op_id": op_id, "state": "voided"}
    assert client.post(f"/entries/{op_id}/void").json() == voided.json()
    late = client.post("/entries", json=entry(op_id, account_id, 10))
    assert late.status_code == 409
    assert error_code(late) == "op_voided"
    assert balance(client, account_id) == 100
    assert client.get(f"/entries/{op_id}").json() == {"op_id": op_id, "state": "voided"}


def test_void_after_apply_reports_the_entry(client: BankHttp) -> None:
    account_id = open_account(client, 100)
    op_id = new_id("applied")
    applied = client.post("/entries", json=entry(op_id, account_id, 10)).json()
    voided = client.post(f"/entries/{op_id}/void")
    assert voided.status_code == 200
    assert voided.json() == {"op_id": op_id, "state": "applied", "entry": applied}
    assert client.post("/entries", json=entry(op_id, account_id, 10)).status_code == 200
    assert balance(client, account_id) == 90


def test_get_entry_states(client: BankHttp) -> None:
    account_id = open_account(client, 100)
    op_id = new_id("look")
    missing = client.get(f"/entries/{op_id}")
    assert missing.status_code == 404
    assert error_code(missing) == "unknown_op"
    applied = client.post("/entries", json=entry(op_id, account_id, 1)).json()
    assert client.get(f"/entries/{op_id}").json() == {
        "op_id": op_id,
        "state": "applied",
        "entry": applied,
    }


# -- listing ----------------------------------------------------------------------


def test_list_entries_pages_in_ledger_order(client: BankHttp) -> None:
    account_id = open_account(client, 1000)
    posted = [
        client.post("/entries", json=entry(new_id(f"p{i}"), account_id, i + 1)).json()
        for i in range(5)
    ]
    seen: list[dict[str, object]] = []
    after: int | None = None
    while True:
        params: dict[str, str | int] = {"account_id": account_id, "limit": 2}
        if after is not None:
            params["after"] = after
        page = client.get("/entries", params=params).json()
        seen.extend(page["entries"])
        after = page["next_after"]
        if after is None:
            break
    assert seen == posted
    seqs = [e["seq"] for e in posted]
    assert seqs == sorted(seqs)


def test_list_entries_without_account_covers_the_whole_ledger(client: BankHttp) -> None:
    account_id = open_account(client, 100)
    posted = client.post("/entries", json=entry(new_id("all"), account_id, 1)).json()
    page = client.get("/entries", params={"after": posted["seq"] - 1, "limit": 1}).json()
    assert page["entries"] == [posted]
    everything = client.get("/entries", params={"limit": 1000}).json()["entries"]
    assert [e["seq"] for e in everything] == sorted(e["seq"] for e in everything)
    assert everything[0]["seq"] == 1


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "ten"},
        {"after": "-1"},
        {"after": "1.5"},
        {"account_id": ""},
        {"account_id": "a b"},
        {"color": "red"},
    ],
)
def test_list_entries_refuses_bad_params(client: BankHttp, params: dict[str, str]) -> None:
    response = client.get("/entries", params=params)
    assert response.status_code == 400
    assert error_code(response) == "invalid_request"
    assert next(iter(params)) in response.json()["error"]["message"]


# -- auth, routing ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/accounts/auth-test", {"status": "open"}),
        ("POST", "/entries", {"op_id": "a", "account_id": "b", "amount": 1, "kind": "credit"}),
        ("POST", "/entries/auth-test/void", None),
        ("PUT", "/admin/faults", {"faults": []}),
        ("DELETE", "/admin/faults", None),
        ("POST", "/admin/holds/release", {"op_id": None}),
    ],
)
def test_mutating_calls_need_the_token(bank_url: str, method: str, path: str, body: Any) -> None:
    for auth in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "test-token"}):
        headers = {"Content-Type": "application/json", **auth}
        response = requests.request(method, bank_url + path, json=body, headers=headers, timeout=10)
        assert response.status_code == 401
        assert error_code(response) == "unauthorized"
    # Nothing was written by the refused calls.
    with BankHttp(bank_url, token="test-token", timeout=10) as http:
        assert http.get("/entries/auth-test").status_code == 404
        assert http.get("/accounts/auth-test").status_code == 404


def test_reads_without_the_token_see_only_health(anon: BankHttp) -> None:
    assert anon.get("/health").status_code == 200
    assert anon.get("/accounts").status_code == 401


def test_bank_without_token_needs_no_auth(start_bank: StartBank) -> None:
    open_bank = start_bank(token=None, faults=False)
    with open_bank.client(token=None) as http:
        assert http.put("/accounts/free", json={"status": "open"}).status_code == 201
        assert http.get("/accounts/free").status_code == 200
        assert http.get("/accounts/free").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nowhere", 404, "not_found"),
        ("POST", "/nowhere", 404, "not_found"),
        ("DELETE", "/entries", 405, "method_not_allowed"),
        ("PATCH", "/accounts/x", 405, "method_not_allowed"),
        ("POST", "/health", 405, "method_not_allowed"),
    ],
)
def test_unknown_routes_and_methods_answer_json(
    client: BankHttp, method: str, path: str, status: int, code: str
) -> None:
    response = client.request(method, path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert error_code(response) == code
