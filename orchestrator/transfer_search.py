"""List transfers from the store's own search: newest first, filtered, a page at a time.

A transfer is its root promise (an id with no ``:``, whose task data names
the saga). The store's search (``promise.search``: crossbank's store, or
Resonate on Postgres, :mod:`promise_store.search`) pages through promises
newest first; this module keeps the transfers among them, applies the
filters, and stops at ``limit``. Nothing here reads a ledger.

A finished transfer's status is in its result, which the search returns; an
unfinished one's (``in_progress``, ``compensating``, and whether it needs
attention) is decided from its steps, read for it alone
(:func:`orchestrator.transfers.transfer_record`).

The cursor is this module's own: the store's cursor of the page it stopped
in, and how many of that page's transfers were already returned. The store
orders by creation, so a page read again holds the same promises (new ones
are newer and come before it), and the next page starts where this one ended.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from resonate.resonate import Resonate
from resonate.types import PromiseRecord

from orchestrator import transfers
from orchestrator.records import TERMINAL_STATUSES
from orchestrator.saga import SAGA_NAME

#: What ``--status`` takes: every status ``crossbank status`` shows, and
#: ``needs-attention`` (compensating for longer than ``ATTENTION_AFTER``).
STATUS_FILTERS = (
    "in_progress",
    "compensating",
    "needs-attention",
    "committed",
    "compensated",
    "failed",
)
#: The most transfers one page may hold.
MAX_LIMIT = 1000
#: Promises asked of the store per search request.
STORE_PAGE = 200


class InvalidSearch(ValueError):
    """A filter, limit or cursor no search can take (the caller's input)."""


@dataclass(frozen=True)
class TransferPage:
    """Transfers newest first, and the cursor of the next page (None: there is none)."""

    transfers: list[dict[str, Any]]
    cursor: str | None

    def to_json(self) -> dict[str, Any]:
        return {"transfers": self.transfers, "cursor": self.cursor}


def normalize_status(status: str) -> str:
    """``in-progress`` and ``in_progress`` alike; anything not listable is refused."""
    name = status.strip().lower().replace(" ", "_")
    name = "needs-attention" if name in ("needs_attention", "needs-attention") else name
    name = name.replace("-", "_") if name != "needs-attention" else name
    if name not in STATUS_FILTERS:
        raise InvalidSearch(f"unknown status {status!r}: choose one of {', '.join(STATUS_FILTERS)}")
    return name


async def list_transfers(
    resonate: Resonate,
    *,
    status: str | None = None,
    since_ms: int | None = None,
    limit: int = 50,
    cursor: str | None = None,
    attention_after: float | None = None,
) -> TransferPage:
    """Up to ``limit`` transfers, newest first, started at or after ``since_ms`` (epoch ms).

    ``status`` is one of :data:`STATUS_FILTERS`; ``attention_after`` is the
    worker's ``ATTENTION_AFTER``, which ``needs-attention`` is measured against.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidSearch(f"limit must be from 1 to {MAX_LIMIT}, got {limit}")
    wanted = normalize_status(status) if status is not None else None
    store_cursor, skip = _decode(cursor)
    state = _store_state(wanted)
    found: list[dict[str, Any]] = []
    async for page_cursor, index, promise in _roots(resonate, state, store_cursor):
        if (
            since_ms is not None
            and promise.created_at is not None
            and promise.created_at < since_ms
        ):
            return TransferPage(found, None)  # newest first: everything further is older
        if page_cursor == store_cursor and index < skip:
            continue  # returned by the page before
        summary = await _summary(resonate, promise, attention_after)
        if wanted is not None and not _matches(summary, wanted):
            continue
        found.append(summary)
        if len(found) == limit:
            return TransferPage(found, _encode(page_cursor, index + 1))
    return TransferPage(found, None)


async def unfinished_by_version(resonate: Resonate) -> dict[int, list[str]]:
    """The ids of every unfinished transfer, by the saga version it runs on."""
    by_version: dict[int, list[str]] = {}
    async for _, _, promise in _roots(resonate, "pending", None):
        by_version.setdefault(transfers.saga_version_of(promise), []).append(promise.id)
    return by_version


async def _roots(
    resonate: Resonate, state: str | None, cursor: str | None
) -> AsyncIterator[tuple[str | None, int, PromiseRecord]]:
    """Every transfer's root promise, newest first, with the store cursor of its page and its place there."""
    while True:
        page = await resonate.promises.search(state, None, STORE_PAGE, cursor)
        index = 0
        for promise in page.promises:
            if _is_transfer(promise):
                yield cursor, index, promise
                index += 1
        if page.cursor is None:
            return
        cursor = page.cursor


def _is_transfer(promise: PromiseRecord) -> bool:
    data = promise.param.data
    return ":" not in promise.id and isinstance(data, dict) and data.get("func") == SAGA_NAME


async def _summary(
    resonate: Resonate, root: PromiseRecord, attention_after: float | None
) -> dict[str, Any]:
    """One transfer as the listing shows it."""
    result = root.value.data if root.state == "resolved" else None
    row: dict[str, Any] = {
        "transfer_id": root.id,
        "state": root.state,
        "saga_version": transfers.saga_version_of(root),
        "request": transfers.request_of(root),
        "created_at": root.created_at,
        "settled_at": root.settled_at,
        "needs_attention": False,
    }
    if isinstance(result, dict) and result.get("status") in TERMINAL_STATUSES:
        return {**row, "status": result["status"], "reason": result.get("reason")}
    if root.state != "pending":
        return {**row, "status": root.state, "reason": None}
    record = await transfers.transfer_record(resonate, root.id, attention_after=attention_after)
    if record is None:  # gone between the search and the read: report it as the search saw it
        return {**row, "status": "in_progress", "reason": None}
    return {
        **row,
        "status": record["status"],
        "reason": None,
        "needs_attention": record["needs_attention"],
    }


def _store_state(wanted: str | None) -> str | None:
    if wanted in ("committed", "compensated", "failed"):
        return "resolved"
    if wanted in ("in_progress", "compensating", "needs-attention"):
        return "pending"
    return None


def _matches(summary: dict[str, Any], wanted: str) -> bool:
    if wanted == "needs-attention":
        return bool(summary["needs_attention"])
    return bool(summary["status"] == wanted)


def _encode(store_cursor: str | None, skip: int) -> str:
    raw = json.dumps({"store": store_cursor, "skip": skip}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode(cursor: str | None) -> tuple[str | None, int]:
    if cursor is None:
        return None, 0
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        store, skip = value["store"], value["skip"]
        if (store is None or isinstance(store, str)) and isinstance(skip, int) and skip >= 0:
            return store, skip
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
        pass
    raise InvalidSearch(f"not a cursor this listing gave: {cursor!r}")
