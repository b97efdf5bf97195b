"""The console's own settings, from the environment (the banks and the store come from Settings)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
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
from envsettings.hosts import AllowedHosts, allowed_hosts
from envsettings.tls import ServerTls
from promise_store.config import limits_from_env
from promise_store.http import Limits

DEFAULT_PORT = 8090
#: What one client may make the console hold, and for how long (``CONSOLE_MAX_CONNECTIONS``,
#: ``CONSOLE_IDLE_TIMEOUT``, ...): a page needs two connections, and its requests are small.
DEFAULT_LIMITS = Limits(
    max_header_bytes=16 << 10,
    max_url_bytes=4096,
    max_body_bytes=16 << 10,
    max_pipelined=4,
    max_connections=256,
    idle_timeout=60.0,
    header_timeout=10.0,
    body_timeout=10.0,
)


#: How the console marks its operator's name in the operator records it writes.
CONSOLE_MARK = " (console)"
#: The longest name a bank keeps with a cancel (bank_client.CancelNote).
MAX_OPERATOR = 200


def console_operator(operator: str) -> str:
    """Who the console's operator records name: ``Settings.operator`` (``CROSSBANK_OPERATOR``,
    else ``user@host``) marked as from the console, ``alice@host (console)``.

    The console cannot tell one holder of its token from another, so the name is the
    console's, never one a page gives.
    """
    by = operator + CONSOLE_MARK
    if not operator.strip() or len(by) > MAX_OPERATOR or not by.isprintable():
        raise SettingsError(
            "CROSSBANK_OPERATOR",
            f"must be 1 to {MAX_OPERATOR - len(CONSOLE_MARK)} printable characters "
            f"(the console's records name it); got {operator!r}",
        )
    return by


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
    #: Live streams one holder of the token (or, with no token, one address) may keep open.
    max_clients_per_holder: int = 4
    limits: Limits = DEFAULT_LIMITS
    tls: ServerTls | None = None
    allowed_hosts: AllowedHosts = field(default_factory=AllowedHosts)

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

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
        max_clients = integer(env, "CONSOLE_MAX_CLIENTS", 8, low=1, high=1000)
        return cls(
            host=host,
            port=integer(env, "CONSOLE_PORT", DEFAULT_PORT, low=0, high=65535),
            token=token,
            read_only=boolean(env, "CONSOLE_READ_ONLY", False),
            poll_interval=number(env, "CONSOLE_POLL_INTERVAL", 0.5, low=0.1, high=60.0),
            max_clients=max_clients,
            client_queue=integer(env, "CONSOLE_CLIENT_QUEUE", 32, low=1, high=10_000),
            keepalive=number(env, "CONSOLE_KEEPALIVE", 15.0, low=1.0, high=300.0),
            max_transfers=integer(env, "CONSOLE_MAX_TRANSFERS", 100, low=1, high=10_000),
            max_entries=integer(env, "CONSOLE_MAX_ENTRIES", 10_000, low=100, high=10_000_000),
            read_timeout=number(env, "CONSOLE_READ_TIMEOUT", 3.0, low=0.1, high=120.0),
            worker_status_dir=optional_path(env, "CONSOLE_WORKER_STATUS_DIR"),
            max_clients_per_holder=integer(
                env, "CONSOLE_MAX_CLIENTS_PER_TOKEN", min(4, max_clients), low=1, high=max_clients
            ),
            limits=limits_from_env(env, "CONSOLE_", DEFAULT_LIMITS),
            tls=ServerTls.from_env(env, "CONSOLE_"),
            allowed_hosts=allowed_hosts(env, "CONSOLE_ALLOWED_HOSTS", listening_on=host),
        )
