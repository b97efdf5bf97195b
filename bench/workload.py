"""The fixed workload every system runs: the same accounts, amounts and outcomes.

Pure planning, no I/O, so every system gets byte-identical work and the harness
can check each result against what it must be. One transfer in ten targets a
closed account: the target bank rejects the credit and the saga must reverse
the debit, so compensation is part of what is measured, not a side path.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.accounts import Account

ACCOUNT_COUNT = 32
"""Distinct source/target accounts, so concurrent transfers do not all queue on one row."""

OPENING_BALANCE = 100_000_000
"""Cents on every source account: far more than any run can move."""

CLOSED_ACCOUNT = "dst-closed"
"""The target account that rejects every credit (status ``closed``)."""

COMPENSATE_EVERY = 10
"""Every tenth transfer is sent to the closed account and must end ``compensated``."""


@dataclass(frozen=True)
class TransferSpec:
    """One transfer of the workload and the terminal status it must reach."""

    transfer_id: str
    source_account: str
    target_account: str
    amount: int
    expected_status: str

    @property
    def debit_op(self) -> str:
        return f"{self.transfer_id}-debit"

    @property
    def credit_op(self) -> str:
        return f"{self.transfer_id}-credit"

    @property
    def reversal_op(self) -> str:
        return f"{self.transfer_id}-reversal"


def source_accounts() -> list[Account]:
    return [Account("source", f"src-{k:02d}", OPENING_BALANCE) for k in range(ACCOUNT_COUNT)]


def target_accounts() -> list[Account]:
    opened = [Account("target", f"dst-{k:02d}") for k in range(ACCOUNT_COUNT)]
    return [*opened, Account("target", CLOSED_ACCOUNT, status="closed")]


def plan_transfers(prefix: str, count: int) -> list[TransferSpec]:
    """``count`` transfers with ids unique to ``prefix`` (one prefix per system and run)."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if not prefix or "/" in prefix:
        raise ValueError(f"prefix must be non-empty and free of '/', got {prefix!r}")
    specs = []
    for i in range(count):
        k = i % ACCOUNT_COUNT
        compensate = i % COMPENSATE_EVERY == COMPENSATE_EVERY - 1
        specs.append(
            TransferSpec(
                transfer_id=f"{prefix}-{i:06d}",
                source_account=f"src-{k:02d}",
                target_account=CLOSED_ACCOUNT if compensate else f"dst-{k:02d}",
                amount=100 + i % 50,
                expected_status="compensated" if compensate else "committed",
            )
        )
    return specs
