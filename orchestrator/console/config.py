"""The console's own settings, from the environment (the banks and the store come from Settings)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from envsettings import (
    SettingsError,
    boolean,
    integer,
    number,
    optional_path,
    optional_string,
    string,
)

DEFAULT_PORT = 8090


@dataclass(frozen=True)
class ConsoleSettings:
    """Where the console listens and the limits on what it reads and serves.

    ``token`` is what a browser must present before it reads or acts
    (``CONSOLE_TOKEN``; unset, the bank token stands in, then the store's
    token: whoever may use the system's tokens may use its console; none of
    them set, the console is open, like the parts themselves). ``read_only``
    turns every action off. ``worker_status_dir`` is a directory where workers
    keep their ``WORKER_STATUS_FILE``: the console shows them from there (the
    local demo's console knows its workers without it).
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token: str | None = None
    read_only: bool = False
    poll_interval: float = 0.5
    max_clients: int = 8
    client_queue: int = 32
    keepalive: float = 15.0
    max_transfers: int = 100
    max_entries: int = 10_000
    read_timeout: float = 3.0
    worker_status_dir: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ConsoleSettings:
        """Read ``CONSOLE_*``; a bad value raises :class:`envsettings.SettingsError` naming it."""
        token = (
            optional_string(env, "CONSOLE_TOKEN")
            or optional_string(env, "BANK_TOKEN")
            or optional_string(env, "RESONATE_TOKEN")
        )
        host = string(env, "CONSOLE_HOST", "127.0.0.1")
        if not host.strip():
            raise SettingsError("CONSOLE_HOST", "must name an interface, like 127.0.0.1")
        return cls(
            host=host,
            port=integer(env, "CONSOLE_PORT", DEFAULT_PORT, low=0, high=65535),
            token=token,
            read_only=boolean(env, "CONSOLE_READ_ONLY", False),
            poll_interval=number(env, "CONSOLE_POLL_INTERVAL", 0.5, low=0.1, high=60.0),
            max_clients=integer(env, "CONSOLE_MAX_CLIENTS", 8, low=1, high=1000),
            client_queue=integer(env, "CONSOLE_CLIENT_QUEUE", 32, low=1, high=10_000),
            keepalive=number(env, "CONSOLE_KEEPALIVE", 15.0, low=1.0, high=300.0),
            max_transfers=integer(env, "CONSOLE_MAX_TRANSFERS", 100, low=1, high=10_000),
            max_entries=integer(env, "CONSOLE_MAX_ENTRIES", 10_000, low=100, high=10_000_000),
            read_timeout=number(env, "CONSOLE_READ_TIMEOUT", 3.0, low=0.1, high=120.0),
            worker_status_dir=optional_path(env, "CONSOLE_WORKER_STATUS_DIR"),
        )
