"""Serialize the SDK's ``ServerState`` to bytes and back (pure, no I/O).

A snapshot is the state's durable part: promises, tasks, schedules and the two
timeout lists. ``outgoing`` is not state -- it is the queue of messages one
request produced, already delivered (or re-sent by the retry tick) -- so it is
never saved. Containers keep their live order, so a restored state behaves
exactly like the one that was saved (dict order decides ``preload`` order).
"""

from __future__ import annotations

from typing import Any

import msgspec
from resonate.connections.local import (
    DurablePromise,
    PTimeout,
    ScheduleStub,
    ServerState,
    Task,
    TTimeout,
)

from promise_store.indexed import IndexedServerState, PromiseTable

#: Bumped whenever the layout below changes; older formats still load, others are refused.
SNAPSHOT_FORMAT = 2


class StateImage(msgspec.Struct, kw_only=True):
    """Format 2: the durable fields of a ``ServerState``, promises by id with their index.

    Promise ids and promises are two lists in the table's order, so that a
    restart can keep each promise as its bytes until it is read
    (``PromiseTable.restored``) and never decodes the settled ones nobody asks
    about; the branch index (each branch's ids in order) and the promises that
    may have awaiters are saved with them, since rebuilding them would mean
    decoding every promise. Lists, not maps: the deterministic encoder sorts
    a map's keys, and the order of promises and of a branch's ids is meaning.
    """

    format: int = SNAPSHOT_FORMAT
    promise_ids: list[str]
    promises: list[Any]
    branches: dict[str, list[str]]
    awaited: list[str]
    tasks: list[Task]
    schedules: list[ScheduleStub]
    p_timeouts: list[PTimeout]
    t_timeouts: list[TTimeout]


class _RestoredImage(StateImage, kw_only=True):
    """How format 2 is read: each promise left encoded."""

    promises: list[msgspec.Raw]


class ImageV1(msgspec.Struct, kw_only=True):
    """Format 1 (snapshots written before format 2): promises as a decoded list."""

    format: int
    promises: list[DurablePromise]
    tasks: list[Task]
    schedules: list[ScheduleStub]
    p_timeouts: list[PTimeout]
    t_timeouts: list[TTimeout]


class _Format(msgspec.Struct):
    format: int


_encoder = msgspec.msgpack.Encoder(order="deterministic")
_decoder = msgspec.msgpack.Decoder(_RestoredImage)
_v1_decoder = msgspec.msgpack.Decoder(ImageV1)
_format_decoder = msgspec.msgpack.Decoder(_Format)


def _table(state: ServerState) -> PromiseTable:
    promises = state.promises
    return promises if isinstance(promises, PromiseTable) else PromiseTable(promises)


def image_of(state: ServerState) -> StateImage:
    table = _table(state)
    return StateImage(
        promise_ids=list(table.keys()),
        promises=table.stored(),
        branches={branch: list(ids) for branch, ids in table.branches.items()},
        awaited=sorted(table.awaited),
        tasks=list(state.tasks.values()),
        schedules=list(state.schedules.values()),
        p_timeouts=list(state.p_timeouts),
        t_timeouts=list(state.t_timeouts),
    )


def encode_state(state: ServerState) -> bytes:
    """The snapshot bytes of ``state`` (sets sorted, so equal states encode equally).

    A promise still held as the bytes it was restored from is written as
    those bytes: the same encoder made them, so they are what encoding the
    decoded promise would give.
    """
    return _encoder.encode(image_of(state))


def decode_state(blob: bytes) -> ServerState:
    """Rebuild a ``ServerState`` from :func:`encode_state` bytes (format 2, or format 1)."""
    version = _format_decoder.decode(blob).format
    state = IndexedServerState()
    if version == 1:
        old = _v1_decoder.decode(blob)
        state.promises = PromiseTable({p.id: p for p in old.promises})
        tasks, schedules, p_timeouts, t_timeouts = (
            old.tasks,
            old.schedules,
            old.p_timeouts,
            old.t_timeouts,
        )
    elif version == SNAPSHOT_FORMAT:
        image = _decoder.decode(blob)
        encoded = dict(zip(image.promise_ids, image.promises, strict=True))
        state.promises = PromiseTable.restored(encoded, image.branches, image.awaited)
        tasks, schedules, p_timeouts, t_timeouts = (
            image.tasks,
            image.schedules,
            image.p_timeouts,
            image.t_timeouts,
        )
    else:
        msg = f"snapshot format {version} is not one this store reads (1 or {SNAPSHOT_FORMAT})"
        raise ValueError(msg)
    state.tasks = {t.id: t for t in tasks}
    state.schedules = {s.id: s for s in schedules}
    state.p_timeouts = p_timeouts
    state.t_timeouts = t_timeouts
    return state


def canonical_state(state: ServerState) -> bytes:
    """Order-independent bytes of ``state``, for comparing two states for equality.

    The state machine iterates Python sets (whose order depends on the
    process's hash seed) when it resumes awaiters, so two processes replaying
    the same journal can hold their timeout lists in different orders. Those
    orders carry no meaning; this form sorts them away. The index is left
    out: it is derived from the promises (``tests/promise_store/test_indexed.py``
    checks that it answers as the reference does).
    """
    table = _table(state)
    promises = sorted(zip(table.keys(), table.stored(), strict=True), key=lambda kv: kv[0])
    image = ImageV1(
        format=0,
        promises=[],
        tasks=sorted(state.tasks.values(), key=lambda t: t.id),
        schedules=sorted(state.schedules.values(), key=lambda s: s.id),
        p_timeouts=sorted(state.p_timeouts, key=lambda t: t.id),
        t_timeouts=sorted(state.t_timeouts, key=lambda t: t.id),
    )
    return _encoder.encode((dict(promises), image))
