"""``promise.search``: the promises that match, newest first, a page at a time (pure, no I/O).

The SDK's reference ``ServerState`` has no search, and resonate.sql's answers
501, so crossbank answers it itself, the same way on every backend: the
store here, over its promise table, and Resonate on Postgres with a query of
its own (``orchestrator/postgres_connection.py``), both through
:func:`parse_search` and :func:`page_of`, so a request means the same and a
cursor looks the same wherever it is sent.

- ``state``: absent or ``None`` (any), ``"pending"``, ``"resolved"`` or
  ``"rejected"`` (which matches every rejected state: ``rejected``,
  ``rejected_canceled``, ``rejected_timedout``);
- ``tags``: a promise matches when it has every one of them, each with
  exactly that value;
- newest first: by ``createdAt``, then by id (by code point), both
  descending, so a caller can stop paging once it reaches promises older than
  it cares about;
- ``limit``: at most this many per page (:data:`DEFAULT_LIMIT`, at most
  :data:`MAX_LIMIT`); ``cursor``: where the previous page ended, present only
  when there may be more. A page is keyed on the position of the last promise
  it returned, not on an offset, so promises created between two pages (which
  are newer) never shift or join a later page (only one stamped older can:
  the state machine stamps a promise created already past its deadline with
  that deadline).

A search is a read: it is never journaled, never times out a pending promise
whose deadline passed (that promise is reported as it is stored), and never
decodes a promise held as a snapshot's bytes into the table.
"""

from __future__ import annotations

import base64
import binascii
import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from resonate.connections.local import DurablePromise

SEARCH_KIND = "promise.search"

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

#: What each ``state`` a search may name matches, among the states a promise is stored in.
STATE_FILTERS: dict[str, tuple[str, ...]] = {
    "pending": ("pending",),
    "resolved": ("resolved",),
    "rejected": ("rejected", "rejected_canceled", "rejected_timedout"),
}

#: A cursor's ``createdAt`` must fit Postgres's bigint (and the snapshot's int64).
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1

#: Where a promise sorts: ``(createdAt, id)``; a page holds those below its cursor's.
Position = tuple[int, str]


@dataclass(frozen=True, slots=True)
class Search:
    """One valid ``promise.search`` request."""

    #: Stored states that match, or ``None`` for any.
    states: frozenset[str] | None
    tags: dict[str, str]
    limit: int
    #: Only promises sorting strictly below this (older) are on the page.
    before: Position | None


def parse_search(data: Mapping[str, Any]) -> Search | str:
    """The search ``data`` asks for, or a message naming what is wrong with it (a 400)."""
    state = data.get("state")
    if state is not None and (not isinstance(state, str) or state not in STATE_FILTERS):
        return f"state must be one of {', '.join(STATE_FILTERS)} (or absent), not {_shown(state)}"
    tags = data.get("tags")
    if tags is None:
        tags = {}
    if not isinstance(tags, dict):
        return f"tags must be an object of strings, not {_shown(tags)}"
    for key, value in tags.items():
        if not isinstance(key, str) or not isinstance(value, str):
            return f"tags must map strings to strings, not {_shown(key)}: {_shown(value)}"
    limit = data.get("limit")
    if limit is None:
        limit = DEFAULT_LIMIT
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        return f"limit must be an integer from 1 to {MAX_LIMIT}, not {_shown(limit)}"
    cursor = data.get("cursor")
    before = None if cursor is None else decode_cursor(cursor)
    if isinstance(before, str):
        return before
    return Search(
        states=None if state is None else frozenset(STATE_FILTERS[state]),
        tags=dict(tags),
        limit=limit,
        before=before,
    )


def _shown(value: Any) -> str:
    """``value`` as a refusal names it: its repr, cut short (a request may be a megabyte)."""
    shown = repr(value)
    return shown if len(shown) <= 80 else f"{shown[:77]}..."


# -- cursors --------------------------------------------------------------------------


class _Cursor(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    created_at: int
    id: str


_cursor_decoder = msgspec.json.Decoder(_Cursor)


def encode_cursor(position: Position) -> str:
    """The cursor that asks for the promises below ``position`` (URL-safe, opaque)."""
    raw = msgspec.json.encode(_Cursor(*position))
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: Any) -> Position | str:
    """The position ``cursor`` stands for, or a message saying it is not a cursor (a 400)."""
    refusal = f"cursor {_shown(cursor)} is not one a promise.search returned"
    if not isinstance(cursor, str) or not cursor.isascii():
        return refusal
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        decoded = _cursor_decoder.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        return refusal
    if not _I64_MIN <= decoded.created_at <= _I64_MAX:
        return refusal
    return (decoded.created_at, decoded.id)


def page_of(found: list[tuple[Position, dict[str, Any]]], limit: int) -> dict[str, Any]:
    """The answer's data from up to ``limit + 1`` matches, newest first.

    One more than a page tells whether another page may follow; the cursor is
    the position of the last promise on this one.
    """
    page = found[:limit]
    cursor = encode_cursor(page[-1][0]) if len(found) > limit else None
    return {"promises": [record for _, record in page], "cursor": cursor}


# -- over the store's promise table ---------------------------------------------------------


class _Summary(msgspec.Struct):
    """What a search without tags reads of a promise held as a snapshot's bytes."""

    state: str
    created_at: int


class _TaggedSummary(_Summary):
    """What a search by tags reads of one (decoding a promise's tags is half its cost)."""

    tags: dict[str, str]


_summary_decoder = msgspec.msgpack.Decoder(_Summary)
_tagged_summary_decoder = msgspec.msgpack.Decoder(_TaggedSummary)
#: A promise as ``PromiseTable`` holds one restored from a snapshot (``indexed.py``).
_promise_decoder = msgspec.msgpack.Decoder(DurablePromise)


class Page:
    """The newest ``limit + 1`` matches among the promises fed so far.

    Fed ``(id, promise)`` pairs as the table holds them, a promise decoded or
    still the msgpack bytes it was restored from (``msgspec.Raw``); those
    bytes are read, never decoded into the table. A decoded match is kept as
    its record at once, since the state machine changes promises in place and
    the store may apply requests between two feeds: a page holds what
    matched. A bounded heap, so a page costs one pass over the promises and
    memory for the page alone.
    """

    def __init__(self, search: Search) -> None:
        self.search = search
        #: A match's record as it was when fed (a promise changes in place), or its bytes.
        self._heap: list[tuple[Position, dict[str, Any] | msgspec.Raw]] = []

    def feed(self, items: Iterable[tuple[str, DurablePromise | msgspec.Raw]]) -> None:
        """Take these promises in; newest first is cheapest (the heap then rarely changes)."""
        search, heap, size = self.search, self._heap, self.search.limit + 1
        states, wanted = search.states, search.tags.items()
        below_at, below_id = search.before if search.before is not None else (None, "")
        summary = (_tagged_summary_decoder if wanted else _summary_decoder).decode
        for key, held in items:
            seen: Any = summary(held) if type(held) is msgspec.Raw else held
            created_at = seen.created_at
            if below_at is not None and (
                created_at > below_at or (created_at == below_at and key >= below_id)
            ):
                continue
            if states is not None and seen.state not in states:
                continue
            if wanted and not wanted <= seen.tags.items():
                continue
            position = (created_at, key)
            if len(heap) < size or position > heap[0][0]:
                kept = held if isinstance(held, msgspec.Raw) else held.to_record()
                if len(heap) < size:
                    heapq.heappush(heap, (position, kept))
                else:
                    heapq.heapreplace(heap, (position, kept))

    def answer(self) -> dict[str, Any]:
        """The page's data: ``{"promises": [records], "cursor": str | None}``."""
        found = []
        for position, held in sorted(self._heap, key=lambda entry: entry[0], reverse=True):
            record = (
                _promise_decoder.decode(held).to_record() if type(held) is msgspec.Raw else held
            )
            found.append((position, record))
        return page_of(found, self.search.limit)


def search_promises(promises: dict[str, Any], search: Search) -> dict[str, Any]:
    """The page of ``promises`` (a ``PromiseTable`` or a plain dict) that ``search`` asks for."""
    page = Page(search)
    page.feed(reversed(list(dict.items(promises))))
    return page.answer()
