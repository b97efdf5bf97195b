"""Two fresh banks as real processes, seeded with the workload's accounts.

Every system in a run talks to the same two banks, so bank speed is a
constant of the comparison; distinct transfer ids keep the systems' entries
apart. After each system the harness checks conservation on the ledgers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from bench.workload import source_accounts, target_accounts
from orchestrator.accounts import Account, opening_total
from orchestrator.local.system import BANKS, LocalSystem
from orchestrator.settings import Settings


@dataclass(frozen=True)
class BankUrls:
    source: str
    target: str
    token: str | None = None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


class LedgerError(AssertionError):
    """The banks' ledgers break an invariant after a system ran."""


def _seed(client: requests.Session, base_url: str, accounts: Sequence[Account]) -> None:
    """Open ``accounts`` over plain HTTP: the harness runs inside an event loop of its own."""
    for account in accounts:
        response = client.put(
            f"{base_url}/accounts/{account.account_id}",
            json={"status": account.status, "opening_balance": account.opening_balance},
            timeout=30.0,
        )
        if response.status_code not in (200, 201):
            raise RuntimeError(
                f"seeding {account.account_id} at {base_url} failed: "
                f"{response.status_code} {response.text}"
            )


def _balances(client: requests.Session, base_url: str, accounts: Sequence[Account]) -> list[int]:
    balances = []
    for account in accounts:
        response = client.get(f"{base_url}/accounts/{account.account_id}", timeout=30.0)
        response.raise_for_status()
        balances.append(int(response.json()["balance"]))
    return balances


def _client(banks: BankUrls) -> requests.Session:
    session = requests.Session()
    session.headers.update(banks.headers())
    return session


def check_conservation(banks: BankUrls) -> int:
    """Sum of all balances must equal the sum of opening balances; none negative.

    Returns the total. Raises ``LedgerError`` on a violation.
    """
    with _client(banks) as client:
        src = _balances(client, banks.source, source_accounts())
        tgt = _balances(client, banks.target, target_accounts())
    opening = opening_total([*source_accounts(), *target_accounts()])
    if min(*src, *tgt) < 0:
        raise LedgerError("a balance went negative")
    if sum(src) + sum(tgt) != opening:
        raise LedgerError(f"money not conserved: {sum(src) + sum(tgt)} != {opening}")
    return opening


@contextmanager
def running_banks(workdir: Path, *, log_dir: Path | None = None) -> Iterator[BankUrls]:
    """Start ``source_bank`` and ``target_bank`` on free ports with new ledgers; seed them."""
    token = os.environ.get("BENCH_BANK_TOKEN", "bench-token")
    system = LocalSystem(
        workdir, Settings(bank_token=token), run=BANKS, workers=0, log_dir=log_dir, fresh=True
    )
    with system:
        settings = system.settings
        banks = BankUrls(settings.source_bank_url, settings.target_bank_url, token)
        with _client(banks) as client:
            _seed(client, banks.source, source_accounts())
            _seed(client, banks.target, target_accounts())
        yield banks
