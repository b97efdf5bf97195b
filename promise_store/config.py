"""The served store's settings, read from the environment with working defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from promise_store.http import Limits
from promise_store.state import DEFAULT_SNAPSHOT_EVERY


class ConfigError(ValueError):
    """An environment variable holds a value the store cannot use."""


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "0.0.0.0"
    port: int = 8001
    store_path: Path = Path("data/promises.db")
    token: str | None = None
    snapshot_every: int = DEFAULT_SNAPSHOT_EVERY
    tick_interval: float = 1.0
    #: What one HTTP client may make the store hold, and for how long.
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """``HOST``, ``PORT``, ``STORE_PATH``, ``RESONATE_TOKEN``, ``SNAPSHOT_EVERY``,
        ``TICK_INTERVAL`` (seconds) and the HTTP limits (:func:`limits_from_env`);
        unset means the default."""
        e = os.environ if env is None else env
        d = cls()
        return cls(
            host=e.get("HOST") or d.host,
            port=_number(e, "PORT", d.port, int, 0, 65535),
            store_path=Path(e.get("STORE_PATH") or d.store_path),
            token=e.get("RESONATE_TOKEN") or None,
            snapshot_every=_number(e, "SNAPSHOT_EVERY", d.snapshot_every, int, 1, 10**9),
            tick_interval=_number(e, "TICK_INTERVAL", d.tick_interval, float, 0.01, 60.0),
            limits=limits_from_env(e),
        )


def limits_from_env(env: Mapping[str, str]) -> Limits:
    """``MAX_HEADER_BYTES``, ``MAX_URL_BYTES``, ``MAX_BODY_BYTES``, ``MAX_PIPELINED_REQUESTS``,
    ``MAX_CONNECTIONS``, and ``IDLE_TIMEOUT``, ``HEADER_TIMEOUT``, ``BODY_TIMEOUT`` in seconds."""
    d = Limits()
    return Limits(
        max_header_bytes=_number(env, "MAX_HEADER_BYTES", d.max_header_bytes, int, 1024, 1 << 20),
        max_url_bytes=_number(env, "MAX_URL_BYTES", d.max_url_bytes, int, 256, 1 << 20),
        max_body_bytes=_number(env, "MAX_BODY_BYTES", d.max_body_bytes, int, 1024, 1 << 30),
        max_pipelined=_number(env, "MAX_PIPELINED_REQUESTS", d.max_pipelined, int, 2, 1024),
        max_connections=_number(env, "MAX_CONNECTIONS", d.max_connections, int, 1, 1_000_000),
        idle_timeout=_number(env, "IDLE_TIMEOUT", d.idle_timeout, float, 0.1, 86400.0),
        header_timeout=_number(env, "HEADER_TIMEOUT", d.header_timeout, float, 0.1, 3600.0),
        body_timeout=_number(env, "BODY_TIMEOUT", d.body_timeout, float, 0.1, 3600.0),
    )


def _number[N: (int, float)](
    env: Mapping[str, str], name: str, default: N, kind: type[N], low: N, high: N
) -> N:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={raw!r} must be between {low} and {high}")
    return value
