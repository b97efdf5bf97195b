"""What the store's persistence can hold, and the check that a request fits it.

A request is journaled as JSON, which holds any integer, but the state it
builds is snapshotted as msgpack (``snapshot.encode_state``), whose integers
are int64 or uint64: one value beyond that, accepted once, made every later
snapshot raise and bricked the store. So a request whose value the snapshot
could not hold is refused with a 400 naming that value, before it reaches the
state. The check is the encoder itself (C speed); the field is looked up only
when it fails.

A field the protocol defines as an integer (``timeoutAt``, ``ttl``,
``version``, ``promiseTimeout``) must be one when it is given: the state
machine quietly reads any other value as its default, so a float
``timeoutAt`` of 1.5 made a promise that never times out.

Numbers the state machine derives from a request are checked too: the
``resonate:delay`` tag is a string that ``ServerState.promise_create`` parses
into a task timeout. Its other arithmetic on request numbers saturates
(``_saturating_add(now, ttl)``) or clamps (``_ttl``), so it stays in range.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
from resonate.connections.local import _parse_int, extract_action_data, extract_tags

#: msgpack's integer range: int64 at the bottom, uint64 at the top.
INT_MIN = -(2**63)
INT_MAX = 2**64 - 1

#: The tag ``ServerState.promise_create`` reads as a deferral timestamp (ms).
DELAY_TAG = "resonate:delay"

#: Fields the protocol defines as integers, in a request or in a promise it creates.
INTEGER_FIELDS = ("timeoutAt", "ttl", "version", "promiseTimeout")

#: Deepest JSON nesting a request may have (``MAX_JSON_DEPTH``). The SDK nests
#: about five deep; msgspec's own limit is the C stack (about 10,000), and a
#: snapshot nests each value a few levels deeper than its request did.
DEFAULT_MAX_JSON_DEPTH = 64

_encoder = msgspec.msgpack.Encoder()


def unstorable(req: dict[str, Any]) -> str | None:
    """Why ``req`` holds a value the snapshot could not hold (naming it), or ``None``."""
    try:
        _encoder.encode(req)
    except OverflowError:
        for path, value in _walk(req, ""):
            if isinstance(value, int) and not INT_MIN <= value <= INT_MAX:
                return _out_of_range(path, value)
        return "the request holds an integer the store cannot keep"
    except RecursionError:
        return "the request nests too deeply to be stored"
    for path, fields in [("", req), *_promises_created(req)]:
        problem = _not_an_integer(path, fields)
        if problem is not None:
            return problem
    for path, spec in _promises_created(req):
        delay = _parse_int(extract_tags(spec).get(DELAY_TAG))
        if delay is not None and not INT_MIN <= delay <= INT_MAX:
            return _out_of_range(f"{path}tags.{DELAY_TAG}", delay)
    return None


def _not_an_integer(path: str, fields: Any) -> str | None:
    """Why one of ``fields``' :data:`INTEGER_FIELDS` is given but not an integer, or None."""
    if not isinstance(fields, dict):
        return None
    for name in INTEGER_FIELDS:
        if name not in fields:
            continue
        value = fields[name]
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{path}{name}: must be an integer, got {msgspec.json.encode(value).decode()}"
    return None


def nesting_depth(value: Any) -> int:
    """How deeply ``value`` nests lists and objects (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in children)
    return deepest


def _out_of_range(path: str, value: int) -> str:
    shown = (
        str(value) if len(str(value)) <= 40 else f"{str(value)[:20]}...({len(str(value))} digits)"
    )
    return f"{path}: {shown} is outside the integers the store can keep ({INT_MIN} to {INT_MAX})"


def _walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every leaf of ``value`` with its path (``param.args[1]``), depth first, in order."""
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, dict):
            prefix = f"{where}." if where else ""
            stack.extend((f"{prefix}{k}", v) for k, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((f"{where}[{i}]", v) for i, v in reversed(list(enumerate(item))))
        else:
            yield where, item


def _promises_created(req: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """The promise specs ``req`` may create, with their paths, as the state machine reads them."""
    kind = req.get("kind")
    if kind == "promise.create":
        yield "", req
    elif kind in ("task.create", "task.fence"):
        action = req.get("action")
        spec = extract_action_data(action)
        yield ("action.data." if spec is not action else "action."), spec
