"""Hypothesis-generated bad requests never touch the ledger and never get a 5xx.

One live bank takes every example; after each, the account's balance and the
probe op id are checked to be exactly as before.
"""

from __future__ import annotations

import json
import string
from typing import Any
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bank.validation import ID_PATTERN, MAX_AMOUNT, MAX_BODY_BYTES
from tests.bank.conftest import BankHttp, RunningBank, balance, entry, new_id, open_account

OPENING = 1000
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def http(bank: RunningBank) -> Any:
    with bank.client() as client:
        yield client


@pytest.fixture(scope="module")
def account(http: BankHttp) -> str:
    return open_account(http, OPENING, prefix="fuzz")


def _is_bad_id(value: str) -> bool:
    return not value or len(value) > 128 or not ID_PATTERN.fullmatch(value)


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
bad_ids = st.one_of(
    st.just(""),
    st.text(alphabet=string.ascii_letters, min_size=129, max_size=200),
    st.text(min_size=1, max_size=16).filter(_is_bad_id),
    st.sampled_from(["a\x00b", "line\nbreak", "tab\there", "space here", "sl/ash", "ünï", "a?b"]),
    json_values.filter(lambda v: not isinstance(v, str)),
)
bad_amounts = st.one_of(
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=1, max_value=100).map(float),
    st.integers(max_value=0),
    st.integers(min_value=MAX_AMOUNT + 1),
    st.text(max_size=6),
    st.just("1"),
    st.none(),
    st.lists(st.integers(), max_size=2),
)
bad_kinds = st.one_of(
    st.text(max_size=10).filter(lambda k: k not in ("debit", "credit", "reversal")),
    st.sampled_from(["DEBIT", "Credit", " debit", "debit "]),
    json_values.filter(lambda v: not isinstance(v, str)),
)
bad_field_values = {
    "op_id": bad_ids,
    "account_id": bad_ids,
    "amount": bad_amounts,
    "kind": bad_kinds,
}


@st.composite
def bad_entry_bodies(draw: st.DrawFn, account_id: str) -> tuple[bytes, str | None]:
    """A body for POST /entries that must be refused, and the field it should name."""
    good: dict[str, object] = {
        "op_id": new_id("fuzz-op"),
        "account_id": account_id,
        "amount": 1,
        "kind": "debit",
    }
    how = draw(
        st.sampled_from(
            ["value", "missing", "extra", "duplicate", "bytes", "not_object", "constant", "huge"]
        )
    )
    if how == "value":
        field = draw(st.sampled_from(sorted(bad_field_values)))
        good[field] = draw(bad_field_values[field])
        return json.dumps(good).encode(), field
    if how == "missing":
        field = draw(st.sampled_from(sorted(good)))
        del good[field]
        return json.dumps(good).encode(), field
    if how == "extra":
        extra = draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in good))
        good[extra] = draw(json_values)
        return json.dumps(good).encode(), None
    if how == "duplicate":
        field = draw(st.sampled_from(sorted(good)))
        again = json.dumps(good[field])
        return json.dumps(good)[:-1].encode() + f', "{field}": {again}}}'.encode(), field
    if how == "bytes":
        raw = draw(st.binary(max_size=64).filter(lambda b: not _decodes_to_an_object(b)))
        return raw, "body"
    if how == "not_object":
        value = draw(json_values.filter(lambda v: not isinstance(v, dict)))
        return json.dumps(value).encode(), "body"
    if how == "constant":
        good["amount"] = draw(st.sampled_from([float("inf"), float("-inf"), float("nan")]))
        return json.dumps(good).encode(), "body"
    padding = "x" * (MAX_BODY_BYTES + 1)
    return json.dumps({**good, "op_id": padding}).encode(), "body"


def _decodes_to_an_object(raw: bytes) -> bool:
    """Random bytes can spell a JSON object (``{"":""}``): that is not a malformed body."""
    try:
        return isinstance(json.loads(raw), dict)
    except ValueError:
        return False


def assert_refused(response: requests.Response, field: str | None) -> None:
    sent = response.request.body
    if isinstance(sent, bytes | str) and len(sent) > MAX_BODY_BYTES:
        assert response.status_code == 413, response.text
        assert response.json()["error"]["code"] == "body_too_large"
        return
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    if field is not None:
        assert error["field"] == field
        assert error["message"].startswith(field)


@SETTINGS
@given(data=st.data())
def test_bad_entry_requests_are_refused_and_change_nothing(
    http: BankHttp, account: str, data: st.DataObject
) -> None:
    body, field = data.draw(bad_entry_bodies(account))
    response = http.post("/entries", data=body, headers={"Content-Type": "application/json"})
    assert_refused(response, field)
    assert balance(http, account) == OPENING
    assert http.get("/entries", params={"account_id": account}).json()["entries"] == []


bad_account_bodies = st.one_of(
    st.fixed_dictionaries({"status": st.one_of(bad_kinds, st.sampled_from(["OPEN", "frozen"]))}),
    st.fixed_dictionaries(
        {
            "status": st.just("closed"),
            "opening_balance": st.one_of(
                st.booleans(),
                st.floats(allow_nan=False, allow_infinity=False),
                st.integers(max_value=-1),
                st.integers(min_value=MAX_AMOUNT + 1),
                st.text(max_size=5),
            ),
        }
    ),
    st.fixed_dictionaries({"opening_balance": st.integers(min_value=0, max_value=10)}),
    st.fixed_dictionaries({"status": st.just("closed"), "owner": json_values}),
)


@SETTINGS
@given(body=bad_account_bodies)
def test_bad_account_updates_are_refused_and_change_nothing(
    http: BankHttp, account: str, body: dict[str, object]
) -> None:
    response = http.put(f"/accounts/{account}", data=json.dumps(body).encode())
    assert_refused(response, None)
    assert http.get(f"/accounts/{account}").json() == {
        "account_id": account,
        "balance": OPENING,
        "status": "open",
        "opening_balance": OPENING,
    }


@settings(SETTINGS, max_examples=75)
@given(bad=st.text(min_size=1, max_size=140).filter(_is_bad_id))
def test_bad_ids_in_paths_never_cause_a_5xx(http: BankHttp, account: str, bad: str) -> None:
    accounts_before = http.get("/accounts").json()
    path_id = quote(bad, safe="")
    for method, path, body in (
        ("GET", f"/accounts/{path_id}", None),
        ("PUT", f"/accounts/{path_id}", {"status": "open"}),
        ("GET", f"/entries/{path_id}", None),
        ("POST", f"/entries/{path_id}/void", None),
    ):
        response = http.request(method, path, json=body)
        assert response.status_code in (400, 404, 405), (method, path, response.text)
        assert "error" in response.json()
    assert http.get("/accounts").json() == accounts_before


@pytest.mark.parametrize("dots", [".", ".."])
def test_dot_ids_are_refused_in_bodies_and_paths(http: BankHttp, account: str, dots: str) -> None:
    """A proxy that normalises paths would send /accounts/.. to another route."""
    assert_refused(http.post("/entries", json=entry(dots, account, 1)), "op_id")
    refused = http.post("/entries", json=entry(new_id("dot"), dots, 1, "credit"))
    assert_refused(refused, "account_id")
    # Sent raw (a client that does not normalise), as a path segment of its own.
    encoded = "".join(f"%{ord(char):02X}" for char in dots)
    raw = http.request("PUT", f"/accounts/{encoded}", json={"status": "open"})
    assert raw.status_code in (400, 404), raw.text
    ids = [account["account_id"] for account in http.get("/accounts").json()["accounts"]]
    assert dots not in ids
