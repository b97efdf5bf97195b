"""Serialize the SDK's ``ServerState`` to bytes and back (pure, no I/O).

A snapshot is the state's durable part: promises, tasks, schedules and the two
timeout lists. ``outgoing`` is not state -- it is the queue of messages one
request produced, already delivered (or re-sent by the retry tick) -- so it is
never saved. Containers keep their live order, so a restored state behaves
exactly like the one that was saved (dict order decides ``preload`` order).
"""

from __future__ import annotations

import msgspec
from resonate.connections.local import (
    DurablePromise,
    PTimeout,
    ScheduleStub,
    ServerState,
    Task,
    TTimeout,
)

from promise_store.indexed import IndexedServerState

#: Bumped whenever the layout below changes, so an old file is refused loudly.
SNAPSHOT_FORMAT = 1


class StateImage(msgspec.Struct, kw_only=True):
    """The durable fields of a ``ServerState``, as plain ordered lists."""

    format: int = SNAPSHOT_FORMAT
    promises: list[DurablePromise]
    tasks: list[Task]
    schedules: list[ScheduleStub]
    p_timeouts: list[PTimeout]
    t_timeouts: list[TTimeout]


_encoder = msgspec.msgpack.Encoder(order="deterministic")
_decoder = msgspec.msgpack.Decoder(StateImage)


def image_of(state: ServerState) -> StateImage:
    return StateImage(
        promises=list(state.promises.values()),
        tasks=list(state.tasks.values()),
        schedules=list(state.schedules.values()),
        p_timeouts=list(state.p_timeouts),
        t_timeouts=list(state.t_timeouts),
    )


def encode_state(state: ServerState) -> bytes:
    """The snapshot bytes of ``state`` (sets sorted, so equal states encode equally)."""
    return _encoder.encode(image_of(state))


def decode_state(blob: bytes) -> ServerState:
    """Rebuild a ``ServerState`` from :func:`encode_state` bytes."""
    image = _decoder.decode(blob)
    if image.format != SNAPSHOT_FORMAT:
        msg = f"snapshot format {image.format} is not the supported {SNAPSHOT_FORMAT}"
        raise ValueError(msg)
    state = IndexedServerState()
    state.promises = {p.id: p for p in image.promises}
    state.tasks = {t.id: t for t in image.tasks}
    state.schedules = {s.id: s for s in image.schedules}
    state.p_timeouts = image.p_timeouts
    state.t_timeouts = image.t_timeouts
    return state


def canonical_state(state: ServerState) -> bytes:
    """Order-independent bytes of ``state``, for comparing two states for equality.

    The state machine iterates Python sets (whose order depends on the
    process's hash seed) when it resumes awaiters, so two processes replaying
    the same journal can hold their timeout lists in different orders. Those
    orders carry no meaning; this form sorts them away.
    """
    image = image_of(state)
    image.promises.sort(key=lambda p: p.id)
    image.tasks.sort(key=lambda t: t.id)
    image.schedules.sort(key=lambda s: s.id)
    image.p_timeouts.sort(key=lambda t: t.id)
    image.t_timeouts.sort(key=lambda t: t.id)
    return _encoder.encode(image)
