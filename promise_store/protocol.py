"""The request side of the Resonate protocol, shared by both front doors.

Bytes in, ``(status, envelope bytes, messages)`` out. Whatever arrives --
bad JSON, JSON nested too deeply, an object with a key twice, a non-envelope,
an unknown kind, a value the store could not persist -- the answer is a
protocol envelope with a ``4xx`` status and an ``error`` message, never an
exception and never a journal entry (all of these are refused before they
reach the state).

The response echoes the request's ``kind`` and ``head.corrId`` whenever they
can be read, because the SDK rejects a response whose kind or corrId differs
from its request's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import msgspec
from resonate.connections.local import (
    OutgoingMessage,
    unwrap_request_envelope,
    wrap_response_envelope,
)
from resonate_base import PROTOCOL_VERSION

from promise_store.errors import StoreFailed
from promise_store.json_keys import duplicate_key
from promise_store.limits import DEFAULT_MAX_JSON_DEPTH, nesting_depth
from promise_store.state import JournaledState

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Answer:
    """What to send back: a transport status, the envelope, and messages to deliver.

    ``kind`` (the request's, as sent: ``None`` when unreadable) and ``status``
    (the protocol status in the envelope's head) say what it was, for metrics.
    """

    http_status: int
    body: bytes
    outgoing: list[OutgoingMessage]
    kind: str | None
    status: int


def error_envelope(status: int, message: str, kind: Any = "", corr_id: Any = "") -> bytes:
    envelope = {
        "kind": kind if isinstance(kind, str) else "",
        "head": {
            "corrId": corr_id if isinstance(corr_id, str) else "",
            "status": status,
            "version": PROTOCOL_VERSION,
        },
        "data": {"error": message},
    }
    return msgspec.json.encode(envelope)


def parse_request(
    raw: bytes | str, *, max_depth: int = DEFAULT_MAX_JSON_DEPTH
) -> dict[str, Any] | str:
    """The flat request inside ``raw``, or a message saying why it is not one."""
    try:
        decoded = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeError) as exc:
        return f"invalid JSON: {exc}"
    except RecursionError:
        return f"the JSON nests too deeply (at most {max_depth} levels)"
    if _may_nest_deeper(raw, max_depth) and nesting_depth(decoded) > max_depth:
        return f"the JSON nests too deeply (at most {max_depth} levels)"
    repeated = duplicate_key(raw, decoded)
    if repeated is not None:
        return f"duplicate key {repeated!r} in a JSON object: each key may appear once"
    if not isinstance(decoded, dict):
        return "a request must be a JSON object envelope {kind, head, data}"
    flat = unwrap_request_envelope(decoded)
    if not isinstance(flat, dict) or not isinstance(flat.get("kind"), str):
        return "a request needs a string 'kind'"
    return flat


def _may_nest_deeper(raw: bytes | str, max_depth: int) -> bool:
    """False when ``raw`` has too few brackets to nest past ``max_depth`` (two C-speed counts)."""
    if isinstance(raw, str):
        return raw.count("[") + raw.count("{") > max_depth
    return raw.count(b"[") + raw.count(b"{") > max_depth


async def handle(
    store: JournaledState, raw: bytes | str, *, max_depth: int = DEFAULT_MAX_JSON_DEPTH
) -> Answer:
    """Apply one raw request to ``store`` and build the answer to send."""
    flat = parse_request(raw, max_depth=max_depth)
    if isinstance(flat, str):
        return Answer(400, error_envelope(400, flat), [], None, 400)
    kind: str = flat["kind"]
    try:
        applied = await store.apply(flat)
    except StoreFailed as exc:
        body = error_envelope(503, str(exc), kind, flat.get("corrId"))
        return Answer(503, body, [], kind, 503)
    except Exception as exc:  # fail this request alone; the store stays up
        logger.exception("request %r failed unexpectedly", kind)
        body = error_envelope(500, f"internal error: {exc}", kind, flat.get("corrId"))
        return Answer(500, body, [], kind, 500)
    if applied.error is not None:
        status = applied.error.code
        body = error_envelope(status, applied.error.message, kind, flat.get("corrId"))
        return Answer(status if 400 <= status < 600 else 400, body, applied.outgoing, kind, status)
    envelope = wrap_response_envelope(applied.response)
    return Answer(
        200, msgspec.json.encode(envelope), applied.outgoing, kind, envelope["head"]["status"]
    )
