"""Command line for a chaos campaign; exit status 1 when any invariant was violated."""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from chaos.results import load_params
from chaos.runner import run_campaign
from chaos.schedule import DRAWN_WHEN_NAMED, FAULT_KINDS, CampaignParams
from orchestrator.local.system import BACKENDS, STORE_BACKEND


def build_parser() -> argparse.ArgumentParser:
    defaults = CampaignParams(seed=0)
    parser = argparse.ArgumentParser(
        prog="python -m chaos",
        description="Run concurrent transfers on real processes while injecting random faults, "
        "then check every invariant. The seed fixes the workload and the fault schedule.",
    )
    parser.add_argument("--seed", type=int, help="random seed (default: a fresh one, printed)")
    parser.add_argument("--transfers", type=int, default=defaults.transfers)
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument("--faults", type=int, default=defaults.faults)
    parser.add_argument("--workers", type=int, default=defaults.workers, help="at least 2")
    parser.add_argument(
        "--duration", type=float, default=defaults.duration, help="seconds faults are injected"
    )
    parser.add_argument(
        "--quiesce-timeout",
        type=float,
        default=defaults.quiesce_timeout,
        help="after the faults, give up once no transfer started or finished for this long",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=defaults.rate,
        help="transfers started per second at most (default 0: no limit); for long runs",
    )
    parser.add_argument(
        "--quiet-period",
        type=float,
        default=defaults.quiet_period,
        help="alternate windows of this many seconds with and without faults (default 0: off)",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=STORE_BACKEND,
        help="where transfers are kept: crossbank's promise store, or Resonate on a private "
        "Postgres (then kill_postgres replaces kill_store)",
    )
    parser.add_argument(
        "--kinds",
        help="comma-separated fault kinds to draw from (default: all the backend has, but "
        + ", ".join(sorted(DRAWN_WHEN_NAMED))
        + ", drawn only when named): "
        + ", ".join(FAULT_KINDS),
    )
    parser.add_argument(
        "--unsynced-bank",
        action="store_true",
        help="control run for power cuts: the source bank's ledger never syncs (SQLite "
        "synchronous=OFF), so the campaign must report the entries a cut loses",
    )
    parser.add_argument("--out", type=Path, help="write seed, schedule and outcome here (JSON)")
    parser.add_argument(
        "--replay", type=Path, help="rerun the seed and parameters of this results file"
    )
    parser.add_argument(
        "--workdir", type=Path, help="where ledgers, store and logs go (default: a temp dir)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work dir (always kept on a violation)"
    )
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    return parser


def params_from(args: argparse.Namespace) -> CampaignParams:
    if args.replay is not None:
        return load_params(args.replay)
    return CampaignParams(
        seed=args.seed if args.seed is not None else secrets.randbelow(2**31),
        transfers=args.transfers,
        concurrency=args.concurrency,
        faults=args.faults,
        workers=args.workers,
        duration=args.duration,
        quiesce_timeout=args.quiesce_timeout,
        kinds=tuple(k.strip() for k in args.kinds.split(",") if k.strip()) if args.kinds else (),
        backend=args.backend,
        rate=args.rate,
        quiet_period=args.quiet_period,
        unsynced_bank=args.unsynced_bank,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        params = params_from(args)
    except ValueError as exc:
        parser.error(str(exc))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"crossbank-chaos-{params.seed}-"))
    started = time.monotonic()

    def log(message: str) -> None:
        if not args.quiet:
            print(f"[{time.monotonic() - started:7.2f}s] {message}", file=sys.stderr, flush=True)

    if args.quiet:
        # The SDK logs each retry of a store that is down; expected here, noise in a summary.
        logging.getLogger("resonate").setLevel(logging.ERROR)
    try:
        outcome = asyncio.run(run_campaign(params, workdir=workdir, log=log))
    except KeyboardInterrupt:
        # asyncio.run cancelled the campaign, whose clean-up stopped every process.
        print(f"interrupted: every process stopped, nothing audited; work dir: {workdir}")
        return 130
    print(outcome.summary())
    if args.out is not None:
        outcome.write(args.out)
        print(f"results written to {args.out} (rerun: python -m chaos --replay {args.out})")
    if outcome.violations or args.keep or args.workdir is not None:
        print(f"work dir with ledgers, store and logs: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if outcome.violations else 0
