"""The orchestrator's configuration, read once from the environment.

Every part of crossbank is configured by environment variables with working
defaults (DESIGN.md, "Starting each part"), so the worker, the CLI, compose and
the tests all start the orchestrator the same way. Parsing is strict: a bad
value fails at start-up with the variable's name, not later mid-transfer.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_STORE_PATH = "./data/promises.db"
DEFAULT_SOURCE_BANK_URL = "http://127.0.0.1:5001"
DEFAULT_TARGET_BANK_URL = "http://127.0.0.1:5002"
DEFAULT_GROUP = "crossbank-workers"


@dataclass(frozen=True)
class Settings:
    """Where the banks and the promise store are, and how patient the saga is.

    ``resonate_url`` unset means the embedded store at ``store_path``.
    ``step_attempts`` is how many times a bank step is tried before its outcome
    is settled with the bank's void fence; between tries the saga waits
    ``step_backoff`` seconds, doubling up to ``step_backoff_max``.
    ``attention_after`` is how long a transfer may keep compensating (a reversal
    that the source bank will not yet accept) before it is flagged.
    ``push_idle_timeout`` and ``push_max_lifetime`` bound the push channel (see
    :mod:`orchestrator.push`); ``worker_health_file``, when set, is where a worker
    says whether it can receive work (see :mod:`orchestrator.health_file`).
    """

    resonate_url: str | None = None
    resonate_token: str | None = None
    store_path: Path = Path(DEFAULT_STORE_PATH)
    source_bank_url: str = DEFAULT_SOURCE_BANK_URL
    target_bank_url: str = DEFAULT_TARGET_BANK_URL
    bank_token: str | None = None
    group: str = DEFAULT_GROUP
    lease_ttl: float = 15.0
    step_attempts: int = 5
    step_backoff: int = 1
    step_backoff_max: int = 30
    bank_timeout: float = 5.0
    attention_after: float = 300.0
    push_idle_timeout: float = 30.0
    push_max_lifetime: float = 3600.0
    worker_health_file: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        """Build settings from ``env``; a malformed value raises ``ValueError`` naming it."""
        return cls(
            resonate_url=_url(env, "RESONATE_URL"),
            resonate_token=_optional(env, "RESONATE_TOKEN"),
            store_path=Path(_optional(env, "STORE_PATH") or DEFAULT_STORE_PATH),
            source_bank_url=_url(env, "SOURCE_BANK_URL") or DEFAULT_SOURCE_BANK_URL,
            target_bank_url=_url(env, "TARGET_BANK_URL") or DEFAULT_TARGET_BANK_URL,
            bank_token=_optional(env, "BANK_TOKEN"),
            group=_optional(env, "WORKER_GROUP") or DEFAULT_GROUP,
            lease_ttl=_number(env, "LEASE_TTL", float, 15.0, minimum=1.0),
            step_attempts=_number(env, "STEP_ATTEMPTS", int, 5, minimum=1),
            step_backoff=_number(env, "STEP_BACKOFF", int, 1, minimum=0),
            step_backoff_max=_number(env, "STEP_BACKOFF_MAX", int, 30, minimum=0),
            bank_timeout=_number(env, "BANK_TIMEOUT", float, 5.0, minimum=0.01),
            attention_after=_number(env, "ATTENTION_AFTER", float, 300.0, minimum=0.0),
            push_idle_timeout=_number(env, "PUSH_IDLE_TIMEOUT", float, 30.0, minimum=0.5),
            push_max_lifetime=_number(env, "PUSH_MAX_LIFETIME", float, 3600.0, minimum=1.0),
            worker_health_file=_path(env, "WORKER_HEALTH_FILE"),
        )


def _optional(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _path(env: Mapping[str, str], name: str) -> Path | None:
    value = _optional(env, name)
    return Path(value) if value else None


def _url(env: Mapping[str, str], name: str) -> str | None:
    value = _optional(env, name)
    if value is None:
        return None
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"{name} must be an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


def _number[N: (int, float)](
    env: Mapping[str, str],
    name: str,
    kind: Callable[[str], N],
    default: N,
    *,
    minimum: float,
) -> N:
    raw = _optional(env, name)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise ValueError(f"{name} must be {noun}, got {raw!r}") from None
    if not value >= minimum:  # also rejects NaN
        raise ValueError(f"{name} must be at least {minimum:g}, got {raw!r}")
    return value
