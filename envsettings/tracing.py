"""OpenTelemetry tracing, configured by the standard ``OTEL_*`` variables, off and free when unset.

Tracing is on in a process when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set (and ``OTEL_SDK_DISABLED`` is
not true): spans go over OTLP/HTTP to that endpoint, batched, and every
other ``OTEL_*`` variable means what the OpenTelemetry SDK says it means
(``OTEL_SERVICE_NAME``, ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_TRACES_SAMPLER``, ...).
Off, nothing of OpenTelemetry is even imported: a part asks :func:`tracing_on`
(one module-level flag) before doing any tracing work.

Each part calls :func:`start_tracing` once, at start, with its own service
name (``crossbank-worker``, ``crossbank-source-bank``, ...), used unless
``OTEL_SERVICE_NAME`` names another.
"""

from __future__ import annotations

import atexit
import logging
import os
from collections.abc import Mapping

logger = logging.getLogger(__name__)

_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
#: The W3C trace context's header (and the saga's request field that keeps it).
TRACEPARENT = "traceparent"
_on = False


def tracing_configured(env: Mapping[str, str] = os.environ) -> bool:
    """Whether ``env`` asks for traces: an OTLP endpoint set, the SDK not disabled."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(env.get(name) for name in _ENDPOINTS)


def tracing_on() -> bool:
    """Whether this process exports spans (:func:`start_tracing` found them asked for)."""
    return _on


def start_tracing(service_name: str, env: Mapping[str, str] = os.environ) -> bool:
    """Export this process's spans if ``env`` asks for it; True if it does.

    Spans are batched and sent from a thread; at exit what is left is flushed.
    """
    global _on
    if _on or not tracing_configured(env):
        return _on
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = env.get("OTEL_SERVICE_NAME") or service_name
    # The pid tells apart the workers of one service: a transfer taken over shows both.
    resource = Resource.create({SERVICE_NAME: name, "process.pid": os.getpid()})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    atexit.register(provider.shutdown)
    _on = True
    logger.info("tracing on: spans of %s go to the OTLP endpoint", name)
    return True


def stop_tracing() -> None:
    """Send what is left and stop (for a process that ends without running atexit)."""
    if not _on:
        return
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    shutdown = getattr(provider, "shutdown", None)
    if shutdown is not None:
        shutdown()


def traceparent_header() -> bytes:
    """The current span's ``traceparent`` as an HTTP header line; empty when there is none."""
    if not tracing_on():
        return b""
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    value = carrier.get(TRACEPARENT)
    return f"traceparent: {value}\r\n".encode("latin-1") if value else b""
