"""The store's ``promise.search`` (``promise_store/search.py``): what it finds, in what order,
page by page, over promises decoded or still a snapshot's bytes, and that it writes nothing.

Across backends, through the SDK: tests/orchestrator/test_promise_search.py.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from resonate.connections.local import DurablePromise

from promise_store import state as state_module
from promise_store.indexed import IndexedServerState, PromiseTable
from promise_store.search import (
    DEFAULT_LIMIT,
    STATE_FILTERS,
    Page,
    Search,
    decode_cursor,
    encode_cursor,
    parse_search,
    search_promises,
)
from promise_store.snapshot import decode_state, encode_state
from promise_store.state import JournaledState
from tests.promise_store.test_journal import FakeClock

STATES = ("pending", "resolved", "rejected", "rejected_canceled", "rejected_timedout")


def promise(promise_id: str, state: str, created_at: int, tags: dict[str, str]) -> DurablePromise:
    return DurablePromise(
        id=promise_id,
        state=state,  # type: ignore[arg-type]
        param={"headers": {}, "data": promise_id},
        value=None,
        tags=tags,
        timeout_at=1 << 60,
        created_at=created_at,
        settled_at=None if state == "pending" else created_at + 1,
        awaiters=set(),
        subscribers=set(),
    )


promises_strategy = st.dictionaries(
    st.text("abcxyz", min_size=1, max_size=3),
    st.tuples(
        st.sampled_from(STATES),
        st.integers(0, 4),  # few instants: many ties, broken by id
        st.dictionaries(st.sampled_from("kt"), st.sampled_from("12"), max_size=2),
    ),
    max_size=40,
)


def every_page(promises: dict[str, Any], query: dict[str, Any]) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        search = parse_search({**query, "cursor": cursor})
        assert isinstance(search, Search), search
        page = search_promises(promises, search)
        pages.append([record["id"] for record in page["promises"]])
        cursor = page["cursor"]
        if cursor is None:
            return pages


@settings(max_examples=150, deadline=None)
@given(
    made=promises_strategy,
    state=st.sampled_from([None, *STATE_FILTERS]),
    tags=st.dictionaries(st.sampled_from("kt"), st.sampled_from("12"), max_size=2),
    limit=st.integers(1, 7),
)
def test_pages_hold_every_match_once_newest_first(
    made: dict[str, tuple[str, int, dict[str, str]]],
    state: str | None,
    tags: dict[str, str],
    limit: int,
) -> None:
    table = PromiseTable({key: promise(key, *fields) for key, fields in made.items()})
    live = IndexedServerState()
    live.promises = table
    restored = decode_state(encode_state(live)).promises  # each promise left as its bytes
    assert isinstance(restored, PromiseTable)
    wanted = STATE_FILTERS[state] if state is not None else STATES
    expected = [
        key
        for key, (held, created_at, held_tags) in sorted(
            made.items(), key=lambda kv: (kv[1][1], kv[0]), reverse=True
        )
        if held in wanted and tags.items() <= held_tags.items()
    ]
    query = {"state": state, "tags": tags, "limit": limit}
    for promises in (table, restored):
        pages = every_page(promises, query)
        assert [key for page in pages for key in page] == expected
        assert all(len(page) == limit for page in pages[:-1])
        assert len(pages[-1]) <= limit
    assert all(type(held) is msgspec.Raw for held in restored.stored())


def test_promises_created_after_a_page_never_reach_a_later_one() -> None:
    table = PromiseTable({f"p{i}": promise(f"p{i}", "pending", 100 + i // 3, {}) for i in range(9)})
    first = search_promises(table, Search(states=None, tags={}, limit=4, before=None))
    assert [r["id"] for r in first["promises"]] == ["p8", "p7", "p6", "p5"]
    for i in range(9, 20):  # newer, and some at the last page's very instant
        table[f"p{i}"] = promise(f"p{i}", "pending", 103 + i, {})
    table["p50"] = promise("p50", "pending", 101, {})  # same instant as p5, higher id: newer
    before = decode_cursor(first["cursor"])
    assert before == (101, "p5")
    rest = search_promises(table, Search(states=None, tags={}, limit=10, before=before))
    assert [r["id"] for r in rest["promises"]] == ["p4", "p3", "p2", "p1", "p0"]
    assert rest["cursor"] is None


def test_a_page_holds_a_promise_as_it_matched() -> None:
    """The state machine changes promises in place, maybe between two slices of one search."""
    table = PromiseTable({"a": promise("a", "pending", 1, {})})
    page = Page(Search(states=frozenset({"pending"}), tags={}, limit=5, before=None))
    page.feed(table.items())
    table["a"].state = "resolved"
    assert [r["state"] for r in page.answer()["promises"]] == ["pending"]


def test_what_a_search_may_ask() -> None:
    assert parse_search({}) == Search(states=None, tags={}, limit=DEFAULT_LIMIT, before=None)
    search = parse_search({"state": "rejected", "tags": {"a": "b"}, "limit": 1000})
    assert isinstance(search, Search)
    assert search.states == frozenset(("rejected", "rejected_canceled", "rejected_timedout"))
    cursor = encode_cursor((-(2**63), "ü/+= id"))
    assert decode_cursor(cursor) == (-(2**63), "ü/+= id")
    assert cursor.isascii()
    assert "=" not in cursor
    for bad in ({"limit": True}, {"limit": 1.0}, {"tags": {"a": ["b"]}}, {"state": 1}):
        assert isinstance(parse_search(bad), str), bad
    beyond_bigint = base64.urlsafe_b64encode(b'[9223372036854775808,"x"]').decode()
    assert isinstance(decode_cursor(beyond_bigint), str)
    assert isinstance(decode_cursor(encode_cursor((1, "x")) + "!"), str)
    assert isinstance(decode_cursor(encode_cursor((1, "x"))[:-1] + "+/"), str)


def test_a_search_of_a_store_file_writes_nothing_and_times_nothing_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real journal, restored from a snapshot, read a few promises per turn of the loop."""
    monkeypatch.setattr(state_module, "SEARCH_SLICE", 3)
    clock = FakeClock()
    path = tmp_path / "search.db"

    async def make() -> None:
        store = JournaledState(path, clock=clock)
        for i in range(10):
            clock.now += 1
            await store.apply(
                {
                    "kind": "promise.create",
                    "corrId": f"c{i}",
                    "id": f"p{i}",
                    "timeoutAt": clock.now + 50,
                    "param": {"headers": {}, "data": str(i)},
                    "tags": {"run": "r", "half": str(i // 5)},
                }
            )
        await store.apply({"kind": "promise.settle", "id": "p3", "state": "resolved"})
        await store.flush()
        store.snapshot_now()
        await store.close()

    async def search(store: JournaledState, **data: Any) -> Any:
        applied = await store.apply({"kind": "promise.search", "corrId": "s", **data})
        return applied.error if applied.response is None else applied.response

    async def read() -> None:
        clock.now += 1_000  # every pending promise is past its deadline
        store = JournaledState(path, clock=clock)
        try:
            seq = store.seq
            answer = await search(store, tags={"run": "r"}, state="pending", limit=4)
            assert [r["id"] for r in answer["promises"]] == ["p9", "p8", "p7", "p6"]
            assert {r["state"] for r in answer["promises"]} == {"pending"}, "as stored"
            more = await search(store, state="pending", limit=4, cursor=answer["cursor"])
            assert [r["id"] for r in more["promises"]] == ["p5", "p4", "p2", "p1"]
            low = await search(store, tags={"half": "0"}, cursor=more["cursor"])
            assert [r["id"] for r in low["promises"]] == ["p0"]
            assert low["cursor"] is None
            refused = await search(store, limit=0)
            assert (refused.code, "limit" in refused.message) == (400, True)
            assert store.seq == seq, "nothing journaled"
            table = store.state.promises
            assert isinstance(table, PromiseTable)
            assert all(type(held) is msgspec.Raw for held in table.stored())
            # p9 changes (it times out as it is settled) once the search has read it: the
            # page holds it as it matched, not as it is by the time the page is sent.
            answer, _ = await asyncio.gather(
                search(store, state="pending", limit=4),
                store.apply({"kind": "promise.settle", "id": "p9", "state": "resolved"}),
            )
            assert [(r["id"], r["state"]) for r in answer["promises"]][:2] == [
                ("p9", "pending"),
                ("p8", "pending"),
            ]
            assert table["p9"].state == "rejected_timedout"
            await store.flush()
        finally:
            await store.close()

    asyncio.run(make())
    asyncio.run(read())
