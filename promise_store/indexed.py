"""The SDK's ``ServerState`` with its promises indexed by branch.

Every ``task.fence`` / ``task.acquire`` answer carries a ``preload``: the other
promises of the task's branch (its saga's steps). The reference state machine
finds them by scanning every promise it has ever held, so each step of each
transfer costs time proportional to the store's whole history: on a store a
few thousand transfers old that scan was a quarter of the served store's CPU.
Here a table keeps, per branch, the ids in insertion order, and ``preload``
reads that instead.

Likewise, fulfilling a task removes it from the awaiters of *every* promise.
Only ``task.suspend`` ever adds awaiters, so the table also remembers which
promises may have some, and the fulfil step visits only those.

Answers and state are identical to the reference's, in the same order, so
journal replay and snapshots are unaffected.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from resonate.connections.local import DurablePromise, ServerState, _get, extract_action_data

BRANCH_TAG = "resonate:branch"


class PromiseTable(dict[str, DurablePromise]):
    """A promise dict that also knows which ids belong to each branch.

    Promises are only ever added or replaced (a promise's tags never change),
    so the index follows ``__setitem__``; the other mutators keep it right too.
    """

    def __init__(self, items: Mapping[str, DurablePromise] | None = None) -> None:
        super().__init__()
        self._branches: dict[str, dict[str, None]] = {}
        self._awaited: set[str] = set()
        for key, promise in (items or {}).items():
            self[key] = promise

    def __setitem__(self, key: str, promise: DurablePromise) -> None:
        old = self.get(key)
        if old is not None:
            self._unindex(key, old)
        super().__setitem__(key, promise)
        if promise.awaiters:
            self._awaited.add(key)
        branch = promise.tags.get(BRANCH_TAG)
        if branch is not None:
            self._branches.setdefault(branch, {})[key] = None

    def __delitem__(self, key: str) -> None:
        self._unindex(key, self[key])
        super().__delitem__(key)

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            self._unindex(key, self[key])
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, DurablePromise]:
        key, promise = super().popitem()
        self._unindex(key, promise)
        return key, promise

    def clear(self) -> None:
        super().clear()
        self._branches.clear()
        self._awaited.clear()

    def update(self, *args: Any, **kwargs: DurablePromise) -> None:
        for key, promise in dict(*args, **kwargs).items():
            self[key] = promise

    def setdefault(self, key: str, default: DurablePromise | None = None) -> Any:
        if key not in self and default is not None:
            self[key] = default
        return self.get(key)

    def in_branch(self, branch: str) -> Iterable[str]:
        """Ids tagged with ``branch``, in the order they were first added."""
        return self._branches.get(branch, {}).keys()

    def note_awaited(self, keys: Iterable[str]) -> None:
        """These promises may have gained awaiters (a superset is fine)."""
        self._awaited.update(key for key in keys if key in self)

    def drop_awaiter(self, task_id: str) -> None:
        """Remove ``task_id`` from every promise's awaiters, visiting only awaited promises."""
        for key in list(self._awaited):
            promise = self.get(key)
            if promise is not None:
                promise.awaiters.discard(task_id)
            if promise is None or not promise.awaiters:
                self._awaited.discard(key)

    def _unindex(self, key: str, promise: DurablePromise) -> None:
        self._awaited.discard(key)
        branch = promise.tags.get(BRANCH_TAG)
        members = self._branches.get(branch) if branch is not None else None
        if members is not None:
            members.pop(key, None)
            if not members and branch is not None:
                del self._branches[branch]


class IndexedServerState(ServerState):
    """``ServerState`` whose ``preload`` reads the branch index instead of scanning."""

    def __setattr__(self, name: str, value: Any) -> None:
        # The base class and code that replaces the whole dict (snapshots) get an index.
        if name == "promises" and not isinstance(value, PromiseTable):
            value = PromiseTable(value)
        super().__setattr__(name, value)

    def task_suspend(self, now: int, corr_id: Any, req: Any) -> dict[str, Any]:
        try:
            return super().task_suspend(now, corr_id, req)
        finally:  # even a failed suspend may have registered some awaiters
            promises = self.promises
            actions = _get(req, "actions")
            if isinstance(promises, PromiseTable) and isinstance(actions, list):
                awaited = (_get(extract_action_data(action), "awaited") for action in actions)
                promises.note_awaited(key for key in awaited if isinstance(key, str))

    def enqueue_settle(self, promise_id: str) -> None:
        promises = self.promises
        task = self.tasks.get(promise_id)
        if task is None or task.state == "fulfilled" or not isinstance(promises, PromiseTable):
            super().enqueue_settle(promise_id)  # these paths do not scan
            return
        # The reference's fulfil step, with its scan over every promise narrowed
        # to the promises that may have awaiters.
        task.state = "fulfilled"
        task.pid = None
        task.ttl = None
        task.resumes.clear()
        self.del_t_timeout(promise_id)
        promises.drop_awaiter(promise_id)

    def preload(self, promise_id: str) -> list[dict[str, Any]]:
        promises = self.promises
        p = promises.get(promise_id)
        if p is None or not isinstance(promises, PromiseTable):
            return super().preload(promise_id)
        branch = p.tags.get(BRANCH_TAG)
        if branch is None:
            return []
        return [promises[i].to_record() for i in promises.in_branch(branch) if i != promise_id]
