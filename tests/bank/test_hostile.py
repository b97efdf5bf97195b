"""Hostile and careless clients against a real bank: it stays up, bounded and correct.

Each test starts its own bank (``start_bank``) so an attack cannot slow the
shared one, opens a bounded number of loopback connections, and checks what a
well-formed client relies on: its requests are answered, nothing lands on
disk that the bank never needed, and the ledger is unchanged.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path

import pytest
import requests

from bank.validation import MAX_BODY_BYTES
from bench.hostile_bank import (
    idle_connections,
    peak_temp_bytes,
    slowloris_connections,
    upload_without_token,
    well_formed_answers,
)
from tests.bank.conftest import (
    TOKEN,
    RunningBank,
    StartBank,
    balance,
    error_code,
    new_id,
    open_account,
)

PROBES = 11
#: Seconds a well-formed request may take while the bank is under attack.
PROBE_TIMEOUT = 3.0


def _start(start_bank: StartBank, tmp_path: Path, **env: str) -> RunningBank:
    temp_dir = tmp_path / "tmp"
    temp_dir.mkdir()
    return start_bank(token=TOKEN, extra_env={"TMPDIR": str(temp_dir), **env})


def _port(bank: RunningBank) -> int:
    return int(bank.url.rsplit(":", 1)[1])


def _closed_by_bank(sock: socket.socket, within: float) -> bool:
    """True once the bank closes ``sock`` (EOF or reset), polling for at most ``within`` s."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if sock.recv(4096) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


def _open_sockets(pid: int) -> int:
    """Sockets ``pid`` has open (a descriptor closed while counting is skipped)."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            count += os.readlink(fd).startswith("socket:")
    return count


# -- connections ----------------------------------------------------------------------


def test_idle_connections_do_not_lock_out_a_client(start_bank: StartBank, tmp_path: Path) -> None:
    bank = _start(start_bank, tmp_path)
    with idle_connections(_port(bank), 250):
        assert well_formed_answers(bank.url, PROBES, PROBE_TIMEOUT, token=TOKEN) == PROBES


def test_slowloris_connections_do_not_lock_out_a_client(
    start_bank: StartBank, tmp_path: Path
) -> None:
    bank = _start(start_bank, tmp_path)
    with slowloris_connections(_port(bank), 300, trickle_seconds=1.0):
        assert well_formed_answers(bank.url, PROBES, PROBE_TIMEOUT, token=TOKEN) == PROBES


@pytest.mark.parametrize("attack", ["idle", "slowloris"])
def test_at_the_connection_cap_the_oldest_idle_connection_makes_room(
    start_bank: StartBank, tmp_path: Path, attack: str
) -> None:
    bank = _start(start_bank, tmp_path, BANK_MAX_CONNECTIONS="40")
    port = _port(bank)
    attackers = (
        idle_connections(port, 200)
        if attack == "idle"
        else slowloris_connections(port, 200, trickle_seconds=1.0)
    )
    with attackers:
        assert well_formed_answers(bank.url, PROBES, PROBE_TIMEOUT, token=TOKEN) == PROBES
        # The listening socket, the 40 connections, and one or two being closed.
        assert _open_sockets(bank.process.pid) <= 40 + 3


def test_headers_must_arrive_within_the_header_timeout(
    start_bank: StartBank, tmp_path: Path
) -> None:
    """A header line every second keeps a connection active, but not beyond the deadline."""
    bank = _start(start_bank, tmp_path, BANK_HEADER_TIMEOUT="2")
    with slowloris_connections(_port(bank), 1, trickle_seconds=0.5) as (first, *_):
        assert _closed_by_bank(first, within=6.0)


def _trickle_body_until_closed(bank: RunningBank, within: float) -> bool:
    """Send a request's headers, then one body byte every half second until the bank closes."""
    head = f"POST /entries HTTP/1.1\r\nHost: bank\r\nAuthorization: Bearer {TOKEN}\r\n"
    with socket.create_connection(("127.0.0.1", _port(bank))) as sock:
        sock.sendall(f"{head}Content-Length: 100\r\n\r\n".encode())
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                sock.sendall(b" ")
            except OSError:
                return True
            if _closed_by_bank(sock, within=0.5):
                return True
    return False


def test_a_body_must_arrive_within_the_body_timeout(start_bank: StartBank, tmp_path: Path) -> None:
    """A body byte every half second keeps a connection active, but not beyond the deadline."""
    bank = _start(start_bank, tmp_path, BANK_BODY_TIMEOUT="2")
    assert _trickle_body_until_closed(bank, within=6.0)


def test_an_idle_connection_is_closed_after_the_idle_timeout(
    start_bank: StartBank, tmp_path: Path
) -> None:
    bank = _start(start_bank, tmp_path, BANK_IDLE_TIMEOUT="1")
    with idle_connections(_port(bank), 1) as (sock,):
        assert _closed_by_bank(sock, within=5.0)


def test_a_kept_alive_client_is_served_across_requests(
    start_bank: StartBank, tmp_path: Path
) -> None:
    bank = _start(start_bank, tmp_path, BANK_MAX_CONNECTIONS="4")
    with bank.client() as http:
        for _ in range(5):
            assert http.get("/accounts").status_code == 200


@pytest.mark.parametrize("attempt", range(3))
def test_sigterm_stops_the_bank_even_while_it_closes_connections(
    start_bank: StartBank, tmp_path: Path, attempt: int
) -> None:
    """The stop is not lost when the signal lands inside waitress's handling of a connection.

    That is a race (it was lost about every other time), hence a few attempts.
    """
    bank = _start(start_bank, tmp_path, BANK_IDLE_TIMEOUT="1")
    assert bank.process.process is not None
    # Many connections the bank closes at once: the signal arrives while it does.
    with idle_connections(_port(bank), 300) as sockets:
        assert _closed_by_bank(sockets[0], within=5.0)
        bank.process.signal(signal.SIGTERM)
        assert bank.process.process.wait(timeout=5) == 0


# -- bodies ---------------------------------------------------------------------------


def test_a_huge_body_without_a_token_is_refused_before_it_is_read(
    start_bank: StartBank, tmp_path: Path
) -> None:
    bank = _start(start_bank, tmp_path)
    body = 100 * 1024 * 1024
    with peak_temp_bytes(bank.process.pid, tmp_path / "tmp") as peak:
        upload = upload_without_token(_port(bank), body)
    assert upload.status == 413
    assert upload.bytes_sent < body // 10, "the bank read the body before refusing it"
    assert peak[0] < MAX_BODY_BYTES * 4, f"the bank held {peak[0]} bytes of temp files"
    with bank.client() as http:
        assert http.get("/accounts").status_code == 200


def test_a_body_over_the_limit_is_a_json_413_and_at_the_limit_reaches_the_app(
    start_bank: StartBank, tmp_path: Path
) -> None:
    bank = _start(start_bank, tmp_path)
    with bank.client() as http:
        too_big = http.post("/entries", data=b" " * (MAX_BODY_BYTES + 1))
        assert too_big.status_code == 413
        assert error_code(too_big) == "body_too_large"
        at_limit = http.post("/entries", data=b" " * MAX_BODY_BYTES)
        assert at_limit.status_code == 400
        assert error_code(at_limit) == "invalid_request"


# -- duplicate keys -------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        '{{"op_id": "{op}", "account_id": "{acct}", "kind": "credit", "amount": 1, "amount": 7}}',
        '{{"op_id": "{op}", "op_id": "{op}", "account_id": "{acct}", "kind": "credit", '
        '"amount": 1}}',
    ],
)
def test_duplicate_keys_are_refused_and_change_nothing(bank: RunningBank, template: str) -> None:
    with bank.client() as http:
        account = open_account(http, 100, prefix="dup")
        op_id = new_id("dup")
        raw = template.format(op=op_id, acct=account)
        response = http.post("/entries", data=raw, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, response.text
        assert error_code(response) == "invalid_request"
        field = "amount" if '"amount": 7' in raw else "op_id"
        assert response.json()["error"]["field"] == field
        assert balance(http, account) == 100
        assert http.get(f"/entries/{op_id}").status_code == 404


def test_duplicate_keys_are_refused_at_any_depth(bank: RunningBank) -> None:
    raw = '{"faults": [{"action": "fail_before", "times": 1, "times": 5}]}'
    with bank.client() as http:
        response = http.put("/admin/faults", data=raw, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["field"] == "times"
        assert http.get("/admin/faults").json() == {"faults": []}


# -- auth on reads --------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/accounts",
        "/accounts/someone",
        "/entries",
        "/entries?account_id=someone",
        "/entries/some-op",
        "/admin/faults",
        "/admin/holds",
        "/nowhere",
    ],
)
def test_with_a_token_set_every_read_needs_it(bank_url: str, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        response = requests.get(bank_url + path, headers=headers, timeout=10)
        assert response.status_code == 401, (path, headers)
        assert error_code(response) == "unauthorized"
    assert requests.get(
        bank_url + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    ).status_code in (
        200,
        404,
    )


def test_health_needs_no_token(bank_url: str) -> None:
    assert requests.get(f"{bank_url}/health", timeout=10).status_code == 200
