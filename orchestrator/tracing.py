"""One trace per transfer, across the client, every worker that ran a step, and both banks.

The context travels with the durable transfer: :func:`trace_fields` adds
the starting span's W3C ``traceparent`` to the saga's request, which the
store keeps with the root promise. Whatever worker runs the saga (the first,
or the one that takes it over after a SIGKILL) reads it back
(:func:`traced_saga`), so its step spans (:func:`traced_step`) are children
of the same span, in the same trace. A bank request carries the step
span's ``traceparent`` header (:func:`envsettings.tracing.traceparent_header`), and the bank's
own span is its child.

Off (no ``OTEL_*`` endpoint, :mod:`envsettings.tracing`), each of these is one
flag test: nothing is imported, no header is sent, no field is added. A
transfer started without tracing has no ``traceparent``: a traced worker then
starts its step spans in a trace of their own.

The same step context names a worker's log lines, traced or not: every line
logged while a step runs (the saga's, the bank client's) carries the step's
``transfer_id`` and ``op_id`` (:class:`StepLogContext`), which
``LOG_FORMAT=json`` writes as fields.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from envsettings.tracing import TRACEPARENT, tracing_on
from orchestrator.records import op_id

_TRACER = "crossbank"

#: The transfer's trace context, set by :func:`traced_saga` for the steps it starts.
_parent: contextvars.ContextVar[str | None] = contextvars.ContextVar("traceparent", default=None)


@dataclass(frozen=True)
class StepContext:
    """The transfer and op a step works on (``op_id`` None for a step with no bank op)."""

    transfer_id: str
    op_id: str | None


#: The step running in this task, set by :func:`traced_step`.
_step: contextvars.ContextVar[StepContext | None] = contextvars.ContextVar("step", default=None)


class StepLogContext(logging.Filter):
    """Gives each record logged inside a step its ``transfer_id`` and ``op_id`` (a handler filter)."""

    def filter(self, record: logging.LogRecord) -> bool:
        step = _step.get()
        if step is not None:
            record.__dict__.setdefault("transfer_id", step.transfer_id)
            if step.op_id is not None:
                record.__dict__.setdefault("op_id", step.op_id)
        return True


@contextlib.contextmanager
def trace_fields(transfer_id: str) -> Iterator[dict[str, str]]:
    """A span for starting ``transfer_id``; yields the fields that carry it into the saga.

    Empty when tracing is off; else ``{"traceparent": ...}``, to be merged
    into the saga's request.
    """
    if not tracing_on():
        yield {}
        return
    from opentelemetry import propagate, trace

    tracer = trace.get_tracer(_TRACER)
    with tracer.start_as_current_span(
        "start transfer", attributes={"crossbank.transfer_id": transfer_id}
    ):
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        yield {TRACEPARENT: carrier[TRACEPARENT]} if TRACEPARENT in carrier else {}


def traced_saga[**P, R](saga: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """``saga`` that makes its request's ``traceparent`` the parent of its steps' spans.

    The SDK starts each ``ctx.run`` step in a task created from the saga's
    own, so a context variable set here is what the steps see.
    """

    @functools.wraps(saga)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        request = args[1] if len(args) > 1 else kwargs.get("request")
        if isinstance(request, dict):
            _parent.set(request.get(TRACEPARENT))
        return await saga(*args, **kwargs)

    return run


def traced_step[**P, R](step: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """``step`` run in a span of its name, a child of the transfer's trace context, and
    in its :class:`StepContext` (for log lines).

    Each attempt is a span of its own, so a retried step shows every try and
    what each raised; the span carries ``crossbank.transfer_id`` and, for a
    bank step, ``crossbank.bank``, ``crossbank.kind`` and ``crossbank.op_id``.
    """
    signature = inspect.signature(step)

    @functools.wraps(step)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        bound = signature.bind(*args, **kwargs).arguments
        transfer_id, kind = str(bound["transfer_id"]), bound.get("kind")
        # Each step runs in a task of its own: this is seen by it alone.
        context = StepContext(transfer_id, op_id(transfer_id, kind) if kind else None)
        _step.set(context)
        if not tracing_on():
            return await step(*args, **kwargs)
        from opentelemetry import propagate, trace

        attributes = {
            f"crossbank.{name}": str(bound[name])
            for name in ("transfer_id", "bank", "kind")
            if name in bound
        }
        if context.op_id is not None:
            attributes["crossbank.op_id"] = context.op_id
        parent = _parent.get()
        parent_context = propagate.extract({TRACEPARENT: parent}) if parent else None
        tracer = trace.get_tracer(_TRACER)
        with tracer.start_as_current_span(step.__name__, parent_context, attributes=attributes):
            return await step(*args, **kwargs)

    return run


def transfer_event(name: str, **attributes: str) -> None:
    """An event on the current step's span: the outcome it decided, a fence's finding."""
    if not tracing_on():
        return
    from opentelemetry import trace

    trace.get_current_span().add_event(name, attributes)


def current_trace_id() -> str | None:
    """The current span's trace id (32 hex digits), for a log line; None when none."""
    if not tracing_on():
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None
