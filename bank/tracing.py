"""A bank's own span for each request, a child of the caller's through the W3C ``traceparent``.

With tracing on (an ``OTEL_*`` endpoint set, :mod:`envsettings.tracing`),
every request gets a server span named by its route (``POST /entries``),
parented by the ``traceparent`` header the saga's step sent, so a transfer's
trace shows each bank call under the step that made it. The op id goes on
the span as ``crossbank.op_id`` once the view knows it (:func:`note_op_id`).
Off, each hook is one flag test.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, g, request

from envsettings.tracing import start_tracing, tracing_on

_TRACER = "crossbank.bank"


def install(app: Flask, bank_name: str) -> None:
    """Start tracing for this bank if asked for, and give ``app`` its span hooks."""
    start_tracing(f"crossbank-{bank_name}-bank")
    app.before_request(_open_span)
    app.teardown_request(_close_span)
    app.after_request(_note_status)


def note_op_id(op_id: str) -> None:
    """Put the request's op id on its span."""
    span = g.get("bank_span")
    if span is not None:
        span.set_attribute("crossbank.op_id", op_id)


def _open_span() -> None:
    if not tracing_on():
        return
    from opentelemetry import context, propagate, trace

    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    # The propagator looks for "traceparent" as written; HTTP header names are any case.
    parent = propagate.extract({name.lower(): value for name, value in request.headers.items()})
    span = trace.get_tracer(_TRACER).start_span(
        f"{request.method} {route}",
        parent,
        kind=trace.SpanKind.SERVER,
        attributes={"http.request.method": request.method, "http.route": route},
    )
    g.bank_span = span
    g.bank_span_token = context.attach(trace.set_span_in_context(span))


def _note_status(response: Response) -> Response:
    span = g.get("bank_span")
    if span is not None:
        span.set_attribute("http.response.status_code", response.status_code)
    return response


def _close_span(_exc: BaseException | None) -> None:
    span: Any = g.pop("bank_span", None)
    if span is None:
        return
    from opentelemetry import context

    span.end()
    context.detach(g.pop("bank_span_token"))
