"""Finding a key that appears twice in one JSON object, cheaply.

msgspec keeps the last of two equal keys without a word, so ``{"amount": 1,
"amount": 7}`` would mean 7 to the store while a client that reads the first
means 1. The store refuses such a request instead.

The test costs one C-speed re-encode on the hot path: msgspec writes each key
of a decoded object once, in order, so when re-encoding the decoded value
gives back the request's very bytes (the SDK sends exactly what msgspec
writes), the request cannot have held a duplicate. Only a request written
differently (other spacing or escapes) is parsed again with the standard
library, which reports every object's pairs.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec


class _Duplicate(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def duplicate_key(raw: bytes | str, decoded: Any) -> str | None:
    """A key that appears twice in one object of ``raw`` (already decoded as ``decoded``), or ``None``."""
    encoded = msgspec.json.encode(decoded)
    if encoded == (raw.encode() if isinstance(raw, str) else raw):
        return None
    try:
        json.loads(raw, object_pairs_hook=_refuse_repeats, parse_int=_ignore, parse_float=_ignore)
    except _Duplicate as found:
        return found.key
    return None


def _refuse_repeats(pairs: list[tuple[str, Any]]) -> None:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _Duplicate(key)
        seen.add(key)


def _ignore(_text: str) -> None:
    return None
