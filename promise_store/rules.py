"""Which inputs change the SDK's ``ServerState`` -- pure predicates, no I/O.

The journal records exactly the inputs that can change state, so reads stay
cheap and replay stays exact. These predicates mirror the state machine's own
conditions (``ServerState.apply`` and ``ServerState.tick``); the SDK guard test
pins the code they mirror.
"""

from __future__ import annotations

from typing import Any

from resonate.connections.local import ServerState

#: Every request kind ``ServerState.apply`` dispatches on.
KNOWN_KINDS = frozenset(
    {
        "promise.get",
        "promise.create",
        "promise.settle",
        "promise.register_listener",
        "task.create",
        "task.acquire",
        "task.release",
        "task.fulfill",
        "task.fence",
        "task.suspend",
        "task.heartbeat",
        "schedule.create",
        "schedule.get",
        "schedule.delete",
        "schedule.search",
    }
)

#: Kinds the store answers itself, from its promises (``search.py``): the state
#: machine has no handler for them. Reads that time nothing out: never journaled.
STORE_READS = frozenset({"promise.search"})

#: Every request kind the store serves.
SERVED_KINDS = KNOWN_KINDS | STORE_READS

#: Kinds whose handler only reads (and which trigger no auto-timeout).
PURE_READS = frozenset({"schedule.get", "schedule.search"}) | STORE_READS


#: Task operations the SDK fences with the version it was handed, but which the
#: reference ``ServerState`` applies whatever the version (see ``stale_task_request``).
VERSIONED_TASK_KINDS = frozenset({"task.acquire", "task.release", "task.fulfill", "task.suspend"})


def stale_task_request(state: ServerState, req: dict[str, Any]) -> dict[str, Any] | None:
    """A 409 answer when ``req`` acts on a task version that is no longer current, else ``None``.

    The SDK's reference state machine checks the version only on
    ``task.fence`` and ``task.heartbeat``. Left alone, an execution that has
    lost its lease (its store restarted, its heartbeat was late) releases the
    *new* holder's lease with its stale ``task.release``, which makes that
    holder lose its lease in turn: a cascade of re-executions in which steps
    run again. Refusing stale versions, as the Resonate server does, stops it.
    A refused request leaves the state untouched, so it is not journaled.
    """
    kind = req.get("kind")
    if kind not in VERSIONED_TASK_KINDS:
        return None
    version = req.get("version")
    task_id = req.get("id")
    if not isinstance(version, int) or isinstance(version, bool) or not isinstance(task_id, str):
        return None
    task = state.tasks.get(task_id)
    if task is None or task.version == version:
        return None
    return {
        "kind": kind,
        "corrId": req.get("corrId"),
        "status": 409,
        "error": f"task {task_id} is at version {task.version}, not {version}",
    }


def request_changes_state(state: ServerState, now: int, req: dict[str, Any]) -> bool:
    """False only when applying ``req`` at ``now`` provably leaves ``state`` untouched.

    ``promise.get`` reads, except that ``apply`` first times out the promise
    it names when its deadline has passed; that case must be journaled. Every
    other known kind may write -- even when it then fails validation, since
    the auto-timeout runs before the handler checks its fields -- so it is
    journaled whatever its outcome (replaying it fails the same way).
    """
    kind = req.get("kind")
    if kind in PURE_READS:
        return False
    if kind == "promise.get":
        promise_id = req.get("id")
        promise = state.promises.get(promise_id) if isinstance(promise_id, str) else None
        return promise is not None and promise.state == "pending" and now >= promise.timeout_at
    return True


def tick_changes_state(state: ServerState, now: int) -> bool:
    """True when ``ServerState.tick(now)`` would settle, release or retry anything."""
    for pt in state.p_timeouts:
        if now >= pt.timeout:
            promise = state.promises.get(pt.id)
            if promise is not None and promise.state == "pending":
                return True
    for tt in state.t_timeouts:
        if now < tt.timeout:
            continue
        task = state.tasks.get(tt.id)
        if task is None:
            continue
        if (tt.typ == 1 and task.state == "acquired") or (tt.typ == 0 and task.state == "pending"):
            return True
    return False


def next_deadline(state: ServerState) -> int | None:
    """The earliest timeout the state holds (ms), or ``None`` when it holds none."""
    deadlines = [pt.timeout for pt in state.p_timeouts] + [tt.timeout for tt in state.t_timeouts]
    return min(deadlines) if deadlines else None
