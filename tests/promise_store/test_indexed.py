"""The branch-indexed state answers exactly as the SDK's reference state machine does."""

from __future__ import annotations

import inspect
import random
from typing import Any

import pytest
from resonate.connections.local import DurablePromise, ServerState
from resonate.error import ServerError

from promise_store.indexed import IndexedServerState, PromiseTable
from promise_store.snapshot import canonical_state, decode_state, encode_state
from tests.promise_store.test_journal import FakeClock, workload


def with_branch_members(
    rng: random.Random, items: list[dict[str, Any] | None]
) -> list[dict[str, Any] | None]:
    """The journal tests' workload plus plain creates of promises in existing branches."""
    out: list[dict[str, Any] | None] = []
    for i, item in enumerate(items):
        out.append(item)
        if rng.random() < 0.3:
            branch = f"root-{rng.randrange(max(i, 1))}"
            out.append(
                {
                    "kind": "promise.create",
                    "corrId": f"m{i}",
                    "id": f"{branch}:m{i}",
                    "timeoutAt": 1 << 50,
                    "tags": {"resonate:branch": branch},
                }
            )
    return out


def answer(state: ServerState, now: int, item: dict[str, Any] | None) -> Any:
    if item is None:
        state.tick(now)
        return None
    try:
        return state.apply(now, item)
    except ServerError as exc:
        return ("error", exc.code, str(exc))


@pytest.mark.parametrize("seed", [3, 11])
def test_every_answer_matches_the_reference_state(seed: int) -> None:
    rng = random.Random(seed)
    clock = FakeClock()
    reference, indexed = ServerState(), IndexedServerState()
    for item in with_branch_members(rng, workload(rng, clock, 3_000)):
        clock.now += rng.randint(0, 1500)
        expected = answer(reference, clock.now, item)
        assert answer(indexed, clock.now, item) == expected, item
        assert indexed.outgoing == reference.outgoing
    assert canonical_state(indexed) == canonical_state(reference)
    shared = 0
    for promise_id in reference.promises:
        assert indexed.preload(promise_id) == reference.preload(promise_id)
        shared += bool(reference.preload(promise_id))
    assert shared > 50  # many promises really share a branch with others


def test_a_restored_snapshot_is_indexed_too() -> None:
    rng = random.Random(5)
    clock = FakeClock()
    live = IndexedServerState()
    for item in with_branch_members(rng, workload(rng, clock, 1_500)):
        clock.now += rng.randint(0, 1500)
        answer(live, clock.now, item)
    restored = decode_state(encode_state(live))
    assert isinstance(restored, IndexedServerState)
    assert isinstance(restored.promises, PromiseTable)
    for promise_id in live.promises:
        assert restored.preload(promise_id) == live.preload(promise_id)


def test_the_table_index_follows_replacement_and_removal() -> None:
    def promise(pid: str, branch: str | None) -> DurablePromise:
        tags = {"resonate:branch": branch} if branch else {}
        return DurablePromise(
            id=pid,
            state="pending",
            param={},
            value=None,
            tags=tags,
            timeout_at=1,
            created_at=0,
            settled_at=None,
            awaiters=set(),
            subscribers=set(),
        )

    table = PromiseTable({"a": promise("a", "r"), "b": promise("b", "r")})
    table["c"] = promise("c", None)
    assert list(table.in_branch("r")) == ["a", "b"]
    table["a"] = promise("a", "s")
    assert (list(table.in_branch("r")), list(table.in_branch("s"))) == (["b"], ["a"])
    del table["b"]
    table.pop("a")
    assert (list(table.in_branch("r")), list(table.in_branch("s"))) == ([], [])
    assert list(table) == ["c"]


def test_the_reference_preload_is_still_what_the_index_mirrors() -> None:
    # If an SDK upgrade changes how preload picks promises, the index must change with it.
    source = inspect.getsource(ServerState.preload)
    assert 'p.tags.get("resonate:branch")' in source
    assert 'other.id != promise_id and other.tags.get("resonate:branch") == branch' in source


def test_the_reference_fulfil_step_is_still_what_the_awaiter_index_mirrors() -> None:
    # Only task.suspend adds awaiters, and fulfilling a task removes it from all of them.
    module = inspect.getsource(inspect.getmodule(ServerState))  # type: ignore[arg-type]
    assert module.count("awaiters.add(") == 1
    assert "p.awaiters.add(task_id)" in inspect.getsource(ServerState.task_suspend)
    fulfil = inspect.getsource(ServerState.enqueue_settle)
    assert "for p in self.promises.values():\n            p.awaiters.discard(promise_id)" in fulfil


def test_a_settled_suspended_task_leaves_the_promises_it_awaited() -> None:
    """Suspend task A on child C, then settle A: A must leave C's awaiters, as in the reference."""
    root, child = "root-a", "root-a:1"
    requests: list[dict[str, Any]] = [
        {
            "kind": "task.create",
            "corrId": "c1",
            "pid": "p1",
            "ttl": 5000,
            "action": {
                "kind": "promise.create",
                "data": {
                    "id": root,
                    "timeoutAt": 1 << 50,
                    "tags": {"resonate:target": "poll://any@workers", "resonate:branch": root},
                },
            },
        },
        {
            "kind": "promise.create",
            "corrId": "c2",
            "id": child,
            "timeoutAt": 1 << 50,
            "tags": {"resonate:branch": root},
        },
    ]
    reference, indexed = ServerState(), IndexedServerState()
    for state in (reference, indexed):
        for request in requests:
            state.apply(1, request)
        version = state.tasks[root].version
        suspend = {
            "kind": "task.suspend",
            "corrId": "c3",
            "id": root,
            "version": version,
            "actions": [{"kind": "promise.register_callback", "data": {"awaited": child}}],
        }
        state.apply(2, suspend)
        assert state.promises[child].awaiters == {root}
        settle = {"kind": "promise.settle", "corrId": "c4", "id": root, "state": "resolved"}
        state.apply(3, settle)
    assert indexed.promises[child].awaiters == reference.promises[child].awaiters == set()
    assert indexed.tasks[root].state == reference.tasks[root].state == "fulfilled"
    assert canonical_state(indexed) == canonical_state(reference)
