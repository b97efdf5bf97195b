"""How every part of crossbank logs: free text by default, one JSON object per line with ``LOG_FORMAT=json``.

The banks, the promise store, the worker and the console each call
:func:`configure_logging` once, at start, instead of a ``basicConfig`` of
their own, so that one setting switches them all: log collectors (Loki,
Elasticsearch, CloudWatch) then read fields, not lines to parse, and a
transfer's or an op's lines are found by ``transfer_id`` or ``op_id``
(callers pass them with ``extra=``) and, when tracing is on, tied to its
spans by ``trace_id`` and ``span_id``. ``LOG_FORMAT`` unset, blank or
``text`` keeps each part's own text format exactly as it was.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from types import TracebackType
from typing import Any, TextIO

from envsettings import Env, SettingsError, string
from envsettings.tracing import tracing_on

__all__ = ["FORMATS", "JSON", "TEXT", "JsonFormatter", "configure_logging", "log_format"]

TEXT = "text"
JSON = "json"
#: What ``LOG_FORMAT`` accepts (compared case-insensitively).
FORMATS = (TEXT, JSON)

#: Extras named first, in this order, when a record carries them.
_KNOWN_EXTRAS = ("transfer_id", "op_id")
#: Every attribute a plain record has: anything else on one came from ``extra=``.
_STANDARD_ATTRIBUTES = frozenset(
    {*logging.LogRecord("", 0, "", 0, "", (), None).__dict__, "message", "asctime"}
)
#: The keys of the object itself, which an extra of the same name never replaces.
_OWN_KEYS = frozenset({"time", "level", "logger", "message", "pid", "exc", "stack"})


def log_format(env: Env = os.environ) -> str:
    """``LOG_FORMAT``: ``text`` (unset or blank too) or ``json``; anything else is refused."""
    raw = string(env, "LOG_FORMAT", TEXT)
    chosen = raw.lower()
    if chosen not in FORMATS:
        raise SettingsError("LOG_FORMAT", f"must be text or json, got {raw!r}")
    return chosen


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line.

    Keys: ``time`` (ISO 8601, UTC, milliseconds), ``level``, ``logger``,
    ``message`` (the formatted message), ``pid``; then ``transfer_id`` and
    ``op_id`` when the record carries them, ``trace_id`` and ``span_id`` of
    the current span when tracing is on, any other ``extra=`` field; ``exc``
    (the formatted traceback) and ``stack`` when there is one. An extra that
    JSON cannot hold is written as its ``str()``: logging never fails on it.
    """

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": _utc_time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": _message(record),
            "pid": record.process if record.process is not None else os.getpid(),
        }
        extras = {
            key: value
            for key, value in record.__dict__.items()
            if key not in _STANDARD_ATTRIBUTES and key not in _OWN_KEYS
        }
        for key in _KNOWN_EXTRAS:
            if key in extras:
                payload[key] = extras.pop(key)
        if tracing_on():
            payload.update(_current_span_ids())
        for key, value in extras.items():
            payload.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            payload["exc"] = record.exc_text
        if record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        return _dumps(payload)


def configure_logging(
    level: int | str = logging.INFO,
    text_format: str | None = None,
    env: Env = os.environ,
    stream: TextIO | None = None,
) -> str:
    """Send this process's log records to ``stream`` (stderr) at ``level``, as ``LOG_FORMAT`` says.

    ``text``: lines in ``text_format`` (a :class:`logging.Formatter` format),
    exactly what ``logging.basicConfig(level=level, format=text_format)`` gave;
    ``text_format=None`` leaves text logging as Python has it unconfigured
    (warnings and errors, the message alone). ``json``: one object per line
    (:class:`JsonFormatter`); uncaught exceptions and Python warnings are then
    logged too, so a crash's traceback is one JSON line like the rest.

    Like ``basicConfig`` it does nothing to a root logger that already has a
    handler. Returns the format chosen. A bad ``LOG_FORMAT`` raises
    :class:`~envsettings.SettingsError` naming it, before anything changes.
    """
    chosen = log_format(env)
    out = stream if stream is not None else sys.stderr
    if chosen == TEXT:
        if text_format is not None:
            logging.basicConfig(level=level, format=text_format, stream=out)
        return chosen
    if logging.getLogger().handlers:
        return chosen
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler])
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
    return chosen


def _utc_time(record: logging.LogRecord) -> str:
    """``2025-01-31T12:34:56.789Z``."""
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


def _message(record: logging.LogRecord) -> str:
    """The formatted message; a call whose arguments do not fit still gives a line."""
    try:
        return record.getMessage()
    except Exception as exc:
        return f"{record.msg!s} (arguments {record.args!r} did not fit: {exc})"


def _current_span_ids() -> dict[str, str]:
    """The current span's ``trace_id`` and ``span_id`` (hex, as OTLP shows them); none outside one."""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}


def _dumps(payload: dict[str, Any]) -> str:
    try:
        return json.dumps(payload, ensure_ascii=False, allow_nan=False, default=str)
    except (TypeError, ValueError):  # keys JSON cannot have, a cycle, a NaN
        safe = {
            key: value if isinstance(value, str | int | bool | None) else str(value)
            for key, value in payload.items()
        }
        return json.dumps(safe, ensure_ascii=False)


_uncaught = logging.getLogger("uncaught")


def _log_uncaught(
    kind: type[BaseException], value: BaseException, traceback: TracebackType | None
) -> None:
    _uncaught.critical("uncaught %s", kind.__name__, exc_info=(kind, value, traceback))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:  # as Python's own hook: a thread may end that way
        return
    value = args.exc_value if args.exc_value is not None else args.exc_type()
    _uncaught.critical(
        "uncaught %s in thread %s",
        args.exc_type.__name__,
        args.thread.name if args.thread is not None else "?",
        exc_info=(args.exc_type, value, args.exc_traceback),
    )
