"""An operator's cancel: a void that carries a note (who, why), kept with it and told to every caller.

Against a real bank process and its SQLite file, as the other bank tests: the
note's answers, the bad notes (400, nothing changed), its race with a
``POST /entries`` of the same op id, a SIGKILL, and a ledger file written
before voids had notes.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bank.ledger import CancelNote, Ledger
from bank.validation import MAX_NOTE_LENGTH
from tests.bank.conftest import (
    TOKEN,
    BankHttp,
    RunningBank,
    StartBank,
    balance,
    entry,
    error_code,
    new_id,
    open_account,
)
from tests.bank.test_metrics import scrape, series


def note(by: str = "alice", reason: str = "customer withdrew") -> dict[str, Any]:
    return {"cancel": {"by": by, "reason": reason}}


def void(http: BankHttp, op_id: str, body: Any = None, **kwargs: Any) -> requests.Response:
    return http.post(f"/entries/{op_id}/void", json=body, **kwargs)


def assert_recent(at: str) -> None:
    """``at`` is ISO-8601 UTC as the ledger writes times, and within the last minute."""
    assert at.endswith("Z"), at
    written = datetime.strptime(at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert timedelta(0) <= datetime.now(UTC) - written < timedelta(minutes=1), at


# -- the answers ----------------------------------------------------------------------


def test_a_void_with_a_note_keeps_it_and_tells_every_later_caller(client: BankHttp) -> None:
    account_id = open_account(client, 100)
    op_id = new_id("cancel")
    voided = void(client, op_id, note())
    assert voided.status_code == 200, voided.text
    body = voided.json()
    assert set(body) == {"op_id", "state", "cancelled"}
    assert (body["op_id"], body["state"]) == (op_id, "voided")
    cancelled = body["cancelled"]
    assert set(cancelled) == {"by", "reason", "at"}
    assert (cancelled["by"], cancelled["reason"]) == ("alice", "customer withdrew")
    assert_recent(cancelled["at"])

    # Every later void answers the stored note: none, {}, the same note, another note.
    assert void(client, op_id).json() == body
    assert void(client, op_id, {}).json() == body
    assert void(client, op_id, note()).json() == body
    assert void(client, op_id, note("bob", "changed my mind")).json() == body
    assert client.get(f"/entries/{op_id}").json() == body

    late = client.post("/entries", json=entry(op_id, account_id, 10))
    assert late.status_code == 409, late.text
    assert late.json()["error"] == {
        "code": "cancelled",
        "message": f"op {op_id} was cancelled by alice: customer withdrew",
        "cancelled": cancelled,
    }
    assert balance(client, account_id) == 100


def test_a_post_of_a_cancelled_op_is_counted_as_voided(client: BankHttp) -> None:
    account_id = open_account(client, 100)
    op_id = new_id("counted")
    void(client, op_id, note()).raise_for_status()
    _, before = scrape(client)
    assert error_code(client.post("/entries", json=entry(op_id, account_id, 1))) == "cancelled"
    _, after = scrape(client)
    name = "crossbank_bank_entries_total"
    key = ("debit", "voided", "")
    assert series(after, name, "kind", "answer", "code")[key] == (
        series(before, name, "kind", "answer", "code")[key] + 1
    )
    assert ("cancelled",) not in series(after, name, "code")


def test_a_note_on_an_op_voided_without_one_is_not_kept(client: BankHttp) -> None:
    account_id = open_account(client, 100)
    op_id = new_id("fence-first")
    plain = {"op_id": op_id, "state": "voided"}
    assert void(client, op_id).json() == plain
    late_note = void(client, op_id, note())
    assert late_note.status_code == 200
    assert late_note.json() == plain
    assert client.get(f"/entries/{op_id}").json() == plain
    assert error_code(client.post("/entries", json=entry(op_id, account_id, 10))) == "op_voided"


@pytest.mark.parametrize("body", [None, {}, b"", b"  \n"], ids=["none", "{}", "empty", "spaces"])
def test_a_void_without_a_note_is_as_before(client: BankHttp, body: Any) -> None:
    account_id = open_account(client, 100)
    op_id = new_id("plain")
    if isinstance(body, bytes):
        voided = client.post(f"/entries/{op_id}/void", data=body)
    else:
        voided = void(client, op_id, body)
    assert voided.status_code == 200, voided.text
    assert voided.json() == {"op_id": op_id, "state": "voided"}
    late = client.post("/entries", json=entry(op_id, account_id, 10))
    assert late.status_code == 409
    assert late.json()["error"] == {
        "code": "op_voided",
        "message": f"op {op_id} was voided and can never be applied",
    }
    assert client.get(f"/entries/{op_id}").json() == {"op_id": op_id, "state": "voided"}


def test_a_note_on_an_applied_op_is_ignored(client: BankHttp) -> None:
    account_id = open_account(client, 100)
    op_id = new_id("too-late")
    applied = client.post("/entries", json=entry(op_id, account_id, 10)).json()
    answer = {"op_id": op_id, "state": "applied", "entry": applied}
    voided = void(client, op_id, note())
    assert voided.status_code == 200
    assert voided.json() == answer
    assert client.get(f"/entries/{op_id}").json() == answer
    assert client.post("/entries", json=entry(op_id, account_id, 10)).json() == applied
    assert balance(client, account_id) == 90


def test_a_note_is_kept_exactly_as_given(client: BankHttp) -> None:
    longest = "é" * MAX_NOTE_LENGTH
    for by, reason in (
        ("Zoë Ångström", "客户撤回 🙂"),
        ("a", longest),
        (" ops team ", "fraud: \"card\" 'stolen' ; DROP TABLE voids; --"),
    ):
        op_id = new_id("exact")
        cancelled = void(client, op_id, note(by, reason)).json()["cancelled"]
        assert (cancelled["by"], cancelled["reason"]) == (by, reason)
        assert client.get(f"/entries/{op_id}").json()["cancelled"] == cancelled


def test_a_note_written_before_a_failed_answer_is_what_the_retry_gets(faults: BankHttp) -> None:
    """A void that committed but whose answer was lost: the saga-style retry sees the note."""
    op_id = new_id("lost")
    rule = {"action": "fail_after", "op_id": op_id, "times": 1}
    faults.put("/admin/faults", json={"faults": [rule]}).raise_for_status()
    assert void(faults, op_id, note()).status_code == 503
    retried = void(faults, op_id)
    assert retried.status_code == 200
    assert retried.json()["cancelled"]["by"] == "alice"


# -- bad notes ------------------------------------------------------------------------

BAD_BODIES: list[tuple[str, Any, str]] = [
    ("null cancel", {"cancel": None}, "cancel"),
    ("string cancel", {"cancel": "alice"}, "cancel"),
    ("list cancel", {"cancel": ["alice", "why"]}, "cancel"),
    ("empty cancel", {"cancel": {}}, "cancel.by"),
    ("no reason", {"cancel": {"by": "alice"}}, "cancel.reason"),
    ("no by", {"cancel": {"reason": "why"}}, "cancel.by"),
    ("empty by", note(by=""), "cancel.by"),
    ("blank by", note(by="   "), "cancel.by"),
    ("empty reason", note(reason=""), "cancel.reason"),
    ("number by", {"cancel": {"by": 7, "reason": "why"}}, "cancel.by"),
    ("null reason", {"cancel": {"by": "alice", "reason": None}}, "cancel.reason"),
    ("object reason", {"cancel": {"by": "alice", "reason": {"text": "x"}}}, "cancel.reason"),
    ("long reason", note(reason="x" * (MAX_NOTE_LENGTH + 1)), "cancel.reason"),
    ("long by", note(by="y" * (MAX_NOTE_LENGTH + 1)), "cancel.by"),
    ("newline", note(reason="first line\nsecond line"), "cancel.reason"),
    ("tab", note(by="al\tice"), "cancel.by"),
    ("nul", note(by="alice\x00"), "cancel.by"),
    ("escape", note(reason="\x1b[31mred"), "cancel.reason"),
    ("bidi override", note(reason="abc\u202edcba"), "cancel.reason"),
    ("extra in cancel", {"cancel": {"by": "a", "reason": "b", "at": "now"}}, "cancel.at"),
    ("extra beside cancel", {**note(), "force": True}, "force"),
    ("no cancel", {"by": "alice", "reason": "why"}, "by"),
    ("a list", [note()], "body"),
    ("a string", "cancel", "body"),
]


@pytest.mark.parametrize(
    ("body", "field"), [b[1:] for b in BAD_BODIES], ids=[b[0] for b in BAD_BODIES]
)
def test_a_bad_note_is_refused_and_changes_nothing(client: BankHttp, body: Any, field: str) -> None:
    account_id = open_account(client, 100)
    op_id = new_id("bad-note")
    refused = void(client, op_id, body)
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_request", field)
    assert error["message"].startswith(f"{field}: ")
    assert client.get(f"/entries/{op_id}").status_code == 404
    # Not voided: the op id can still be applied.
    assert client.post("/entries", json=entry(op_id, account_id, 10)).status_code == 201


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"{not json", "body"),
        (b'{"cancel": {"by": "a", "reason": "b"}} trailing', "body"),
        (b'{"cancel": {"by": "a", "by": "b", "reason": "c"}}', "by"),
        (b'{"cancel": {"by": "a", "reason": NaN}}', "body"),
        (b'{"cancel": {"by": "\xff", "reason": "b"}}', "body"),
    ],
    ids=["malformed", "trailing", "duplicate key", "NaN", "not UTF-8"],
)
def test_a_malformed_void_body_is_refused(client: BankHttp, raw: bytes, field: str) -> None:
    op_id = new_id("raw-note")
    refused = client.post(f"/entries/{op_id}/void", data=raw)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["field"] == field
    assert client.get(f"/entries/{op_id}").status_code == 404


def test_a_bad_note_on_an_applied_or_voided_op_is_refused_too(client: BankHttp) -> None:
    """A bad note is a bad request whatever the op id's state: the caller learns it at once."""
    account_id = open_account(client, 100)
    applied = new_id("applied")
    client.post("/entries", json=entry(applied, account_id, 10)).raise_for_status()
    voided = new_id("voided")
    stored = void(client, voided, note()).json()
    for op_id in (applied, voided):
        assert void(client, op_id, note(by="")).status_code == 400
    assert client.get(f"/entries/{voided}").json() == stored


def _acceptable(value: object) -> bool:
    return (
        isinstance(value, str)
        and bool(value.strip())
        and len(value) <= MAX_NOTE_LENGTH
        and value.isprintable()
    )


TEXT = st.one_of(
    st.text(max_size=MAX_NOTE_LENGTH + 5),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=MAX_NOTE_LENGTH - 2, max_size=202),
    st.sampled_from(["", " ", "\u00a0", "\n", "ok"]),
    st.integers(),
    st.none(),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(by=TEXT, reason=TEXT)
def test_any_note_is_kept_exactly_or_refused_with_nothing_written(
    client: BankHttp, by: object, reason: object
) -> None:
    op_id = new_id("any-note")
    answer = void(client, op_id, {"cancel": {"by": by, "reason": reason}})
    if _acceptable(by) and _acceptable(reason):
        assert answer.status_code == 200, answer.text
        cancelled = answer.json()["cancelled"]
        assert (cancelled["by"], cancelled["reason"]) == (by, reason)
        assert client.get(f"/entries/{op_id}").json()["cancelled"] == cancelled
    else:
        assert answer.status_code == 400, answer.text
        field = "cancel.by" if not _acceptable(by) else "cancel.reason"
        assert answer.json()["error"]["field"] == field
        assert client.get(f"/entries/{op_id}").status_code == 404


# -- the race: a cancel and the saga's POST of the same op id --------------------------

VOIDERS = 4
POSTERS = 4
ROUNDS = 15


def race(urls: list[str], account_id: str, op_ids: list[str]) -> list[tuple[str, str, int, Any]]:
    """Per op id, every thread at once: VOIDERS cancel it (each its own note), POSTERS apply it.

    Returns ``(op_id, "void" | "post", status, body)`` for every request.
    """
    threads = VOIDERS + POSTERS
    start = threading.Barrier(threads)

    def worker(index: int) -> list[tuple[str, str, int, Any]]:
        results = []
        rng = random.Random(index)
        with BankHttp(urls[index % len(urls)], token=TOKEN, timeout=60) as http:
            for op_id in op_ids:
                start.wait()
                if index < VOIDERS:
                    body = note(f"operator-{index}", f"reason {index}")
                    response = void(http, op_id, body)
                    results.append((op_id, "void", response.status_code, response.json()))
                else:
                    time.sleep(rng.random() / 1000)  # either may come first
                    response = http.post("/entries", json=entry(op_id, account_id, 1))
                    results.append((op_id, "post", response.status_code, response.json()))
        return results

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return [r for rs in pool.map(worker, range(threads)) for r in rs]


def check_race(
    http: BankHttp, account_id: str, opening: int, results: list[tuple[str, str, int, Any]]
) -> Counter[str]:
    """Each op id came to exactly one outcome, and every answer tells that same one."""
    outcomes: Counter[str] = Counter()
    for op_id in {r[0] for r in results}:
        voids = [(s, b) for o, what, s, b in results if o == op_id and what == "void"]
        posts = [(s, b) for o, what, s, b in results if o == op_id and what == "post"]
        assert len(voids) == VOIDERS
        assert len(posts) == POSTERS
        assert all(status == 200 for status, _ in voids), voids
        stored = http.get(f"/entries/{op_id}").json()
        created = [body for status, body in posts if status == 201]
        if created:
            outcomes["applied"] += 1
            assert len(created) == 1, posts
            (applied,) = created
            assert all(status in (200, 201) and body == applied for status, body in posts), posts
            answer = {"op_id": op_id, "state": "applied", "entry": applied}
            assert all(body == answer for _, body in voids), voids
            assert stored == answer
        else:
            outcomes["cancelled"] += 1
            assert stored["state"] == "voided", stored
            cancelled = stored["cancelled"]
            index = int(cancelled["by"].removeprefix("operator-"))
            assert cancelled["reason"] == f"reason {index}"
            assert all(body == stored for _, body in voids), voids
            message = f"op {op_id} was cancelled by {cancelled['by']}: {cancelled['reason']}"
            expected = {"code": "cancelled", "message": message, "cancelled": cancelled}
            assert all(status == 409 and body["error"] == expected for status, body in posts), posts
    entries = http.get("/entries", params={"account_id": account_id, "limit": 1000}).json()
    assert len(entries["entries"]) == outcomes["applied"]
    assert balance(http, account_id) == opening - outcomes["applied"]
    return outcomes


def test_a_cancel_racing_the_post_of_its_op_id_has_one_outcome(
    bank: RunningBank, client: BankHttp
) -> None:
    account_id = open_account(client, ROUNDS, prefix="cancel-race")
    op_ids = [new_id("cancel-race") for _ in range(ROUNDS)]
    results = race([bank.url], account_id, op_ids)
    outcomes = check_race(client, account_id, ROUNDS, results)
    assert sum(outcomes.values()) == ROUNDS


def test_a_cancel_racing_the_post_through_two_processes_on_one_ledger(
    start_bank: StartBank,
) -> None:
    first = start_bank(faults=False)
    second = start_bank(share_ledger_with=first, faults=False)
    with first.client() as http:
        account_id = open_account(http, ROUNDS, prefix="cancel-shared")
        op_ids = [new_id("cancel-shared") for _ in range(ROUNDS)]
        results = race([first.url, second.url], account_id, op_ids)
        outcomes = check_race(http, account_id, ROUNDS, results)
    assert sum(outcomes.values()) == ROUNDS


# -- durability ---------------------------------------------------------------------


def test_a_note_survives_a_sigkill(start_bank: StartBank) -> None:
    bank = start_bank(faults=False)
    with bank.client() as http:
        op_id = new_id("durable")
        stored = void(http, op_id, note()).json()
    bank.process.kill()
    bank.process.start()
    with bank.client() as http:
        assert http.get(f"/entries/{op_id}").json() == stored
        assert void(http, op_id).json() == stored


# -- a ledger written before voids had notes -----------------------------------------

#: bank/ledger.py's schema before cancel notes, as that code wrote every ledger file.
OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    account_id      TEXT PRIMARY KEY,
    status          TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    opening_balance INTEGER NOT NULL CHECK (opening_balance >= 0),
    balance         INTEGER NOT NULL CHECK (balance >= 0)
);
CREATE TABLE IF NOT EXISTS entries (
    seq           INTEGER PRIMARY KEY,
    op_id         TEXT NOT NULL UNIQUE,
    account_id    TEXT NOT NULL REFERENCES accounts (account_id),
    kind          TEXT NOT NULL CHECK (kind IN ('debit', 'credit', 'reversal')),
    amount        INTEGER NOT NULL CHECK (amount > 0),
    balance_after INTEGER NOT NULL CHECK (balance_after >= 0),
    created_at    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_account ON entries (account_id, seq);
CREATE TABLE IF NOT EXISTS voids (
    op_id     TEXT PRIMARY KEY,
    voided_at TEXT NOT NULL
);
"""

OLD_ENTRY = {
    "seq": 1,
    "op_id": "old-debit",
    "account_id": "alice",
    "kind": "debit",
    "amount": 30,
    "balance_after": 70,
    "created_at": "2026-01-31T12:00:00.000000Z",
}


def write_old_ledger(path: Path) -> None:
    """A ledger as the code before cancel notes left it: WAL, an account, an entry, a void."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        assert db.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal"
        db.executescript(OLD_SCHEMA)
        db.execute("INSERT INTO accounts VALUES ('alice', 'open', 100, 70)")
        db.execute(
            "INSERT INTO entries (op_id, account_id, kind, amount, balance_after, created_at)"
            " VALUES (:op_id, :account_id, :kind, :amount, :balance_after, :created_at)",
            OLD_ENTRY,
        )
        db.execute("INSERT INTO voids VALUES ('old-void', '2026-01-31T12:00:01.000000Z')")
    finally:
        db.close()


def void_columns(path: Path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return [row[1] for row in db.execute("PRAGMA table_info(voids)")]
    finally:
        db.close()


def test_an_old_ledger_gets_the_note_column_at_open(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    write_old_ledger(path)
    assert void_columns(path) == ["op_id", "voided_at"]
    ledger = Ledger(path)
    try:
        assert void_columns(path) == ["op_id", "voided_at", "cancel_note"]
        old_void = ledger.op_state("old-void")
        assert old_void is not None
        assert old_void.to_json() == {"op_id": "old-void", "state": "voided"}
        old_entry = ledger.op_state("old-debit")
        assert old_entry is not None
        assert old_entry.entry is not None
        assert old_entry.entry.to_json() == OLD_ENTRY
        new, written = ledger.void("new-void", CancelNote("alice", "customer withdrew"))
        assert written
        assert new.cancelled is not None
        assert ledger.void("old-void", CancelNote("bob", "too late")) == (old_void, False)
    finally:
        ledger.close()
    # Opened again: nothing to add, everything as it was.
    again = Ledger(path)
    try:
        assert void_columns(path) == ["op_id", "voided_at", "cancel_note"]
        assert again.op_state("new-void") == new
        assert again.voided_count() == 2
    finally:
        again.close()


def test_many_openers_of_one_old_ledger_add_the_column_once(tmp_path: Path) -> None:
    """Like bank processes sharing one file, started at once after an upgrade."""
    path = tmp_path / "old.db"
    write_old_ledger(path)
    start = threading.Barrier(8)

    def open_it(_: int) -> Ledger:
        start.wait()
        return Ledger(path)

    with ThreadPoolExecutor(max_workers=8) as pool:
        ledgers = list(pool.map(open_it, range(8)))
    try:
        assert void_columns(path) == ["op_id", "voided_at", "cancel_note"]
        assert all(ledger.op_state("old-void") is not None for ledger in ledgers)
    finally:
        for ledger in ledgers:
            ledger.close()


def test_a_bank_started_on_an_old_ledger_serves_it_and_takes_notes(
    start_bank: StartBank, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    write_old_ledger(data_dir / "source.db")
    bank = start_bank(data_dir=data_dir, faults=False)
    assert bank.ledger_path == data_dir / "source.db"
    assert void_columns(bank.ledger_path) == ["op_id", "voided_at", "cancel_note"]
    with bank.client() as http:
        assert balance(http, "alice") == 70
        assert http.get("/entries/old-debit").json()["entry"] == OLD_ENTRY
        assert http.get("/entries/old-void").json() == {"op_id": "old-void", "state": "voided"}
        assert void(http, "old-void", note()).json() == {"op_id": "old-void", "state": "voided"}
        refused = http.post("/entries", json=entry("old-void", "alice", 1))
        assert error_code(refused) == "op_voided"
        cancelled = void(http, "new-void", note()).json()
        assert cancelled["cancelled"]["by"] == "alice"
        assert error_code(http.post("/entries", json=entry("new-void", "alice", 1))) == "cancelled"
    bank.process.stop()
    bank.process.start()
    with bank.client() as http:
        assert http.get("/entries/new-void").json() == cancelled
        assert http.get("/entries/old-void").json() == {"op_id": "old-void", "state": "voided"}
