"""A bank's ledger in one SQLite file: accounts, entries keyed by op id, voids.

The ledger is what makes the saga safe to retry: an op id is applied at most
once, an identical replay gets the very same entry back, and a voided op id can
never be applied afterwards (an operator's void may carry a cancel note, who
and why, kept with it and told to every later caller). Each write runs in one
``BEGIN IMMEDIATE`` transaction, so the overdraft check and the insert cannot
interleave with another writer, whether it is another thread or another
process on the file. WAL with ``synchronous=FULL`` makes a committed write
survive a SIGKILL (and a power cut) before the caller gets its answer.

Callers pass values already checked by :mod:`bank.validation`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

#: The kinds of entry, as the ``entries.kind`` column allows them.
ENTRY_KINDS = ("debit", "credit", "reversal")
#: No balance may grow beyond this (SQLite integers are 64-bit).
MAX_BALANCE = 10**18
#: How long a writer waits for another connection's transaction, in milliseconds.
BUSY_TIMEOUT_MS = 30_000
#: SQLite's ``synchronous`` level. FULL syncs the WAL at every commit, so a write is
#: on the disk before its answer leaves. Only the power-cut campaign's control run
#: lowers it (``python -m chaos.unsynced_bank``), to show the campaign sees the loss.
SYNCHRONOUS = "FULL"

_SCHEMA = """
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
    op_id       TEXT PRIMARY KEY,
    voided_at   TEXT NOT NULL,
    cancel_note TEXT CHECK (cancel_note IS NULL OR json_valid(cancel_note))
);
"""

#: Columns added after the ledger's first release, as ``(table, column, definition)``.
#: A ledger file written by earlier code gets each one at open (every row it had
#: keeps NULL); the definition is the one ``_SCHEMA`` gives a new file.
_ADDED_COLUMNS = (
    ("voids", "cancel_note", "TEXT CHECK (cancel_note IS NULL OR json_valid(cancel_note))"),
)


class LedgerError(Exception):
    """A request the ledger refuses; ``code`` is the API's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Conflict(LedgerError):
    """The op id is taken (by a different entry, or by a void): HTTP 409."""


class Rejected(LedgerError):
    """A business rule says no, and nothing was written: HTTP 422."""


@dataclass(frozen=True)
class CancelNote:
    """Who cancelled an op id and why: an operator's void carries one (a saga's fence none)."""

    by: str
    reason: str


@dataclass(frozen=True)
class Cancellation:
    """A cancel note as the ledger keeps it with its void; ``at`` is the void's ``voided_at``."""

    by: str
    reason: str
    at: str

    def to_json(self) -> dict[str, object]:
        return asdict(self)


class Cancelled(Conflict):
    """The op id was voided with a cancel note: HTTP 409 ``cancelled``, naming who and why."""

    def __init__(self, op_id: str, cancellation: Cancellation) -> None:
        super().__init__(
            "cancelled",
            f"op {op_id} was cancelled by {cancellation.by}: {cancellation.reason}",
        )
        self.cancellation = cancellation


@dataclass(frozen=True)
class Account:
    account_id: str
    balance: int
    status: str
    opening_balance: int

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Entry:
    seq: int
    op_id: str
    account_id: str
    kind: str
    amount: int
    balance_after: int
    created_at: str

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class OpState:
    """What an op id is now: applied (with its entry) or voided (with its cancel note, if any)."""

    op_id: str
    state: Literal["applied", "voided"]
    entry: Entry | None = None
    cancelled: Cancellation | None = None

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {"op_id": self.op_id, "state": self.state}
        if self.entry is not None:
            body["entry"] = self.entry.to_json()
        if self.cancelled is not None:
            body["cancelled"] = self.cancelled.to_json()
        return body


_ENTRY_COLUMNS = "seq, op_id, account_id, kind, amount, balance_after, created_at"
_ACCOUNT_COLUMNS = "account_id, balance, status, opening_balance"


class Ledger:
    """One ledger file; safe to share between threads (one connection per thread)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        # Threads of this process queue here instead of in SQLite's busy handler,
        # which polls with growing sleeps; other processes still meet at the file lock.
        self._write_lock = threading.Lock()
        self._init_schema()

    # -- accounts ---------------------------------------------------------------

    def put_account(
        self, account_id: str, status: str, opening_balance: int | None
    ) -> tuple[Account, bool]:
        """Create (balance = opening balance) or change the status; True when created.

        The opening balance is fixed at creation: repeating it is fine, a
        different one is a 409 ``opening_balance_fixed``.
        """
        with self._write() as db:
            current = _fetch_account(db, account_id)
            if current is None:
                opening = opening_balance or 0
                db.execute(
                    "INSERT INTO accounts (account_id, status, opening_balance, balance)"
                    " VALUES (?, ?, ?, ?)",
                    (account_id, status, opening, opening),
                )
                return Account(account_id, opening, status, opening), True
            if opening_balance is not None and opening_balance != current.opening_balance:
                raise Conflict(
                    "opening_balance_fixed",
                    f"account {account_id} was opened with {current.opening_balance}; "
                    "an opening balance cannot change",
                )
            db.execute("UPDATE accounts SET status = ? WHERE account_id = ?", (status, account_id))
            return Account(account_id, current.balance, status, current.opening_balance), False

    def get_account(self, account_id: str) -> Account | None:
        return _fetch_account(self._conn(), account_id)

    def list_accounts(self) -> list[Account]:
        rows = self._conn().execute(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts ORDER BY account_id")
        return [Account(*row) for row in rows]

    # -- entries ----------------------------------------------------------------

    def post_entry(self, op_id: str, account_id: str, kind: str, amount: int) -> tuple[Entry, bool]:
        """Apply an entry once per op id; True when it was written now.

        An identical replay returns the stored entry; a different request under
        the same op id is a :class:`Conflict`, as is a voided op id. Business
        rejections raise :class:`Rejected` and write nothing, so the same
        request may succeed once the cause is fixed.
        """
        if kind not in ENTRY_KINDS or amount <= 0:
            raise ValueError(
                f"post_entry needs a known kind and a positive amount: {kind} {amount}"
            )
        # Entries and voids never change once written, so a replay is answered
        # without taking the write lock; only a new op id needs it.
        with self._read() as db:
            replayed = _settled(db, op_id, account_id, kind, amount)
        if replayed is not None:
            return replayed, False
        with self._write() as db:
            settled = _settled(db, op_id, account_id, kind, amount)
            if settled is not None:
                return settled, False
            account = _fetch_account(db, account_id)
            if account is None:
                raise Rejected("unknown_account", f"no account {account_id}")
            if account.status == "closed" and kind != "reversal":
                raise Rejected("account_closed", f"account {account_id} is closed")
            if kind == "debit":
                if amount > account.balance:
                    raise Rejected(
                        "insufficient_funds",
                        f"account {account_id} holds {account.balance}, less than {amount}",
                    )
                balance = account.balance - amount
            else:
                balance = account.balance + amount
                if balance > MAX_BALANCE:
                    raise Rejected(
                        "balance_limit", f"account {account_id} would exceed {MAX_BALANCE}"
                    )
            created_at = _now()
            cursor = db.execute(
                "INSERT INTO entries (op_id, account_id, kind, amount, balance_after, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (op_id, account_id, kind, amount, balance, created_at),
            )
            db.execute(
                "UPDATE accounts SET balance = ? WHERE account_id = ?", (balance, account_id)
            )
            seq = cursor.lastrowid
            assert seq is not None
            return Entry(seq, op_id, account_id, kind, amount, balance, created_at), True

    def void(self, op_id: str, note: CancelNote | None = None) -> tuple[OpState, bool]:
        """Fence an op id: voided for good unless it was applied already (then say so).

        ``note`` (an operator's cancel: who and why) is kept with the void when
        this call writes it. Voids never change: an op id voided before keeps
        its first void, note or none, and the answer is that void. True when
        the void was written now; False when the op id was applied, or voided
        before.
        """
        with self._write() as db:
            existing = _fetch_entry(db, op_id)
            if existing is not None:
                return OpState(op_id, "applied", existing), False
            voided_at = _now()
            cursor = db.execute(
                "INSERT OR IGNORE INTO voids (op_id, voided_at, cancel_note) VALUES (?, ?, ?)",
                (op_id, voided_at, None if note is None else _note_column(note)),
            )
            if cursor.rowcount == 1:
                cancelled = None if note is None else Cancellation(note.by, note.reason, voided_at)
                return OpState(op_id, "voided", cancelled=cancelled), True
            first = _fetch_void(db, op_id)
            assert first is not None, "INSERT OR IGNORE ignored the row only if one was there"
            return first, False

    def op_state(self, op_id: str) -> OpState | None:
        with self._read() as db:
            entry = _fetch_entry(db, op_id)
            if entry is not None:
                return OpState(op_id, "applied", entry)
            return _fetch_void(db, op_id)

    def list_entries(self, account_id: str | None, after: int, limit: int) -> list[Entry]:
        """Entries with ``seq > after`` in ledger order, optionally for one account."""
        if account_id is None:
            rows = self._conn().execute(
                f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            )
        else:
            rows = self._conn().execute(
                f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE account_id = ? AND seq > ?"
                " ORDER BY seq LIMIT ?",
                (account_id, after, limit),
            )
        return [Entry(*row) for row in rows]

    def totals(self) -> dict[str, tuple[int, int]]:
        """Per kind, the number of entries and the sum of their amounts, over the whole ledger.

        Every kind is there, with ``(0, 0)`` when it has no entry. One statement
        in autocommit mode: one snapshot, no transaction left open if it fails.
        """
        totals = dict.fromkeys(ENTRY_KINDS, (0, 0))
        rows = self._conn().execute("SELECT kind, COUNT(*), SUM(amount) FROM entries GROUP BY kind")
        for kind, count, amount in rows:
            totals[kind] = (count, amount)
        return totals

    def voided_count(self) -> int:
        """How many op ids are voided (fenced before they applied), over the whole ledger."""
        (count,) = self._conn().execute("SELECT COUNT(*) FROM voids").fetchone()
        return int(count)

    # -- connections ------------------------------------------------------------

    def close(self) -> None:
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            connection.execute(f"PRAGMA synchronous = {SYNCHRONOUS}")
            connection.execute("PRAGMA foreign_keys = ON")
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._local.connection = connection
            with self._connections_lock:
                self._connections.append(connection)
        return connection

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: the write lock is taken before any read."""
        db = self._conn()
        with self._write_lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction, so several SELECTs see one snapshot."""
        db = self._conn()
        db.execute("BEGIN")
        try:
            yield db
        finally:
            db.execute("COMMIT")

    def _init_schema(self) -> None:
        db = self._conn()
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                break
            except sqlite3.OperationalError:
                # Another process is creating the file right now; it will be WAL too.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        if str(mode).lower() != "wal" and str(self.path) != ":memory:":
            raise RuntimeError(f"{self.path}: SQLite refused WAL mode (got {mode})")
        with self._write() as write:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    write.execute(statement)
            # In the same transaction as the check, so processes opening one old
            # file at once add each column once.
            for table, column, definition in _ADDED_COLUMNS:
                columns = {row[1] for row in write.execute(f"PRAGMA table_info({table})")}
                if column not in columns:
                    write.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")


def _fetch_account(db: sqlite3.Connection, account_id: str) -> Account | None:
    row = db.execute(
        f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE account_id = ?", (account_id,)
    ).fetchone()
    return None if row is None else Account(*row)


def _fetch_entry(db: sqlite3.Connection, op_id: str) -> Entry | None:
    row = db.execute(f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE op_id = ?", (op_id,)).fetchone()
    return None if row is None else Entry(*row)


def _settled(
    db: sqlite3.Connection, op_id: str, account_id: str, kind: str, amount: int
) -> Entry | None:
    """The stored entry for an identical replay; Conflict if the op id is taken otherwise."""
    existing = _fetch_entry(db, op_id)
    if existing is not None:
        if (existing.account_id, existing.kind, existing.amount) != (account_id, kind, amount):
            raise Conflict(
                "op_id_conflict",
                f"op {op_id} was already applied as a {existing.kind} of "
                f"{existing.amount} on {existing.account_id}",
            )
        return existing
    void = _fetch_void(db, op_id)
    if void is not None:
        if void.cancelled is not None:
            raise Cancelled(op_id, void.cancelled)
        raise Conflict("op_voided", f"op {op_id} was voided and can never be applied")
    return None


def _fetch_void(db: sqlite3.Connection, op_id: str) -> OpState | None:
    """The op id's void, with its cancel note when it has one; None when it is not voided."""
    row = db.execute(
        "SELECT voided_at, cancel_note FROM voids WHERE op_id = ?", (op_id,)
    ).fetchone()
    if row is None:
        return None
    voided_at, note = row
    if note is None:
        return OpState(op_id, "voided")
    fields = json.loads(note)
    return OpState(
        op_id, "voided", cancelled=Cancellation(fields["by"], fields["reason"], voided_at)
    )


def _note_column(note: CancelNote) -> str:
    """A cancel note as ``voids.cancel_note`` holds it: a JSON object ``{"by", "reason"}``."""
    return json.dumps({"by": note.by, "reason": note.reason}, ensure_ascii=False)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
