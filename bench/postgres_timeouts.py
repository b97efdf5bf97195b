"""Resonate on Postgres at scale: ``process_timeouts()`` and transfers/s beside many finished promises.

Every crossbank worker and client calls ``resonate.process_timeouts()`` on
each wake (at least four times a second), and it looks through the promises
table; finished workflows stay there until ``resonate.gc`` removes them.
This fills a private Postgres (:mod:`orchestrator.local.postgres`) with
``--promises`` finished promises in the shape a transfer leaves (a root
promise with its task fulfilled, and its step promises), written directly
with ``generate_series`` rather than by running that many transfers, then
times ``process_timeouts()`` empty, full, right after ``gc`` and after the
``VACUUM`` autovacuum would do, and (``--transfers``) transfers per second
through one worker with the table full and after gc.

``--inline-timed`` is an experiment on the schema, not a set-up to deploy:
``resonate.sql`` pins every function to a ``search_path``, and Postgres does
not inline a SQL function with a ``SET`` clause, so ``process_timeouts()``
evaluates ``_promise_timed`` row by row instead of using the partial index on
pending promises. The flag resets that one function's ``search_path`` before
the fill, to measure what the index would give.

    .venv/bin/python -m bench.postgres_timeouts --promises 1000000 --transfers 200
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psycopg

from bench.banks import running_banks
from bench.driver import drive
from bench.peers.crossbank import served
from bench.workload import plan_transfers
from orchestrator.local.postgres import PrivatePostgres
from orchestrator.local.supervisor import free_port
from orchestrator.local.system import POSTGRES_BACKEND, POSTGRES_DATABASE

#: Promises per filled workflow: the root (with a task) and its step promises.
PER_WORKFLOW = 3
#: The step promises' ids end ``.1``, ``.2``: the SDK's numbering of a root's children.
FILL = """
WITH now AS (SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint AS ms),
rows AS (
  SELECT g / %(per)s AS workflow, mod(g, %(per)s) AS step FROM generate_series(0, %(n)s - 1) AS g)
INSERT INTO resonate.promises
  (id, state, param_data, value_data, tags, timeout_at, created_at, settled_at)
SELECT
  'fill-' || workflow || CASE WHEN step = 0 THEN '' ELSE '.' || step END,
  'resolved', '{"amount": 100}', '{"status": "committed"}',
  CASE WHEN step = 0
    THEN jsonb_build_object('resonate:origin', 'fill-' || workflow,
                            'resonate:target', 'poll://any@bench-workers',
                            'resonate:scope', 'global')
    ELSE jsonb_build_object('resonate:origin', 'fill-' || workflow,
                            'resonate:parent', 'fill-' || workflow,
                            'resonate:branch', 'fill-' || workflow,
                            'resonate:scope', 'local')
  END,
  now.ms + 86400000, now.ms - 60000, now.ms - 30000
FROM rows, now
"""
FILL_TASKS = """
INSERT INTO resonate.tasks (id, state, version)
SELECT id, 'fulfilled', 1 FROM resonate.promises WHERE id LIKE 'fill-%' AND parent_id IS NULL
"""
NOW_MS = "(extract(epoch from clock_timestamp()) * 1000)::bigint"
INLINE_TIMED = "ALTER FUNCTION resonate._promise_timed(resonate.promises) RESET search_path"


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def time_process_timeouts(connection: psycopg.Connection, repeat: int) -> str:
    """Median and slowest of ``repeat`` calls, in ms, as the workers make them."""
    samples = [
        _timed(lambda: connection.execute("SELECT resonate.process_timeouts()").fetchone()) * 1000
        for _ in range(repeat)
    ]
    return f"median {statistics.median(samples):.2f} ms, max {max(samples):.2f} ms"


def count_promises(connection: psycopg.Connection) -> int:
    row = connection.execute("SELECT count(*) FROM resonate.promises").fetchone()
    return int(row[0]) if row else 0


def fill(connection: psycopg.Connection, promises: int) -> float:
    """Insert ``promises`` finished promises and their roots' tasks; seconds taken."""

    def insert() -> None:
        connection.execute(FILL.encode(), {"n": promises, "per": PER_WORKFLOW})
        connection.execute(FILL_TASKS.encode())
        connection.execute("ANALYZE resonate.promises")
        connection.execute("ANALYZE resonate.tasks")

    return _timed(insert)


def collect_garbage(connection: psycopg.Connection, limit: int) -> tuple[int, float]:
    """``resonate.gc(now, limit)`` until it removes nothing: (promises removed, seconds)."""
    removed = 0
    started = time.perf_counter()
    while True:
        row = connection.execute(f"SELECT resonate.gc({NOW_MS}, %s)", (limit,)).fetchone()
        batch = int(row[0]) if row else 0
        removed += batch
        if batch == 0:
            return removed, time.perf_counter() - started


async def transfers_per_second(dsn: str, workdir: Path, tag: str, count: int, level: int) -> str:
    """``count`` transfers through one worker on ``dsn`` at ``level`` in flight."""
    with running_banks(workdir / f"banks-{tag}", log_dir=workdir / f"logs-{tag}") as banks:
        async with served(banks, workdir / tag, 1, POSTGRES_BACKEND, postgres_dsn=dsn) as run:
            await drive(run, plan_transfers(f"warm-{tag}", 16), 8)
            samples, wall = await drive(run, plan_transfers(f"pt-{tag}", count), level)
    finished = sum(1 for s in samples if s.status in ("committed", "compensated"))
    return f"{finished / wall:.1f} transfers/s ({finished} of {count} finished)"


def run(args: argparse.Namespace, workdir: Path) -> None:
    with PrivatePostgres(free_port(), log_path=workdir / "postgres.log") as server:
        dsn = server.create_database(POSTGRES_DATABASE)
        with psycopg.connect(dsn, autocommit=True) as connection:
            if args.inline_timed:
                connection.execute(INLINE_TIMED)
                print("_promise_timed may be inlined (its search_path reset)")
            print(f"empty: process_timeouts() {time_process_timeouts(connection, args.repeat)}")
            seconds = fill(connection, args.promises)
            total = count_promises(connection)
            print(f"filled {total:,} finished promises in {seconds:.1f} s")
            print(f"full: process_timeouts() {time_process_timeouts(connection, args.repeat)}")
            if args.transfers:
                figure = asyncio.run(
                    transfers_per_second(dsn, workdir, "full", args.transfers, args.concurrency)
                )
                print(f"full: {figure} at {args.concurrency} in flight")
            removed, seconds = collect_garbage(connection, args.gc_limit)
            print(
                f"gc: removed {removed:,} promises in {seconds:.1f} s "
                f"(batches of {args.gc_limit:,}); {count_promises(connection):,} left"
            )
            print(f"after gc: process_timeouts() {time_process_timeouts(connection, args.repeat)}")
            vacuum = _timed(lambda: connection.execute("VACUUM ANALYZE"))
            print(f"vacuum took {vacuum:.1f} s")
            print(
                f"after gc and vacuum: process_timeouts() "
                f"{time_process_timeouts(connection, args.repeat)}"
            )
            if args.transfers:
                figure = asyncio.run(
                    transfers_per_second(dsn, workdir, "gc", args.transfers, args.concurrency)
                )
                print(f"after gc: {figure} at {args.concurrency} in flight")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.postgres_timeouts", description=__doc__)
    parser.add_argument("--promises", type=_positive, default=1_000_000, help="(1000000)")
    parser.add_argument(
        "--repeat", type=_positive, default=20, help="process_timeouts() calls per figure (20)"
    )
    parser.add_argument(
        "--gc-limit", type=_positive, default=10_000, help="gc's batch (10000, its default)"
    )
    parser.add_argument(
        "--transfers", type=int, default=0, help="transfers per throughput figure (0: none)"
    )
    parser.add_argument("--concurrency", type=_positive, default=8, help="in flight (8)")
    parser.add_argument(
        "--inline-timed",
        action="store_true",
        help="reset _promise_timed's search_path first (an experiment: see above)",
    )
    parser.add_argument("--workdir", type=Path, help="keep logs here (default: a temporary dir)")
    args = parser.parse_args(argv)
    if args.transfers < 0:
        parser.error("--transfers must not be negative")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="crossbank-pg-timeouts-") as scratch:
        run(args, args.workdir or Path(scratch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
