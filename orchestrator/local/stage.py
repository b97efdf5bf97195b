"""What the demos share: a local crossbank to play on, and how a scene is told.

``crossbank demo`` and ``crossbank crash-demo`` both start a local system
(:class:`~orchestrator.local.system.LocalSystem`: banks with fault injection
on, the served store, one worker), print each command as a user would type it
with the reply indented below, and stop every process they started on the way
out, whatever happens (Ctrl-C included). Beside the scenes, the console
(:mod:`orchestrator.console`) serves the live page on a free port of
127.0.0.1; with ``keep_running`` the system and the console stay up after the
scenes until Ctrl-C, so people can keep playing.

The parts run with tokens made fresh for the run (a web page on the same
machine can reach a local port, and a bank without a token would take its
writes), and the console prints a one-time link that logs a browser in. With
``tls`` every link is https: the banks, the store and the console serve
certificates made for the run by a CA made for the run, and every client
trusts that CA.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from envsettings.tls import ServerTls
from orchestrator.cli import commands
from orchestrator.console.config import ConsoleSettings
from orchestrator.console.local import LocalControl
from orchestrator.console.running import ConsoleThread
from orchestrator.local.postgres import PostgresUnavailable, ResonateSqlMismatch
from orchestrator.local.supervisor import LocalTls, ServiceError, free_port, local_url
from orchestrator.local.system import (
    POSTGRES_BACKEND,
    SOURCE,
    STORE,
    STORE_BACKEND,
    TARGET,
    LocalSystem,
    with_fresh_tokens,
)
from orchestrator.settings import Settings

WORKER_GROUP = "crossbank-demo"


@dataclass(frozen=True)
class DemoOptions:
    """What ``crossbank demo`` and ``crash-demo`` are asked for on their command line."""

    data_dir: Path | None = None
    lease_ttl: float = 3.0
    debug: bool = False
    backend: str = STORE_BACKEND
    keep_running: bool = False
    console_port: int | None = None
    tls: bool = False


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
        url = local_url(system.ports[part], system.tls)
        yield f"  {process.name:<14} {url}  (log {process.log_path})"
    if system.postgres is not None and system.postgres_dsn is not None:
        log = system.postgres.log_path
        yield f"  {'postgres':<14} {system.postgres_dsn}  (log {log})"
    for worker in system.running_workers():
        yield f"  {worker.name:<14} pid {worker.pid}  (log {worker.log_path})"


@contextlib.contextmanager
def running(kind: str, options: DemoOptions) -> Iterator[tuple[LocalSystem, ConsoleThread]]:
    """Start a local system with one worker and its console; stop both however the block ends."""
    data_dir = options.data_dir or default_data_dir(kind)
    tls = _local_tls(data_dir) if options.tls else None
    system = LocalSystem(
        data_dir,
        with_fresh_tokens(demo_settings(options.lease_ttl)),
        faults=True,
        backend=options.backend,
        tls=tls,
    )
    say(f"data and logs: {system.data_dir}")
    if tls is not None:
        say(f"TLS on every link: certificates in {tls.cert.parent}, trust {tls.ca} (TLS_CA_FILE)")
    keeper = (
        "a private Postgres with Resonate"
        if options.backend == POSTGRES_BACKEND
        else "the promise store"
    )
    say(f"starting the source bank, the target bank, {keeper} and a worker ...")
    console: ConsoleThread | None = None
    try:
        system.start()
        for line in describe(system):
            say(line)
        say("to use it from another shell while the demo runs:")
        say("  export " + " ".join(f"{k}={v}" for k, v in system.shell_env().items()))
        console = ConsoleThread(
            system.settings,
            ConsoleSettings(
                port=options.console_port or free_port(),
                token=system.settings.bank_token,
                tls=ServerTls(tls.cert, tls.key, prefix="CONSOLE_") if tls is not None else None,
            ),
            LocalControl(system),
        )
        console.start()
        say(
            f"console: {console.address}  (the live page: both ledgers, the transfers, their steps)"
        )
        say(f"  open it logged in, once: {console.login_link}")
        yield system, console
    finally:
        say("stopping every process the demo started ...")
        if console is not None:
            console.stop()
        system.stop()


def _local_tls(data_dir: Path) -> LocalTls:
    from orchestrator.local.certs import local_tls

    return local_tls(data_dir / "tls")


def run_scenes(kind: str, body: Scene, options: DemoOptions) -> int:
    """Run ``body`` against a fresh local system; 0 when it says all went as expected.

    With ``keep_running`` the system and the console stay up after the scenes
    until Ctrl-C, which then ends the demo as usual (not as an interruption).
    """
    ok: bool | None = None
    try:
        with running(kind, options) as (system, console):
            ok = bool(asyncio.run(_awaited(body(system))))
            if options.keep_running:
                say(f"\n{kind}: {_verdict(ok)}")
                say(f"everything stays up until Ctrl-C; keep playing at {console.address}")
                _until_interrupted()
    except KeyboardInterrupt:
        if options.keep_running and ok is not None:
            return 0 if ok else 1
        say("interrupted")
        return 130
    except Exception as exc:
        if options.debug:
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
    if not options.keep_running:
        say(f"\n{kind}: {_verdict(bool(ok))}")
    return 0 if ok else 1


def _verdict(ok: bool) -> str:
    return "done: every outcome as expected" if ok else "FINISHED WITH PROBLEMS (see above)"


def _until_interrupted() -> None:
    """Sleep until Ctrl-C (KeyboardInterrupt)."""
    while True:
        time.sleep(3600)


async def _awaited(scene: Awaitable[bool]) -> bool:
    return await scene
