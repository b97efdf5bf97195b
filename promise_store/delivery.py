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

Any member of a group can be dealt its work, including one that takes it and
does nothing. The state machine would re-send such an ``execute`` only after
its 30 s retry, so an anycast ``execute`` is watched instead: if its task is
still pending at the same version ``reoffer_after`` seconds later, it is
offered to listeners of the group that have not had it, twice as many each
round (1, 2, 4, ...), until one takes it or every listener has had it.
Listeners that have taken work they were dealt alone are offered it first,
most recent first, so a swallower costs a task about one ``reoffer_after``
once any worker has proven itself. A second taker's ``task.acquire`` is refused by the task's state and version, so
an extra offer costs a refused request, never a second run. Watches are not
state (nothing is journaled); at most ``max_watched`` are kept, and past that
the oldest is forgotten, which leaves its task to the 30 s retry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

MAX_HELD_PER_ADDRESS = 10_000
#: Addresses with held mail; past this the longest-held address is forgotten
#: (every client run listens at a fresh pid, so dead addresses accumulate).
MAX_HELD_ADDRESSES = 10_000
#: Seconds an anycast ``execute`` may sit with a listener, its task still
#: pending, before it is offered to others (``REOFFER_AFTER``).
DEFAULT_REOFFER_AFTER = 1.0
#: Anycast ``execute`` messages watched at once (``MAX_WATCHED_OFFERS``).
DEFAULT_MAX_WATCHED = 10_000

#: Is task ``(id, version)`` still waiting for someone to acquire it?
type StillPending = Callable[[str, int], bool]


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
    #: ``(task id, version)`` of an ``execute`` message, else ``None``.
    task: tuple[str, int] | None = None


@dataclass(slots=True)
class _Watch:
    """An anycast ``execute`` dealt out, and who has had it."""

    delivery: Delivery
    task: tuple[str, int]
    group: str
    tried: set[str]
    due: float
    fanout: int = 1


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
        self,
        max_held: int = MAX_HELD_PER_ADDRESS,
        max_addresses: int = MAX_HELD_ADDRESSES,
        *,
        reoffer_after: float = DEFAULT_REOFFER_AFTER,
        max_watched: int = DEFAULT_MAX_WATCHED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_held = max_held
        self._max_addresses = max_addresses
        self._reoffer_after = reoffer_after
        self._max_watched = max_watched
        self._clock = clock
        self._listeners: dict[tuple[str, str], Listener] = {}
        self._held_uni: dict[tuple[str, str], deque[Delivery]] = {}
        self._held_any: dict[str, deque[Delivery]] = {}
        self._turn: dict[str, int] = {}
        #: Task id -> watch, in order of due time (every (re)insert is due
        #: ``reoffer_after`` from a monotonic now, so the first is due first).
        self._watched: dict[str, _Watch] = {}
        self._shed_watches = 0
        #: Per group, connected pids that took work dealt to them alone, oldest first.
        self._takers: dict[str, dict[str, None]] = {}

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
            self._watch(delivery, key[0], pid)
        return listener

    def disconnect(self, listener: Listener, unsent: list[Delivery]) -> None:
        """Forget ``listener``; what it never sent is routed again (to a peer, or held)."""
        key = (listener.group, listener.pid)
        if self._listeners.get(key) is listener:
            del self._listeners[key]
            self._takers.get(listener.group, {}).pop(listener.pid, None)
        while not listener.queue.empty():
            delivery = listener.queue.get_nowait()
            if delivery is not None:
                unsent.append(delivery)
        for delivery in unsent:
            self.route(delivery.address, delivery.payload, task=delivery.task)

    def route(self, address: str, payload: str, *, task: tuple[str, int] | None = None) -> None:
        """Deliver (or hold) one message; ``task`` marks an ``execute`` worth watching."""
        parsed = parse_address(address)
        if parsed is None:
            logger.warning("dropping a message for an address this store cannot reach: %s", address)
            return
        delivery = Delivery(address, payload, task)
        group = parsed.group
        if parsed.pid is not None:
            preferred = self._listeners.get((group, parsed.pid))
            if preferred is not None:
                preferred.queue.put_nowait(delivery)
                if parsed.anycast:
                    self._watch(delivery, group, preferred.pid)
                return
            if not parsed.anycast:
                self._hold(self._held_uni, (group, parsed.pid), delivery)
                return
        members = self._members(group)
        if not members:
            self._hold(self._held_any, group, delivery)
            return
        turn = self._turn.get(group, 0)
        self._turn[group] = turn + 1
        chosen = members[turn % len(members)]
        chosen.queue.put_nowait(delivery)
        self._watch(delivery, group, chosen.pid)

    # -- work a listener sat on -------------------------------------------------

    def reoffer_due(self, still_pending: StillPending) -> int:
        """Offer every due watched ``execute`` whose task is still pending to more listeners.

        Returns how many offers were made.
        """
        now = self._clock()
        due: list[_Watch] = []
        while self._watched:
            watch = next(iter(self._watched.values()))
            if watch.due > now:
                break
            del self._watched[watch.task[0]]
            due.append(watch)
        unclaimed = []
        for watch in due:  # learn who takes work first, so this round uses it
            if still_pending(*watch.task):
                unclaimed.append(watch)
            elif len(watch.tried) == 1:
                self._credit(watch.group, next(iter(watch.tried)))
        offered = 0
        for watch in unclaimed:
            untried = self._candidates(watch)
            for listener in untried[: watch.fanout]:
                listener.queue.put_nowait(watch.delivery)
                watch.tried.add(listener.pid)
                offered += 1
            if len(untried) > watch.fanout:
                watch.fanout *= 2
                watch.due = now + self._reoffer_after
                self._watched[watch.task[0]] = watch
        return offered

    def seconds_until_reoffer(self) -> float | None:
        """How long until the next watched ``execute`` is due (``None``: nothing is watched)."""
        due = self.next_reoffer()
        return None if due is None else max(due - self._clock(), 0.0)

    def next_reoffer(self) -> float | None:
        """When (on this object's clock) the next watched ``execute`` is due, if any."""
        for watch in self._watched.values():
            return watch.due
        return None

    def watched_count(self) -> int:
        return len(self._watched)

    def _watch(self, delivery: Delivery, group: str, pid: str) -> None:
        task = delivery.task
        if task is None or self._max_watched < 1:
            return
        task_id = task[0]
        self._watched.pop(task_id, None)  # a newer dispatch of the task replaces the old
        if len(self._watched) >= self._max_watched:
            del self._watched[next(iter(self._watched))]
            self._shed_watches += 1
            if self._shed_watches % 1000 == 1:
                logger.warning(
                    "more than %d dispatched tasks watched; forgot the oldest (%d so far), "
                    "which the 30 s retry still covers",
                    self._max_watched,
                    self._shed_watches,
                )
        self._watched[task_id] = _Watch(
            delivery, task, group, {pid}, due=self._clock() + self._reoffer_after
        )

    def _credit(self, group: str, pid: str) -> None:
        if (group, pid) in self._listeners:
            takers = self._takers.setdefault(group, {})
            takers.pop(pid, None)
            takers[pid] = None

    def _candidates(self, watch: _Watch) -> list[Listener]:
        """The group's listeners that have not had ``watch``'s work, proven takers first."""
        untried = [lis for lis in self._members(watch.group) if lis.pid not in watch.tried]
        rank = {pid: i for i, pid in enumerate(reversed(self._takers.get(watch.group, {})))}
        untried.sort(key=lambda lis: rank.get(lis.pid, len(rank)))
        return untried

    def _members(self, group: str) -> list[Listener]:
        return [lis for (g, _), lis in self._listeners.items() if g == group]

    def close_all(self) -> None:
        for listener in list(self._listeners.values()):
            listener.close()

    def listener_count(self) -> int:
        """Listeners connected now (``GET /poll/...``); a pid that connects again replaces its own."""
        return len(self._listeners)

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
