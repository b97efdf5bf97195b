"""Restart time and file size of the promise store with a long journal.

    .venv/bin/python bench/store_restart.py [--entries 100000]

Builds a journal of N entries (half ``promise.create``, half
``promise.settle``, applied to the real state machine so every entry is one
the store would have written), then measures how long opening the file takes
-- snapshot load plus replay -- first with no snapshot (replay all N), then
after a snapshot (replay none), and the file size in each case. Also times
``python -m promise_store`` from spawn to a healthy ``/health`` on each file.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import msgspec
from resonate.connections.local import ServerState

from orchestrator.local.supervisor import free_port, store_process
from promise_store.journal import REQUEST, Entry, Journal
from promise_store.snapshot import canonical_state
from promise_store.state import JournaledState


def build_journal(path: Path, entries: int) -> bytes:
    """Write ``entries`` journal rows; return the canonical state they produce."""
    state = ServerState()
    journal = Journal(path)
    batch: list[Entry] = []
    now = 1_700_000_000_000
    for seq in range(1, entries + 1):
        n = (seq - 1) // 2
        if seq % 2:
            req = {
                "kind": "promise.create",
                "corrId": f"c{seq}",
                "id": f"transfer-{n}",
                "timeoutAt": 2**62,
                "param": {"data": "eyJhbW91bnQiOjEyNTB9"},
                "tags": {"resonate:scope": "global"},
            }
        else:
            req = {
                "kind": "promise.settle",
                "corrId": f"c{seq}",
                "id": f"transfer-{n}",
                "state": "resolved",
                "value": {"data": "eyJzdGF0dXMiOiJjb21taXR0ZWQifQ=="},
            }
        now += 1
        state.apply(now, req)
        state.outgoing.clear()
        batch.append(Entry(seq=seq, now=now, kind=REQUEST, body=msgspec.json.encode(req)))
        if len(batch) == 10_000:
            journal.write(batch)
            batch = []
    journal.write(batch)
    journal.close()
    return canonical_state(state)


def timed_open(path: Path, expected: bytes) -> tuple[float, int]:
    started = time.perf_counter()
    store = JournaledState(path, snapshot_every=10**9)
    elapsed = time.perf_counter() - started
    if canonical_state(store.state) != expected:
        raise RuntimeError("recovered state differs from the state that was journaled")
    replayed = store.recovery.replayed
    store.close_sync()
    return elapsed, replayed


def time_to_healthy(path: Path) -> tuple[float, float]:
    """Seconds from spawn to a healthy ``/health``, and the CPU seconds the store used by then.

    The CPU figure does not grow when other work shares the machine; the
    wall time does.
    """
    port = free_port()
    process = store_process(port=port, path=path)
    started = time.perf_counter()
    process.start(timeout=300)
    elapsed = time.perf_counter() - started
    cpu = _cpu_seconds(process.pid)
    process.stop()
    return elapsed, cpu


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _healthy(path: Path) -> str:
    wall, cpu = time_to_healthy(path)
    return f"process to healthy {wall:6.2f} s ({cpu:.2f} s of CPU)"


def size_mb(path: Path) -> float:
    total = sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())
    return total / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "restart.db"
        expected = build_journal(path, args.entries)

        seconds, replayed = timed_open(path, expected)
        print(
            f"no snapshot : open {seconds:6.2f} s (replayed {replayed} entries), "
            f"file {size_mb(path):6.1f} MB, {_healthy(path)}"
        )

        store = JournaledState(path, snapshot_every=10**9)
        store.snapshot_now()
        store.close_sync()
        seconds, replayed = timed_open(path, expected)
        print(
            f"snapshot    : open {seconds:6.2f} s (replayed {replayed} entries), "
            f"file {size_mb(path):6.1f} MB, {_healthy(path)}"
        )


if __name__ == "__main__":
    main()
