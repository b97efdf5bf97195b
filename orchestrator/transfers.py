"""Start transfers, re-attach to them and read them back from the promise store.

A transfer id is its idempotency key and, here, literally the id of the
saga's root promise: starting an id that exists attaches to that promise
instead of creating a second one, so the same transfer never runs twice,
however many times (or however concurrently) it is started. Its bank op ids
derive from it (:func:`orchestrator.saga.op_id`).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from resonate.error import ApplicationError, ServerError
from resonate.handle import ResonateHandle
from resonate.resonate import Resonate
from resonate.types import PromiseRecord

from orchestrator.money import MAX_CENTS
from orchestrator.records import Compensation, TransferSteps, decide, parse_step_value
from orchestrator.saga import SAGA_NAME
from orchestrator.saga_versions import group_for, starting_version
from orchestrator.settings import Settings
from orchestrator.tracing import trace_fields

#: How long a transfer may stay unfinished before the store times its promise
#: out. Generous on purpose: a reversal is retried until it lands, and a
#: transfer that is still compensating is flagged (``needs_attention``), not dropped.
TRANSFER_TIMEOUT = timedelta(days=365)

#: Safe in a URL path (op ids go into ``/entries/{op_id}/void``) and in a
#: promise id (``:`` separates a root from its steps there).
_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")

#: What the banks accept as an account id.
_ACCOUNT_PATTERN = re.compile(r"[A-Za-z0-9._:@~+-]{1,128}")

#: No single transfer moves more than this many cents: the CLI's typo guard,
#: one figure with it (see :data:`orchestrator.money.MAX_CENTS` for why).
MAX_AMOUNT = MAX_CENTS


class InvalidTransferRequest(ValueError):
    """A transfer's ids or amount are not ones a transfer can have (the caller's input)."""


def check_transfer_id(transfer_id: object) -> str:
    """``transfer_id`` if it is one a transfer can have, else :class:`InvalidTransferRequest`."""
    if not isinstance(transfer_id, str) or not _ID_PATTERN.fullmatch(transfer_id):
        raise InvalidTransferRequest(
            f"transfer id {str(transfer_id)[:120]!r} must be 1-100 letters, digits, '.', '_' "
            "or '-', starting with a letter or digit"
        )
    return transfer_id


class TransferConflict(ValueError):
    """The transfer id exists already with different accounts or amount."""


@dataclass(frozen=True)
class TransferRequest:
    """What a transfer moves, in cents; ``transfer_id`` makes starting it idempotent."""

    transfer_id: str
    source_account: str
    target_account: str
    amount: int

    def __post_init__(self) -> None:
        check_transfer_id(self.transfer_id)
        for role, account in (("source", self.source_account), ("target", self.target_account)):
            if not isinstance(account, str) or not _ACCOUNT_PATTERN.fullmatch(account):
                raise InvalidTransferRequest(
                    f"{role} account {account!r} is not a valid account id"
                )
        if self.source_account == self.target_account:
            raise InvalidTransferRequest("source and target account must differ")
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise InvalidTransferRequest(
                f"amount must be an integer number of cents, got {self.amount!r}"
            )
        if not 0 < self.amount <= MAX_AMOUNT:
            raise InvalidTransferRequest(
                f"amount must be between 1 and {MAX_AMOUNT} cents, got {self.amount}"
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "transfer_id": self.transfer_id,
            "source_account": self.source_account,
            "target_account": self.target_account,
            "amount": self.amount,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TransferRequest:
        return cls(
            transfer_id=data["transfer_id"],
            source_account=data["source_account"],
            target_account=data["target_account"],
            amount=data["amount"],
        )


def new_transfer_id() -> str:
    """A fresh, unguessable transfer id (``tr-`` and 20 hex digits)."""
    return f"tr-{uuid.uuid4().hex[:20]}"


@dataclass(frozen=True)
class TransferHandle:
    """A started transfer: ``await handle.result()`` for the saga's result.

    The result names the accounts and amount the transfer actually moved, so
    it doubles as the idempotency check: when ``request.transfer_id`` turned
    out to belong to a different transfer, :meth:`result` raises
    :class:`TransferConflict` instead of passing that transfer's result off
    as this one's.
    """

    request: TransferRequest
    handle: ResonateHandle[Any]
    resonate: Resonate
    settings: Settings
    #: The saga version asked for (a transfer that existed already runs on its own).
    version: int

    @property
    def transfer_id(self) -> str:
        return self.request.transfer_id

    def done(self) -> bool:
        """The saga's result is in (``result()`` will not wait)."""
        return self.handle.done()

    async def result(self) -> dict[str, Any]:
        try:
            result: dict[str, Any] = await self.handle.result()
        except ApplicationError:
            # The SDK registers a handle before its promise is created, and its
            # subscription refresh may ask the store about it in that gap: the
            # store answers 404 and the SDK settles the handle as "not found",
            # although the transfer exists (start_transfer saw it created) and
            # runs. Attach again; a saga that really failed fails again here.
            result = await (await self._attach_again()).result()
        check_same_transfer(self.request, result)
        return result

    async def _attach_again(self) -> ResonateHandle[Any]:
        """The transfer's handle, read again; started again if the store has lost it.

        A store can lose a root promise it acknowledged: Resonate on Postgres,
        failed over to a replica that had not received it yet (asynchronous
        replication). This handle still holds the request, so it starts the
        transfer again under the same id: the saga runs from the top, and its
        op ids make each step it had already applied come back as applied,
        never twice, so the result is the one the lost run had, or would have had.
        """
        try:
            return await self.resonate.get(self.transfer_id)
        except ServerError as exc:
            if exc.code != 404:
                raise
        again = await start_transfer(self.resonate, self.settings, self.request)
        return again.handle


async def start_transfer(
    resonate: Resonate, settings: Settings, request: TransferRequest
) -> TransferHandle:
    """Start transfer ``request.transfer_id``, or attach to it if it exists; ``await handle.result()``.

    The transfer runs on saga version ``SAGA_VERSION`` (default the newest,
    :mod:`orchestrator.saga_versions`) to the end. Against a served store it is
    dispatched to that version's workers' group and this process only waits. With the embedded store
    this process runs it. Either way the store creates the root promise once:
    a second start, even a concurrent one, gets the first one's promise.

    An id that exists with other parameters is reported by
    :meth:`TransferHandle.result` (:class:`TransferConflict`), not here:
    checking now would cost every start a read of the root promise, a store
    round trip on the hot path, to catch what a fresh id
    (:func:`new_transfer_id`) never hits. A caller that re-uses ids and wants
    to know before waiting reads the transfer first and calls
    :func:`check_same_transfer` on its ``request``, as ``crossbank transfer`` does.
    """
    version = starting_version(settings)
    with trace_fields(request.transfer_id) as fields:
        params = {**request.to_json(), **fields}
        if settings.served:
            handle = resonate.options(
                target=group_for(settings.group, version), timeout=TRANSFER_TIMEOUT, version=version
            ).rpc(request.transfer_id, SAGA_NAME, params)
        else:
            handle = resonate.options(timeout=TRANSFER_TIMEOUT, version=version).run(
                request.transfer_id, SAGA_NAME, params
            )
        # The root promise exists once this returns (created now, or earlier by
        # someone). Shielded: the SDK's handle awaits its creation future bare, so
        # a caller that gives up on the start (``wait_for``) cancelled that future,
        # and the SDK's create, finishing later, died on it ("invalid state")
        # before registering for the result, which then came only from the
        # client's refresh loop (chaos/README.md, "Findings").
        created = asyncio.ensure_future(handle.id())
        created.add_done_callback(_seen)  # a failure after the caller left is not "never retrieved"
        await asyncio.shield(created)
    return TransferHandle(request, handle, resonate, settings, version)


def _seen(done: asyncio.Future[str]) -> None:
    if not done.cancelled():
        done.exception()


def check_same_transfer(request: TransferRequest, stored: dict[str, Any] | None) -> None:
    """Raise :class:`TransferConflict` unless ``stored`` moves what ``request`` asks for.

    ``stored`` is a transfer's parameters or its saga result (which repeats
    them); None, or anything else that is not a transfer, conflicts too.
    """
    wanted = request.to_json()
    found = {key: stored.get(key) for key in wanted} if isinstance(stored, dict) else None
    if found != wanted:
        raise TransferConflict(
            f"transfer {request.transfer_id} already exists with different parameters: "
            f"{_describe(found)} (asked for {_describe(wanted)})"
        )


async def transfer_record(
    resonate: Resonate, transfer_id: str, *, attention_after: float | None = None
) -> dict[str, Any] | None:
    """The transfer as the promise store has it, or None if the id was never started.

    Returns ``{"transfer_id", "state", "status", "request", "result", "error",
    "steps", "compensating_since", "needs_attention"}``:

    - ``state``: the root promise's state: ``pending`` (running, or waiting for
      a worker), ``resolved`` (``result`` is the saga's result dict),
      ``rejected*`` (``error`` says why; not expected in normal operation);
    - ``status``: where the transfer stands, by :func:`orchestrator.records.decide`:
      the result's ``committed``/``compensated``/``failed`` once resolved,
      ``in_progress`` or ``compensating`` while pending (from the steps so
      far), the root's state if it was rejected;
    - ``request``: the transfer's parameters (source, target, amount);
    - ``saga_version``: the saga version it runs on (:mod:`orchestrator.saga_versions`);
    - ``steps``: the recorded steps in the order they ran, each
      ``{"id", "state", "value", "error"}``. A settled bank step's ``value`` is
      a step record (:class:`orchestrator.records.StepRecord`: ``step``,
      ``op_id``, ``status`` ``applied``/``rejected``/``voided``, ``settled_by``
      ``bank``/``fence``, ...; records written before those types read the same
      through :func:`orchestrator.records.parse_step_value`); the compensation
      step's value is ``{"step": "compensating", "since", "reason"}``; a step
      whose retries ran out is ``rejected`` with the last ``error`` message; the
      step in progress is ``pending``; a sleep between two attempts (saga
      version 2) is a ``timer`` step, ``pending`` until ``wait_until`` (epoch
      ms) or until ``crossbank retry`` ends it;
    - ``compensating_since``: epoch seconds when the saga began reversing the
      debit (None if it never did);
    - ``needs_attention``: the transfer is still unfinished and has been
      compensating for longer than ``attention_after`` seconds (pass
      ``settings.attention_after``; None never flags).
    """
    root = await _get(resonate, transfer_id)
    if root is None:
        return None
    steps = []
    number = 1
    while (step := await _get(resonate, f"{transfer_id}:{number}")) is not None:
        steps.append(_step_view(step))
        number += 1
    values = [step["value"] for step in steps]
    since = next(
        (r.since for v in values if isinstance(r := parse_step_value(v), Compensation)), None
    )
    pending = root.state == "pending"
    result = root.value.data if root.state == "resolved" else None
    return {
        "transfer_id": transfer_id,
        "state": root.state,
        "status": _status(root.state, result, values),
        "request": request_of(root),
        "saga_version": saga_version_of(root),
        "result": result,
        "error": _error_message(root) if root.state.startswith("rejected") else None,
        "steps": steps,
        "compensating_since": since,
        "needs_attention": bool(
            pending
            and since is not None
            and attention_after is not None
            and time.time() - since > attention_after
        ),
    }


def _status(state: str, result: Any, step_values: list[Any]) -> str:
    """The saga's decision once it is in (its result), else the decision its steps make so far."""
    if state == "resolved" and isinstance(result, dict):
        return str(result.get("status"))
    if state == "pending":
        return decide(TransferSteps.from_values(step_values)).status
    return state


async def _get(resonate: Resonate, promise_id: str) -> PromiseRecord | None:
    try:
        return await resonate.promises.get(promise_id)
    except ServerError as exc:
        if exc.code == 404:
            return None
        raise


def saga_version_of(root: PromiseRecord) -> int:
    """The saga version a transfer runs on, from its task data (1 before versions existed)."""
    data = root.param.data
    version = data.get("version") if isinstance(data, dict) else None
    return version if isinstance(version, int) and not isinstance(version, bool) else 1


def request_of(record: PromiseRecord) -> dict[str, Any] | None:
    """The transfer parameters inside a root promise's task data (``args[0]``)."""
    data = record.param.data
    if isinstance(data, dict):
        args = data.get("args") or []
        if args and isinstance(args[0], dict):
            return args[0]
    return None


def _step_view(record: PromiseRecord) -> dict[str, Any]:
    settled_ok = record.state == "resolved"
    timer = record.tags.get("resonate:timer") == "true"
    return {
        "id": record.id,
        "state": record.state,
        "value": record.value.data if settled_ok else None,
        "error": _error_message(record) if record.state.startswith("rejected") else None,
        "timer": timer,
        "wait_until": record.timeout_at if timer else None,
    }


def _error_message(record: PromiseRecord) -> str:
    data = record.value.data
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"])
    return record.state


def _describe(params: dict[str, Any] | None) -> str:
    if params is None or None in params.values():
        return "something that is not a transfer"
    return f"{params['amount']} cents from {params['source_account']} to {params['target_account']}"
