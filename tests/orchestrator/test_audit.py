"""The audit's pure check, on hand-built ledgers: one clean case, one per violation kind."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator import audit
from orchestrator.audit import BankLedger, Ledgers, Violation, check, split_op_id


class LedgerBuilder:
    """Builds a bank ledger the way a bank would: sequential entries, running balances."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.accounts: dict[str, dict[str, Any]] = {}
        self.entries: list[dict[str, Any]] = []

    def account(self, account_id: str, opening: int) -> LedgerBuilder:
        self.accounts[account_id] = {
            "account_id": account_id,
            "status": "open",
            "opening_balance": opening,
            "balance": opening,
        }
        return self

    def entry(self, op_id: str, account_id: str, kind: str, amount: int) -> dict[str, Any]:
        account = self.accounts[account_id]
        account["balance"] += -amount if kind == "debit" else amount
        entry = {
            "seq": len(self.entries) + 1,
            "op_id": op_id,
            "account_id": account_id,
            "kind": kind,
            "amount": amount,
            "balance_after": account["balance"],
            "created_at": "2026-01-01T00:00:00Z",
        }
        self.entries.append(entry)
        return entry

    def build(self) -> BankLedger:
        return BankLedger(self.name, list(self.accounts.values()), list(self.entries))


@pytest.fixture
def banks() -> tuple[LedgerBuilder, LedgerBuilder]:
    source = LedgerBuilder("source").account("alice", 10_000).account("bob", 500)
    target = LedgerBuilder("target").account("carol", 0).account("dave", 2_000)
    return source, target


def ledgers(banks: tuple[LedgerBuilder, LedgerBuilder]) -> Ledgers:
    return Ledgers(banks[0].build(), banks[1].build())


def committed(banks: tuple[LedgerBuilder, LedgerBuilder], tid: str, amount: int) -> None:
    banks[0].entry(f"{tid}-debit", "alice", "debit", amount)
    banks[1].entry(f"{tid}-credit", "carol", "credit", amount)


def compensated(banks: tuple[LedgerBuilder, LedgerBuilder], tid: str, amount: int) -> None:
    banks[0].entry(f"{tid}-debit", "alice", "debit", amount)
    banks[0].entry(f"{tid}-reversal", "alice", "reversal", amount)


def invariants(violations: list[Violation]) -> set[str]:
    return {v.invariant for v in violations}


def test_settled_ledgers_are_clean(banks: tuple[LedgerBuilder, LedgerBuilder]) -> None:
    committed(banks, "t1", 1_250)
    compensated(banks, "t2", 300)
    committed(banks, "t-with-dashes-3", 1)
    assert check(ledgers(banks)) == []


def test_empty_ledgers_are_clean(banks: tuple[LedgerBuilder, LedgerBuilder]) -> None:
    assert check(ledgers(banks)) == []


def test_stray_credit_breaks_conservation_and_names_the_entry(
    banks: tuple[LedgerBuilder, LedgerBuilder],
) -> None:
    committed(banks, "t1", 100)
    stray = banks[1].entry("stray-credit", "carol", "credit", 999)
    violations = check(ledgers(banks))
    assert invariants(violations) == {audit.PER_TRANSFER, audit.CONSERVATION}
    per_transfer = next(v for v in violations if v.invariant == audit.PER_TRANSFER)
    assert per_transfer.transfer_id == "stray"
    assert per_transfer.entries == [stray]
    conservation = next(v for v in violations if v.invariant == audit.CONSERVATION)
    assert "+999" in conservation.detail


def test_entry_of_no_transfer_is_unexplained(banks: tuple[LedgerBuilder, LedgerBuilder]) -> None:
    stray = banks[1].entry("manual-fix", "carol", "credit", 50)
    violations = check(ledgers(banks))
    assert invariants(violations) == {audit.UNEXPLAINED_ENTRY, audit.CONSERVATION}
    unexplained = next(v for v in violations if v.invariant == audit.UNEXPLAINED_ENTRY)
    assert unexplained.entries == [stray]


def test_both_credited_and_reversed_creates_money(
    banks: tuple[LedgerBuilder, LedgerBuilder],
) -> None:
    committed(banks, "t1", 700)
    banks[0].entry("t1-reversal", "alice", "reversal", 700)
    violations = check(ledgers(banks))
    assert invariants(violations) == {audit.PER_TRANSFER, audit.CONSERVATION}
    per_transfer = next(v for v in violations if v.invariant == audit.PER_TRANSFER)
    assert per_transfer.transfer_id == "t1"
    assert "both" in per_transfer.detail
    assert [e["op_id"] for e in per_transfer.entries] == ["t1-debit", "t1-credit", "t1-reversal"]


def test_debit_left_alone_is_reported_unless_in_flight(
    banks: tuple[LedgerBuilder, LedgerBuilder],
) -> None:
    banks[0].entry("t1-debit", "alice", "debit", 400)
    violations = check(ledgers(banks))
    assert invariants(violations) == {audit.PER_TRANSFER, audit.CONSERVATION}
    assert next(v for v in violations if v.invariant == audit.PER_TRANSFER).transfer_id == "t1"
    assert check(ledgers(banks), in_flight={"t1"}) == []


def test_credit_without_debit(banks: tuple[LedgerBuilder, LedgerBuilder]) -> None:
    banks[1].entry("t1-credit", "carol", "credit", 400)
    violations = check(ledgers(banks))
    assert audit.PER_TRANSFER in invariants(violations)
    assert "no debit" in next(v for v in violations if v.invariant == audit.PER_TRANSFER).detail


def test_op_applied_twice(banks: tuple[LedgerBuilder, LedgerBuilder]) -> None:
    committed(banks, "t1", 100)
    again = banks[1].entry("t1-credit", "carol", "credit", 100)
    violations = check(ledgers(banks))
    assert audit.EXACTLY_ONCE in invariants(violations)
    twice = next(v for v in violations if v.invariant == audit.EXACTLY_ONCE)
    assert twice.transfer_id == "t1"
    assert again in twice.entries
    assert len(twice.entries) == 2


def test_credit_of_a_different_amount(banks: tuple[LedgerBuilder, LedgerBuilder]) -> None:
    banks[0].entry("t1-debit", "alice", "debit", 100)
    banks[1].entry("t1-credit", "carol", "credit", 1_000)
    violations = check(ledgers(banks))
    assert invariants(violations) == {audit.AMOUNTS_MATCH, audit.CONSERVATION}
    assert next(v for v in violations if v.invariant == audit.AMOUNTS_MATCH).transfer_id == "t1"


def test_reversal_into_another_account(banks: tuple[LedgerBuilder, LedgerBuilder]) -> None:
    banks[0].entry("t1-debit", "alice", "debit", 100)
    banks[0].entry("t1-reversal", "bob", "reversal", 100)
    violations = check(ledgers(banks))
    assert invariants(violations) == {audit.AMOUNTS_MATCH}
    assert "bob" in violations[0].detail


def test_negative_balance(banks: tuple[LedgerBuilder, LedgerBuilder]) -> None:
    banks[0].entry("t1-debit", "bob", "debit", 800)
    banks[1].entry("t1-credit", "carol", "credit", 800)
    violations = check(ledgers(banks))
    assert invariants(violations) == {audit.NO_NEGATIVE_BALANCE}
    assert {v.transfer_id for v in violations} == {"t1", None}


def test_balance_that_entries_do_not_explain(banks: tuple[LedgerBuilder, LedgerBuilder]) -> None:
    committed(banks, "t1", 100)
    banks[1].accounts["dave"]["balance"] += 5
    violations = check(ledgers(banks))
    assert invariants(violations) == {audit.BALANCE_MATCHES_ENTRIES, audit.CONSERVATION}
    assert "dave" in next(
        v.detail for v in violations if v.invariant == audit.BALANCE_MATCHES_ENTRIES
    )


def test_running_balance_that_disagrees(banks: tuple[LedgerBuilder, LedgerBuilder]) -> None:
    committed(banks, "t1", 100)
    banks[1].entries[0]["balance_after"] = 12345
    violations = check(ledgers(banks))
    assert invariants(violations) == {audit.BALANCE_MATCHES_ENTRIES}
    assert violations[0].transfer_id == "t1"


def test_entry_on_an_unlisted_account(banks: tuple[LedgerBuilder, LedgerBuilder]) -> None:
    banks[1].account("ghost", 0)
    committed_debit = banks[0].entry("t1-debit", "alice", "debit", 10)
    credit = banks[1].entry("t1-credit", "ghost", "credit", 10)
    del banks[1].accounts["ghost"]
    violations = check(ledgers(banks))
    assert audit.BALANCE_MATCHES_ENTRIES in invariants(violations)
    assert committed_debit not in next(
        v.entries for v in violations if v.invariant == audit.BALANCE_MATCHES_ENTRIES
    )
    assert credit in next(
        v.entries for v in violations if v.invariant == audit.BALANCE_MATCHES_ENTRIES
    )


def test_step_on_the_wrong_bank(banks: tuple[LedgerBuilder, LedgerBuilder]) -> None:
    banks[1].entry("t1-debit", "dave", "debit", 10)
    banks[0].entry("t1-credit", "alice", "credit", 10)
    violations = check(ledgers(banks))
    assert invariants(violations) == {audit.UNEXPLAINED_ENTRY}
    assert len(violations) == 2


@pytest.mark.parametrize(
    ("op_id", "parsed"),
    [
        ("t1-debit", ("t1", "debit")),
        ("a-b-c-reversal", ("a-b-c", "reversal")),
        ("credit", None),
        ("-credit", None),
        ("t1-refund", None),
    ],
)
def test_split_op_id(op_id: str, parsed: tuple[str, str] | None) -> None:
    assert split_op_id(op_id) == parsed
