"""Soak: a local crossbank left running, a transfer every few seconds, then idle, then one more.

Starts both banks, the served promise store and one worker as local processes
(a ``LocalSystem``, the same builder the tests use), with the
worker's real settings: the product's defaults for the lease, the step budget,
the bank timeout and the push channel (``PUSH_IDLE_TIMEOUT``,
``PUSH_MAX_LIFETIME``), nothing shortened. One client stays open for the whole
run, as a long-lived caller would. It makes a transfer every ``--every``
seconds for ``--busy`` seconds, waits ``--idle`` seconds doing nothing, then
makes one more transfer. Each transfer's latency (start to result, as the
caller sees it) is printed as it finishes; the summary says whether every
transfer committed, whether every op was applied exactly once (each transfer
one debit and one credit, and the audit of both ledgers clean), how the
transfer after the idle spell compares with the busy ones, and what the
worker's log says about its push channel.

The defaults (20 minutes busy, 10 idle) keep a worker and a client connected
well past the 300 s after which the SDK's own push channel used to die
silently. ``--backend postgres`` runs the same on Resonate on
Postgres (a private one), where the worker hears of work on a LISTEN
connection and the summary counts that connection's log lines instead. It
exits 1 if anything failed. Not part of ``make test``:

    .venv/bin/python -m bench.soak                          # about 30 minutes
    .venv/bin/python -m bench.soak --busy 20 --idle 10      # a quick look that it works
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from resonate.resonate import Resonate

from orchestrator.local.system import (
    BACKENDS,
    POSTGRES_BACKEND,
    STORE_BACKEND,
    WORKERS,
    LocalSystem,
    with_fresh_tokens,
)
from orchestrator.settings import Settings
from orchestrator.transfers import TransferRequest, start_transfer

AMOUNT = 1
#: The transfer after the idle spell may take this much longer than the busy median.
IDLE_SLACK_SECONDS = 2.0


@dataclass(frozen=True)
class Outcome:
    transfer_id: str
    status: str
    seconds: float


async def _one(client: Resonate, cluster: LocalSystem, transfer_id: str, within: float) -> Outcome:
    started = time.monotonic()
    try:
        request = TransferRequest(transfer_id, "soak-src", "soak-dst", AMOUNT)
        handle = await start_transfer(client, cluster.settings, request)
        result = await asyncio.wait_for(handle.result(), within)
        status = str(result["status"])
    except TimeoutError:
        status = f"no result within {within:g}s"
    except Exception as exc:  # the caller's view: whatever it got instead of a result
        status = f"{type(exc).__name__}: {exc}"
    outcome = Outcome(transfer_id, status, time.monotonic() - started)
    print(f"{transfer_id:>14}  {outcome.status:<10}  {outcome.seconds * 1000:8.1f} ms", flush=True)
    return outcome


async def _soak(cluster: LocalSystem, args: argparse.Namespace) -> tuple[list[Outcome], Outcome]:
    await cluster.seed({"soak-src": 10**12}, {"soak-dst": 0})
    busy: list[Outcome] = []
    async with cluster.session() as client:
        first = time.monotonic() + args.offset
        number = 0
        print(f"busy: a transfer every {args.every:g}s for {args.busy:g}s", flush=True)
        while (due := first + number * args.every) < first + args.busy:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            number += 1
            busy.append(await _one(client, cluster, f"soak-{number}", args.within))
        print(f"idle: {args.idle:g}s with nothing to do", flush=True)
        await asyncio.sleep(args.idle)
        after_idle = await _one(client, cluster, "soak-after-idle", args.within)
    return busy, after_idle


#: How a worker hears of work, by backend, and the lines its log says about it:
#: its push channel to the promise store, or its LISTEN connection on Postgres.
CHANNELS = {
    STORE_BACKEND: (
        "push channel",
        {
            "opened": "push channel open at",
            "lost": "push channel lost",
            "back": "push channel back at",
            "planned reconnect": "reconnecting on purpose",
        },
    ),
    POSTGRES_BACKEND: (
        "Postgres connection",
        {
            "listening": "postgres listening",
            "listen failed": "postgres listen failed",
            "drain failed": "postgres drain failed",
        },
    ),
}


def _channel_events(cluster: LocalSystem) -> Counter[str]:
    """What the worker's log says about how it hears of work, by kind of line."""
    _, kinds = CHANNELS[cluster.backend]
    found: Counter[str] = Counter()
    for worker in cluster.workers:
        assert worker.log_path is not None
        text = worker.log_path.read_text(errors="replace")
        for kind, line in kinds.items():
            found[kind] += text.count(line)
    return found


async def _exactly_once(cluster: LocalSystem, outcomes: list[Outcome]) -> list[str]:
    """Problems with the ops: each transfer one debit and one credit, and a clean audit."""
    ops = Counter(entry["op_id"] for entry in await cluster.entries("soak-"))
    problems = [
        f"{o.transfer_id}: {kind} applied {ops[f'{o.transfer_id}-{kind}']} times"
        for o in outcomes
        for kind in ("debit", "credit")
        if ops[f"{o.transfer_id}-{kind}"] != 1
    ]
    problems += [
        f"audit: {v.invariant} {v.transfer_id}: {v.detail}" for v in await cluster.violations()
    ]
    return problems


def run(workdir: Path, args: argparse.Namespace) -> int:
    # The product's defaults (Settings()), nothing shortened; the worker logs its push channel.
    soak = LocalSystem(
        workdir,
        with_fresh_tokens(Settings()),
        faults=True,
        env={WORKERS: {"LOG_LEVEL": "INFO"}},
        backend=args.backend,
    )
    with soak as cluster:
        started = time.monotonic()
        busy, after_idle = asyncio.run(_soak(cluster, args))
        elapsed = time.monotonic() - started
        outcomes = [*busy, after_idle]
        problems = asyncio.run(_exactly_once(cluster, outcomes))
        worker_alive = all(worker.running() for worker in cluster.workers)
        events = _channel_events(cluster)

    failed = [o for o in outcomes if o.status != "committed"]
    busy_ms = sorted(o.seconds * 1000 for o in busy)
    median = statistics.median(busy_ms) if busy_ms else 0.0
    slow_after_idle = after_idle.seconds * 1000 > median + IDLE_SLACK_SECONDS * 1000
    kept = f" (logs and data in {args.workdir})" if args.workdir is not None else ""
    print(f"\nsummary after {elapsed:.0f}s{kept}:")
    print(f"  transfers: {len(outcomes)}, committed: {len(outcomes) - len(failed)}")
    if busy_ms:
        print(
            f"  busy latency ms: median {median:.1f}, p99 "
            f"{busy_ms[min(len(busy_ms) - 1, int(len(busy_ms) * 0.99))]:.1f}, max {busy_ms[-1]:.1f}"
        )
    print(f"  after {args.idle:g}s idle: {after_idle.seconds * 1000:.1f} ms ({after_idle.status})")
    print(f"  every op exactly once, audit clean: {'yes' if not problems else 'NO'}")
    print(f"  worker still the one started: {'yes' if worker_alive else 'NO'}")
    channel, _ = CHANNELS[args.backend]
    print(f"  worker {channel}: " + ", ".join(f"{k} {events[k]}" for k in sorted(events)))
    for problem in [*(f"{o.transfer_id}: {o.status}" for o in failed), *problems][:20]:
        print(f"  PROBLEM {problem}")
    if slow_after_idle:
        print(f"  PROBLEM the transfer after the idle spell took over {IDLE_SLACK_SECONDS:g}s more")
    ok = not failed and not problems and worker_alive and not slow_after_idle
    print("  result: " + ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--busy", type=float, default=1200.0, help="seconds of transfers (1200)")
    parser.add_argument("--idle", type=float, default=600.0, help="idle seconds after (600)")
    parser.add_argument("--every", type=float, default=3.0, help="seconds between transfers (3)")
    parser.add_argument("--within", type=float, default=60.0, help="a transfer's time limit (60)")
    parser.add_argument(
        "--offset",
        type=float,
        help="seconds from the client opening to the first transfer (default: half of --every;"
        " 0 lines transfers up with the SDK's 10 s subscription refresh: see bench/README.md)",
    )
    parser.add_argument("--workdir", type=Path, help="keep logs and data here (default: temp)")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=STORE_BACKEND,
        help="the served promise store (default) or Resonate on Postgres (a private one)",
    )
    args = parser.parse_args(argv)
    args.offset = args.every / 2 if args.offset is None else args.offset
    if min(args.busy, args.idle, args.within, args.offset) < 0 or args.every <= 0:
        parser.error(
            "--busy, --idle, --within and --offset must not be negative, --every must be positive"
        )
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        return run(args.workdir, args)
    with tempfile.TemporaryDirectory(prefix="crossbank-soak-") as scratch:
        return run(Path(scratch), args)


if __name__ == "__main__":
    sys.exit(main())
