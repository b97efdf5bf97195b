"""The durable state: the SDK's ``ServerState`` plus a write-ahead journal.

Every input that changes the state is applied in memory, appended to the
journal, and committed before its caller hears back. Concurrent inputs share
commits: the commit runs once the loop has applied every input that was
ready, and inputs that arrive while it syncs wait (unread, or applied, with
``commit_in_thread``) for the next one, so N concurrent requests pay for about
one fsync, not N. Nobody is answered -- not even a read -- before every entry
it could have observed is on disk, and the messages an input produced
(``execute``/``unblock``) are handed back only then too.

On open, the state is the latest snapshot plus a replay of the journal after
it, with each entry applied at the ``now`` it was recorded with, which makes
replay exact. A snapshot is written every ``snapshot_every`` entries, and the
journal before it is dropped, so restart time and file size stay bounded.

A full disk does not stop the store from starting or from answering reads.
A journal write that fails (a full disk, an I/O error) refuses every request
that would change the state (``write_failure``), since nothing unjournaled
may be acknowledged: the state is rebuilt from the journal, which never held
the failed entries (nobody was told they were written), and reads are
answered from it. Every ``write_retry_interval`` (longer after each try that
fails) the store writes a probe, and once that is synced it takes writes
again by itself. A store that starts on a disk it cannot write (the start-up
probe fails) starts the same way.

No single request can break the store. A value the snapshot could not hold
is refused before it reaches the state (``limits``). An unexpected exception
inside the state machine fails that request alone: its half-done effects are
undone by rebuilding the state from the journal (which never saw it), so what
is live is what a restart would rebuild. A snapshot that cannot be encoded is
skipped and reported (``snapshot_failure``); the journal keeps every entry, so
nothing is lost.

All methods run on one asyncio event loop. A commit of journal entries runs on
the loop itself (about 0.2 ms here; handing it to a thread and back cost more
CPU than the commit, and doubled a lone request's time); a commit with a
snapshot, and a rebuild, run on a worker thread, one at a time, since they
take as long as the state is large. ``commit_in_thread=True`` sends every
commit to the thread, for a disk whose syncs are slow enough that the loop
should keep applying requests meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from resonate.connections.local import OutgoingMessage, ServerState
from resonate.error import ServerError
from resonate.timing import now_ms

from promise_store.errors import CorruptStore, StoreFailed
from promise_store.indexed import IndexedServerState
from promise_store.journal import REQUEST, TICK, Entry, Journal, Snapshot
from promise_store.limits import unstorable
from promise_store.lock import FileLock
from promise_store.rules import (
    KNOWN_KINDS,
    STORE_READS,
    request_changes_state,
    stale_task_request,
    tick_changes_state,
)
from promise_store.search import Page, parse_search
from promise_store.snapshot import decode_state, encode_state

logger = logging.getLogger(__name__)

DEFAULT_SNAPSHOT_EVERY = 10_000

#: Promises a search reads between two turns of the event loop (a few ms of CPU).
SEARCH_SLICE = 10_000

#: SQLite's codes for a file that is sound but cannot be written now (no space,
#: an I/O error, a read-only disk): said as such, not called a damaged store.
_CANNOT_WRITE = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY})

#: Seconds after a failed journal write before the disk is tried again; each
#: try that fails doubles the wait, up to ``MAX_WRITE_RETRY_BACKOFF`` times it.
DEFAULT_WRITE_RETRY_INTERVAL = 1.0
MAX_WRITE_RETRY_BACKOFF = 32


@dataclass(frozen=True, slots=True)
class Recovery:
    """What opening the store found: useful in logs and tests."""

    snapshot_seq: int
    replayed: int
    quarantined: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Applied:
    """The outcome of one request: the flat response, or the error it raised."""

    response: dict[str, Any] | None
    error: ServerError | None
    outgoing: list[OutgoingMessage]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the block (as it was before, after it)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def replay_entry(state: ServerState, entry: Entry) -> None:
    """Apply one journal entry to ``state`` exactly as it was applied live."""
    if entry.kind == TICK:
        state.tick(entry.now)
    elif entry.kind == REQUEST:
        req = msgspec.json.decode(entry.body)
        problem = unstorable(req) if isinstance(req, dict) else None
        if problem is not None:
            # Journaled by a store that did not check yet; refused now, as live.
            logger.warning("journal entry %d is skipped: %s", entry.seq, problem)
            return
        try:
            state.apply(entry.now, req)
        except Exception:  # it failed live the same way; its partial effects are replayed
            logger.debug("journal entry %d fails again on replay, as it did live", entry.seq)
    else:
        msg = f"unknown journal entry kind {entry.kind!r}"
        raise ValueError(msg)
    state.outgoing.clear()


class JournaledState:
    """A ``ServerState`` whose every change is durable before it is acknowledged.

    Opening takes an exclusive lock on the file (``StoreLocked`` if another
    process holds it) and recovers the state synchronously, so a bad path or a
    locked file fails at construction, not later in a background task.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
        clock: Callable[[], int] = now_ms,
        commit_in_thread: bool = False,
        write_retry_interval: float = DEFAULT_WRITE_RETRY_INTERVAL,
    ) -> None:
        if snapshot_every < 1:
            msg = f"snapshot_every must be at least 1, got {snapshot_every}"
            raise ValueError(msg)
        self.path = Path(path)
        self._clock = clock
        self._snapshot_every = snapshot_every
        self._commit_in_thread = commit_in_thread
        self._write_retry_interval = write_retry_interval
        self._failed_write_retries = 0
        self._next_write_retry = 0.0
        self._lock = FileLock(self.path).acquire()
        try:
            self._journal = Journal(self.path)
            self.state, self._seq, self.recovery = self._recover()
        except sqlite3.DatabaseError as exc:
            self._lock.release()
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
            if code in _CANNOT_WRITE:
                msg = f"{self.path} cannot be written ({exc}); free space on its disk, then start"
                raise StoreFailed(msg) from exc
            if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                msg = f"{self.path} is open in another program ({exc}); close it, then start"
                raise StoreFailed(msg) from exc
            msg = f"{self.path} is not a readable promise store ({exc}); refusing to start"
            raise CorruptStore(msg) from exc
        except BaseException:
            self._lock.release()
            raise
        self._durable_seq = self._seq
        self._since_snapshot = self.recovery.replayed
        self._pending: list[Entry] = []
        self._pending_snapshot: Snapshot | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        #: After a failed write, whether the state is back to what the journal holds.
        self._matches_journal = True
        self._snapshot_failure: str | None = None
        self._rebuilt: asyncio.Future[None] | None = None
        self._closed = False
        #: Told how many entries each group commit held, once it is synced (metrics).
        self.on_commit: Callable[[int], None] | None = None
        self._probe_at_start()

    def _probe_at_start(self) -> None:
        """Start on a disk that takes no writes as after a failed write: serving reads only."""
        try:
            self._journal.probe()
        except sqlite3.DatabaseError as exc:
            if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) not in _CANNOT_WRITE:
                self.close_sync()
                raise
            self._journal.roll_back()
            self._failure = exc
            wait = self._schedule_write_retry()
            logger.error(
                "%s cannot be written (%s); serving reads, refusing writes, trying again in %.1fs",
                self.path,
                exc,
                wait,
            )

    # -- start-up -------------------------------------------------------------

    def _recover(self) -> tuple[ServerState, int, Recovery]:
        # Loading a snapshot allocates millions of objects, none of them
        # garbage; the cyclic collector would walk them all, again and again,
        # as they are made (about a fifth of a restart at 1M entries).
        with gc_paused():
            return self._recover_state()

    def _recover_state(self) -> tuple[ServerState, int, Recovery]:
        started = time.perf_counter()
        try:
            snap = self._journal.load_snapshot()
            state = decode_state(snap.body) if snap is not None else IndexedServerState()
        except (ValueError, msgspec.DecodeError) as exc:
            msg = f"{self.path}: the snapshot cannot be read ({exc}); refusing to start"
            raise CorruptStore(msg) from exc
        seq = snap.seq if snap is not None else 0
        snapshot_seq = seq
        replayed = quarantined = 0
        for item in self._journal.entries_after(seq):
            if isinstance(item, tuple):
                bad_seq, reason = item
                quarantined = self._journal.quarantine_from(bad_seq, reason)
                logger.error(
                    "%s: journal entry %d is damaged (%s); replay stopped there and %d "
                    "row(s) from it on were moved to the quarantine table",
                    self.path,
                    bad_seq,
                    reason,
                    quarantined,
                )
                break
            try:
                replay_entry(state, item)
            except (ValueError, msgspec.DecodeError) as exc:
                quarantined = self._journal.quarantine_from(item.seq, str(exc))
                logger.error(
                    "%s: journal entry %d cannot be replayed (%s); %d row(s) quarantined",
                    self.path,
                    item.seq,
                    exc,
                    quarantined,
                )
                break
            seq = item.seq
            replayed += 1
        recovery = Recovery(
            snapshot_seq=snapshot_seq,
            replayed=replayed,
            quarantined=quarantined,
            seconds=time.perf_counter() - started,
        )
        logger.info(
            "%s: recovered snapshot@%d + %d journal entries in %.3fs",
            self.path,
            snapshot_seq,
            replayed,
            recovery.seconds,
        )
        return state, seq, recovery

    # -- the two inputs ---------------------------------------------------------

    async def apply(self, req: dict[str, Any]) -> Applied:
        """Apply one flat request durably; its answer is safe to send on return.

        An unknown ``kind``, or a value the snapshot could not hold, is refused
        before it reaches the state machine, so it is never journaled. An
        unexpected exception inside the state machine answers 500 and leaves
        the state as the journal has it. While the journal cannot be written,
        a request that would change the state raises :class:`StoreFailed`.
        """
        await self._until_usable()
        kind = req.get("kind")
        if kind in STORE_READS:
            return await self._search(req)
        if kind not in KNOWN_KINDS:
            return Applied(None, ServerError(400, f"unknown request kind: {kind}"), [])
        problem = unstorable(req)
        if problem is not None:
            return Applied(None, ServerError(400, problem), [])
        stale = stale_task_request(self.state, req)
        if stale is not None:
            await self._until_durable(self._seq)
            return Applied(stale, None, [])
        now = self._clock()
        body = msgspec.json.encode(req) if request_changes_state(self.state, now, req) else None
        if body is not None:
            self._check_writable()
        response: dict[str, Any] | None = None
        error: ServerError | None = None
        try:
            response = self.state.apply(now, req)
        except ServerError as exc:
            error = exc
        except Exception as exc:
            logger.exception("%s: %s failed inside the state machine", self.path, kind)
            await self._rebuild()
            return Applied(None, ServerError(500, f"internal error in {kind}: {exc!r}"), [])
        outgoing, self.state.outgoing = self.state.outgoing, []
        if body is not None:
            self._append(now, REQUEST, body)
        await self._until_durable(self._seq)
        return Applied(response, error, outgoing)

    async def _search(self, req: dict[str, Any]) -> Applied:
        """Answer a ``promise.search`` (``search.py``) from the promises held; nothing is journaled.

        It reads a copy of the table a slice at a time, with a turn of the
        event loop between slices, so a large store keeps answering others
        meanwhile. A state replaced meanwhile (a rebuild, or a failed write
        that put it back to the journal's) is read again, and, like every
        read, the answer waits until every entry it could have seen is durable.
        """
        search = parse_search(req)
        if isinstance(search, str):
            return Applied(None, ServerError(400, search), [])
        while True:
            state = self.state
            held = list(dict.items(state.promises))
            page = Page(search)
            for end in range(len(held), 0, -SEARCH_SLICE):
                if end < len(held):
                    await asyncio.sleep(0)
                page.feed(reversed(held[max(end - SEARCH_SLICE, 0) : end]))
            if self.state is state and (self._failure is None or self._matches_journal):
                break
            await self._until_usable()
        answer = {"kind": req["kind"], "corrId": req.get("corrId"), "status": 200, **page.answer()}
        await self._until_durable(self._seq)
        return Applied(answer, None, [])

    async def tick(self) -> list[OutgoingMessage]:
        """Advance the clock; journal and return what fired (nothing is journaled if nothing did)."""
        await self._until_usable()
        now = self._clock()
        if self._failure is not None or not tick_changes_state(self.state, now):
            return []  # what would fire waits until it can be journaled
        self.state.outgoing.clear()
        try:
            self.state.tick(now)
        except Exception:
            logger.exception("%s: a clock tick failed inside the state machine", self.path)
            await self._rebuild()
            return []
        outgoing, self.state.outgoing = self.state.outgoing, []
        self._append(now, TICK, b"")
        await self._until_durable(self._seq)
        return outgoing

    def clock(self) -> int:
        """The store's clock (ms), the one entries are stamped with."""
        return self._clock()

    @property
    def seq(self) -> int:
        """The sequence number of the last entry applied (durable or about to be)."""
        return self._seq

    @property
    def write_failure(self) -> str | None:
        """Why the journal cannot be written (the store refuses writes, serves reads), or ``None``."""
        if self._failure is None:
            return None
        return f"the journal cannot be written: {self._failure}; reads are served, writes refused"

    @property
    def snapshot_failure(self) -> str | None:
        """Why the last snapshot was skipped (the journal grows until one succeeds), or ``None``."""
        return self._snapshot_failure

    # -- undoing a request that failed half-way -----------------------------------

    async def _until_usable(self) -> None:
        """Wait out a rebuild; after a failed write, put the state back to the journal's and
        try the disk again when due. Raises only when the store cannot even answer reads."""
        if self._rebuilt is not None:
            await asyncio.shield(self._rebuilt)
        if self._failure is not None and not self._matches_journal:
            await self._fall_back_to_the_journal()
        if self._failure is not None:
            await self._retry_failed_writes()
        self._check_usable()

    @contextlib.contextmanager
    def _inputs_held(self) -> Iterator[None]:
        """Every other input waits (in ``_until_usable``) until the block ends."""
        self._rebuilt = asyncio.get_running_loop().create_future()
        try:
            yield
        finally:
            self._rebuilt.set_result(None)
            self._rebuilt = None

    async def _rebuild(self) -> None:
        """Replace the state with what the journal rebuilds, undoing an unjournaled failure.

        Every entry applied before the failure is flushed first; meanwhile,
        and until the new state is in place, every other input waits.
        """
        with self._inputs_held():
            try:
                await self.flush()
                if self._failure is not None:
                    return
                state, seq, _ = await asyncio.to_thread(self._recover)
                if seq != self._seq:
                    self._failure = CorruptStore(
                        f"rebuilding after a failed request found entry {seq}, not {self._seq}"
                    )
                    logger.critical("%s: %s; refusing further work", self.path, self._failure)
                    return
                self.state = state
            except Exception as exc:
                self._failure = CorruptStore(f"rebuilding the state failed: {exc!r}")
                logger.critical("%s: rebuilding the state failed, refusing further work", self.path)

    # -- after a failed write: reads from the journal's state, and trying the disk again ----

    async def _fall_back_to_the_journal(self) -> None:
        """Replace the state with the journal's, dropping what a failed write held.

        The entries whose write failed were never acknowledged (their callers
        got a 503), so the journal is the truth: rebuilding from it drops them
        and everything applied on top of them. Reading the file needs no room
        on its disk. A store that cannot even read its file stays down.
        """
        with self._inputs_held():
            try:
                self._journal.roll_back()
                state, seq, recovery = await asyncio.to_thread(self._recover)
            except Exception as exc:
                self._failure = CorruptStore(f"reading the journal back failed: {exc}")
                logger.critical("%s: %s; refusing further work", self.path, self._failure)
                return
            self.state, self._seq, self._durable_seq = state, seq, seq
            self._pending, self._pending_snapshot = [], None
            self._since_snapshot = recovery.replayed
            self._matches_journal = True
            logger.warning(
                "%s: state back to the journal's at entry %d; serving reads until it "
                "can be written",
                self.path,
                seq,
            )

    async def _retry_failed_writes(self) -> None:
        """Once the disk takes a synced probe, take writes again.

        Tried at most once per wait (``write_retry_interval``, doubled after
        each try that fails), from the next request or clock tick. A corrupt or
        closed store stays down.
        """
        failure = self._failure
        if failure is None or isinstance(failure, CorruptStore) or self._closed:
            return
        if self._rebuilt is not None or time.monotonic() < self._next_write_retry:
            return
        with self._inputs_held():
            try:
                await asyncio.to_thread(self._journal.probe)
            except Exception as exc:
                self._failed_write_retries += 1
                wait = self._schedule_write_retry()
                logger.warning(
                    "%s: the journal still cannot be written (%s); next try in %.1fs",
                    self.path,
                    exc,
                    wait,
                )
                return
            self._failure = None
            self._failed_write_retries = 0
            logger.warning("%s: the journal takes writes again at entry %d", self.path, self._seq)

    def _schedule_write_retry(self) -> float:
        backoff = min(1 << min(self._failed_write_retries, 16), MAX_WRITE_RETRY_BACKOFF)
        wait = self._write_retry_interval * backoff
        self._next_write_retry = time.monotonic() + wait
        return wait

    # -- group commit -----------------------------------------------------------

    def _append(self, now: int, kind: str, body: bytes) -> None:
        self._seq += 1
        self._pending.append(Entry(seq=self._seq, now=now, kind=kind, body=body))
        self._since_snapshot += 1
        if self._since_snapshot >= self._snapshot_every:
            self._since_snapshot = 0
            self._take_snapshot()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_batches())

    def _take_snapshot(self) -> None:
        """Queue a snapshot of the state; one that cannot be encoded is skipped, not fatal."""
        try:
            image = encode_state(self.state)
        except Exception as exc:
            self._snapshot_failure = f"snapshot at entry {self._seq} skipped: {exc!r}"
            logger.error(
                "%s: %s; the journal keeps every entry until a snapshot succeeds",
                self.path,
                self._snapshot_failure,
            )
            return
        self._pending_snapshot = Snapshot(seq=self._seq, body=image)

    async def _write_batches(self) -> None:
        while self._pending or self._pending_snapshot is not None:
            batch, self._pending = self._pending, []
            snap, self._pending_snapshot = self._pending_snapshot, None
            try:
                if snap is None and not self._commit_in_thread:
                    # On the loop: it waits for the sync (no answer may go
                    # out before it anyway), and requests that arrive
                    # meanwhile are read and applied together right after,
                    # sharing the next commit. A thread hand-off cost more
                    # than the commit itself (see "Durability" in README.md).
                    self._write(batch, None)
                else:
                    await asyncio.to_thread(self._write, batch, snap)
            except Exception as exc:
                logger.critical(
                    "%s: journal write failed, refusing writes until it can write: %s",
                    self.path,
                    exc,
                )
                self._failure = exc
                self._matches_journal = False
                self._next_write_retry = time.monotonic() + self._write_retry_interval
                self._wake(error=exc)
                return
            if batch:
                self._durable_seq = batch[-1].seq
                self._failed_write_retries = 0
                if self.on_commit is not None:
                    self.on_commit(len(batch))
            self._wake()

    def _write(self, batch: list[Entry], snap: Snapshot | None) -> None:
        """Write ``batch``; if the file refuses the snapshot with it, write the entries alone."""
        if snap is None:
            self._journal.write(batch)
            return
        try:
            self._journal.write(batch, snap)
        except Exception as exc:
            self._snapshot_failure = f"snapshot at entry {snap.seq} not written: {exc!r}"
            logger.error(
                "%s: %s; writing the entries without it", self.path, self._snapshot_failure
            )
            self._journal.write(batch)
        else:
            self._snapshot_failure = None

    def _wake(self, error: BaseException | None = None) -> None:
        still_waiting = []
        for target, future in self._waiters:
            if future.done():
                continue
            if error is not None:
                future.set_exception(StoreFailed(f"journal write failed: {error}"))
            elif target <= self._durable_seq:
                future.set_result(None)
            else:
                still_waiting.append((target, future))
        self._waiters = still_waiting

    async def _until_durable(self, seq: int) -> None:
        if seq <= self._durable_seq:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((seq, future))
        await future

    def _check_usable(self) -> None:
        """Raise unless the store can answer at all (reads, at least)."""
        if isinstance(self._failure, CorruptStore):
            msg = f"the store cannot go on: {self._failure}"
            raise StoreFailed(msg)
        if self._closed:
            msg = f"the store at {self.path} is closed"
            raise StoreFailed(msg)

    def _check_writable(self) -> None:
        """Raise while the journal cannot be written: no change may be acknowledged."""
        if self._failure is not None:
            msg = f"the journal cannot be written ({self._failure}); try again later"
            raise StoreFailed(msg)

    # -- maintenance ------------------------------------------------------------

    async def flush(self) -> None:
        """Wait until everything applied so far is on disk."""
        writer = self._writer
        if writer is not None:
            await writer

    def snapshot_now(self) -> None:
        """Write a snapshot of the current state synchronously (no writer may be running)."""
        if self._pending or (self._writer is not None and not self._writer.done()):
            msg = "snapshot_now needs a quiet store; await flush() first"
            raise RuntimeError(msg)
        self._journal.write([], Snapshot(seq=self._seq, body=encode_state(self.state)))
        self._since_snapshot = 0

    async def close(self) -> None:
        """Flush, close the file and release the lock. Idempotent."""
        if self._closed:
            return
        try:
            await self.flush()
        finally:
            self.close_sync()

    def close_sync(self) -> None:
        """Close without flushing (for use outside a loop, when nothing is pending)."""
        if self._closed:
            return
        self._closed = True
        self._journal.close()
        self._lock.release()
