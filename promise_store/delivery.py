"""Routing ``execute``/``unblock`` messages to server-sent-event listeners.

Addresses are the SDK's ``poll://`` ones:

* ``poll://uni@{group}/{pid}`` -- that one listener;
* ``poll://any@{group}`` -- one live listener of the group, round-robin
  (``poll://any@{group}/{pid}`` prefers that pid when it is connected).

A message nobody can take now is held -- per listener for unicast, per group
for anycast -- and handed to the next matching listener that connects, so a
worker that is restarting misses nothing. Held queues are bounded: the store
re-sends ``execute`` for every pending task on its retry tick, and the SDK
re-registers its listeners periodically, so the oldest held messages are the
ones safe to shed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

MAX_HELD_PER_ADDRESS = 10_000
#: Addresses with held mail; past this the longest-held address is forgotten
#: (every client run listens at a fresh pid, so dead addresses accumulate).
MAX_HELD_ADDRESSES = 10_000


@dataclass(frozen=True, slots=True)
class Address:
    anycast: bool
    group: str
    pid: str | None


def parse_address(address: str) -> Address | None:
    """Read a ``poll://`` address; ``None`` for anything this store cannot deliver to."""
    try:
        parts = urlsplit(address)
    except ValueError:
        return None
    if parts.scheme != "poll" or parts.username not in ("uni", "any"):
        return None
    group = (parts.hostname or "").strip()
    pid = parts.path.strip("/") or None
    if not group:
        return None
    if parts.username == "uni":
        return Address(anycast=False, group=group, pid=pid) if pid else None
    return Address(anycast=True, group=group, pid=pid)


@dataclass(frozen=True, slots=True)
class Delivery:
    address: str
    payload: str


@dataclass(eq=False)
class Listener:
    """One connected ``GET /poll/{group}/{pid}`` stream; ``None`` in its queue closes it."""

    group: str
    pid: str
    queue: asyncio.Queue[Delivery | None] = field(default_factory=asyncio.Queue)

    def close(self) -> None:
        self.queue.put_nowait(None)


class Mailboxes:
    """Live listeners plus the messages held for listeners that are not connected."""

    def __init__(
        self, max_held: int = MAX_HELD_PER_ADDRESS, max_addresses: int = MAX_HELD_ADDRESSES
    ) -> None:
        self._max_held = max_held
        self._max_addresses = max_addresses
        self._listeners: dict[tuple[str, str], Listener] = {}
        self._held_uni: dict[tuple[str, str], deque[Delivery]] = {}
        self._held_any: dict[str, deque[Delivery]] = {}
        self._turn: dict[str, int] = {}

    def connect(self, group: str, pid: str) -> Listener:
        """Register a listener (replacing an older stream of the same pid) and give it its mail."""
        key = (group.lower(), pid)
        old = self._listeners.pop(key, None)
        if old is not None:
            old.close()
        listener = Listener(group=key[0], pid=pid)
        self._listeners[key] = listener
        for delivery in self._held_uni.pop(key, deque()):
            listener.queue.put_nowait(delivery)
        for delivery in self._held_any.pop(key[0], deque()):
            listener.queue.put_nowait(delivery)
        return listener

    def disconnect(self, listener: Listener, unsent: list[Delivery]) -> None:
        """Forget ``listener``; what it never sent is routed again (to a peer, or held)."""
        key = (listener.group, listener.pid)
        if self._listeners.get(key) is listener:
            del self._listeners[key]
        while not listener.queue.empty():
            delivery = listener.queue.get_nowait()
            if delivery is not None:
                unsent.append(delivery)
        for delivery in unsent:
            self.route(delivery.address, delivery.payload)

    def route(self, address: str, payload: str) -> None:
        parsed = parse_address(address)
        if parsed is None:
            logger.warning("dropping a message for an address this store cannot reach: %s", address)
            return
        delivery = Delivery(address, payload)
        group = parsed.group
        if parsed.pid is not None:
            preferred = self._listeners.get((group, parsed.pid))
            if preferred is not None:
                preferred.queue.put_nowait(delivery)
                return
            if not parsed.anycast:
                self._hold(self._held_uni, (group, parsed.pid), delivery)
                return
        members = [lis for (g, _), lis in self._listeners.items() if g == group]
        if not members:
            self._hold(self._held_any, group, delivery)
            return
        turn = self._turn.get(group, 0)
        self._turn[group] = turn + 1
        members[turn % len(members)].queue.put_nowait(delivery)

    def close_all(self) -> None:
        for listener in list(self._listeners.values()):
            listener.close()

    def held_count(self) -> int:
        return sum(len(q) for q in self._held_uni.values()) + sum(
            len(q) for q in self._held_any.values()
        )

    def _hold[K](self, held: dict[K, deque[Delivery]], key: K, payload: Delivery) -> None:
        if key not in held and len(held) >= self._max_addresses:
            oldest = next(iter(held))
            logger.warning("forgetting %d held message(s) for %s", len(held.pop(oldest)), oldest)
        queue = held.setdefault(key, deque(maxlen=self._max_held))
        if len(queue) == queue.maxlen:
            logger.warning(
                "held messages for %s exceed %d; shedding the oldest", key, self._max_held
            )
        queue.append(payload)
