"""The CLI's commands: each gathers what it needs from the banks and the store and answers a Reply.

A command raises :class:`CliError` for a problem the user can fix (one line,
with the exit status to use) and returns a :class:`Reply` otherwise: the exit
status, the data ``--json`` prints, and the text a person reads
(:mod:`orchestrator.cli.views`). Every check that can refuse a transfer runs
before the transfer is started, so a refused command leaves the ledgers and
the promise store untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator import audit, connection_errors, money, operator_log
from orchestrator.accounts import Account
from orchestrator.bank_client import (
    BANK_URL_VARIABLE,
    BankClient,
    BankError,
    BankUnavailable,
    BankUnreachable,
    EntryKind,
    bank_clients,
)
from orchestrator.cli.views import (
    balances_data,
    describe_audit,
    describe_balances,
    describe_result,
    describe_status,
    status_word,
)
from orchestrator.http_pool import ConnectionPool, Endpoint, ResponseLost
from orchestrator.records import op_id
from orchestrator.saga_versions import group_for
from orchestrator.settings import Settings

if TYPE_CHECKING:
    from resonate.resonate import Resonate

    from orchestrator.transfers import TransferHandle


OK = 0


NOT_OK = 1


REFUSED = 2


UNEXPECTED = 3


#: ``crossbank accounts seed``: demo accounts, opening balances in cents.
SEED_ACCOUNTS = (
    Account("source", "alice", 100_000),
    Account("source", "bob", 25_000),
    Account("source", "erin", 1_000),
    Account("target", "carol"),
    Account("target", "dave", 5_000),
    Account("target", "frank"),
)


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


@contextlib.asynccontextmanager
async def reaching(client: BankClient) -> AsyncIterator[None]:
    """Turn a bank that cannot be reached into one line that says which bank, where, and why."""
    try:
        yield
    except BankUnavailable as exc:
        raise CliError(await _why_unavailable(client, exc)) from exc
    except BankError as exc:
        raise CliError(str(exc)) from exc


async def _why_unavailable(client: BankClient, exc: BankUnavailable) -> str:
    variable = BANK_URL_VARIABLE.get(client.name, "")
    why = await why_unreachable(exc, client.endpoint, variable)
    if why is not None:
        return f"{client.name} bank: {why}"
    where = f"{client.base_url} ({variable})" if variable else client.base_url
    if isinstance(exc, BankUnreachable):
        return f"{client.name} bank not reachable at {where}"
    return f"{client.name} bank at {where} is not answering properly: {exc}"


async def why_unreachable(exc: BaseException, endpoint: Endpoint, variable: str) -> str | None:
    """A TLS mistake behind ``exc``, in words (see :mod:`orchestrator.connection_errors`)."""
    explained = connection_errors.explain(exc, endpoint, variable)
    if explained is not None:
        return explained
    if not _no_answer(exc):
        return None
    if endpoint.tls:
        if await connection_errors.speaks_plain_http(endpoint):
            return connection_errors.plain_http_message(endpoint, variable)
    elif await connection_errors.speaks_tls(endpoint):
        return connection_errors.speaks_tls_message(endpoint, variable)
    return None


def _no_answer(exc: BaseException | None) -> bool:
    """The server closed the connection, or kept silent, without a response.

    What a TLS port does to a plain request, and a plain one to a TLS hello
    (it waits for the end of a request head that never comes, or resets).
    """
    while exc is not None:
        if isinstance(exc, (ResponseLost, ConnectionResetError, TimeoutError)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@contextlib.asynccontextmanager
async def open_banks(settings: Settings) -> AsyncIterator[tuple[BankClient, BankClient]]:
    """One client per bank, named "source" and "target" (the names appear in errors)."""
    source, target = bank_clients(settings)
    async with source, target:
        yield source, target


async def ensure_store_reachable(settings: Settings) -> None:
    """Fail fast, naming the setting, when the served store or Postgres cannot serve transfers."""
    if settings.resonate_pg_dsn is not None:
        from orchestrator.postgres_check import DatabaseNotReady, check_resonate_database

        try:
            await check_resonate_database(
                settings.resonate_pg_dsn, connect_timeout=settings.bank_timeout
            )
        except DatabaseNotReady as exc:
            raise CliError(str(exc)) from None
        return
    if settings.resonate_url is None:
        return
    endpoint = Endpoint.parse(settings.resonate_url)
    pool = ConnectionPool(endpoint, tls=settings.tls_for(endpoint.url))
    head = f"GET {endpoint.prefix}/health HTTP/1.1\r\nHost: {endpoint.netloc}\r\n\r\n".encode()
    try:
        async with asyncio.timeout(settings.bank_timeout):
            await pool.exchange(await pool.take(), head, b"")  # any answer: the store is there
    except (OSError, TimeoutError) as exc:
        why = await why_unreachable(exc, endpoint, "RESONATE_URL")
        raise CliError(
            why or f"promise store not reachable at {settings.resonate_url} (RESONATE_URL)"
        ) from None
    finally:
        pool.close()


@contextlib.asynccontextmanager
async def promise_store(settings: Settings) -> AsyncIterator[Resonate]:
    """A client of the configured promise store, closed on the way out.

    Served (``RESONATE_URL`` or ``RESONATE_PG_DSN``): send-only, it starts transfers and waits for
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


async def check_accounts(settings: Settings, source_account: str, target_account: str) -> None:
    """Both accounts exist and are open on their banks, or a CliError naming the problem."""
    async with open_banks(settings) as (source, target):
        for client, account_id in ((source, source_account), (target, target_account)):
            async with reaching(client):
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
    from orchestrator.saga_versions import starting_version

    starting_version(settings)  # a SAGA_VERSION this code lacks is refused before anything
    cents = money.parse_amount(amount)
    if source == target:
        raise CliError(f"source and target are the same account ({source!r})")
    if not wait and not settings.served:
        raise CliError(
            "--no-wait needs a served promise store (RESONATE_URL) or Resonate on Postgres "
            "(RESONATE_PG_DSN): with the embedded store "
            "this process is the one that runs the transfer"
        )
    try:
        request = transfers.TransferRequest(
            transfer_id=transfer_id or transfers.new_transfer_id(),
            source_account=source,
            target_account=target,
            amount=cents,
        )
    except transfers.InvalidTransferRequest as exc:  # the ids and amount the user typed
        raise CliError(str(exc)) from None
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
        group = group_for(settings.group, handle.version)
        where = f"a worker in group {group!r}" if settings.served else "the saga"
        print(
            f"crossbank: still waiting for transfer {handle.transfer_id} after {waited:.0f}s "
            f"(waiting on {where}; Ctrl-C stops waiting, the transfer is durable)",
            file=sys.stderr,
            flush=True,
        )


def transfer_reply(result: dict[str, Any]) -> Reply:
    code = OK if result["status"] == "committed" else NOT_OK
    return Reply(code, result, describe_result(result))


async def status_command(settings: Settings, transfer_id: str) -> Reply:
    async with promise_store(settings) as resonate, open_banks(settings) as (source, target):
        view = await transfer_view(
            resonate, source, target, transfer_id, attention_after=settings.attention_after
        )
    if view is None:
        return Reply(
            NOT_OK,
            {"transfer_id": transfer_id, "state": "unknown"},
            f"no transfer {transfer_id} in the {kept_in(settings)}",
        )
    return Reply(OK, view, describe_status(view, kept_in=kept_in(settings)))


async def transfer_view(
    resonate: Resonate,
    source: BankClient,
    target: BankClient,
    transfer_id: str,
    *,
    attention_after: float | None,
) -> dict[str, Any] | None:
    """A transfer as ``crossbank status`` shows it, or None when the store has no such id.

    The store's record (:func:`orchestrator.transfers.transfer_record`) with its
    ``timeline`` (when each promise began and settled), ``ledger`` (each op id
    as its bank has it), ``status`` in words and ``operator_actions`` (the
    operator record, :mod:`orchestrator.operator_log`). Shared with the console.
    """
    from orchestrator import transfers

    record = await transfers.transfer_record(resonate, transfer_id, attention_after=attention_after)
    if record is None:
        return None
    record["timeline"] = await _timeline(resonate, transfer_id, record["steps"])
    ledger: dict[str, Any] = {}
    steps: tuple[tuple[EntryKind, BankClient], ...] = (
        ("debit", source),
        ("credit", target),
        ("reversal", source),
    )
    for kind, client in steps:
        async with reaching(client):
            ledger[kind] = await client.get_entry(op_id(transfer_id, kind))
    actions = [a.to_json() for a in await operator_log.actions_on(resonate, transfer_id)]
    return {
        **record,
        "ledger": ledger,
        "status": status_word(record),
        "operator_actions": actions,
    }


def kept_in(settings: Settings) -> str:
    """Where transfers and their timelines are kept, in the words of ``crossbank status``."""
    return "Resonate on Postgres" if settings.resonate_pg_dsn is not None else "promise store"


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


async def read_accounts(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    async with open_banks(settings) as (source, target):
        accounts = {}
        for client in (source, target):
            async with reaching(client):
                accounts[client.name] = sorted(
                    await client.list_accounts(), key=lambda a: str(a["account_id"])
                )
        return accounts


async def balances_command(settings: Settings) -> Reply:
    accounts = await read_accounts(settings)
    return Reply(OK, balances_data(accounts), describe_balances(accounts))


async def account_command(
    settings: Settings, account_id: str, *, bank: str, action: str, opening: str | None
) -> Reply:
    """Open (creating it if need be) or close an account; an opening balance never changes."""
    opening_cents = money.parse_amount(opening, allow_zero=True) if opening is not None else None
    async with open_banks(settings) as (source, target):
        client = source if bank == "source" else target
        async with reaching(client):
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
        for account in SEED_ACCOUNTS:
            client = source if account.bank == "source" else target
            async with reaching(client):
                if await client.get_account(account.account_id) is None:
                    await client.put_account(account.account_id, "open", account.opening_balance)
                else:
                    await client.put_account(account.account_id, "open")
    accounts = await read_accounts(settings)
    return Reply(
        OK, balances_data(accounts), "seeded demo accounts\n" + describe_balances(accounts)
    )


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
    return Reply(OK if not violations else NOT_OK, data, describe_audit(data, violations))
