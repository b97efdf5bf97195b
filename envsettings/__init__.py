"""Read a part's settings from environment variables: one parser for every part of crossbank.

The banks, the promise store and the orchestrator are all configured by
environment variables with working defaults (docs/design.md, "The parts").
They read them through these functions so that the same value means the same
thing everywhere: unset, empty or blank means the default; numbers are plain
ASCII decimals within a stated range; a bad value raises :class:`SettingsError`
naming the variable, at start-up, never later mid-request. That one type is
what lets a caller (the CLI, a ``__main__``) tell a bad setting, which the
user fixes, from a bug.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

__all__ = [
    "FALSE_WORDS",
    "TRUE_WORDS",
    "Env",
    "SettingsError",
    "boolean",
    "boolean_word",
    "integer",
    "number",
    "optional_path",
    "optional_string",
    "path",
    "string",
    "url",
]

#: Where settings are read from: ``os.environ`` or any mapping a test or a caller builds.
Env = Mapping[str, str]

#: The words a boolean setting accepts, compared case-insensitively.
TRUE_WORDS = frozenset({"1", "on", "true", "yes"})
FALSE_WORDS = frozenset({"0", "off", "false", "no"})

# ASCII only: int() and float() also take Unicode digits, "1_000", "nan" and "inf"
# (and int() refuses more than 4300 digits with a ValueError of its own).
_INTEGER = re.compile(r"[+-]?[0-9]{1,30}", re.ASCII)
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)


class SettingsError(ValueError):
    """An environment variable holds a value its part cannot run with.

    ``variable`` is its name, and the message starts with it, so one line tells
    the user what to fix.
    """

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable} {problem}")
        self.variable = variable
        self.problem = problem


def optional_string(env: Env, name: str) -> str | None:
    """The value with surrounding whitespace removed; None when unset or blank."""
    return env.get(name, "").strip() or None


def string(env: Env, name: str, default: str) -> str:
    """The value, or ``default`` when unset or blank."""
    return optional_string(env, name) or default


def integer(env: Env, name: str, default: int, *, low: int, high: int | None = None) -> int:
    """A whole number from ``low`` to ``high`` (no upper bound when None)."""
    raw = optional_string(env, name)
    if raw is None:
        return default
    if _INTEGER.fullmatch(raw) is None or not _within(int(raw), low, high):
        raise SettingsError(name, f"must be an integer {_range(low, high)}, got {raw!r}")
    return int(raw)


def number(env: Env, name: str, default: float, *, low: float, high: float | None = None) -> float:
    """A finite decimal number (``2.5``, ``1e-3``) from ``low`` to ``high``."""
    raw = optional_string(env, name)
    if raw is None:
        return default
    value = float(raw) if _NUMBER.fullmatch(raw) else math.nan
    if not math.isfinite(value) or not _within(value, low, high):
        raise SettingsError(name, f"must be a number {_range(low, high)}, got {raw!r}")
    return value


def boolean_word(text: str) -> bool | None:
    """True or False for a word of :data:`TRUE_WORDS` / :data:`FALSE_WORDS`, else None."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return None


def boolean(env: Env, name: str, default: bool) -> bool:
    """``1``/``on``/``true``/``yes`` or ``0``/``off``/``false``/``no``; unset is ``default``."""
    raw = optional_string(env, name)
    if raw is None:
        return default
    value = boolean_word(raw)
    if value is None:
        raise SettingsError(name, f"must be 1/on/true/yes or 0/off/false/no, got {raw!r}")
    return value


def url(env: Env, name: str) -> str | None:
    """An ``http://`` or ``https://`` URL with a host, without a trailing ``/``; None when unset."""
    raw = optional_string(env, name)
    if raw is None:
        return None
    try:
        parts = urlsplit(raw)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # raises on a port that is not a number from 0 to 65535
    except ValueError:
        valid = False
    if not valid:
        raise SettingsError(name, f"must be an http:// or https:// URL, got {raw!r}")
    return raw.rstrip("/")


def optional_path(env: Env, name: str) -> Path | None:
    """A filesystem path; None when unset or blank."""
    raw = optional_string(env, name)
    return Path(raw) if raw is not None else None


def path(env: Env, name: str, default: Path | str) -> Path:
    """A filesystem path, or ``default`` when unset or blank."""
    return optional_path(env, name) or Path(default)


def _within(value: float, low: float, high: float | None) -> bool:
    return low <= value and (high is None or value <= high)


def _range(low: float, high: float | None) -> str:
    return (
        f"from {_show(low)} to {_show(high)}" if high is not None else f"of at least {_show(low)}"
    )


def _show(bound: float) -> str:
    """``65536`` and ``0.01`` as written, not ``6.554e+04``."""
    return str(bound) if isinstance(bound, int) else f"{bound:g}"
