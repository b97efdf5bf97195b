"""``crossbank``: start transfers, look them up, manage accounts, audit, run a worker or the demos.

Human-friendly output by default, ``--json`` for scripts. Exit codes, so a
script can branch without parsing text:

- 0: done (a transfer committed, the audit is clean, ...);
- 1: done, but not the happy answer: a transfer failed or was compensated,
  the audit found violations, a transfer id is unknown;
- 2: refused before anything started: bad input, an account that does not
  exist or is closed, a bank or the promise store not reachable, a bad
  setting (:class:`envsettings.SettingsError`);
- 3: an unexpected error, which is a bug (one line; ``--debug`` shows the
  traceback). Any other exception lands here, a ``ValueError`` too: only the
  error types above mean "the user can fix this".

Every check that can refuse a transfer runs before the transfer is started,
so a refused command leaves the ledgers and the promise store untouched.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from envsettings import SettingsError
from orchestrator.cli import operate
from orchestrator.cli.commands import (
    OK,
    REFUSED,
    UNEXPECTED,
    CliError,
    Reply,
    account_command,
    audit_command,
    balances_command,
    seed_command,
    status_command,
    transfer_command,
)
from orchestrator.money import AmountError
from orchestrator.settings import Settings


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS keeps a subcommand from resetting a flag given before it.
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show tracebacks of unexpected errors",
    )
    parser = argparse.ArgumentParser(
        prog="crossbank",
        description="Durable money transfers between two banks that share no transaction.",
        epilog="Configured by environment variables: SOURCE_BANK_URL, TARGET_BANK_URL, "
        "BANK_TOKEN, RESONATE_URL or RESONATE_PG_DSN (neither: the embedded store at STORE_PATH), RESONATE_TOKEN; "
        "the console: CONSOLE_HOST, CONSOLE_PORT, CONSOLE_TOKEN, CONSOLE_READ_ONLY.",
        parents=[common],
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    transfer = commands.add_parser(
        "transfer", parents=[common], help="move money from a source account to a target account"
    )
    transfer.add_argument("--from", dest="source", required=True, metavar="ACCOUNT")
    transfer.add_argument("--to", dest="target", required=True, metavar="ACCOUNT")
    transfer.add_argument("--amount", required=True, help="a decimal amount, like 12.50")
    transfer.add_argument(
        "--id", dest="transfer_id", help="the transfer id (its idempotency key); default: a new one"
    )
    transfer.add_argument(
        "--no-wait", action="store_true", help="print the transfer id once started, do not wait"
    )

    status = commands.add_parser(
        "status", parents=[common], help="a transfer's state and the timeline of its steps"
    )
    status.add_argument("transfer_id", metavar="ID")

    commands.add_parser("balances", parents=[common], help="every account on both banks")

    accounts = commands.add_parser(
        "accounts", parents=[common], help="open, close or seed accounts"
    )
    account_commands = accounts.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (("open", "open (or create) an account"), ("close", "close an account")):
        sub = account_commands.add_parser(action, parents=[common], help=text)
        sub.add_argument("account_id", metavar="ACCOUNT")
        sub.add_argument("--bank", required=True, choices=("source", "target"))
        if action == "open":
            sub.add_argument(
                "--opening",
                help="opening balance of a new account (default 0); fixed once created",
            )
    account_commands.add_parser(
        "seed", parents=[common], help="open a default set of demo accounts on both banks"
    )

    audit = commands.add_parser(
        "audit", parents=[common], help="check both ledgers against the invariants (exit 1 if not)"
    )
    audit.add_argument(
        "--actions",
        action="store_true",
        help="list the operator record (cancels, retries, kills, holds) instead, newest first",
    )
    audit.add_argument(
        "--limit", type=_limit, default=50, help="with --actions: at most this many (default 50)"
    )

    listing = commands.add_parser(
        "transfers", parents=[common], help="list transfers, newest first, from the store's search"
    )
    listing.add_argument(
        "--status",
        metavar="STATUS",
        help="only these: in_progress, compensating, needs-attention, committed, compensated, "
        "failed",
    )
    listing.add_argument(
        "--since", metavar="WHEN", help="started at or after: 2026-12-06, 2026-12-06T14:30, 90m, 2h"
    )
    listing.add_argument(
        "--limit", type=_limit, default=50, help="at most this many (default 50, at most 1000)"
    )
    listing.add_argument("--cursor", help="the next page: the cursor the previous page printed")

    cancel = commands.add_parser(
        "cancel",
        parents=[common],
        help="cancel a transfer unless its credit applied (exit 1 if too late)",
    )
    cancel.add_argument("transfer_id", metavar="ID")
    cancel.add_argument("--reason", required=True, help="why, kept with the cancel")
    cancel.add_argument("--by", help="who cancels (default: CROSSBANK_OPERATOR, else user@host)")

    retry = commands.add_parser(
        "retry", parents=[common], help="make a transfer waiting between attempts try again now"
    )
    retry.add_argument("transfer_id", metavar="ID")
    retry.add_argument("--by", help="who asks (default: CROSSBANK_OPERATOR, else user@host)")

    commands.add_parser(
        "versions",
        parents=[common],
        help="the saga versions, and how many unfinished transfers each still runs",
    )
    commands.add_parser("worker", parents=[common], help="run a worker until SIGTERM or Ctrl-C")

    for name, text in (
        ("demo", "start everything locally and run transfers, then the crash demo"),
        ("crash-demo", "kill a worker mid-transfer and watch the transfer finish anyway"),
        ("upgrade-demo", "change the saga while transfers run: each finishes on its version"),
    ):
        demo = commands.add_parser(name, parents=[common], help=text)
        demo.add_argument(
            "--data",
            type=Path,
            help="directory for ledgers, store and logs (default ./data/demo-*)",
        )
        demo.add_argument(
            "--lease-ttl",
            type=float,
            default=3.0,
            help="worker lease in seconds: how soon a new worker takes over (default 3)",
        )
        demo.add_argument(
            "--keep-running",
            action="store_true",
            help="after the scenes, keep the local system and the console up until Ctrl-C",
        )
        demo.add_argument(
            "--console-port",
            type=_port,
            help="port of the console's page on 127.0.0.1 (default: a free one)",
        )
        demo.add_argument(
            "--tls",
            action="store_true",
            help="https on every link, with certificates made for the run (default: plain http "
            "on 127.0.0.1)",
        )
        demo.add_argument(
            "--backend",
            choices=("store", "postgres"),
            default="store",
            help="where transfers are kept: crossbank's promise store (default) or Resonate "
            "on a private Postgres started for the demo",
        )
    console = commands.add_parser(
        "console",
        parents=[common],
        help="serve a live web page: both ledgers, the transfers and their steps (Ctrl-C stops it)",
    )
    console.add_argument(
        "--port", type=_port, help="port on CONSOLE_HOST (default: CONSOLE_PORT, else 8090)"
    )
    return parser


def _limit(text: str) -> int:
    """A page size from 1 to 1000, or argparse's one-line refusal."""
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        raise argparse.ArgumentTypeError(f"invalid limit {text!r}: a number from 1 to 1000")
    return int(text)


def _port(text: str) -> int:
    """A TCP port (0: any free one), or argparse's one-line refusal."""
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: a number from 0 to 65535")
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (the console script exits with it)."""
    args = build_parser().parse_args(argv)
    # The flags may come before or after the command; absent, they are off.
    args.json = getattr(args, "json", False)
    args.debug = getattr(args, "debug", False)
    try:
        if args.command == "worker":
            return _run_worker()
        if args.command in ("demo", "crash-demo", "upgrade-demo"):
            return _run_demo(args)
        if args.command == "console":
            return _run_console(args)
        settings = Settings.from_env()
        reply = asyncio.run(_dispatch(settings, args))
    except CliError as exc:
        return _fail(args, str(exc), exc.code)
    except (SettingsError, AmountError) as exc:  # each names the bad variable or value
        return _fail(args, str(exc), REFUSED)
    except KeyboardInterrupt:
        return _fail(args, "interrupted", 130)
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        hint = "" if args.debug else " (run with --debug for the traceback)"
        return _fail(args, f"unexpected error: {type(exc).__name__}: {exc}{hint}", UNEXPECTED)
    emit(reply, as_json=args.json)
    return reply.code


def emit(reply: Reply, *, as_json: bool, out: TextIO | None = None) -> None:
    stream = out or sys.stdout
    if as_json:
        json.dump(reply.data, stream, indent=2, sort_keys=True)
        stream.write("\n")
    else:
        stream.write(reply.human.rstrip("\n") + "\n")
    stream.flush()


def _fail(args: argparse.Namespace, message: str, code: int) -> int:
    one_line = " ".join(message.split())
    if args.json:
        json.dump({"error": one_line, "exit_code": code}, sys.stdout)
        sys.stdout.write("\n")
    print(f"crossbank: error: {one_line}", file=sys.stderr)
    return code


async def _dispatch(settings: Settings, args: argparse.Namespace) -> Reply:
    match args.command:
        case "transfer":
            return await transfer_command(
                settings,
                source=args.source,
                target=args.target,
                amount=args.amount,
                transfer_id=args.transfer_id,
                wait=not args.no_wait,
            )
        case "status":
            return await status_command(settings, args.transfer_id)
        case "balances":
            return await balances_command(settings)
        case "accounts":
            if args.action == "seed":
                return await seed_command(settings)
            opening = args.opening if args.action == "open" else None
            return await account_command(
                settings, args.account_id, bank=args.bank, action=args.action, opening=opening
            )
        case "audit":
            if args.actions:
                return await operate.actions_command(settings, limit=args.limit)
            return await audit_command(settings)
        case "transfers":
            return await operate.transfers_command(
                settings,
                status=args.status,
                since=args.since,
                limit=args.limit,
                cursor=args.cursor,
            )
        case "cancel":
            return await operate.cancel_command(
                settings, args.transfer_id, reason=args.reason, by=args.by
            )
        case "retry":
            return await operate.retry_command(settings, args.transfer_id, by=args.by)
        case "versions":
            return await operate.versions_command(settings)
    raise CliError(f"unknown command {args.command!r}")


def _run_worker() -> int:
    from orchestrator import worker

    worker.main()
    return OK


def _run_demo(args: argparse.Namespace) -> int:
    from orchestrator.local import crash_demo, demo, upgrade_demo
    from orchestrator.local.stage import DemoOptions

    demos: dict[str, Callable[[DemoOptions], int]] = {
        "demo": demo.main,
        "crash-demo": crash_demo.main,
        "upgrade-demo": upgrade_demo.main,
    }
    run = demos[args.command]
    return run(
        DemoOptions(
            data_dir=args.data,
            lease_ttl=args.lease_ttl,
            debug=args.debug,
            backend=args.backend,
            keep_running=args.keep_running,
            console_port=args.console_port,
            tls=args.tls,
        )
    )


def _run_console(args: argparse.Namespace) -> int:
    """``crossbank console``: serve the page until Ctrl-C; refuse what it cannot serve from."""
    import logging
    from dataclasses import replace

    from envsettings.logs import JSON, configure_logging
    from orchestrator.console.config import ConsoleSettings
    from orchestrator.console.running import serve
    from orchestrator.console.server import Listening, needs_served_store

    # Text: Python's default, as ever (warnings and errors, the message alone);
    # LOG_FORMAT=json: those as JSON lines, and the console's own lines with them.
    log_format = configure_logging(logging.WARNING)
    settings = Settings.from_env()
    console = ConsoleSettings.from_env()
    if args.port is not None:
        console = replace(console, port=args.port)
    needs_served_store(settings)

    def announce(listening: Listening) -> None:
        if log_format == JSON:
            log = logging.getLogger("orchestrator.console")
            log.setLevel(logging.INFO)
            fields = {"address": listening.address}
            if listening.login_link is not None:
                fields["login_link"] = listening.login_link
            log.info(
                "console: %s (reading %s)", listening.address, settings.store_name(), extra=fields
            )
            return
        print(
            f"console: {listening.address}  (reading {settings.store_name()}; Ctrl-C stops it)",
            flush=True,
        )
        if listening.login_link is not None:
            print(f"one-time login link: {listening.login_link}", flush=True)

    try:
        serve(settings, console, announce=announce)
    except KeyboardInterrupt:
        return OK
    except OSError as exc:
        raise CliError(
            f"the console cannot listen on {console.host}:{console.port} (CONSOLE_HOST, "
            f"CONSOLE_PORT): {exc.strerror or exc}"
        ) from None
    return OK
