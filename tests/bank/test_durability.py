"""An acknowledged write survives SIGKILL of the bank (invariant 6)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.bank.conftest import StartBank, balance, entry, new_id, open_account


def test_entries_acknowledged_before_sigkill_are_there_after_restart(
    start_bank: StartBank,
) -> None:
    bank = start_bank(faults=False)
    with bank.client() as http:
        account_id = open_account(http, 1000)
        acknowledged = [
            http.post("/entries", json=entry(new_id("ack"), account_id, 3)).json()
            for _ in range(25)
        ]
        voided = http.post(f"/entries/{new_id('void')}/void").json()
    bank.process.kill()
    bank.process.start()
    with bank.client() as http:
        for stored in acknowledged:
            assert http.get(f"/entries/{stored['op_id']}").json()["entry"] == stored
        assert http.get(f"/entries/{voided['op_id']}").json() == voided
        assert balance(http, account_id) == 1000 - 25 * 3


def test_sigkill_under_concurrent_load_loses_no_acknowledged_entry(
    start_bank: StartBank,
) -> None:
    bank = start_bank(faults=False)
    with bank.client() as http:
        account_id = open_account(http, 10**9)
    acknowledged: list[dict[str, object]] = []
    lock = threading.Lock()
    enough = threading.Event()

    def writer(_: int) -> None:
        with bank.client(timeout=5) as http:
            while True:
                try:
                    response = http.post("/entries", json=entry(new_id("load"), account_id, 1))
                except (
                    requests.ConnectionError,
                    requests.Timeout,
                    requests.exceptions.ChunkedEncodingError,  # killed mid-answer
                ):
                    return  # the bank was killed under us: not acknowledged
                assert response.status_code == 201
                with lock:
                    acknowledged.append(response.json())
                    if len(acknowledged) >= 60:
                        enough.set()

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(writer, i) for i in range(4)]
        assert enough.wait(60)
        bank.process.kill()
        for future in futures:
            future.result(timeout=30)
    bank.process.start()
    with bank.client() as http:
        for stored in acknowledged:
            assert http.get(f"/entries/{stored['op_id']}").json()["entry"] == stored
        entries = http.get("/entries", params={"account_id": account_id, "limit": 1000}).json()
        applied = len(entries["entries"])
        assert applied >= len(acknowledged)
        assert balance(http, account_id) == 10**9 - applied


def test_sigterm_lets_in_flight_requests_finish(start_bank: StartBank) -> None:
    bank = start_bank()
    with bank.client() as http, ThreadPoolExecutor(max_workers=1) as pool:
        account_id = open_account(http, 100)
        request = entry(new_id("parked"), account_id, 10)
        http.put(
            "/admin/faults", json={"faults": [{"action": "hold_after", "op_id": request["op_id"]}]}
        ).raise_for_status()
        pending = pool.submit(http.post, "/entries", json=request)
        while not http.get("/admin/holds").json()["held"]:
            threading.Event().wait(0.02)
        bank.process.stop(timeout=15)
        answer = pending.result(timeout=15)
    assert bank.process.process is not None
    assert bank.process.process.returncode == 0
    assert answer.status_code == 201
    bank.process.start()
    with bank.client() as http:
        assert balance(http, account_id) == 90
