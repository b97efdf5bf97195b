"""Turn untrusted request bytes into typed values, or a 400 that names the field.

Nothing reaches the ledger until it has passed through here, so the ledger can
assume well-formed ids, kinds and amounts. Every rejection says which field
was wrong and why; callers (and the hypothesis tests) rely on bad input never
producing a 5xx.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, cast

from bank.ledger import CancelNote

#: Largest request body accepted, in bytes.
MAX_BODY_BYTES = 16 * 1024
#: Largest single amount (one entry, or an opening balance), in minor units:
#: 10 trillion in major units. The ledger's limit, for any client: with every
#: balance capped at ``bank.ledger.MAX_BALANCE`` (10**18), each amount and
#: balance stored, and a balance plus any one amount, stay exact in SQLite's
#: 64-bit integers (up to about 9.2 * 10**18). Clients keep their own, lower
#: limit against typos: crossbank's CLI and saga take at most 10**11
#: (``orchestrator.money.MAX_CENTS``), so they never meet this one.
MAX_AMOUNT = 10**15
#: Ids are at most this long (op ids are ``{transfer_id}-reversal``: keep transfer ids <= 119).
MAX_ID_LENGTH = 128
#: Ids are plain ASCII that is safe in a URL path without escaping.
ID_PATTERN = re.compile(r"[A-Za-z0-9._:@~+-]+")
#: Ids that are path segments of their own in a URL.
_DOT_SEGMENTS = frozenset({".", ".."})
#: Longest ``by`` and ``reason`` of a cancel note, in characters.
MAX_NOTE_LENGTH = 200
#: The fields of a cancel note, both required.
_NOTE_FIELDS = ("by", "reason")
#: Default and largest page of ``GET /entries``.
DEFAULT_PAGE = 100
MAX_PAGE = 1000

EntryKind = Literal["debit", "credit", "reversal"]
AccountStatus = Literal["open", "closed"]
ENTRY_KINDS: tuple[EntryKind, ...] = ("debit", "credit", "reversal")
ACCOUNT_STATUSES: tuple[AccountStatus, ...] = ("open", "closed")

_DIGITS = re.compile(r"[0-9]{1,18}")


class InvalidRequest(ValueError):
    """A request field is missing, malformed or out of range (HTTP 400 ``invalid_request``)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class EntryRequest:
    op_id: str
    account_id: str
    amount: int
    kind: EntryKind


@dataclass(frozen=True)
class AccountUpdate:
    status: AccountStatus
    opening_balance: int | None


@dataclass(frozen=True)
class EntryQuery:
    account_id: str | None
    after: int
    limit: int


def parse_json_object(raw: bytes, *, allow_empty: bool = False) -> dict[str, object]:
    """Decode a UTF-8 JSON object body; ``allow_empty`` treats no body as ``{}``."""
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidRequest("body", f"larger than {MAX_BODY_BYTES} bytes")
    if allow_empty and not raw.strip():
        return {}
    try:
        text = raw.decode("utf-8")
        value = json.loads(
            text, parse_constant=_refuse_constant, object_pairs_hook=_object_without_duplicates
        )
    except UnicodeDecodeError as exc:
        raise InvalidRequest("body", "is not UTF-8") from exc
    except InvalidRequest:
        raise
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest("body", f"is not valid JSON ({_short(exc)})") from exc
    if not isinstance(value, dict):
        raise InvalidRequest("body", "must be a JSON object")
    return cast(dict[str, object], value)


def check_fields(
    body: Mapping[str, object], *, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> None:
    """Refuse missing and unexpected fields, naming the first one found."""
    for name in required:
        if name not in body:
            raise InvalidRequest(name, "is required")
    allowed = set(required) | set(optional)
    for name in body:
        if name not in allowed:
            raise InvalidRequest(_printable(name), "is not an accepted field")


def check_id(field: str, value: object) -> str:
    """A non-empty id of at most ``MAX_ID_LENGTH`` characters from ``ID_PATTERN``."""
    if not isinstance(value, str):
        raise InvalidRequest(field, "must be a string")
    if not value:
        raise InvalidRequest(field, "must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidRequest(field, f"must be at most {MAX_ID_LENGTH} characters")
    if not ID_PATTERN.fullmatch(value):
        raise InvalidRequest(field, "may contain only letters, digits and . _ : @ ~ + -")
    if value in _DOT_SEGMENTS:
        # A proxy that normalises paths would send /accounts/.. somewhere else.
        raise InvalidRequest(field, "must not be '.' or '..'")
    return value


def check_int(field: str, value: object, *, low: int, high: int) -> int:
    """An integer in ``[low, high]``; booleans and floats are refused, even 1.0."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(field, "must be an integer")
    if not low <= value <= high:
        raise InvalidRequest(field, f"must be between {low} and {high}")
    return value


def check_choice[T: str](field: str, value: object, choices: tuple[T, ...]) -> T:
    for choice in choices:
        if value == choice:
            return choice
    raise InvalidRequest(field, f"must be one of {', '.join(choices)}")


def parse_entry_request(raw: bytes) -> EntryRequest:
    """The body of ``POST /entries``."""
    body = parse_json_object(raw)
    check_fields(body, required=("op_id", "account_id", "amount", "kind"))
    return EntryRequest(
        op_id=check_id("op_id", body["op_id"]),
        account_id=check_id("account_id", body["account_id"]),
        amount=check_int("amount", body["amount"], low=1, high=MAX_AMOUNT),
        kind=check_choice("kind", body["kind"], ENTRY_KINDS),
    )


def parse_account_update(raw: bytes) -> AccountUpdate:
    """The body of ``PUT /accounts/{account_id}``."""
    body = parse_json_object(raw)
    check_fields(body, required=("status",), optional=("opening_balance",))
    opening = body.get("opening_balance")
    return AccountUpdate(
        status=check_choice("status", body["status"], ACCOUNT_STATUSES),
        opening_balance=None
        if opening is None
        else check_int("opening_balance", opening, low=0, high=MAX_AMOUNT),
    )


def parse_void_request(raw: bytes) -> CancelNote | None:
    """The body of ``POST /entries/{op_id}/void``: a cancel note, or None for no body or ``{}``.

    A note is ``{"cancel": {"by": str, "reason": str}}``, both required.
    """
    body = parse_json_object(raw, allow_empty=True)
    check_fields(body, required=(), optional=("cancel",))
    if "cancel" not in body:
        return None
    cancel = body["cancel"]
    if not isinstance(cancel, dict):
        raise InvalidRequest("cancel", "must be an object with by and reason")
    for name in _NOTE_FIELDS:
        if name not in cancel:
            raise InvalidRequest(f"cancel.{name}", "is required")
    for name in cancel:
        if name not in _NOTE_FIELDS:
            raise InvalidRequest(f"cancel.{_printable(name)}", "is not an accepted field")
    return CancelNote(
        by=check_note_text("cancel.by", cancel["by"]),
        reason=check_note_text("cancel.reason", cancel["reason"]),
    )


def check_note_text(field: str, value: object) -> str:
    """Printable text of 1 to ``MAX_NOTE_LENGTH`` characters, not only spaces; kept as given."""
    if not isinstance(value, str):
        raise InvalidRequest(field, "must be a string")
    if not value.strip():
        raise InvalidRequest(field, "must not be empty or blank")
    if len(value) > MAX_NOTE_LENGTH:
        raise InvalidRequest(field, f"must be at most {MAX_NOTE_LENGTH} characters")
    if not value.isprintable():
        raise InvalidRequest(field, "must be printable text (no line breaks or control characters)")
    return value


def parse_entry_query(args: Mapping[str, str]) -> EntryQuery:
    """The query string of ``GET /entries``: ``account_id``, ``after``, ``limit``."""
    for name in args:
        if name not in ("account_id", "after", "limit"):
            raise InvalidRequest(_printable(name), "is not an accepted query parameter")
    account_id = args.get("account_id")
    return EntryQuery(
        account_id=None if account_id is None else check_id("account_id", account_id),
        after=_query_int(args, "after", 0, low=0, high=2**62),
        limit=_query_int(args, "limit", DEFAULT_PAGE, low=1, high=MAX_PAGE),
    )


def _query_int(args: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    raw = args.get(name)
    if raw is None:
        return default
    if not _DIGITS.fullmatch(raw):
        raise InvalidRequest(name, "must be a non-negative integer")
    return check_int(name, int(raw), low=low, high=high)


def _object_without_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """A JSON object, at any depth; a key given twice is refused, not silently the last one."""
    value: dict[str, object] = {}
    for key, item in pairs:
        if key in value:
            raise InvalidRequest(_printable(key), "appears more than once")
        value[key] = item
    return value


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not allowed")


def _short(exc: BaseException) -> str:
    return str(exc)[:120] or type(exc).__name__


def _printable(name: str) -> str:
    """A field name safe to echo back in a message."""
    return repr(name[:64]) if not ID_PATTERN.fullmatch(name[:64]) else name[:64]
