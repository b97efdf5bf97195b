"""The served store's Prometheus metrics, read at ``GET /metrics``.

Each store has a registry of its own, never prometheus-client's default one:
the default is one per process, and tests (and the embedded store) run
several stores in one process, whose figures must not mix.

What is counted where: each protocol request once, where ``POST /`` is
answered (:meth:`StoreMetrics.answered`), and each request the HTTP layer
refuses itself -- no token, a wrong ``Host``, over a limit -- where it
refuses it (:meth:`StoreMetrics.refused`); each group commit by the journal
once it is synced (``JournaledState.on_commit``). Everything else is read
when scraped: file sizes, open push channels, whether the journal takes
writes, and promises and tasks by state, counted by walking the state (see
:meth:`StoreMetrics.count_states` for what that costs).

Nothing here names a promise, a task or a listener, or holds any data: label
values come from fixed sets (request kinds, status codes, states).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import Counter as Tally
from collections.abc import Iterable
from operator import attrgetter
from pathlib import Path
from typing import Any

import msgspec
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from promise_store.delivery import Mailboxes
from promise_store.rules import SERVED_KINDS
from promise_store.state import JournaledState

__all__ = ["CONTENT_TYPE_LATEST", "StoreMetrics"]

#: A request's time: a read takes a fraction of a millisecond, a write one synced
#: commit (about 0.2-0.5 ms here), more under load or on a slow disk.
REQUEST_BUCKETS = (
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
#: Journal entries per group commit: one alone, up to every request in flight.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

#: The states a promise or a task can be in (the SDK's ``PromiseState`` and ``TaskState``).
PROMISE_STATES = ("pending", "resolved", "rejected", "rejected_canceled", "rejected_timedout")
TASK_STATES = ("pending", "acquired", "suspended", "halted", "fulfilled")
#: Label for a request kind, status or state outside those sets.
OTHER = "other"

#: Promises or tasks counted between two turns of the event loop during a scrape.
COUNT_SLICE = 10_000


class _StateOnly(msgspec.Struct):
    """The one field of an encoded promise a count needs (the rest is skipped, not built)."""

    state: str


_state_decoder = msgspec.msgpack.Decoder(_StateOnly)
_state_of = attrgetter("state")


class StoreMetrics:
    """One served store's metrics, in a registry of its own (:attr:`registry`)."""

    def __init__(self, store: JournaledState, mailboxes: Mailboxes) -> None:
        self.store = store
        self.registry = registry = CollectorRegistry()
        self._requests = Counter(
            "crossbank_store_requests",
            "Protocol requests answered, by kind (POST /; other: unknown, unreadable, or "
            "refused before its body was read) and the status in the answer.",
            ["kind", "status"],
            registry=registry,
        )
        self._request_seconds = Histogram(
            "crossbank_store_request_seconds",
            "From a protocol request read to its answer: a write's answer waits for its "
            "group commit to be synced.",
            ["kind"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self._batch = Histogram(
            "crossbank_store_commit_batch_entries",
            "Journal entries per group commit.",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        path = store.path
        wal = Path(f"{path}-wal")
        Gauge(
            "crossbank_store_journal_bytes",
            "Size of the store's database file.",
            registry=registry,
        ).set_function(lambda: _size(path))
        Gauge(
            "crossbank_store_wal_bytes",
            "Size of the database file's write-ahead log (0 when there is none).",
            registry=registry,
        ).set_function(lambda: _size(wal))
        Gauge(
            "crossbank_store_push_channels",
            "Push channels (GET /poll/..., server-sent events) open now.",
            registry=registry,
        ).set_function(mailboxes.listener_count)
        Gauge(
            "crossbank_store_writable",
            "1 while the journal takes writes; 0 while it cannot be written (a full disk).",
            registry=registry,
        ).set_function(lambda: 1.0 if store.write_failure is None else 0.0)
        self._promises = Gauge(
            "crossbank_store_promises",
            "Promises the store holds, by state (counted at each scrape).",
            ["state"],
            registry=registry,
        )
        self._tasks = Gauge(
            "crossbank_store_tasks",
            "Tasks the store holds, by state (counted at each scrape).",
            ["state"],
            registry=registry,
        )
        for state in PROMISE_STATES:
            self._promises.labels(state)
        for state in TASK_STATES:
            self._tasks.labels(state)
        #: (kind label, status) -> its counter and histogram, so counting a request costs
        #: one dict lookup rather than prometheus-client's label resolution (about 3 µs less).
        self._children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}
        store.on_commit = self._batch.observe

    # -- counted as they happen -----------------------------------------------------

    def answered(self, kind: str | None, status: int, seconds: float) -> None:
        """A protocol request of ``kind`` got ``status`` after ``seconds``."""
        label = kind if kind in SERVED_KINDS else OTHER
        key = (label, status if 100 <= status <= 599 else 0)  # 0: counted as "other"
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self._requests.labels(label, _status(status)),
                self._request_seconds.labels(label),
            )
        requests, seconds_of = children
        requests.inc()
        seconds_of.observe(seconds)

    def refused(self, status: int) -> None:
        """The HTTP layer refused a request (its kind unread) with ``status``."""
        self._requests.labels(OTHER, _status(status)).inc()

    # -- read when scraped ----------------------------------------------------------

    async def render(self) -> bytes:
        """The text a scrape gets: promises and tasks counted now, then every metric."""
        await self.count_states()
        return generate_latest(self.registry)

    async def count_states(self) -> None:
        """Set the promise and task gauges from the state as it is now.

        This walks every promise and task: it copies the table's values (one
        C call), then counts them a slice of :data:`COUNT_SLICE` at a time
        with a turn of the event loop between slices, so requests are not
        held up behind the whole walk. A promise still held as its
        snapshot's bytes is not decoded: only its ``state`` is read from
        them, and it stays as it was. A promise that changes state during
        the walk is counted once, in one of its states. What it costs at
        100,000 and 500,000 promises is in promise_store/README.md, "Metrics".
        """
        state = self.store.state
        promises = list(dict.values(state.promises))
        tasks = list(state.tasks.values())
        _set(self._promises, PROMISE_STATES, await _tally(promises))
        _set(self._tasks, TASK_STATES, await _tally(tasks))


async def _tally(items: list[Any]) -> Tally[str]:
    """States of ``items`` (promises, decoded or encoded, or tasks), counted slice by slice."""
    counts: Tally[str] = Tally()
    for start in range(0, len(items), COUNT_SLICE):
        if start:
            await asyncio.sleep(0)
        chunk = items[start : start + COUNT_SLICE]
        try:
            counts.update(Tally(map(_state_of, chunk)))  # all in C
        except AttributeError:  # some are encoded (msgspec.Raw has no state)
            counts.update(
                _state_decoder.decode(item).state if type(item) is msgspec.Raw else item.state
                for item in chunk
            )
    return counts


def _set(gauge: Gauge, known: Iterable[str], counts: Tally[str]) -> None:
    for state in known:
        gauge.labels(state).set(counts.pop(state, 0))
    if counts:  # a state the SDK added since: counted, not named
        gauge.labels(OTHER).set(sum(counts.values()))
    else:
        with contextlib.suppress(KeyError):
            gauge.remove(OTHER)


def _status(status: int) -> str:
    return str(status) if 100 <= status <= 599 else OTHER


def _size(path: Path) -> float:
    """The file's size in bytes; 0 when there is no such file."""
    try:
        return float(os.stat(path).st_size)
    except FileNotFoundError:
        return 0.0
