"""What each way of making a journal entry durable costs, and what it guarantees.

    .venv/bin/python -m bench.journal_commit [--entries 2000] [--batch 1,8]

Appends ``--entries`` journal entries of a store request's size (about 400
bytes) in commits of ``--batch`` entries each, one way at a time, and prints
the wall time and the CPU time of this process per commit and per entry:

| way | survives SIGKILL | survives a power cut |
| --- | --- | --- |
| ``wal-full``: the store's journal today (``promise_store.journal.Journal``: WAL, ``synchronous=FULL``) | yes | yes: the WAL is fsynced before the commit returns |
| ``wal-normal``: the same file with ``synchronous=NORMAL`` | yes | no: the WAL is fsynced only at checkpoints, so the last commits can be lost |
| ``append-fdatasync``: one file, each commit ``write()`` + ``fdatasync()`` | yes | yes (the data is synced before the commit returns) |
| ``append-nosync``: the same without ``fdatasync`` | yes (the kernel has the bytes) | no |

A batch of N entries is one commit: the store's group commit shares one
between every request applied while the previous commit was syncing, so at
8 in flight a commit carries several entries and at 1 in flight exactly one.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from promise_store.journal import REQUEST, Entry, Journal

#: A ``task.fence`` wrapping a ``promise.create``, as the SDK sends one for a saga step.
SAMPLE_BODY = (
    b'{"kind":"task.fence","corrId":"12","id":"bench-c8-000001","version":1,'
    b'"action":{"kind":"promise.create","head":{"corrId":"12","version":"0.8.1"},'
    b'"data":{"id":"bench-c8-000001.1","timeoutAt":1764633600000,"param":{"headers":{},'
    b'"data":"eyJmdW5jIjogImFwcGx5X2VudHJ5IiwgImFyZ3MiOiBbInNvdXJjZSIsICJiZW5jaC1jOC0w'
    b'MDAwMDEtZGViaXQiXX0="},"tags":{"resonate:root":"bench-c8-000001",'
    b'"resonate:parent":"bench-c8-000001","resonate:scope":"local",'
    b'"resonate:branch":"bench-c8-000001"},"iKey":"bench-c8-000001.1","strict":false}}}'
)

Commit = Callable[[list[Entry]], None]


def sqlite_way(path: Path, synchronous: str) -> tuple[Commit, Callable[[], None]]:
    journal = Journal(path)
    journal._db.execute(f"PRAGMA synchronous={synchronous}")
    return journal.write, journal.close


def append_way(path: Path, sync: bool) -> tuple[Commit, Callable[[], None]]:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def commit(entries: list[Entry]) -> None:
        frame = b"".join(
            b"%d %d %d %s %d\n" % (e.seq, e.now, len(e.body), e.kind.encode(), e.crc) + e.body
            for e in entries
        )
        os.write(fd, frame)
        if sync:
            os.fdatasync(fd)

    return commit, lambda: os.close(fd)


WAYS: dict[str, Callable[[Path], tuple[Commit, Callable[[], None]]]] = {
    "wal-full": lambda p: sqlite_way(p, "FULL"),
    "wal-normal": lambda p: sqlite_way(p, "NORMAL"),
    "append-fdatasync": lambda p: append_way(p, sync=True),
    "append-nosync": lambda p: append_way(p, sync=False),
}


def measure(way: str, directory: Path, entries: int, batch: int) -> tuple[float, float]:
    """(wall ms, CPU ms) per commit of ``batch`` entries."""
    commit, close = WAYS[way](directory / f"{way}-{batch}.journal")
    commits = max(1, entries // batch)
    seq = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(commits):
        rows = []
        for _ in range(batch):
            seq += 1
            rows.append(Entry(seq=seq, now=1_764_633_600_000 + seq, kind=REQUEST, body=SAMPLE_BODY))
        commit(rows)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    close()
    return wall * 1000 / commits, cpu * 1000 / commits


def _levels(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.journal_commit", description=__doc__)
    parser.add_argument("--entries", type=int, default=2000)
    parser.add_argument("--batch", type=_levels, default=[1, 8])
    parser.add_argument("--ways", default=",".join(WAYS), help="comma-separated: " + ",".join(WAYS))
    parser.add_argument("--dir", type=Path, help="where the files go (default: a temporary dir)")
    args = parser.parse_args(argv)
    ways = [w for w in args.ways.split(",") if w]
    unknown = [w for w in ways if w not in WAYS]
    if unknown or args.entries < 1 or not args.batch or min(args.batch) < 1:
        parser.error(f"bad --ways {unknown} or --entries/--batch")
    print(f"sqlite {sqlite3.sqlite_version}, {args.entries} entries of {len(SAMPLE_BODY)} bytes")
    print(
        "| way | entries per commit | wall ms per commit | CPU ms per commit | CPU µs per entry |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory(prefix="journal-commit-", dir=args.dir) as tmp:
        for batch in args.batch:
            for way in ways:
                wall, cpu = measure(way, Path(tmp), args.entries, batch)
                print(
                    f"| {way} | {batch} | {wall:.3f} | {cpu:.3f} | {cpu * 1000 / batch:.0f} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
