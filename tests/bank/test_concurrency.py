"""Concurrent writers never overdraw and never apply an op id twice.

Eight clients race the same debits (the same op ids, shuffled) against one
account holding less than they ask for, through one bank process and through
two processes sharing one ledger file.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from tests.bank.conftest import (
    BankHttp,
    RunningBank,
    StartBank,
    balance,
    entry,
    new_id,
    open_account,
)

CLIENTS = 8
OPENING = 60
OPS = 90  # debits of 1: only OPENING of them can be applied


def race(urls: list[str], account_id: str, op_ids: list[str]) -> list[tuple[str, int, object]]:
    """Every client posts every op id (own shuffled order); returns (op_id, status, body)."""
    start = threading.Barrier(CLIENTS)

    def client(index: int) -> list[tuple[str, int, object]]:
        order = op_ids[:]
        random.Random(index).shuffle(order)
        results = []
        with BankHttp(urls[index % len(urls)], token="test-token", timeout=60) as http:
            start.wait()
            for op_id in order:
                response = http.post("/entries", json=entry(op_id, account_id, 1))
                results.append((op_id, response.status_code, response.json()))
        return results

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        return [r for rs in pool.map(client, range(CLIENTS)) for r in rs]


def check_race(http: BankHttp, account_id: str, results: list[tuple[str, int, object]]) -> None:
    statuses = Counter(status for _, status, _ in results)
    assert set(statuses) <= {200, 201, 422}, statuses
    created = [op_id for op_id, status, _ in results if status == 201]
    # Exactly the affordable number of debits were applied, each op id once.
    assert len(created) == OPENING
    assert len(set(created)) == OPENING
    assert balance(http, account_id) == 0
    # Every 200 is a replay of the one applied entry for that op id.
    applied = {op_id: body for op_id, status, body in results if status == 201}
    for op_id, status, body in results:
        if status == 200:
            assert body == applied[op_id]
        if status == 422:
            assert isinstance(body, dict)
            assert body["error"]["code"] == "insufficient_funds"
            assert op_id not in applied
    ledger = http.get("/entries", params={"account_id": account_id, "limit": 1000}).json()
    entries = ledger["entries"]
    assert len(entries) == OPENING
    assert sorted(e["op_id"] for e in entries) == sorted(applied)
    # Balances after each entry walk down one at a time in ledger order: no lost update.
    assert [e["balance_after"] for e in entries] == list(range(OPENING - 1, -1, -1))


def test_eight_clients_racing_debits_on_one_process(bank: RunningBank, client: BankHttp) -> None:
    account_id = open_account(client, OPENING, prefix="race")
    op_ids = [new_id("race-op") for _ in range(OPS)]
    results = race([bank.url], account_id, op_ids)
    check_race(client, account_id, results)


def test_two_processes_sharing_one_ledger_file(start_bank: StartBank) -> None:
    first = start_bank(faults=False)
    second = start_bank(share_ledger_with=first, faults=False)
    with first.client() as http:
        account_id = open_account(http, OPENING, prefix="shared")
        op_ids = [new_id("shared-op") for _ in range(OPS)]
        results = race([first.url, second.url], account_id, op_ids)
        check_race(http, account_id, results)
    with second.client() as other:
        assert balance(other, account_id) == 0
