"""What the console shows, read from the banks and the store: the page's state, section by section.

Nothing here is the truth: each poll asks both banks for their accounts
(``GET /accounts``) and their new entries (``GET /entries?after=``, paged),
and asks the store (crossbank's, or Resonate on Postgres: only promise reads,
which both answer) for each transfer that is not finished yet. Transfer ids
come from the ledgers' op ids (``{id}-debit``, ...) and from the transfers
this console started; finished transfers are not read again (a settled
promise never changes). A bank that does not answer is shown as down, never
as a zero balance.

Each poll also reads both banks' ``GET /metrics`` for the live charts
(:mod:`orchestrator.console.charts`): the target bank first, then the
source bank, so that every credit counted has its debit counted too and
money in flight is never below zero.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from orchestrator import audit, money
from orchestrator.bank_client import BANK_URL_VARIABLE, BankClient, BankError
from orchestrator.cli import commands, views
from orchestrator.console import charts
from orchestrator.console.config import ConsoleSettings, console_operator
from orchestrator.settings import Settings, redact_dsn

if TYPE_CHECKING:
    from resonate.resonate import Resonate

#: A transfer's final statuses.
TERMINAL = frozenset({"committed", "compensated", "failed"})
#: A transfer's op kinds in the order the saga writes them.
OP_ORDER = ("debit", "credit", "reversal")
#: A promise id no transfer has (transfer ids start with a letter or digit): its
#: read tells whether the store answers.
PROBE_ID = "-console-probe"
#: Entries read per page while following a ledger.
PAGE_SIZE = 500


@dataclass
class Tracked:
    """What the console remembers of one transfer between polls: where to find it, not money."""

    transfer_id: str
    ops: set[str] = field(default_factory=set)
    row: dict[str, Any] | None = None


@dataclass
class BankCursor:
    """How far the console has read one bank's ledger (the last ``seq`` seen)."""

    after: int | None = None


#: Gives the workers section (the local demo's processes), or None when not local.
WorkersProbe = Callable[[], Awaitable[dict[str, Any] | None]]


class Reader:
    """Reads the page's state from the banks and the store; one per console."""

    def __init__(
        self,
        settings: Settings,
        console: ConsoleSettings,
        resonate: Resonate,
        source: BankClient,
        target: BankClient,
        *,
        workers: WorkersProbe | None = None,
        local: bool = False,
    ) -> None:
        self.settings = settings
        self.console = console
        self.resonate = resonate
        self.banks = {"source": source, "target": target}
        self.workers = workers
        self.local = local
        self.cursors = {"source": BankCursor(), "target": BankCursor()}
        self.tracked: OrderedDict[str, Tracked] = OrderedDict()
        self.store_error: str | None = None
        self.charts = charts.Charts()

    # -- what the console itself started ----------------------------------------------

    def track(self, transfer_id: str) -> None:
        """Follow a transfer this console started (it may have no ledger entry yet, or ever)."""
        self._tracked(transfer_id)

    def _tracked(self, transfer_id: str) -> Tracked:
        found = self.tracked.get(transfer_id)
        if found is None:
            found = self.tracked[transfer_id] = Tracked(transfer_id)
            while len(self.tracked) > self.console.max_transfers:
                self.tracked.popitem(last=False)  # the oldest: the page lists the newest
        return found

    # -- one poll ----------------------------------------------------------------------

    async def snapshot(self) -> dict[str, Any]:
        """Every section of the page, as the banks and the store answer now."""
        banks, transfers, workers = await self._read()
        # Then the charts: never between a bank's entries and the store's read of the
        # transfers they name (a transfer that committed in between would show no entries).
        await self._sample(banks)
        return {
            "system": self._system(),
            "banks": banks,
            "totals": _totals(banks),
            "transfers": transfers,
            "workers": workers,
            "charts": self.charts.section(self.console.poll_interval),
        }

    async def _read(
        self,
    ) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]], dict[str, Any] | None]:
        """Both banks, then the transfers they and this console name, then the workers."""
        source, target = await asyncio.gather(self._bank("source"), self._bank("target"))
        transfers = await self._transfers()
        workers = await self.workers() if self.workers is not None else None
        if workers is not None:
            _name_workers(transfers, workers)
        return {"source": source, "target": target}, transfers, workers

    async def _sample(self, banks: dict[str, dict[str, Any]]) -> None:
        """Read both banks' metrics into the charts' ring: the target bank's first (see above).

        A bank that did not answer this poll's reads is not asked again (a bank that hangs
        would hold the poll up twice): it is down on the charts too.
        """
        at = time.monotonic()
        figures: dict[str, charts.BankFigures | None] = {}
        errors: dict[str, str | None] = {}
        for name in ("target", "source"):
            if not banks[name]["up"]:
                figures[name], errors[name] = None, banks[name]["error"]
                continue
            try:
                text = await asyncio.wait_for(
                    self.banks[name].metrics_text(), timeout=self.console.read_timeout
                )
                figures[name], errors[name] = charts.parse(text), None
            except BankError as exc:
                figures[name], errors[name] = None, str(exc)
            except TimeoutError:
                timeout = self.console.read_timeout
                figures[name] = None
                errors[name] = f"the {name} bank's /metrics did not come within {timeout:g}s"
            except charts.MetricsUnreadable as exc:
                figures[name], errors[name] = None, f"the {name} bank's /metrics: {exc}"
        self.charts.add(charts.Sample(at, figures), errors)

    def _system(self) -> dict[str, Any]:
        settings = self.settings
        if settings.resonate_pg_dsn is not None:
            store = {"kind": "Resonate on Postgres", "where": redact_dsn(settings.resonate_pg_dsn)}
        else:
            store = {"kind": "promise store", "where": settings.resonate_url or ""}
        return {
            "store": {**store, "up": self.store_error is None, "error": self.store_error},
            "group": settings.group,
            # Who the records of this console's actions name.
            "operator": console_operator(settings.operator),
            "read_only": self.console.read_only,
            "local": self.local,
            "attention_after": settings.attention_after,
            "poll_interval": self.console.poll_interval,
        }

    async def _bank(self, name: str) -> dict[str, Any]:
        client = self.banks[name]
        shown: dict[str, Any] = {
            "name": name,
            "url": client.base_url,
            "variable": BANK_URL_VARIABLE[name],
        }
        try:
            async with commands.reaching(client):
                accounts = sorted(await client.list_accounts(), key=lambda a: str(a["account_id"]))
                await self._follow(name, client)
                holds = await _holds(client) if self.local else []
        except commands.CliError as exc:
            return {**shown, "up": False, "error": str(exc), "accounts": None, "holds": []}
        rows = [{**a, "balance_text": money.format_cents(a["balance"])} for a in accounts]
        total = sum(a["balance"] for a in accounts)
        opening = sum(a.get("opening_balance", 0) for a in accounts)
        return {
            **shown,
            "up": True,
            "error": None,
            "accounts": rows,
            "total": total,
            "total_text": money.format_cents(total),
            "opening_total": opening,
            "holds": holds,
        }

    async def _follow(self, name: str, client: BankClient) -> None:
        """Read the entries added since the last poll (at most ``max_entries`` now)."""
        cursor = self.cursors[name]
        budget = self.console.max_entries
        async for entry in client.iter_entries(page_size=PAGE_SIZE, after=cursor.after):
            cursor.after = int(entry["seq"])
            parsed = audit.split_op_id(str(entry["op_id"]))
            if parsed is not None:
                tracked = self._tracked(parsed[0])
                tracked.ops.add(parsed[1])
                if tracked.row is not None and parsed[1] not in tracked.row["ops"]:
                    tracked.row = None  # re-read it: a step landed since
            budget -= 1
            if budget <= 0:
                return  # the rest next poll: one poll's work stays bounded

    async def _transfers(self) -> list[dict[str, Any]]:
        rows = []
        self.store_error = None
        unfinished = [t for t in self.tracked.values() if t.row is None or not t.row["settled"]]
        for tracked in unfinished:
            row = await self._store_read(self._row(tracked))
            if row is None:
                break  # the store is not answering: the rest keep their last known rows
            tracked.row = row
        if not unfinished:
            await self._store_read(self._probe())  # nothing to read: still say if it is down
        for tracked in list(self.tracked.values()):
            if tracked.row is not None:
                rows.append({**tracked.row, "ops": _in_order(tracked.ops)})
        rows.sort(key=lambda row: row.get("started_at") or 0, reverse=True)
        return rows

    async def _store_read[T](self, read: Awaitable[T]) -> T | None:
        """``await read`` within ``CONSOLE_READ_TIMEOUT``; None, with the store marked down, if not."""
        try:
            return await asyncio.wait_for(read, timeout=self.console.read_timeout)
        except TimeoutError:
            self.store_error = (
                f"the {self._kept_in()} did not answer within {self.console.read_timeout:g}s"
            )
        except Exception as exc:
            self.store_error = f"the {self._kept_in()} answered an error: {exc}"
        return None

    async def _probe(self) -> bool:
        """One promise read that both backends answer (404 for an id nobody uses)."""
        from orchestrator import transfers

        await transfers.transfer_record(self.resonate, PROBE_ID)
        return True

    def _kept_in(self) -> str:
        return commands.kept_in(self.settings)

    async def _row(self, tracked: Tracked) -> dict[str, Any]:
        from orchestrator import transfers

        transfer_id = tracked.transfer_id
        record = await transfers.transfer_record(
            self.resonate, transfer_id, attention_after=self.settings.attention_after
        )
        if record is None:
            return {
                "transfer_id": transfer_id,
                "status": "not in the store",
                "category": "unknown",
                "needs_attention": False,
                "started_at": None,
                "settled": False,
                "ops": _in_order(tracked.ops),
            }
        root = await self.resonate.promises.get(transfer_id)
        request = record.get("request") or {}
        result = record.get("result") if isinstance(record.get("result"), dict) else {}
        status = views.status_word(record)
        return {
            "transfer_id": transfer_id,
            "status": status,
            "category": _category(record["status"], bool(record["needs_attention"])),
            "needs_attention": record["needs_attention"],
            "reason": (result or {}).get("reason"),
            "amount": request.get("amount"),
            "amount_text": money.format_cents(request["amount"]) if "amount" in request else "",
            "source_account": request.get("source_account"),
            "target_account": request.get("target_account"),
            "started_at": root.created_at,
            "started_text": views.ms_clock(root.created_at),
            "settled_at": root.settled_at,
            # Its promises never change again: not read again. (A pending root may
            # already decide "failed" from its steps; its result is still to come.)
            "settled": record["state"] != "pending",  # the read the result came with
            "ops": _in_order(tracked.ops),
        }

    # -- one transfer in full -------------------------------------------------------------

    async def detail(self, transfer_id: str) -> dict[str, Any] | None:
        """``crossbank status ID`` as rows for the page; None when the store has no such id."""
        source, target = self.banks["source"], self.banks["target"]
        view = await commands.transfer_view(
            self.resonate,
            source,
            target,
            transfer_id,
            attention_after=self.settings.attention_after,
        )
        if view is None:
            return None
        request = view.get("request") or {}
        result = view.get("result") if isinstance(view.get("result"), dict) else {}
        return {
            "transfer_id": transfer_id,
            "status": view["status"],
            "needs_attention": view["needs_attention"],
            "reason": (result or {}).get("reason"),
            # Who cancelled it, when and why (the bank's note on the void), if an operator did.
            "cancelled": (result or {}).get("cancelled"),
            # Its root promise is settled: no cancel or retry can change it now.
            "finished": view["state"] != "pending",
            # It sleeps between two attempts now: ``crossbank retry`` makes the next one now.
            "waiting": any(
                step.get("timer") and step["state"] == "pending" for step in view["steps"]
            ),
            "route": (
                f"{money.format_cents(request['amount'])} from {request['source_account']} "
                f"(source bank) to {request['target_account']} (target bank)"
                if request
                else ""
            ),
            "timeline": [
                {**row, "at_text": views.ms_clock(row["at"])} for row in views.timeline_rows(view)
            ],
            "ledger": views.ledger_rows(view),
            # The operator record (cancel, retry, kill, hold, release), oldest first.
            "operator_actions": [
                {**action, "at_text": _seconds_clock(action["at"])}
                for action in view.get("operator_actions") or []
            ],
            "kept_in": self._kept_in(),
            "text": views.describe_status(view, kept_in=self._kept_in()),
        }


def _seconds_clock(epoch: float) -> str:
    """Epoch seconds as UTC ``YYYY-MM-DD HH:MM:SS``, as ``crossbank status`` lists actions."""
    return datetime.fromtimestamp(float(epoch), UTC).strftime("%Y-%m-%d %H:%M:%S")


def _in_order(ops: set[str]) -> list[str]:
    return sorted(ops, key=lambda kind: OP_ORDER.index(kind) if kind in OP_ORDER else len(OP_ORDER))


def _category(status: str, needs_attention: bool) -> str:
    """The page's filter a transfer falls in."""
    if needs_attention:
        return "attention"
    if status in TERMINAL:
        return status
    return "in_progress"


def _totals(banks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Both banks' balances summed, and the opening balances they must add up to."""
    down = [name for name, bank in banks.items() if not bank["up"]]
    if down:
        return {"known": False, "why": f"the {' and '.join(down)} bank is down: no total"}
    total = sum(bank["total"] for bank in banks.values())
    opening = sum(bank["opening_total"] for bank in banks.values())
    return {
        "known": True,
        "total": total,
        "total_text": money.format_cents(total),
        "opening_total": opening,
        "opening_text": money.format_cents(opening),
        "equal": total == opening,
    }


async def _holds(client: BankClient) -> list[dict[str, Any]]:
    """The requests the bank holds now (its fault API; absent when faults are off)."""
    try:
        return await client.holds()
    except BankError:
        return []


def _name_workers(transfers: list[dict[str, Any]], workers: dict[str, Any]) -> None:
    """Put on each transfer row the name of the live worker running it, if any."""
    runner = {tid: w["name"] for w in workers["workers"] if w["alive"] for tid in w["running"]}
    for row in transfers:
        row["worker"] = runner.get(row["transfer_id"])
