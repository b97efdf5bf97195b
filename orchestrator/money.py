"""Amounts typed by people, turned into integer cents, and back.

Every API and ledger holds money as an integer number of cents; only the CLI
sees decimal strings. Parsing is deliberately strict: an amount that could be
read two ways (``1e3``, ``12.345``, ``1,000``) is refused rather than guessed,
because a guessed amount moves real money. No floats are involved anywhere.
"""

from __future__ import annotations

import re

#: The largest amount crossbank moves in one transfer, and the largest the CLI
#: reads (a transfer or an opening balance): 1,000,000,000.00, in cents.
#: A guard against typos, not a ledger limit: an amount this big is far more
#: likely an extra zero than an intent, and moving it is not undone by a retry.
#: It sits 10,000 times below what a bank takes in one entry
#: (``bank.validation.MAX_AMOUNT``, 10**15: the ledger's own limit, for any
#: client), so every amount the CLI or the saga accepts, a bank accepts too.
#: ``orchestrator.transfers.TransferRequest`` checks the same figure.
MAX_CENTS = 100_000_000_000

# ASCII digits only (no Unicode digits, signs, exponents, separators or spaces).
_AMOUNT = re.compile(r"(?P<units>[0-9]+)(?:\.(?P<fraction>[0-9]+))?", re.ASCII)


class AmountError(ValueError):
    """An amount string that is not a positive number of cents within the cap."""


def parse_amount(text: str, *, allow_zero: bool = False) -> int:
    """Return the cents in a decimal string: ``"12.50"`` -> 1250, ``"0.5"`` -> 50.

    A transfer amount must be positive; an opening balance (``allow_zero``) may
    be zero. Raises :class:`AmountError` with a message fit to show the user as is.
    """
    match = _AMOUNT.fullmatch(text)
    if match is None:
        raise AmountError(f"invalid amount {text!r}: {_why_malformed(text)}")
    fraction = match["fraction"] or ""
    if len(fraction) > 2:
        raise AmountError(f"invalid amount {text!r}: at most two decimal places (cents)")
    units = match["units"].lstrip("0") or "0"
    if len(units) > len(str(MAX_CENTS)):
        raise AmountError(f"invalid amount {text!r}: above the cap of {format_cents(MAX_CENTS)}")
    cents = int(units) * 100 + int(fraction.ljust(2, "0"))
    if cents == 0 and not allow_zero:
        raise AmountError(f"invalid amount {text!r}: must be more than zero")
    if cents > MAX_CENTS:
        raise AmountError(f"invalid amount {text!r}: above the cap of {format_cents(MAX_CENTS)}")
    return cents


def _why_malformed(text: str) -> str:
    """Name the most likely mistake, so the error says what to fix."""
    stripped = text.strip()
    if not stripped:
        return "empty"
    if stripped != text or any(ch.isspace() for ch in text):
        return "contains whitespace"
    if stripped.startswith("-"):
        return "must be more than zero"
    if "e" in stripped.lower() and any(ch.isdigit() for ch in stripped):
        return "exponents are not accepted; write the amount out, like 1000.00"
    if "," in stripped:
        return "no thousands separators; use a dot for cents, like 1000.50"
    return "expected a decimal number like 12.50"


def format_cents(cents: int) -> str:
    """Render cents for people: 1250 -> ``"12.50"``, -5 -> ``"-0.05"``, with thousands grouped."""
    sign = "-" if cents < 0 else ""
    units, fraction = divmod(abs(cents), 100)
    return f"{sign}{units:,}.{fraction:02d}"


def cents_to_decimal_string(cents: int) -> str:
    """Render cents as a plain decimal that :func:`parse_amount` reads back: 1250 -> ``"12.50"``."""
    sign = "-" if cents < 0 else ""
    units, fraction = divmod(abs(cents), 100)
    return f"{sign}{units}.{fraction:02d}"
