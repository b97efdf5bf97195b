"""The journaled state in-process: exact replay, snapshots, group commit, what gets journaled."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import zlib
from pathlib import Path
from typing import Any

import msgspec
import pytest

from promise_store import CorruptStore, StoreLocked
from promise_store.journal import WAL_SIZE_LIMIT, Journal, Snapshot
from promise_store.snapshot import ImageV1, canonical_state, decode_state, encode_state
from promise_store.state import JournaledState

TARGET = "poll://any@workers"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


def workload(rng: random.Random, clock: FakeClock, n: int) -> list[dict[str, Any] | None]:
    """``n`` inputs shaped like the SDK's, many of them conflicting; ``None`` means tick."""
    roots: list[str] = []
    children: list[str] = []
    out: list[dict[str, Any] | None] = []

    def later(low: int, high: int) -> int:
        return clock.now + rng.randint(low, high) * 1000

    for i in range(n):
        roll = rng.random()
        root = rng.choice(roots) if roots else "none"
        version = rng.randint(0, 3)
        corr = f"c{i}"
        if roll < 0.06:
            rid = f"root-{i}"
            roots.append(rid)
            tags = {"resonate:target": TARGET, "resonate:branch": rid}
            if rng.random() < 0.2:
                tags["resonate:timer"] = "true"
            out.append(
                {
                    "kind": "promise.create",
                    "corrId": corr,
                    "id": rid,
                    "timeoutAt": later(10, 4000),
                    "param": {"data": "x" * rng.randint(0, 20)},
                    "tags": tags,
                }
            )
        elif roll < 0.12:
            rid = f"task-{i}"
            roots.append(rid)
            action = {
                "kind": "promise.create",
                "data": {
                    "id": rid,
                    "timeoutAt": later(10, 4000),
                    "tags": {"resonate:target": TARGET, "resonate:branch": rid},
                },
            }
            out.append(
                {
                    "kind": "task.create",
                    "corrId": corr,
                    "pid": f"p{i % 3}",
                    "ttl": 5000,
                    "action": action,
                }
            )
        elif roll < 0.3:
            out.append(
                {
                    "kind": "task.acquire",
                    "corrId": corr,
                    "id": root,
                    "version": version,
                    "pid": "p1",
                    "ttl": 4000,
                }
            )
        elif roll < 0.38:
            cid = f"{root}:{i}"
            children.append(cid)
            action = {
                "kind": "promise.create",
                "data": {
                    "id": cid,
                    "timeoutAt": later(10, 3000),
                    "tags": {"resonate:branch": root},
                },
            }
            out.append(
                {
                    "kind": "task.fence",
                    "corrId": corr,
                    "id": root,
                    "version": version,
                    "action": action,
                }
            )
        elif roll < 0.45 and children:
            action = {
                "kind": "promise.settle",
                "data": {"id": rng.choice(children), "state": "resolved", "value": {"data": "1"}},
            }
            out.append(
                {
                    "kind": "task.fence",
                    "corrId": corr,
                    "id": root,
                    "version": version,
                    "action": action,
                }
            )
        elif roll < 0.52 and children:
            awaited = rng.choice(children)
            out.append(
                {
                    "kind": "task.suspend",
                    "corrId": corr,
                    "id": root,
                    "version": version,
                    "actions": [
                        {"kind": "promise.register_callback", "data": {"awaited": awaited}}
                    ],
                }
            )
        elif roll < 0.58 and children:
            state = rng.choice(["resolved", "rejected", "rejected_canceled"])
            out.append(
                {
                    "kind": "promise.settle",
                    "corrId": corr,
                    "id": rng.choice(children),
                    "state": state,
                }
            )
        elif roll < 0.63:
            action = {
                "kind": "promise.settle",
                "data": {"id": root, "state": "resolved", "value": None},
            }
            out.append(
                {
                    "kind": "task.fulfill",
                    "corrId": corr,
                    "id": root,
                    "version": version,
                    "action": action,
                }
            )
        elif roll < 0.67:
            out.append({"kind": "task.release", "corrId": corr, "id": root, "version": version})
        elif roll < 0.72:
            tasks = (
                [{"id": rng.choice(roots), "version": rng.randint(0, 2)} for _ in range(2)]
                if roots
                else []
            )
            out.append(
                {"kind": "task.heartbeat", "corrId": corr, "pid": f"p{i % 3}", "tasks": tasks}
            )
        elif roll < 0.76:
            awaited = rng.choice(children or roots or ["none"])
            out.append(
                {
                    "kind": "promise.register_listener",
                    "corrId": corr,
                    "awaited": awaited,
                    "address": "poll://uni@c/1",
                }
            )
        elif roll < 0.82:
            out.append(
                {
                    "kind": "promise.get",
                    "corrId": corr,
                    "id": rng.choice(children or roots or ["none"]),
                }
            )
        elif roll < 0.84:
            out.append(
                {
                    "kind": "schedule.create",
                    "corrId": corr,
                    "id": f"s{i % 4}",
                    "cron": "* * * * *",
                    "promiseId": "sp{{.timestamp}}",
                    "promiseTags": {"resonate:target": TARGET},
                }
            )
        elif roll < 0.85:
            out.append({"kind": "schedule.delete", "corrId": corr, "id": f"s{i % 4}"})
        elif roll < 0.87:
            # Invalid: fails validation after the auto-timeout of the promise it names.
            out.append({"kind": "task.create", "corrId": corr, "action": {"id": root}})
        elif roll < 0.88:
            out.append({"kind": "no.such.kind", "corrId": corr})
        else:
            out.append(None)
    return out


async def drive(store: JournaledState, clock: FakeClock, rng: random.Random, n: int) -> None:
    """Feed the workload in concurrent rounds of 25 (one clock reading per round).

    Concurrent inputs are applied in the order they were scheduled and share
    commits, which keeps a 6,000-entry test fast without changing its meaning.
    """
    items = workload(rng, clock, n)
    for start in range(0, len(items), 25):
        clock.now += rng.randint(0, 20_000)
        await asyncio.gather(
            *(
                store.tick() if item is None else store.apply(item)
                for item in items[start : start + 25]
            )
        )


@pytest.mark.parametrize("snapshot_every", [1_000_000, 700])
def test_replay_rebuilds_exactly_the_live_state(tmp_path: Path, snapshot_every: int) -> None:
    path = tmp_path / "replay.db"
    clock = FakeClock()
    live = JournaledState(path, snapshot_every=snapshot_every, clock=clock)
    asyncio.run(drive(live, clock, random.Random(7), 4_000))
    expected = canonical_state(live.state)
    live_seq = live.seq
    live.close_sync()

    reopened = JournaledState(path, snapshot_every=snapshot_every, clock=clock)
    try:
        assert reopened.seq == live_seq
        assert len(reopened.state.promises) > 400
        assert len({t.state for t in reopened.state.tasks.values()}) >= 3
        assert reopened.state.p_timeouts
        assert reopened.state.t_timeouts
        assert canonical_state(reopened.state) == expected
        if snapshot_every < live_seq:
            assert reopened.recovery.snapshot_seq > 0
            assert reopened.recovery.replayed < snapshot_every
    finally:
        reopened.close_sync()


def test_inputs_left_out_of_the_journal_change_nothing(tmp_path: Path) -> None:
    clock = FakeClock()
    store = JournaledState(tmp_path / "skip.db", clock=clock)
    rng = random.Random(11)

    async def run() -> int:
        skipped = 0
        for item in workload(rng, clock, 800):
            clock.now += rng.randint(0, 1500)
            before_seq, before = store.seq, canonical_state(store.state)
            if item is None:
                await store.tick()
            else:
                await store.apply(item)
            if store.seq == before_seq:
                skipped += 1
                assert canonical_state(store.state) == before, item
        return skipped

    try:
        assert asyncio.run(run()) > 50
    finally:
        store.close_sync()


def test_snapshots_bound_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "bounded.db"
    clock = FakeClock()
    store = JournaledState(path, snapshot_every=100, clock=clock)

    async def run() -> None:
        for start in range(0, 2_000, 50):
            await asyncio.gather(
                *(
                    store.apply(
                        {"kind": "promise.create", "corrId": "c", "id": f"p{i}", "tags": {}}
                    )
                    for i in range(start, start + 50)
                )
            )

    asyncio.run(run())
    expected = canonical_state(store.state)
    store.close_sync()
    journal = Journal(path)
    assert journal.count_entries() <= 100
    journal.close()
    reopened = JournaledState(path, clock=clock)
    assert reopened.recovery.snapshot_seq >= 1_900
    assert canonical_state(reopened.state) == expected
    reopened.close_sync()


def test_concurrent_requests_share_commits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = JournaledState(tmp_path / "group.db")
    commits = 0
    write = store._journal.write

    def counting_write(*args: Any) -> None:
        nonlocal commits
        commits += 1
        write(*args)

    monkeypatch.setattr(store._journal, "write", counting_write)

    async def run() -> list[int]:
        reqs = [
            {"kind": "promise.create", "corrId": str(i), "id": f"g{i}", "tags": {}}
            for i in range(200)
        ]
        applied = await asyncio.gather(*(store.apply(r) for r in reqs))
        return [a.response["status"] for a in applied if a.response is not None]

    try:
        assert asyncio.run(run()) == [201] * 200
        assert commits < 20, f"{commits} commits for 200 concurrent requests"
    finally:
        store.close_sync()
    with sqlite3.connect(tmp_path / "group.db") as db:
        assert db.execute("SELECT count(*) FROM journal").fetchone()[0] == 200


def test_unknown_kinds_are_refused_without_a_journal_entry(tmp_path: Path) -> None:
    store = JournaledState(tmp_path / "unknown.db")
    applied = asyncio.run(store.apply({"kind": "promise.explode", "id": "x"}))
    assert applied.error is not None
    assert applied.error.code == 400
    assert store.seq == 0
    store.close_sync()


def test_two_openers_of_one_file_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    first = JournaledState(path)
    with pytest.raises(StoreLocked, match="RESONATE_URL"):
        JournaledState(path)
    first.close_sync()
    JournaledState(path).close_sync()


def test_snapshot_round_trips_the_state(tmp_path: Path) -> None:
    clock = FakeClock()
    store = JournaledState(tmp_path / "snap.db", clock=clock)
    asyncio.run(drive(store, clock, random.Random(3), 1_000))
    restored = decode_state(encode_state(store.state))
    assert canonical_state(restored) == canonical_state(store.state)
    assert list(restored.promises) == list(store.state.promises)
    store.close_sync()


def test_stale_task_versions_are_refused_so_a_lost_lease_cannot_release_the_new_one(
    tmp_path: Path,
) -> None:
    store = JournaledState(tmp_path / "fence.db")

    async def run() -> list[int]:
        async def status(req: dict[str, Any]) -> int:
            applied = await store.apply({"corrId": "c", **req})
            assert applied.response is not None
            return int(applied.response["status"])

        tags = {"resonate:target": TARGET}
        await store.apply({"kind": "promise.create", "id": "t", "timeoutAt": 2**62, "tags": tags})
        return [
            await status(
                {"kind": "task.acquire", "id": "t", "version": 0, "pid": "a", "ttl": 9000}
            ),
            await status({"kind": "task.release", "id": "t", "version": 0}),  # now pending at v1
            await status(
                {"kind": "task.acquire", "id": "t", "version": 1, "pid": "b", "ttl": 9000}
            ),
            await status({"kind": "task.release", "id": "t", "version": 0}),  # a's stale release
            await status(
                {"kind": "task.acquire", "id": "t", "version": 0, "pid": "a", "ttl": 9000}
            ),
            await status({"kind": "task.fulfill", "id": "t", "version": 0, "action": {}}),
        ]

    try:
        seq_before = store.seq
        assert asyncio.run(run()) == [200, 200, 200, 409, 409, 409]
        task = store.state.tasks["t"]
        assert (task.state, task.version, task.pid) == ("acquired", 1, "b")
        assert store.seq - seq_before == 4, "refused requests are not journaled"
    finally:
        store.close_sync()


def test_an_unreadable_snapshot_or_file_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "bad-snapshot.db"
    store = JournaledState(path)
    asyncio.run(store.apply({"kind": "promise.create", "corrId": "c", "id": "p", "tags": {}}))
    store.snapshot_now()
    store.close_sync()
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE snapshot SET body = x'00'")
    with pytest.raises(CorruptStore, match="snapshot"):
        JournaledState(path)
    JournaledState(path.with_name("other.db")).close_sync()

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CorruptStore, match="not a readable promise store"):
        JournaledState(garbage)
    # The lock was released on the way out: a fixed file can be opened at once.
    garbage.unlink()
    JournaledState(garbage).close_sync()


async def answers(store: JournaledState, clock: FakeClock, items: list[Any]) -> list[Any]:
    """Apply ``items`` one at a time; every answer (response, error, messages) in order."""
    out: list[Any] = []
    for item in items:
        clock.now += 997
        if item is None:
            out.append(await store.tick())
        else:
            applied = await store.apply(item)
            error = None if applied.error is None else applied.error.code
            out.append((applied.response, error, applied.outgoing))
    return out


def test_a_store_restarted_from_snapshots_answers_as_one_that_never_stopped(
    tmp_path: Path,
) -> None:
    # A restart keeps most promises encoded until they are read, and the next
    # snapshot writes those bytes back: every answer must still be the one a
    # store that never stopped gives, and so must the state in the end.
    items = workload(random.Random(21), FakeClock(), 3_000)
    clock = FakeClock()
    steady = JournaledState(tmp_path / "steady.db", snapshot_every=10**9, clock=clock)
    expected = asyncio.run(answers(steady, clock, items))
    expected_state = canonical_state(steady.state)
    steady.close_sync()

    clock = FakeClock()
    path = tmp_path / "restarted.db"
    got: list[Any] = []
    restarts_from_a_snapshot = 0
    for start in range(0, len(items), 500):
        store = JournaledState(path, snapshot_every=170, clock=clock)
        restarts_from_a_snapshot += store.recovery.snapshot_seq > 0
        got += asyncio.run(answers(store, clock, items[start : start + 500]))
        final = canonical_state(store.state)
        store.close_sync()
    assert restarts_from_a_snapshot == 5
    assert got == expected
    assert final == expected_state


def test_a_snapshot_in_the_previous_format_still_opens(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "format1.db"
    live = JournaledState(path, snapshot_every=10**9, clock=clock)
    asyncio.run(drive(live, clock, random.Random(4), 1_500))
    expected, seq, order = canonical_state(live.state), live.seq, list(live.state.promises)
    image = ImageV1(
        format=1,
        promises=list(live.state.promises.values()),
        tasks=list(live.state.tasks.values()),
        schedules=list(live.state.schedules.values()),
        p_timeouts=list(live.state.p_timeouts),
        t_timeouts=list(live.state.t_timeouts),
    )
    live.close_sync()
    journal = Journal(path)
    journal.write([], Snapshot(seq=seq, body=msgspec.msgpack.encode(image)))
    journal.close()

    reopened = JournaledState(path)
    try:
        assert reopened.recovery.snapshot_seq == seq
        assert canonical_state(reopened.state) == expected
        assert list(reopened.state.promises) == order
    finally:
        reopened.close_sync()


def test_the_wal_is_cut_back_after_a_burst(tmp_path: Path) -> None:
    """One large commit grows the WAL far past its limit; the next checkpoints cut it back."""
    path = tmp_path / "burst.db"
    store = JournaledState(path)
    wal = Path(f"{path}-wal")
    pad = "x" * (64 << 10)

    async def burst() -> None:
        # Applied together, so they share one commit: one transaction of about 25 MB.
        await asyncio.gather(
            *(
                store.apply(
                    {"kind": "promise.create", "id": f"big-{i}", "param": {"data": pad}, "tags": {}}
                )
                for i in range(400)
            )
        )

    async def small_writes() -> None:
        for i in range(2000):
            await store.apply({"kind": "promise.create", "id": f"small-{i}", "tags": {}})

    try:
        asyncio.run(burst())
        peak = wal.stat().st_size
        assert peak > 3 * WAL_SIZE_LIMIT, peak
        asyncio.run(small_writes())  # past SQLite's own checkpoint, every 1,000 pages
        assert wal.stat().st_size <= WAL_SIZE_LIMIT
    finally:
        store.close_sync()


def test_a_snapshot_is_stored_compressed_and_one_stored_plain_still_loads(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "compressed.db")
    image = b"\x89" + b"chaos-1125-000001 pending resolved " * 2000  # as repetitive as a state
    journal.write([], Snapshot(seq=5, body=image))
    (stored,) = journal._db.execute("SELECT body FROM snapshot").fetchone()
    assert len(stored) * 10 < len(image)
    assert journal.load_snapshot() == Snapshot(seq=5, body=image)
    # As a store wrote it before snapshots were compressed.
    journal._db.execute("UPDATE snapshot SET body = ?, crc = ?", (image, zlib.crc32(image)))
    assert journal.load_snapshot() == Snapshot(seq=5, body=image)
    journal.close()
