"""A bank's settings, read from environment variables with working defaults.

Every part of crossbank is configured the same way (DESIGN.md, "Starting each
part"), so scripts, compose and tests start a bank by setting a few variables.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bank.faults import FaultRule, parse_rules
from bank.validation import InvalidRequest

#: Enough worker threads for 16+ concurrent clients plus a few parked (held) requests.
DEFAULT_THREADS = 32

_TRUE = frozenset({"1", "on", "true", "yes"})
_FALSE = frozenset({"", "0", "off", "false", "no"})


class ConfigError(ValueError):
    """An environment variable has a value the bank cannot run with."""


@dataclass(frozen=True)
class BankConfig:
    """Everything one bank process needs to know before it serves."""

    name: str
    port: int
    ledger_path: Path
    host: str = "0.0.0.0"
    token: str | None = None
    faults_enabled: bool = False
    initial_faults: tuple[FaultRule, ...] = field(default_factory=tuple)
    threads: int = DEFAULT_THREADS

    @classmethod
    def from_env(
        cls, name: str, default_port: int, environ: Mapping[str, str] | None = None
    ) -> BankConfig:
        """Read ``PORT``, ``HOST``, ``LEDGER_PATH``, ``BANK_TOKEN``, ``BANK_FAULTS``, ``BANK_THREADS``."""
        env = os.environ if environ is None else environ
        faults_enabled, initial_faults = _parse_faults(env.get("BANK_FAULTS", ""))
        return cls(
            name=name,
            port=_parse_int(env, "PORT", default_port, low=0, high=65535),
            host=env.get("HOST", "").strip() or "0.0.0.0",
            ledger_path=Path(env.get("LEDGER_PATH", "").strip() or f"./data/{name}_bank.db"),
            token=env.get("BANK_TOKEN") or None,
            faults_enabled=faults_enabled,
            initial_faults=initial_faults,
            threads=_parse_int(env, "BANK_THREADS", DEFAULT_THREADS, low=1, high=1024),
        )


def _parse_int(env: Mapping[str, str], key: str, default: int, *, low: int, high: int) -> int:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ConfigError(f"{key} must be an integer from {low} to {high}, got {raw!r}")
    return int(raw)


def _parse_faults(raw: str) -> tuple[bool, tuple[FaultRule, ...]]:
    """``BANK_FAULTS``: unset/off, ``1``/``on``, or a JSON list of initial rules."""
    value = raw.strip()
    if value.lower() in _FALSE:
        return False, ()
    if value.lower() in _TRUE:
        return True, ()
    try:
        rules = json.loads(value)
    except ValueError as exc:
        raise ConfigError(
            f"BANK_FAULTS must be 1/on, 0/off or a JSON list of fault rules: {exc}"
        ) from exc
    try:
        return True, tuple(parse_rules(rules))
    except InvalidRequest as exc:
        raise ConfigError(f"BANK_FAULTS: {exc}") from exc
