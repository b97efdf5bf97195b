"""The live feed: each poll's sections, pushed to every open page as only what changed.

A page that connects gets every section at once, then one event per poll
that changed something, holding only the sections that changed. Each page
has a queue of at most ``CONSOLE_CLIENT_QUEUE`` events; a page too slow to
take them is let go (its stream ends), and its browser reconnects and starts
again from a whole state, so a slow page never holds memory or the poller up.

At most ``CONSOLE_MAX_CLIENTS`` pages listen at once, and at most
``CONSOLE_MAX_CLIENTS_PER_TOKEN`` for one holder (one token, or one address
when the console has none). A new page is never turned away: past either
limit, the holder's own oldest stream ends to make room, else the oldest of
all. A page left open, or a client that opens streams and never reads them,
cannot lock anyone out; the page whose stream ended reconnects, and if it is
still wanted it takes its turn like any other.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any


class Subscriber:
    """One page's stream: a bounded queue of events, and whether it was let go."""

    def __init__(self, size: int, holder: str) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=size)
        self.holder = holder
        self.dropped = False

    def offer(self, event: str) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.drop()

    def drop(self) -> None:
        """End this stream: it fell behind, or made room for a newer page."""
        self.dropped = True
        while not self.queue.empty():  # what it had not taken is of no use now
            self.queue.get_nowait()
        self.queue.put_nowait("")  # wakes the stream, which then ends


class Feed:
    """The last state seen, and the pages to tell when it changes."""

    def __init__(self, *, max_clients: int, queue_size: int, max_per_holder: int) -> None:
        self.max_clients = max_clients
        self.max_per_holder = max_per_holder
        self.queue_size = queue_size
        self.state: dict[str, Any] = {}
        self._encoded: dict[str, str] = {}
        #: Open streams, oldest first.
        self.subscribers: dict[Subscriber, None] = {}
        self.sequence = 0
        #: Set once the first poll's state is in: until then there is nothing to show.
        self.published = asyncio.Event()

    def publish(self, state: dict[str, Any]) -> dict[str, Any]:
        """Take a poll's sections; send the changed ones to every page; return them."""
        encoded = {key: json.dumps(value, sort_keys=True) for key, value in state.items()}
        changed = {
            key: state[key] for key, text in encoded.items() if self._encoded.get(key) != text
        }
        self.state, self._encoded = state, encoded
        self.published.set()
        if changed:
            self.sequence += 1
            event = _event(self.sequence, changed)
            for subscriber in list(self.subscribers):
                subscriber.offer(event)
        return changed

    def subscribe(self, holder: str) -> Subscriber:
        """A new page's stream for ``holder``, starting with every section there is."""
        own = [subscriber for subscriber in self.subscribers if subscriber.holder == holder]
        while len(own) >= self.max_per_holder:
            self.unsubscribe(own.pop(0)).drop()
        if len(self.subscribers) >= self.max_clients:
            self.unsubscribe(own[0] if own else next(iter(self.subscribers))).drop()
        subscriber = Subscriber(self.queue_size, holder)
        if self.state:
            subscriber.offer(_event(self.sequence, self.state, whole=True))
        self.subscribers[subscriber] = None
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> Subscriber:
        self.subscribers.pop(subscriber, None)
        return subscriber


def _event(sequence: int, sections: dict[str, Any], *, whole: bool = False) -> str:
    """One server-sent event: ``id``, and ``data`` with the sections and when they were read."""
    body = json.dumps(
        {"sequence": sequence, "whole": whole, "sent_at": time.time() * 1000, "sections": sections}
    )
    return f"id: {sequence}\nevent: state\ndata: {body}\n\n"
