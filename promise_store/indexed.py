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
from typing import Any, cast

import msgspec
from resonate.connections.local import DurablePromise, ServerState, _get, extract_action_data

BRANCH_TAG = "resonate:branch"


#: A promise as a snapshot holds it: its msgpack bytes, decoded when first used.
_promise_decoder = msgspec.msgpack.Decoder(DurablePromise)


class PromiseTable(dict[str, DurablePromise]):
    """A promise dict that also knows which ids belong to each branch.

    Promises are only ever added or replaced (a promise's tags never change),
    so the index follows ``__setitem__``; the other mutators keep it right too.

    A table restored from a snapshot (:meth:`restored`) holds each promise as
    its encoded bytes (``msgspec.Raw``) until it is first read: almost every
    promise a store holds is settled and never read again, and decoding them
    all was most of a restart (about 0.7 s per 500k promises). Every way of
    reading a promise (``get``, ``[]``, ``values``, ``items``, ``pop``) hands
    out a decoded one; :meth:`stored` gives them as held, for the snapshot.
    """

    def __init__(self, items: Mapping[str, DurablePromise] | None = None) -> None:
        super().__init__()
        # A branch restored from a snapshot keeps its saved list until it is used.
        self._branches: dict[str, dict[str, None] | list[str]] = {}
        self._awaited: set[str] = set()
        if items:
            # One C-level copy, then the index in one pass (not ``__setitem__``
            # for each promise, about 1 µs apiece).
            dict.update(self, items)
            self._index_all()

    @classmethod
    def restored(
        cls,
        encoded: dict[str, msgspec.Raw],
        branches: dict[str, list[str]],
        awaited: Iterable[str],
    ) -> PromiseTable:
        """A table over encoded promises and the index that was saved with them.

        A branch's ids stay the list they were saved as until the branch is
        next used (:meth:`_members`), so restarting costs nothing per branch.
        """
        table = cls()
        dict.update(table, encoded)
        table._branches = dict(branches)
        table._awaited = {key for key in awaited if key in table}
        return table

    def _members(self, branch: str) -> dict[str, None] | None:
        """The ids of ``branch`` in order (made a dict here if restored as a list)."""
        members = self._branches.get(branch)
        if isinstance(members, list):
            members = self._branches[branch] = dict.fromkeys(members)
        return members

    def _index_all(self) -> None:
        branches = self._branches
        awaited = self._awaited
        for key, promise in dict.items(self):
            if promise.awaiters:
                awaited.add(key)
            branch = promise.tags.get(BRANCH_TAG)
            if branch is not None:
                members = branches.get(branch)
                if isinstance(members, dict):
                    members[key] = None
                else:
                    branches[branch] = {key: None}

    # -- reading: an encoded promise is decoded once, on its first read ----------

    def _decoded(self, key: str, value: DurablePromise | msgspec.Raw) -> DurablePromise:
        if type(value) is msgspec.Raw:
            promise = _promise_decoder.decode(value)
            dict.__setitem__(self, key, promise)
            return promise
        return value

    def __getitem__(self, key: str) -> DurablePromise:
        return self._decoded(key, dict.__getitem__(self, key))

    def get(self, key: str, default: Any = None) -> Any:
        value = dict.get(self, key, _ABSENT)
        if value is _ABSENT:
            return default
        return self._decoded(key, value)

    def values(self) -> list[DurablePromise]:  # type: ignore[override]
        return [self._decoded(key, value) for key, value in list(dict.items(self))]

    def items(self) -> list[tuple[str, DurablePromise]]:  # type: ignore[override]
        return [(key, self._decoded(key, value)) for key, value in list(dict.items(self))]

    def stored(self) -> list[DurablePromise | msgspec.Raw]:
        """Every promise in order, as held: decoded, or still the bytes it was restored from."""
        return list(dict.values(cast(dict[str, DurablePromise | msgspec.Raw], self)))

    @property
    def branches(self) -> dict[str, Iterable[str]]:
        """The branch index (ids per branch, in order), for the snapshot."""
        return cast(dict[str, Iterable[str]], self._branches)

    @property
    def awaited(self) -> set[str]:
        """Promises that may have awaiters (a superset), for the snapshot."""
        return self._awaited

    # -- writing ----------------------------------------------------------------

    def __setitem__(self, key: str, promise: DurablePromise) -> None:
        old = self.get(key)
        if old is not None:
            self._unindex(key, old)
        super().__setitem__(key, promise)
        if promise.awaiters:
            self._awaited.add(key)
        branch = promise.tags.get(BRANCH_TAG)
        if branch is not None:
            members = self._members(branch)
            if members is None:
                self._branches[branch] = {key: None}
            else:
                members[key] = None

    def __delitem__(self, key: str) -> None:
        self._unindex(key, self[key])
        super().__delitem__(key)

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            promise = self[key]
            self._unindex(key, promise)
            super().pop(key)
            return promise
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, DurablePromise]:
        key, value = super().popitem()
        promise = self._decoded(key, value)
        dict.pop(self, key, None)
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
        return (self._members(branch) or {}).keys()

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
        members = self._members(branch) if branch is not None else None
        if members is not None:
            members.pop(key, None)
            if not members and branch is not None:
                del self._branches[branch]


_ABSENT: Any = object()


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
