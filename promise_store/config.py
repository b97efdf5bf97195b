"""The served store's settings, read from the environment with working defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from envsettings import SettingsError, boolean, integer, number
from envsettings.hosts import AllowedHosts, allowed_hosts
from envsettings.tls import ServerTls
from promise_store.delivery import DEFAULT_MAX_WATCHED, DEFAULT_REOFFER_AFTER
from promise_store.http import Limits
from promise_store.limits import DEFAULT_MAX_JSON_DEPTH
from promise_store.state import DEFAULT_SNAPSHOT_EVERY, DEFAULT_WRITE_RETRY_INTERVAL

#: The one error type for a bad setting in every part (:mod:`envsettings`).
ConfigError = SettingsError


@dataclass(frozen=True, slots=True)
class Settings:
    #: Loopback unless told otherwise (``HOST=0.0.0.0`` in a container).
    host: str = "127.0.0.1"
    port: int = 8001
    store_path: Path = Path("data/promises.db")
    token: str | None = None
    snapshot_every: int = DEFAULT_SNAPSHOT_EVERY
    #: Commit journal entries on a worker thread instead of the event loop.
    commit_in_thread: bool = False
    tick_interval: float = 1.0
    #: Seconds after a failed journal write (a full disk) before it is tried again.
    write_retry_interval: float = DEFAULT_WRITE_RETRY_INTERVAL
    #: Seconds an ``execute`` dealt to one listener of a group may stay unacquired
    #: before other listeners are offered it, and how many offers are watched.
    reoffer_after: float = DEFAULT_REOFFER_AFTER
    max_watched_offers: int = DEFAULT_MAX_WATCHED
    #: Deepest JSON nesting a request may have.
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH
    #: What one HTTP client may make the store hold, and for how long.
    limits: Limits = field(default_factory=Limits)
    #: Serve TLS with this certificate (``TLS_CERT_FILE``, ``TLS_KEY_FILE``), or plain HTTP.
    tls: ServerTls | None = None
    #: The host names requests may be addressed to (``ALLOWED_HOSTS``).
    allowed_hosts: AllowedHosts = field(default_factory=AllowedHosts)

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """``HOST``, ``PORT``, ``STORE_PATH``, ``RESONATE_TOKEN``, ``SNAPSHOT_EVERY``,
        ``COMMIT_IN_THREAD``, ``TICK_INTERVAL``, ``WRITE_RETRY_INTERVAL`` and ``REOFFER_AFTER``
        (seconds), ``MAX_WATCHED_OFFERS``,
        ``MAX_JSON_DEPTH``, the HTTP limits (:func:`limits_from_env`), ``ALLOWED_HOSTS``
        and the ``TLS_*`` files; unset means the default."""
        e = os.environ if env is None else env
        d = cls()
        host = e.get("HOST") or d.host
        return cls(
            host=host,
            port=integer(e, "PORT", d.port, low=0, high=65535),
            store_path=Path(e.get("STORE_PATH") or d.store_path),
            token=e.get("RESONATE_TOKEN") or None,
            snapshot_every=integer(e, "SNAPSHOT_EVERY", d.snapshot_every, low=1, high=10**9),
            commit_in_thread=boolean(e, "COMMIT_IN_THREAD", d.commit_in_thread),
            tick_interval=number(e, "TICK_INTERVAL", d.tick_interval, low=0.01, high=60.0),
            write_retry_interval=number(
                e, "WRITE_RETRY_INTERVAL", d.write_retry_interval, low=0.01, high=3600.0
            ),
            reoffer_after=number(e, "REOFFER_AFTER", d.reoffer_after, low=0.05, high=3600.0),
            max_watched_offers=integer(
                e, "MAX_WATCHED_OFFERS", d.max_watched_offers, low=0, high=1_000_000
            ),
            max_json_depth=integer(e, "MAX_JSON_DEPTH", d.max_json_depth, low=8, high=1000),
            limits=limits_from_env(e),
            tls=ServerTls.from_env(e),
            allowed_hosts=allowed_hosts(e, "ALLOWED_HOSTS", listening_on=host),
        )


def limits_from_env(env: Mapping[str, str], prefix: str = "", d: Limits | None = None) -> Limits:
    """``MAX_HEADER_BYTES``, ``MAX_URL_BYTES``, ``MAX_BODY_BYTES``, ``MAX_PIPELINED_REQUESTS``,
    ``MAX_CONNECTIONS``, and ``IDLE_TIMEOUT``, ``HEADER_TIMEOUT``, ``BODY_TIMEOUT`` in seconds,
    each after ``prefix`` (the console's are ``CONSOLE_MAX_CONNECTIONS``, ...); ``d`` gives
    the defaults."""
    d = d or Limits()
    p = prefix
    return Limits(
        max_header_bytes=integer(
            env, f"{p}MAX_HEADER_BYTES", d.max_header_bytes, low=1024, high=1 << 20
        ),
        max_url_bytes=integer(env, f"{p}MAX_URL_BYTES", d.max_url_bytes, low=256, high=1 << 20),
        # A request's body is journaled as one SQLite value: stay far below
        # SQLite's own limit on a value (1e9 bytes), which would fail the write.
        max_body_bytes=integer(
            env, f"{p}MAX_BODY_BYTES", d.max_body_bytes, low=1024, high=64 << 20
        ),
        max_pipelined=integer(env, f"{p}MAX_PIPELINED_REQUESTS", d.max_pipelined, low=2, high=1024),
        max_connections=integer(
            env, f"{p}MAX_CONNECTIONS", d.max_connections, low=1, high=1_000_000
        ),
        idle_timeout=number(env, f"{p}IDLE_TIMEOUT", d.idle_timeout, low=0.1, high=86400.0),
        header_timeout=number(env, f"{p}HEADER_TIMEOUT", d.header_timeout, low=0.1, high=3600.0),
        body_timeout=number(env, f"{p}BODY_TIMEOUT", d.body_timeout, low=0.1, high=3600.0),
    )
