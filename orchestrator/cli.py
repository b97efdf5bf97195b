"""``crossbank``: start transfers, look them up, manage accounts, audit, run a worker or the demos.

Human-friendly output by default, ``--json`` for scripts. Exit codes, so a
script can branch without parsing text:

- 0: done (a transfer committed, the audit is clean, ...);
- 1: done, but not the happy answer: a transfer failed or was compensated,
  the audit found violations, a transfer id is unknown;
- 2: refused before anything started: bad input, an account that does not
  exist or is closed, a bank or the promise store not reachable;
- 3: an unexpected error (one line; ``--debug`` shows the traceback).

Every check that can refuse a transfer runs before the transfer is started,
so a refused command leaves the ledgers and the promise store untouched.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import traceback
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import httpx

from orchestrator import audit, money
from orchestrator.bank_client import (
    BankClient,
    BankError,
    BankUnavailable,
    BankUnreachable,
    EntryKind,
    bank_clients,
)
from orchestrator.settings import Settings

if TYPE_CHECKING:
    from resonate.resonate import Resonate

    from orchestrator.transfers import TransferHandle

OK = 0
NOT_OK = 1
REFUSED = 2
UNEXPECTED = 3

#: Which environment variable says where each part lives, for error messages.
BANK_URL_VARIABLE = {"source": "SOURCE_BANK_URL", "target": "TARGET_BANK_URL"}

#: ``crossbank accounts seed``: demo accounts, opening balances in cents.
SEED_ACCOUNTS: dict[str, dict[str, int]] = {
    "source": {"alice": 100_000, "bob": 25_000, "erin": 1_000},
    "target": {"carol": 0, "dave": 5_000, "frank": 0},
}


class CliError(Exception):
    """A problem the user can fix, shown as one line; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = REFUSED) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Reply:
    """What a command answers: an exit code, a JSON document, and how to say it to a person."""

    code: int
    data: Any
    human: str


# -- the parser ---------------------------------------------------------------------


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
        "BANK_TOKEN, RESONATE_URL (unset: the embedded store at STORE_PATH), RESONATE_TOKEN.",
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

    commands.add_parser(
        "audit", parents=[common], help="check both ledgers against the invariants (exit 1 if not)"
    )
    commands.add_parser("worker", parents=[common], help="run a worker until SIGTERM or Ctrl-C")

    for name, text in (
        ("demo", "start everything locally and run transfers, then the crash demo"),
        ("crash-demo", "kill a worker mid-transfer and watch the transfer finish anyway"),
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
    return parser


# -- entry point --------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (the console script exits with it)."""
    args = build_parser().parse_args(argv)
    # The flags may come before or after the command; absent, they are off.
    args.json = getattr(args, "json", False)
    args.debug = getattr(args, "debug", False)
    try:
        if args.command == "worker":
            return _run_worker()
        if args.command in ("demo", "crash-demo"):
            return _run_demo(args)
        settings = Settings.from_env()
        reply = asyncio.run(_dispatch(settings, args))
    except CliError as exc:
        return _fail(args, str(exc), exc.code)
    except ValueError as exc:  # Settings and requests name the bad value
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
            return await audit_command(settings)
    raise CliError(f"unknown command {args.command!r}")


def _run_worker() -> int:
    from orchestrator import worker

    worker.main()
    return OK


def _run_demo(args: argparse.Namespace) -> int:
    from orchestrator import crash_demo, demo

    run: Callable[..., int] = demo.main if args.command == "demo" else crash_demo.main
    return run(data_dir=args.data, lease_ttl=args.lease_ttl, debug=args.debug)


# -- reaching the banks and the store ------------------------------------------------


@contextlib.contextmanager
def reaching(client: BankClient) -> Iterator[None]:
    """Turn a bank that cannot be reached into one line that says which bank and where."""
    try:
        yield
    except BankUnavailable as exc:
        variable = BANK_URL_VARIABLE.get(client.name, "")
        where = f"{client.base_url} ({variable})" if variable else client.base_url
        if isinstance(exc, BankUnreachable):
            raise CliError(f"{client.name} bank not reachable at {where}") from exc
        raise CliError(f"{client.name} bank at {where} is not answering properly: {exc}") from exc
    except BankError as exc:
        raise CliError(str(exc)) from exc


@contextlib.asynccontextmanager
async def open_banks(settings: Settings) -> AsyncIterator[tuple[BankClient, BankClient]]:
    """One client per bank, named "source" and "target" (the names appear in errors)."""
    source, target = bank_clients(settings)
    async with source, target:
        yield source, target


async def ensure_store_reachable(settings: Settings) -> None:
    """Fail fast with the URL when a served promise store does not answer at all."""
    if settings.resonate_url is None:
        return
    try:
        async with httpx.AsyncClient(timeout=settings.bank_timeout) as http:
            await http.get(settings.resonate_url)
    except httpx.HTTPError:
        raise CliError(
            f"promise store not reachable at {settings.resonate_url} (RESONATE_URL)"
        ) from None


@contextlib.asynccontextmanager
async def promise_store(settings: Settings) -> AsyncIterator[Resonate]:
    """A client of the configured promise store, closed on the way out.

    Served (``RESONATE_URL``): send-only, it starts transfers and waits for
    workers to run them. Embedded: this process runs the transfers itself.
    """
    from orchestrator import runtime
    from promise_store import StoreLocked

    await ensure_store_reachable(settings)
    try:
        resonate = runtime.open_resonate(settings, role="client")
    except StoreLocked:
        raise CliError(
            f"the promise store at {settings.store_path} (STORE_PATH) is in use by another "
            "process, probably a worker; stop it, or set RESONATE_URL to a served store"
        ) from None
    try:
        yield resonate
    finally:
        await runtime.close_resonate(resonate)


# -- transfer ----------------------------------------------------------------------------


async def check_accounts(settings: Settings, source_account: str, target_account: str) -> None:
    """Both accounts exist and are open on their banks, or a CliError naming the problem."""
    async with open_banks(settings) as (source, target):
        for client, account_id in ((source, source_account), (target, target_account)):
            with reaching(client):
                account = await client.get_account(account_id)
            if account is None:
                raise CliError(f"account {account_id!r} does not exist on the {client.name} bank")
            if account.get("status") != "open":
                raise CliError(f"account {account_id!r} on the {client.name} bank is closed")


async def transfer_command(
    settings: Settings,
    *,
    source: str,
    target: str,
    amount: str,
    transfer_id: str | None,
    wait: bool,
) -> Reply:
    from orchestrator import transfers

    cents = money.parse_amount(amount)
    if source == target:
        raise CliError(f"source and target are the same account ({source!r})")
    if not wait and settings.resonate_url is None:
        raise CliError(
            "--no-wait needs a served promise store (RESONATE_URL): with the embedded store "
            "this process is the one that runs the transfer"
        )
    request = transfers.TransferRequest(
        transfer_id=transfer_id or transfers.new_transfer_id(),
        source_account=source,
        target_account=target,
        amount=cents,
    )
    async with promise_store(settings) as resonate:
        # A transfer that exists is re-attached to as it is: its accounts were
        # checked when it started and may have changed since (that is what
        # compensation is for).
        try:
            existing = await transfers.transfer_record(resonate, request.transfer_id)
            if existing is None:
                await check_accounts(settings, source, target)
            else:
                transfers.check_same_transfer(request, existing["request"])
            handle = await transfers.start_transfer(resonate, settings, request)
            if not wait:
                data = {"transfer_id": request.transfer_id, "status": "started"}
                return Reply(OK, data, f"transfer {request.transfer_id} started")
            result = await _wait_for_result(handle, settings)
        except transfers.TransferConflict as exc:
            raise CliError(str(exc)) from None
    return transfer_reply(result)


#: How long ``transfer`` waits quietly before saying what it is waiting for.
PATIENCE_SECONDS = 15.0


async def _wait_for_result(handle: TransferHandle, settings: Settings) -> dict[str, Any]:
    """Wait for the saga's result; say so on stderr now and then, so a wait is never a mystery."""
    waiting = asyncio.ensure_future(handle.result())
    waited = 0.0
    while True:
        done, _ = await asyncio.wait({waiting}, timeout=PATIENCE_SECONDS)
        if done:
            result: dict[str, Any] = waiting.result()
            return result
        waited += PATIENCE_SECONDS
        where = f"a worker in group {settings.group!r}" if settings.resonate_url else "the saga"
        print(
            f"crossbank: still waiting for transfer {handle.transfer_id} after {waited:.0f}s "
            f"(waiting on {where}; Ctrl-C stops waiting, the transfer is durable)",
            file=sys.stderr,
            flush=True,
        )


def transfer_reply(result: dict[str, Any]) -> Reply:
    code = OK if result["status"] == "committed" else NOT_OK
    return Reply(code, result, describe_result(result))


def describe_result(result: dict[str, Any]) -> str:
    """One or two lines a person reads to know where the money is."""
    amount = money.format_cents(result["amount"])
    route = f"{amount} from {result['source_account']} to {result['target_account']}"
    match result["status"]:
        case "committed":
            return f"transfer {result['transfer_id']}: committed\n  moved {route}"
        case "compensated":
            return (
                f"transfer {result['transfer_id']}: compensated ({result['reason']})\n"
                f"  the target bank did not take {route}; the debit was reversed, "
                f"so the {amount} is back in {result['source_account']}'s account"
            )
        case "failed":
            return (
                f"transfer {result['transfer_id']}: failed ({result['reason']})\n"
                f"  nothing moved: the source bank refused to debit {route}"
            )
    return f"transfer {result['transfer_id']}: {result['status']}"


# -- status --------------------------------------------------------------------------


async def status_command(settings: Settings, transfer_id: str) -> Reply:
    from orchestrator import saga, transfers

    async with promise_store(settings) as resonate:
        record = await transfers.transfer_record(
            resonate, transfer_id, attention_after=settings.attention_after
        )
        if record is not None:
            record["timeline"] = await _timeline(resonate, transfer_id, record["steps"])
    if record is None:
        return Reply(
            NOT_OK,
            {"transfer_id": transfer_id, "state": "unknown"},
            f"no transfer {transfer_id} in the promise store",
        )
    ledger: dict[str, Any] = {}
    async with open_banks(settings) as (source, target):
        steps: tuple[tuple[EntryKind, BankClient], ...] = (
            ("debit", source),
            ("credit", target),
            ("reversal", source),
        )
        for kind, client in steps:
            with reaching(client):
                ledger[kind] = await client.get_entry(saga.op_id(transfer_id, kind))
    view = {**record, "ledger": ledger, "status": _status_word(record)}
    return Reply(OK, view, describe_status(view))


async def _timeline(
    resonate: Resonate, transfer_id: str, steps: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """When the transfer and each of its steps began and settled (epoch ms), from their promises."""
    timeline = []
    for promise_id in [transfer_id, *(step["id"] for step in steps)]:
        promise = await resonate.promises.get(promise_id)
        timeline.append(
            {"id": promise_id, "created_at": promise.created_at, "settled_at": promise.settled_at}
        )
    return timeline


def _status_word(record: dict[str, Any]) -> str:
    if record["state"] == "resolved" and isinstance(record.get("result"), dict):
        return str(record["result"]["status"])
    if record["state"] == "pending":
        return "compensating" if record.get("compensating_since") else "in progress"
    return str(record["state"])


def describe_status(view: dict[str, Any]) -> str:
    request = view.get("request") or {}
    lines = [f"transfer {view['transfer_id']}: {view['status']}"]
    if view.get("needs_attention"):
        lines[0] += "  ** NEEDS ATTENTION: compensating for too long **"
    if request:
        lines.append(
            f"  {money.format_cents(request['amount'])} from {request['source_account']} "
            f"(source bank) to {request['target_account']} (target bank)"
        )
    result = view.get("result")
    if isinstance(result, dict) and result.get("reason"):
        lines.append(f"  reason: {result['reason']}")
    if view.get("error"):
        lines.append(f"  error: {view['error']}")
    times = {t["id"]: t for t in view.get("timeline", [])}
    root = times.get(view["transfer_id"], {})
    lines.append("  timeline (promise store):")
    lines.append(f"    {_ms_clock(root.get('created_at'))}  started")
    if not view["steps"]:
        lines.append("    (no step recorded yet: waiting for a worker)")
    for step in view["steps"]:
        at = times.get(step["id"], {})
        when = at.get("settled_at") or at.get("created_at")
        lines.append(f"    {_ms_clock(when)}  {step['id']:<26} {_describe_step(step)}")
    if root.get("settled_at"):
        lines.append(f"    {_ms_clock(root['settled_at'])}  done: {view['status']}")
    lines.append("  ledgers:")
    for kind, bank in (("debit", "source"), ("credit", "target"), ("reversal", "source")):
        lines.append(f"    {bank:<7} {kind:<9} {_describe_entry(view['ledger'].get(kind))}")
    return "\n".join(lines)


def _describe_step(step: dict[str, Any]) -> str:
    value = step.get("value")
    if step["state"] == "pending":
        return "running"
    if step["state"] != "resolved" or not isinstance(value, dict):
        return f"{step['state']}: {step.get('error') or ''}".rstrip(": ")
    name = value.get("step", "?")
    if name == "compensating":
        return f"compensating since {_clock(value.get('since'))} ({value.get('reason')})"
    if name == "finished":
        return f"finished: {value.get('status')}"
    outcome = value.get("status") or value.get("state")
    text = f"{name}: {outcome}"
    if value.get("code"):
        text += f" ({value['code']})"
    if value.get("settled_by"):
        text += f", settled by the {value['settled_by']}"
    return text


def _describe_entry(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "-"
    if entry.get("state") == "voided":
        return "voided (fenced: it never happened and never will)"
    if entry.get("state") != "applied":
        return str(entry.get("state"))
    row = entry.get("entry") or {}
    return (
        f"applied  {money.format_cents(row.get('amount', 0)):>10} on {row.get('account_id')}"
        f" at {row.get('created_at', '?')}"
    )


def _ms_clock(epoch_ms: int | None) -> str:
    """Epoch milliseconds as UTC ``HH:MM:SS.mmm``, the promise store's resolution."""
    if not epoch_ms:
        return " " * 12
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%H:%M:%S.%f")[:-3]


def _clock(epoch: float | None) -> str:
    if epoch is None:
        return "?"
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S")


# -- balances and accounts ---------------------------------------------------------------


async def read_accounts(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    async with open_banks(settings) as (source, target):
        accounts = {}
        for client in (source, target):
            with reaching(client):
                accounts[client.name] = sorted(
                    await client.list_accounts(), key=lambda a: str(a["account_id"])
                )
        return accounts


async def balances_command(settings: Settings) -> Reply:
    accounts = await read_accounts(settings)
    return Reply(OK, balances_data(accounts), describe_balances(accounts))


def balances_data(accounts: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {
        "banks": accounts,
        "total": sum(a["balance"] for bank in accounts.values() for a in bank),
        "opening_total": sum(
            a.get("opening_balance", 0) for bank in accounts.values() for a in bank
        ),
    }


def describe_balances(accounts: dict[str, list[dict[str, Any]]]) -> str:
    lines = [f"{'bank':<7} {'account':<16} {'status':<7} {'balance':>16}"]
    for bank, rows in accounts.items():
        if not rows:
            lines.append(f"{bank:<7} (no accounts)")
        for row in rows:
            lines.append(
                f"{bank:<7} {row['account_id']:<16} {row['status']:<7} "
                f"{money.format_cents(row['balance']):>16}"
            )
    data = balances_data(accounts)
    lines.append(
        f"{'total':<32} {money.format_cents(data['total']):>16}"
        f"  (opening balances: {money.format_cents(data['opening_total'])})"
    )
    return "\n".join(lines)


async def account_command(
    settings: Settings, account_id: str, *, bank: str, action: str, opening: str | None
) -> Reply:
    """Open (creating it if need be) or close an account; an opening balance never changes."""
    opening_cents = money.parse_amount(opening, allow_zero=True) if opening is not None else None
    async with open_banks(settings) as (source, target):
        client = source if bank == "source" else target
        with reaching(client):
            existing = await client.get_account(account_id)
            if existing is None and action == "close":
                raise CliError(f"account {account_id!r} does not exist on the {bank} bank")
            if existing is None:
                account = await client.put_account(account_id, "open", opening_cents or 0)
            else:
                fixed = existing.get("opening_balance")
                if opening_cents is not None and opening_cents != fixed:
                    raise CliError(
                        f"account {account_id!r} on the {bank} bank exists with opening balance "
                        f"{money.format_cents(fixed or 0)}; an opening balance cannot change"
                    )
                status = "open" if action == "open" else "closed"
                account = await client.put_account(account_id, status)
    text = (
        f"{bank} bank: account {account['account_id']} is {account['status']}, "
        f"balance {money.format_cents(account['balance'])}"
    )
    return Reply(OK, {"bank": bank, **account}, text)


async def seed_command(settings: Settings) -> Reply:
    """Make the demo accounts exist and be open; one that exists keeps its balance."""
    async with open_banks(settings) as (source, target):
        for client in (source, target):
            with reaching(client):
                for account_id, opening in SEED_ACCOUNTS[client.name].items():
                    if await client.get_account(account_id) is None:
                        await client.put_account(account_id, "open", opening_balance=opening)
                    else:
                        await client.put_account(account_id, "open")
    accounts = await read_accounts(settings)
    return Reply(
        OK, balances_data(accounts), "seeded demo accounts\n" + describe_balances(accounts)
    )


# -- audit ---------------------------------------------------------------------------------


async def audit_command(settings: Settings) -> Reply:
    try:
        ledgers = await audit.collect(settings)
    except BankUnavailable as exc:
        # BankClient messages start with the bank's name.
        bank = "source" if str(exc).startswith("source") else "target"
        url = settings.source_bank_url if bank == "source" else settings.target_bank_url
        raise CliError(f"{bank} bank not reachable at {url} ({BANK_URL_VARIABLE[bank]})") from exc
    except BankError as exc:
        raise CliError(str(exc)) from exc
    in_flight = await _in_flight(settings, ledgers)
    violations = audit.check(ledgers, in_flight=in_flight)
    return audit_reply(ledgers, violations, in_flight)


async def _in_flight(settings: Settings, ledgers: audit.Ledgers) -> set[str]:
    """Transfers whose debit stands alone and whose saga is still running (not a violation yet).

    Only consulted when the ledgers show such a debit, so an audit of settled
    ledgers never needs the promise store.
    """
    from orchestrator import transfers

    unsettled = audit_unsettled(ledgers)
    if not unsettled:
        return set()
    running: set[str] = set()
    async with promise_store(settings) as resonate:
        for transfer_id in sorted(unsettled):
            record = await transfers.transfer_record(resonate, transfer_id)
            if record is not None and record["state"] == "pending":
                running.add(transfer_id)
    return running


def audit_unsettled(ledgers: audit.Ledgers) -> set[str]:
    """Transfer ids with a debit and neither a credit nor a reversal."""
    steps: dict[str, set[str]] = {}
    for bank in ledgers.banks():
        for entry in bank.entries:
            parsed = audit.split_op_id(entry["op_id"])
            if parsed is not None:
                steps.setdefault(parsed[0], set()).add(parsed[1])
    return {tid for tid, kinds in steps.items() if kinds == {"debit"}}


def audit_reply(
    ledgers: audit.Ledgers, violations: list[audit.Violation], in_flight: set[str]
) -> Reply:
    entries = sum(len(bank.entries) for bank in ledgers.banks())
    accounts = sum(len(bank.accounts) for bank in ledgers.banks())
    total = sum(a["balance"] for bank in ledgers.banks() for a in bank.accounts)
    data = {
        "clean": not violations,
        "violations": [v.to_json() for v in violations],
        "in_flight": sorted(in_flight),
        "accounts": accounts,
        "entries": entries,
        "total_balance": total,
    }
    scope = f"{accounts} accounts, {entries} entries, total balance {money.format_cents(total)}"
    if in_flight:
        scope += f", {len(in_flight)} transfer(s) still in flight"
    if not violations:
        return Reply(OK, data, f"audit: clean ({scope})")
    counts = ", ".join(f"{n} {name}" for name, n in sorted(audit.summarize(violations).items()))
    lines = [f"audit: {len(violations)} violation(s): {counts} ({scope})"]
    for violation in violations:
        about = f" transfer {violation.transfer_id}" if violation.transfer_id else ""
        lines.append(f"  [{violation.invariant}]{about}: {violation.detail}")
        for entry in violation.entries:
            lines.append(
                f"      entry {entry.get('op_id')}: {entry.get('kind')} "
                f"{money.format_cents(entry.get('amount', 0))} on {entry.get('account_id')} "
                f"(seq {entry.get('seq')})"
            )
    return Reply(NOT_OK, data, "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
