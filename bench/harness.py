"""``python -m bench.harness``: every system, the same banks, the same transfers, one run.

For each system in :data:`bench.peers.SYSTEMS` (or those ``--systems`` picks):
open it, warm it up, then run ``--count`` transfers at each concurrency level,
check every transfer's terminal status against the plan and the ledgers'
conservation, and record throughput and latency. A peer that cannot run here
is reported as such; it never fails the run. Writes ``results.md``,
``throughput.png`` and ``raw.json`` to ``--out``.

Figures are only as quiet as the machine: run it on an otherwise idle host.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from bench import recovery, report
from bench.banks import BankUrls, check_conservation, running_banks
from bench.driver import drive, machine_busy_seconds, own_cpu_seconds
from bench.peers import SYSTEMS, SystemEntry, Unavailable
from bench.stats import summarize
from bench.workload import plan_transfers

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
CROSSBANK_PATHS = ("bank", "source_bank", "target_bank", "promise_store", "orchestrator")


def code_version() -> str:
    """The commit the crossbank parts ran from, and whether their files differed from it."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", *CROSSBANK_PATHS],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{commit} with uncommitted changes in its parts" if dirty else commit


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


async def run_system(
    entry: SystemEntry,
    banks: BankUrls,
    workdir: Path,
    args: argparse.Namespace,
    result: report.RunReport,
    run_tag: str,
) -> None:
    """Measure one system at every concurrency level; record why if it cannot run."""
    slug = _slug(entry.name)
    system_dir = workdir / slug
    system_dir.mkdir(parents=True, exist_ok=True)
    try:
        open_system = entry.load()
        async with open_system(banks, system_dir) as run:
            if args.warmup:
                warm = plan_transfers(f"{slug}-warm-{run_tag}", args.warmup)
                await drive(run, warm, min(8, args.warmup))
            for concurrency in args.concurrency:
                specs = plan_transfers(f"{slug}-c{concurrency}-{run_tag}", args.count)
                busy_before, own_before = machine_busy_seconds(), own_cpu_seconds()
                samples, wall = await drive(run, specs, concurrency)
                busy_after, own_after = machine_busy_seconds(), own_cpu_seconds()
                stats = summarize(
                    entry.name,
                    concurrency,
                    samples,
                    wall,
                    {s.transfer_id: s.expected_status for s in specs},
                    cpu_s=None
                    if busy_before is None or busy_after is None
                    else busy_after - busy_before,
                    own_cpu_s=None
                    if own_before is None or own_after is None
                    else own_after - own_before,
                )
                result.results.append(stats)
                print(report.print_row(stats, result.baseline(concurrency)), flush=True)
        check_conservation(banks)
    except Unavailable as exc:
        result.skipped[entry.name] = f"unavailable: {exc}"
        print(f"{entry.name:<30} UNAVAILABLE: {exc}", flush=True)
    except Exception as exc:
        result.skipped[entry.name] = f"failed: {type(exc).__name__}: {exc}"
        print(f"{entry.name:<30} FAILED: {type(exc).__name__}: {exc}", flush=True)
        if args.verbose:
            traceback.print_exc()


async def run_all(args: argparse.Namespace, workdir: Path) -> report.RunReport:
    result = report.RunReport(
        command=" ".join(["python -m bench.harness", *map(shlex.quote, sys.argv[1:])]),
        started=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        machine=f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"crossbank at {code_version()}",
        count=args.count,
        concurrency=list(args.concurrency),
    )
    chosen = [s for s in SYSTEMS if not args.systems or any(k in s.name for k in args.systems)]
    run_tag = time.strftime("%H%M%S", time.gmtime())
    with running_banks(workdir / "banks", log_dir=workdir / "logs") as banks:
        for entry in chosen:
            await run_system(entry, banks, workdir, args, result, run_tag)
    return result


def _levels(text: str) -> list[int]:
    levels = [int(part) for part in text.split(",") if part.strip()]
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("concurrency levels must be positive integers")
    return levels


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.harness", description=__doc__)
    parser.add_argument("--count", type=int, default=200, help="transfers per level (200)")
    parser.add_argument(
        "--concurrency", type=_levels, default=[1, 8, 32], help="levels, e.g. 1,8,32"
    )
    parser.add_argument("--warmup", type=int, default=16, help="unmeasured transfers first (16)")
    parser.add_argument(
        "--systems", nargs="*", default=[], help="run only systems whose name contains one of these"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where results go")
    parser.add_argument("--workdir", type=Path, help="scratch dir (default: a temporary one)")
    parser.add_argument(
        "--skip-recovery", action="store_true", help="skip failover/restart measurements"
    )
    parser.add_argument(
        "--restart-entries",
        type=_levels,
        default=[100_000, 1_000_000],
        help="journal lengths for the store restart figure (100000,1000000)",
    )
    parser.add_argument("--note", action="append", default=[], help="a line for the report")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="crossbank-bench-") as scratch:
        workdir = args.workdir or Path(scratch)
        result = asyncio.run(run_all(args, workdir))
        if not args.skip_recovery:
            print("measuring crossbank failover and store restart ...", flush=True)
            result.recovery = recovery.collect(workdir / "recovery", args.restart_entries)
            for what, figure in result.recovery:
                print(f"{what}: {figure}", flush=True)
    result.notes.append(
        "Every system calls the banks over the same HTTP client: keep-alive connections "
        "parsed by llhttp (orchestrator/http_pool.py's ConnectionPool, used by "
        "bench/peers/bank_steps.py and orchestrator/bank_client.py)."
    )
    result.notes.extend(args.note)
    for path in report.write(result, args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
