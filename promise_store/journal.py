"""The SQLite file: an append-only journal of applied inputs plus one snapshot.

Layout (one file, WAL mode, ``synchronous=FULL``):

* ``journal(seq, now, kind, body, crc)`` -- one row per input that changed the
  state: ``kind`` is ``"req"`` (``body`` is the flat request as JSON) or
  ``"tick"`` (empty body). ``seq`` is contiguous; ``crc`` is a CRC-32 of the
  other four columns, so a damaged row is recognised on replay.
* ``snapshot(id=1, seq, body, crc)`` -- the state after entry ``seq``,
  compressed (zlib, level 1: a state is mostly repeated ids and keys, and
  comes out about ten times smaller, which keeps a busy store's file within a
  small disk); every journal row up to ``seq`` is deleted in the same
  transaction. A body written uncompressed (before compression) still loads.
* ``quarantine`` -- rows that failed verification at start, kept for a human.
* ``probe`` -- always empty: a write that fills and empties it tells whether
  the disk takes writes again after one failed (:meth:`Journal.probe`).

The store is the file's only user (its lock file says so), so the
connection keeps SQLite's lock for as long as it is open (``locking_mode
EXCLUSIVE``): SQLite then keeps the WAL's index in memory instead of a
``-shm`` file, and a store whose disk is full can still open its file and
read it. The WAL is cut back to :data:`WAL_SIZE_LIMIT` after every
checkpoint that empties it (``journal_size_limit``), so a burst (a large
snapshot, checkpoints that failed on a full disk) does not leave it large.

This module only moves bytes; what the rows mean lives in ``promise_store.state``.
"""

from __future__ import annotations

import logging
import sqlite3
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

REQUEST = "req"
TICK = "tick"

#: What :meth:`Journal.probe` writes: more than a typical batch of entries.
PROBE_BYTES = 64 * 1024
#: zlib's level for snapshots: the fastest, already about 10x on a store's state.
SNAPSHOT_COMPRESSION = 1
#: How every zlib stream at :data:`SNAPSHOT_COMPRESSION` starts; an uncompressed state
#: image starts with a msgpack map header (0x80-0x8f, 0xde, 0xdf), never with this.
_ZLIB_HEADER = b"\x78\x01"
#: The size the WAL is cut back to after a checkpoint that empties it: twice what
#: SQLite lets it reach (1,000 pages) before it checkpoints by itself.
WAL_SIZE_LIMIT = 8 * 1024 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    seq  INTEGER PRIMARY KEY,
    now  INTEGER NOT NULL,
    kind TEXT    NOT NULL,
    body BLOB    NOT NULL,
    crc  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshot (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    body BLOB    NOT NULL,
    crc  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS probe (
    body BLOB
);
CREATE TABLE IF NOT EXISTS quarantine (
    seq  INTEGER,
    now  INTEGER,
    kind TEXT,
    body BLOB,
    crc  INTEGER,
    reason TEXT
);
"""


@dataclass(frozen=True, slots=True)
class Entry:
    """One journaled input: what was applied, and the clock it was applied at."""

    seq: int
    now: int
    kind: str
    body: bytes

    @property
    def crc(self) -> int:
        return entry_crc(self.seq, self.now, self.kind, self.body)


@dataclass(frozen=True, slots=True)
class Snapshot:
    seq: int
    body: bytes


def entry_crc(seq: int, now: int, kind: str, body: bytes) -> int:
    head = f"{seq}:{now}:{kind}:".encode()
    return zlib.crc32(body, zlib.crc32(head))


class Journal:
    """Blocking access to the store file; used from one thread at a time."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # Before anything reads the file: only then does SQLite keep the WAL's
        # index in memory, with no -shm file to create (which a full disk refuses).
        self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
        if self._db.execute("PRAGMA page_count").fetchone()[0] == 0:
            # Space freed by dropping journal rows behind a snapshot is returned to
            # the file system (incremental vacuum), so the file does not keep its
            # high-water mark. Set on a new file only: it takes effect on nothing
            # else, and asking an existing one writes to it.
            self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # -- reading (start-up) ---------------------------------------------------

    def load_snapshot(self) -> Snapshot | None:
        """The saved snapshot, or ``None``; raises ``ValueError`` when it is damaged."""
        row = self._db.execute("SELECT seq, body, crc FROM snapshot WHERE id = 1").fetchone()
        if row is None:
            return None
        seq, body, crc = int(row[0]), bytes(row[1]), int(row[2])
        if zlib.crc32(body) != crc:
            msg = f"snapshot at seq {seq} fails its checksum"
            raise ValueError(msg)
        if body.startswith(_ZLIB_HEADER):
            try:
                body = zlib.decompress(body)
            except zlib.error as exc:
                raise ValueError(f"snapshot at seq {seq} does not decompress: {exc}") from exc
        return Snapshot(seq=seq, body=body)

    def entries_after(self, seq: int) -> Iterator[Entry | tuple[int, str]]:
        """Journal rows after ``seq`` in order; a bad row yields ``(seq, reason)`` and stops.

        A row is bad when its checksum does not match or when it does not follow
        its predecessor (a gap means a row went missing).
        """
        expected = seq + 1
        cursor = self._db.execute(
            "SELECT seq, now, kind, body, crc FROM journal WHERE seq > ? ORDER BY seq", (seq,)
        )
        for row_seq, now, kind, body, crc in cursor:
            if row_seq != expected:
                yield (int(row_seq), f"expected entry {expected}, found {row_seq}")
                return
            if not (
                isinstance(now, int)
                and isinstance(kind, str)
                and isinstance(body, bytes)
                and isinstance(crc, int)
            ):
                yield (int(row_seq), "malformed row")
                return
            entry = Entry(seq=int(row_seq), now=now, kind=kind, body=body)
            if entry.crc != crc:
                yield (int(row_seq), "checksum mismatch")
                return
            yield entry
            expected += 1

    def quarantine_from(self, seq: int, reason: str) -> int:
        """Move row ``seq`` and every later row out of the journal; return how many."""
        with self._transaction():
            self._db.execute(
                "INSERT INTO quarantine SELECT seq, now, kind, body, crc, ? FROM journal "
                "WHERE seq >= ?",
                (reason, seq),
            )
            moved = self._db.execute("DELETE FROM journal WHERE seq >= ?", (seq,)).rowcount
        return int(moved)

    def count_entries(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM journal").fetchone()[0])

    # -- writing --------------------------------------------------------------

    def write(self, entries: Sequence[Entry], snapshot: Snapshot | None = None) -> None:
        """Append ``entries`` (and replace the snapshot) in ONE durable transaction.

        Returns only after the commit has been synced to disk, which is what
        makes an acknowledgement sent afterwards safe.
        """
        with self._transaction():
            self._db.executemany(
                "INSERT INTO journal (seq, now, kind, body, crc) VALUES (?, ?, ?, ?, ?)",
                [(e.seq, e.now, e.kind, e.body, e.crc) for e in entries],
            )
            if snapshot is not None:
                body = zlib.compress(snapshot.body, SNAPSHOT_COMPRESSION)
                self._db.execute(
                    "INSERT OR REPLACE INTO snapshot (id, seq, body, crc) VALUES (1, ?, ?, ?)",
                    (snapshot.seq, body, zlib.crc32(body)),
                )
                self._db.execute("DELETE FROM journal WHERE seq <= ?", (snapshot.seq,))
        if snapshot is not None:
            # Give the dropped rows' pages back, and fold the WAL into the main
            # file, so the file stays about the size of the live state. The
            # commit above is what counts: this is housekeeping, retried at
            # the next snapshot, so its failure is not the write's.
            try:
                self._db.execute("PRAGMA incremental_vacuum").fetchall()
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.Error as exc:
                logger.warning(
                    "%s: compacting after snapshot %d failed: %s", self.path, snapshot.seq, exc
                )

    def roll_back(self) -> None:
        """End a transaction a failed write left open, so reads see only what was committed."""
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def probe(self, size: int = PROBE_BYTES) -> None:
        """Commit ``size`` bytes in and out of the probe table, synced; raises while writes fail.

        It leaves the file as it was, so it can run any time; it makes SQLite
        write (and sync) a real batch's worth of pages, so a disk with room
        for less than that still counts as full.
        """
        self.roll_back()  # a transaction left open by the write that failed
        with self._transaction():
            self._db.execute("INSERT INTO probe (body) VALUES (zeroblob(?))", (size,))
            self._db.execute("DELETE FROM probe")

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self._db.execute("COMMIT")
        else:
            self._db.execute("ROLLBACK")
