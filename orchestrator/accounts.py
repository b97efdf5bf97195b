"""Accounts to open on the banks: one type for the demo's seed, the chaos campaign and the benchmarks."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from orchestrator.bank_client import BankClient, BankName


@dataclass(frozen=True)
class Account:
    """An account to open on one bank, with its opening balance in cents.

    The opening balance only counts when the bank creates the account; an
    account that exists keeps its balance (and a different opening balance
    is refused with 409 ``opening_balance_fixed``).
    """

    bank: BankName
    account_id: str
    opening_balance: int = 0
    status: Literal["open", "closed"] = "open"


async def open_accounts(
    source: BankClient, target: BankClient, accounts: Iterable[Account]
) -> None:
    """Create (or update) each account on its bank, in order."""
    for account in accounts:
        client = source if account.bank == "source" else target
        await client.put_account(account.account_id, account.status, account.opening_balance)


def opening_total(accounts: Iterable[Account]) -> int:
    """What the accounts hold between them once opened: the total conservation checks against."""
    return sum(account.opening_balance for account in accounts)
