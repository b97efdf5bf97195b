"""Amount parsing: what a user types becomes exact cents, or a clear refusal."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bank import validation
from orchestrator import transfers
from orchestrator.money import (
    MAX_CENTS,
    AmountError,
    cents_to_decimal_string,
    format_cents,
    parse_amount,
)


@pytest.mark.parametrize(
    ("text", "cents"),
    [
        ("12.50", 1250),
        ("12", 1200),
        ("0.5", 50),
        ("0.05", 5),
        ("0.01", 1),
        ("007.10", 710),
        ("1000000000", MAX_CENTS),
        ("1000000000.00", MAX_CENTS),
    ],
)
def test_parses_decimal_strings_to_cents(text: str, cents: int) -> None:
    assert parse_amount(text) == cents


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("12.345", "two decimal places"),
        ("0.001", "two decimal places"),
        ("0", "more than zero"),
        ("0.00", "more than zero"),
        ("-5", "more than zero"),
        ("+5", "expected a decimal number"),
        ("1e3", "exponents"),
        ("1E3", "exponents"),
        ("abc", "expected a decimal number"),
        ("", "empty"),
        ("   ", "empty"),
        (" 12", "whitespace"),
        ("12 ", "whitespace"),
        ("1 2", "whitespace"),
        ("12.5\n", "whitespace"),
        ("1,000", "thousands"),
        ("12.", "expected a decimal number"),
        (".5", "expected a decimal number"),
        ("NaN", "expected a decimal number"),
        ("inf", "expected a decimal number"),
        ("0x10", "expected a decimal number"),
        ("١٢", "expected a decimal number"),  # non-ASCII digits
        ("1000000000.01", "cap"),
        ("9" * 5000, "cap"),
    ],
)
def test_refuses_malformed_amounts_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(AmountError, match=reason) as info:
        parse_amount(text)
    assert "\n" not in str(info.value), "errors are one line"


def test_format_cents_for_people() -> None:
    assert format_cents(1250) == "12.50"
    assert format_cents(5) == "0.05"
    assert format_cents(0) == "0.00"
    assert format_cents(-5) == "-0.05"
    assert format_cents(123456789) == "1,234,567.89"


@given(st.integers(min_value=1, max_value=MAX_CENTS))
def test_every_valid_amount_round_trips(cents: int) -> None:
    assert parse_amount(cents_to_decimal_string(cents)) == cents


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=99))
def test_parse_agrees_with_integer_arithmetic(units: int, fraction: int) -> None:
    text = f"{units}.{fraction:02d}"
    cents = units * 100 + fraction
    if cents == 0:
        with pytest.raises(AmountError):
            parse_amount(text)
    else:
        assert parse_amount(text) == cents


@given(st.text(max_size=20))
def test_anything_parsed_is_a_positive_int_within_the_cap(text: str) -> None:
    try:
        cents = parse_amount(text)
    except AmountError:
        return
    assert type(cents) is int
    assert 0 < cents <= MAX_CENTS


def test_zero_is_allowed_only_when_asked() -> None:
    assert parse_amount("0", allow_zero=True) == 0
    assert parse_amount("0.00", allow_zero=True) == 0
    with pytest.raises(AmountError, match="more than zero"):
        parse_amount("-0", allow_zero=True)


def test_the_cli_the_saga_and_the_bank_agree_on_the_largest_amount() -> None:
    """One figure for the product (the CLI and a transfer request), under the bank's own."""
    assert transfers.MAX_AMOUNT == MAX_CENTS
    assert MAX_CENTS < validation.MAX_AMOUNT
    assert parse_amount(cents_to_decimal_string(MAX_CENTS)) == MAX_CENTS
    assert parse_amount(cents_to_decimal_string(MAX_CENTS), allow_zero=True) == MAX_CENTS
    for allow_zero in (False, True):
        with pytest.raises(AmountError, match="cap"):
            parse_amount(cents_to_decimal_string(MAX_CENTS + 1), allow_zero=allow_zero)
