"""The live feed: a page gets everything once, then only what changed; a slow or old page is let go."""

from __future__ import annotations

import json

import pytest

from orchestrator.console.feed import Feed


def body(event: str) -> dict[str, object]:
    data = next(line for line in event.splitlines() if line.startswith("data: "))
    parsed: dict[str, object] = json.loads(data[len("data: ") :])
    return parsed


@pytest.mark.anyio
async def test_a_page_gets_the_whole_state_then_only_the_sections_that_changed() -> None:
    feed = Feed(max_clients=4, queue_size=8, max_per_holder=4)
    feed.publish({"banks": {"a": 1}, "transfers": []})
    page = feed.subscribe("a page")
    first = body(page.queue.get_nowait())
    assert first["whole"] is True
    assert first["sections"] == {"banks": {"a": 1}, "transfers": []}

    assert feed.publish({"banks": {"a": 1}, "transfers": []}) == {}
    assert page.queue.empty()
    feed.publish({"banks": {"a": 2}, "transfers": []})
    second = body(page.queue.get_nowait())
    assert second["whole"] is False
    assert second["sections"] == {"banks": {"a": 2}}


@pytest.mark.anyio
async def test_a_page_that_falls_behind_is_let_go_not_buffered() -> None:
    feed = Feed(max_clients=4, queue_size=2, max_per_holder=4)
    page = feed.subscribe("a page")
    for n in range(5):
        feed.publish({"banks": {"n": n}})
    assert page.dropped
    assert page.queue.qsize() == 1  # only the wake-up that ends its stream


@pytest.mark.anyio
async def test_a_new_page_never_waits_the_oldest_makes_room() -> None:
    """Past a holder's share, its own oldest stream ends; past the total, the oldest of all."""
    feed = Feed(max_clients=3, queue_size=2, max_per_holder=2)
    first, second = feed.subscribe("mallory"), feed.subscribe("mallory")
    third = feed.subscribe("mallory")
    assert first.dropped
    assert not second.dropped
    assert not third.dropped
    alice = feed.subscribe("alice")
    bob = feed.subscribe("bob")  # at the total: the oldest of all (mallory's second) goes
    assert second.dropped
    assert [page.dropped for page in (third, alice, bob)] == [False, False, False]
    assert list(feed.subscribers) == [third, alice, bob]
    carol = feed.subscribe("alice")  # alice's own oldest makes room for her, not bob's
    assert alice.dropped
    assert list(feed.subscribers) == [third, bob, carol]
