"""What the demos share: a local crossbank to play on, and how a scene is told.

``crossbank demo`` and ``crossbank crash-demo`` both start a local system
(:class:`~orchestrator.local.system.LocalSystem`: banks with fault injection
on, the served store, one worker), print each command as a user would type it
with the reply indented below, and stop every process they started on the way
out, whatever happens (Ctrl-C included).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path

from orchestrator.cli import commands
from orchestrator.local.postgres import PostgresUnavailable, ResonateSqlMismatch
from orchestrator.local.supervisor import ServiceError, local_url
from orchestrator.local.system import (
    POSTGRES_BACKEND,
    SOURCE,
    STORE,
    STORE_BACKEND,
    TARGET,
    LocalSystem,
)
from orchestrator.settings import Settings

WORKER_GROUP = "crossbank-demo"

#: A scene: runs on a started system, True when every outcome was as expected.
Scene = Callable[[LocalSystem], Awaitable[bool]]


def say(text: str = "") -> None:
    print(text, flush=True)


def show(reply: commands.Reply, indent: str = "    ") -> None:
    for line in reply.human.splitlines():
        say(f"{indent}{line}")


def command(text: str) -> None:
    say(f"  $ crossbank {text}")


async def transfer(
    settings: Settings,
    source: str,
    target: str,
    amount: str,
    *,
    transfer_id: str | None = None,
    wait: bool = True,
) -> commands.Reply:
    """Print ``crossbank transfer ...`` and run it, from the same arguments, so the two agree."""
    line = f"transfer --from {source} --to {target} --amount {amount}"
    line += f" --id {transfer_id}" if transfer_id is not None else ""
    line += "" if wait else " --no-wait"
    command(line)
    reply = await commands.transfer_command(
        settings, source=source, target=target, amount=amount, transfer_id=transfer_id, wait=wait
    )
    show(reply)
    return reply


def default_data_dir(kind: str) -> Path:
    return Path("data") / f"{kind}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def demo_settings(lease_ttl: float) -> Settings:
    """A worker that gives up on a bank soon (3 tries, 1-2 s apart) but waits out a held request."""
    return Settings(
        group=WORKER_GROUP,
        lease_ttl=lease_ttl,
        step_attempts=3,
        step_backoff=1,
        step_backoff_max=2,
        bank_timeout=30.0,
    )


def describe(system: LocalSystem) -> Iterator[str]:
    """One line per running part: where it answers (or its pid) and its log."""
    for part in (SOURCE, TARGET, STORE):
        if part not in system.services:
            continue
        process = system.part(part)
        url = local_url(system.ports[part])
        yield f"  {process.name:<14} {url}  (log {process.log_path})"
    if system.postgres is not None and system.postgres_dsn is not None:
        log = system.postgres.log_path
        yield f"  {'postgres':<14} {system.postgres_dsn}  (log {log})"
    for worker in system.running_workers():
        yield f"  {worker.name:<14} pid {worker.pid}  (log {worker.log_path})"


@contextlib.contextmanager
def running(
    data_dir: Path | None, kind: str, lease_ttl: float, backend: str = STORE_BACKEND
) -> Iterator[LocalSystem]:
    """Start a local system with one worker; stop it however the block ends."""
    system = LocalSystem(
        data_dir or default_data_dir(kind), demo_settings(lease_ttl), faults=True, backend=backend
    )
    say(f"data and logs: {system.data_dir}")
    keeper = (
        "a private Postgres with Resonate" if backend == POSTGRES_BACKEND else "the promise store"
    )
    say(f"starting the source bank, the target bank, {keeper} and a worker ...")
    try:
        system.start()
        for line in describe(system):
            say(line)
        say("to use it from another shell while the demo runs:")
        say("  export " + " ".join(f"{k}={v}" for k, v in system.shell_env().items()))
        yield system
    finally:
        say("stopping every process the demo started ...")
        system.stop()


def run_scenes(
    kind: str,
    data_dir: Path | None,
    lease_ttl: float,
    debug: bool,
    body: Scene,
    *,
    backend: str = STORE_BACKEND,
) -> int:
    """Run ``body`` against a fresh local system; 0 when it says all went as expected."""
    try:
        with running(data_dir, kind, lease_ttl, backend) as system:
            ok = bool(asyncio.run(_awaited(body(system))))
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except Exception as exc:
        if debug:
            traceback.print_exc()
        expected = isinstance(
            exc,
            commands.CliError
            | ServiceError
            | TimeoutError
            | OSError
            | PostgresUnavailable
            | ResonateSqlMismatch,
        )
        what = str(exc) if expected else f"unexpected error: {type(exc).__name__}: {exc}"
        print(f"crossbank {kind}: error: {' '.join(what.split())}", file=sys.stderr)
        return 1
    say(
        f"\n{kind}: {'done: every outcome as expected' if ok else 'FINISHED WITH PROBLEMS (see above)'}"
    )
    return 0 if ok else 1


async def _awaited(scene: Awaitable[bool]) -> bool:
    return await scene
