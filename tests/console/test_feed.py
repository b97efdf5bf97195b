"""The live feed: a page gets everything once, then only what changed; a slow page is let go."""

from __future__ import annotations

import json

import pytest

from orchestrator.console.feed import Feed, TooManyClients


def body(event: str) -> dict[str, object]:
    data = next(line for line in event.splitlines() if line.startswith("data: "))
    parsed: dict[str, object] = json.loads(data[len("data: ") :])
    return parsed


@pytest.mark.anyio
async def test_a_page_gets_the_whole_state_then_only_the_sections_that_changed() -> None:
    feed = Feed(max_clients=4, queue_size=8)
    feed.publish({"banks": {"a": 1}, "transfers": []})
    page = feed.subscribe()
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
    feed = Feed(max_clients=4, queue_size=2)
    page = feed.subscribe()
    for n in range(5):
        feed.publish({"banks": {"n": n}})
    assert page.dropped
    assert page.queue.qsize() == 1  # only the wake-up that ends its stream


@pytest.mark.anyio
async def test_no_more_pages_than_the_limit() -> None:
    feed = Feed(max_clients=1, queue_size=2)
    page = feed.subscribe()
    with pytest.raises(TooManyClients, match="CONSOLE_MAX_CLIENTS"):
        feed.subscribe()
    feed.unsubscribe(page)
    feed.subscribe()
