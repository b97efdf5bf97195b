"""Check both ledgers against the invariants (INVARIANTS.md).

The banks share no transaction, so nothing but an audit can say the system as
a whole kept its promises. :func:`collect` reads both ledgers (the only I/O);
:func:`check` is pure, so every violation kind is testable from hand-built
ledgers. Each :class:`Violation` names the invariant, the transfer (when there
is one) and the entries that prove it.

The audit reads only the ledgers: it trusts op ids to say which transfer an
entry belongs to (``{transfer_id}-debit``, ``-credit``, ``-reversal``). An
entry whose op id fits none of them is money no transfer explains, and is
reported as such.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from orchestrator import records
from orchestrator.bank_client import BankClient, bank_clients
from orchestrator.settings import Settings

CONSERVATION = "conservation"
PER_TRANSFER = "per_transfer"
EXACTLY_ONCE = "exactly_once"
NO_NEGATIVE_BALANCE = "no_negative_balance"
BALANCE_MATCHES_ENTRIES = "balance_matches_entries"
AMOUNTS_MATCH = "amounts_match"
UNEXPLAINED_ENTRY = "unexplained_entry"

#: Which bank each op kind belongs on, and the kind of entry it must be.
STEP_PLACEMENT = {"debit": "source", "credit": "target", "reversal": "source"}

_SIGN = {"debit": -1, "credit": 1, "reversal": 1}


@dataclass(frozen=True)
class BankLedger:
    """One bank's accounts and its entries, in ledger order."""

    name: str
    accounts: list[dict[str, Any]]
    entries: list[dict[str, Any]]


@dataclass(frozen=True)
class Ledgers:
    """Both banks' ledgers, read at (roughly) the same time."""

    source: BankLedger
    target: BankLedger

    def banks(self) -> tuple[BankLedger, BankLedger]:
        return (self.source, self.target)


@dataclass(frozen=True)
class Violation:
    """One broken invariant: which, for which transfer, why, and the entries involved."""

    invariant: str
    transfer_id: str | None
    detail: str
    entries: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "invariant": self.invariant,
            "transfer_id": self.transfer_id,
            "detail": self.detail,
            "entries": self.entries,
        }


def split_op_id(op_id: str) -> tuple[str, str] | None:
    """``"t-42-credit"`` -> ``("t-42", "credit")``; None when it is no transfer's op id."""
    transfer_id, dash, step = op_id.rpartition("-")
    if not dash or not transfer_id or step not in STEP_PLACEMENT:
        return None
    return transfer_id, step


def check(ledgers: Ledgers, *, in_flight: Collection[str] = ()) -> list[Violation]:
    """Every violation of the invariants visible in ``ledgers``.

    ``in_flight`` names transfers known not to be terminal yet: their debit may
    still lack its credit or reversal, and the money they hold between the banks
    is allowed for in the conservation sum. Everything else must be settled.
    """
    violations: list[Violation] = []
    for bank in ledgers.banks():
        violations += _check_exactly_once(bank)
        violations += _check_balances(bank)
    steps, unexplained = _steps_by_transfer(ledgers)
    violations += unexplained
    for transfer_id, by_step in sorted(steps.items()):
        violations += _check_transfer(transfer_id, by_step, in_flight=transfer_id in in_flight)
    violations += _check_conservation(ledgers, steps, in_flight)
    return violations


def _check_exactly_once(bank: BankLedger) -> list[Violation]:
    by_op: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in bank.entries:
        by_op[entry["op_id"]].append(entry)
    return [
        Violation(
            EXACTLY_ONCE,
            _transfer_of(op_id),
            f"op {op_id} applied {len(entries)} times on the {bank.name} bank",
            entries,
        )
        for op_id, entries in by_op.items()
        if len(entries) > 1
    ]


def _check_balances(bank: BankLedger) -> list[Violation]:
    """Each account: balance == opening + its entries, never negative, running balances agree."""
    violations: list[Violation] = []
    entries_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in bank.entries:
        entries_of[entry["account_id"]].append(entry)
    known = {account["account_id"] for account in bank.accounts}
    for account_id in sorted(set(entries_of) - known):
        violations.append(
            Violation(
                BALANCE_MATCHES_ENTRIES,
                None,
                f"entries on the {bank.name} bank for account {account_id}, which it does not list",
                entries_of[account_id],
            )
        )
    for account in bank.accounts:
        account_id = account["account_id"]
        entries = sorted(entries_of.get(account_id, []), key=lambda e: e["seq"])
        running = account["opening_balance"]
        for entry in entries:
            running += _signed(entry)
            if entry.get("balance_after") is not None and entry["balance_after"] != running:
                violations.append(
                    Violation(
                        BALANCE_MATCHES_ENTRIES,
                        _transfer_of(entry["op_id"]),
                        f"{bank.name} account {account_id}: entry {entry['op_id']} says the "
                        f"balance after it was {entry['balance_after']}, the entries add up "
                        f"to {running}",
                        [entry],
                    )
                )
            if running < 0:
                violations.append(
                    Violation(
                        NO_NEGATIVE_BALANCE,
                        _transfer_of(entry["op_id"]),
                        f"{bank.name} account {account_id} went to {running} after "
                        f"{entry['op_id']}",
                        [entry],
                    )
                )
        if running != account["balance"]:
            violations.append(
                Violation(
                    BALANCE_MATCHES_ENTRIES,
                    None,
                    f"{bank.name} account {account_id}: balance {account['balance']} but "
                    f"opening {account['opening_balance']} plus its entries is {running}",
                    entries,
                )
            )
        if account["balance"] < 0:
            violations.append(
                Violation(
                    NO_NEGATIVE_BALANCE,
                    None,
                    f"{bank.name} account {account_id} has a negative balance {account['balance']}",
                    [],
                )
            )
    return violations


_Steps = dict[str, dict[str, list[dict[str, Any]]]]


def _steps_by_transfer(ledgers: Ledgers) -> tuple[_Steps, list[Violation]]:
    """Group entries by transfer and step; entries in the wrong place or of no transfer are violations."""
    steps: _Steps = defaultdict(lambda: defaultdict(list))
    violations: list[Violation] = []
    for bank in ledgers.banks():
        for entry in bank.entries:
            parsed = split_op_id(entry["op_id"])
            if parsed is None:
                violations.append(
                    Violation(
                        UNEXPLAINED_ENTRY,
                        None,
                        f"{entry['kind']} {entry['op_id']} on the {bank.name} bank belongs to "
                        "no transfer",
                        [entry],
                    )
                )
                continue
            transfer_id, step = parsed
            if STEP_PLACEMENT[step] != bank.name or entry["kind"] != step:
                violations.append(
                    Violation(
                        UNEXPLAINED_ENTRY,
                        transfer_id,
                        f"{entry['op_id']} is a {entry['kind']} on the {bank.name} bank; a "
                        f"{step} belongs on the {STEP_PLACEMENT[step]} bank as a {step}",
                        [entry],
                    )
                )
                continue
            steps[transfer_id][step].append(entry)
    return steps, violations


def _check_transfer(
    transfer_id: str, by_step: dict[str, list[dict[str, Any]]], *, in_flight: bool
) -> list[Violation]:
    """The transfer's entries make one of the saga's outcomes (:func:`records.decide`), exactly."""
    debit = _first(by_step.get("debit"))
    credit = _first(by_step.get("credit"))
    reversal = _first(by_step.get("reversal"))
    involved = [e for e in (debit, credit, reversal) if e is not None]
    decision = records.decide(records.TransferSteps.on_ledgers(transfer_id, by_step))
    extra = sorted(set(by_step) - decision.applied)
    if extra:
        # Entries beyond what the outcome rests on: without a debit the transfer
        # failed, so any entry is too many; with one, only a reversal can be
        # extra (a credit commits the transfer), and then it was both.
        detail = (
            f"a {' and a '.join(extra)} applied with no debit"
            if debit is None
            else "both credited and reversed"
        )
        return [Violation(PER_TRANSFER, transfer_id, detail, involved)]
    if not decision.finished:
        if in_flight:
            return []
        return [
            Violation(
                PER_TRANSFER,
                transfer_id,
                "debited but neither credited nor reversed",
                involved,
            )
        ]
    settlement = credit or reversal
    if debit is None or settlement is None:
        return []  # failed: nothing moved
    violations: list[Violation] = []
    if settlement["amount"] != debit["amount"]:
        violations.append(
            Violation(
                AMOUNTS_MATCH,
                transfer_id,
                f"debit of {debit['amount']} but {settlement['kind']} of {settlement['amount']}",
                involved,
            )
        )
    if reversal is not None and reversal["account_id"] != debit["account_id"]:
        violations.append(
            Violation(
                AMOUNTS_MATCH,
                transfer_id,
                f"debit from {debit['account_id']} reversed into {reversal['account_id']}",
                involved,
            )
        )
    return violations


def _check_conservation(
    ledgers: Ledgers, steps: _Steps, in_flight: Collection[str]
) -> list[Violation]:
    opening = sum(a["opening_balance"] for bank in ledgers.banks() for a in bank.accounts)
    balances = sum(a["balance"] for bank in ledgers.banks() for a in bank.accounts)
    between_banks = 0
    for transfer_id in in_flight:
        by_step = steps.get(transfer_id, {})
        debit = _first(by_step.get("debit"))
        decision = records.decide(records.TransferSteps.on_ledgers(transfer_id, by_step))
        if debit and not decision.finished:  # debited, neither credited nor reversed
            between_banks += debit["amount"]
    if balances + between_banks == opening:
        return []
    in_transit = f" plus {between_banks} in flight" if between_banks else ""
    return [
        Violation(
            CONSERVATION,
            None,
            f"balances sum to {balances}{in_transit}, opening balances to {opening}: "
            f"{balances + between_banks - opening:+d} cents "
            f"{'created' if balances + between_banks > opening else 'destroyed'}",
            [],
        )
    ]


def _first(entries: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    return entries[0] if entries else None


def _signed(entry: dict[str, Any]) -> int:
    return int(_SIGN.get(entry["kind"], 0) * entry["amount"])


def _transfer_of(op_id: str) -> str | None:
    parsed = split_op_id(op_id)
    return parsed[0] if parsed else None


async def read_ledger(client: BankClient, name: str) -> BankLedger:
    """All of one bank's accounts and entries (entries page by page)."""
    accounts = await client.list_accounts()
    entries = [entry async for entry in client.iter_entries()]
    return BankLedger(name, accounts, entries)


async def collect(settings: Settings) -> Ledgers:
    """Read both banks' ledgers over HTTP."""
    source, target = bank_clients(settings)
    async with source, target:
        return Ledgers(await read_ledger(source, "source"), await read_ledger(target, "target"))


def summarize(violations: Iterable[Violation]) -> dict[str, int]:
    """How many violations of each invariant, for a one-line verdict."""
    counts: dict[str, int] = defaultdict(int)
    for violation in violations:
        counts[violation.invariant] += 1
    return dict(counts)
