"""A bank's settings, read from environment variables with working defaults.

Every part of crossbank is configured the same way (docs/design.md, "The
parts"), so scripts, compose and tests start a bank by setting a few variables.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bank.faults import FaultRule, parse_rules
from bank.validation import InvalidRequest
from envsettings import SettingsError, boolean_word, integer, optional_string, path, string
from envsettings.hosts import AllowedHosts, allowed_hosts
from envsettings.tls import ServerTls

#: Enough worker threads for 16+ concurrent clients plus a few parked (held) requests.
DEFAULT_THREADS = 32
#: Open client connections at once; at the cap the oldest idle one makes room for a new one.
DEFAULT_MAX_CONNECTIONS = 1000
#: Seconds a connection may sit with no request before the bank closes it (longer than the
#: 15 s that aiohttp, the orchestrator's client, keeps an idle connection, so it closes first).
DEFAULT_IDLE_TIMEOUT = 30
#: Seconds from a request's first byte until its headers must be complete.
DEFAULT_HEADER_TIMEOUT = 10
#: Seconds from the end of a request's headers until its body must be complete.
DEFAULT_BODY_TIMEOUT = 10
#: Largest request line plus headers, in bytes.
DEFAULT_MAX_HEADER_BYTES = 16 * 1024


@dataclass(frozen=True)
class BankConfig:
    """Everything one bank process needs to know before it serves."""

    name: str
    port: int
    ledger_path: Path
    host: str = "127.0.0.1"
    token: str | None = None
    faults_enabled: bool = False
    initial_faults: tuple[FaultRule, ...] = field(default_factory=tuple)
    threads: int = DEFAULT_THREADS
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    idle_timeout: int = DEFAULT_IDLE_TIMEOUT
    header_timeout: int = DEFAULT_HEADER_TIMEOUT
    body_timeout: int = DEFAULT_BODY_TIMEOUT
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    #: Serve TLS with this certificate (``TLS_CERT_FILE``, ``TLS_KEY_FILE``), or plain HTTP.
    tls: ServerTls | None = None
    #: The host names requests may be addressed to (``ALLOWED_HOSTS``).
    allowed_hosts: AllowedHosts = field(default_factory=AllowedHosts)

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    @classmethod
    def from_env(
        cls, name: str, default_port: int, environ: Mapping[str, str] | None = None
    ) -> BankConfig:
        """Read ``PORT``, ``HOST``, ``LEDGER_PATH``, ``BANK_TOKEN``, ``BANK_FAULTS``,
        ``BANK_THREADS``, the connection limits, ``ALLOWED_HOSTS`` and the ``TLS_*``
        files (``bank/README.md`` lists them all)."""
        env = os.environ if environ is None else environ
        faults_enabled, initial_faults = _parse_faults(optional_string(env, "BANK_FAULTS"))
        host = string(env, "HOST", "127.0.0.1")
        return cls(
            name=name,
            port=integer(env, "PORT", default_port, low=0, high=65535),
            host=host,
            ledger_path=path(env, "LEDGER_PATH", f"./data/{name}_bank.db"),
            token=optional_string(env, "BANK_TOKEN"),
            faults_enabled=faults_enabled,
            initial_faults=initial_faults,
            threads=integer(env, "BANK_THREADS", DEFAULT_THREADS, low=1, high=1024),
            max_connections=integer(
                env, "BANK_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS, low=1, high=100_000
            ),
            idle_timeout=integer(env, "BANK_IDLE_TIMEOUT", DEFAULT_IDLE_TIMEOUT, low=1, high=3600),
            header_timeout=integer(
                env, "BANK_HEADER_TIMEOUT", DEFAULT_HEADER_TIMEOUT, low=1, high=600
            ),
            body_timeout=integer(env, "BANK_BODY_TIMEOUT", DEFAULT_BODY_TIMEOUT, low=1, high=600),
            max_header_bytes=integer(
                env, "BANK_MAX_HEADER_BYTES", DEFAULT_MAX_HEADER_BYTES, low=1024, high=1 << 20
            ),
            tls=ServerTls.from_env(env),
            allowed_hosts=allowed_hosts(env, "ALLOWED_HOSTS", listening_on=host),
        )


def _parse_faults(raw: str | None) -> tuple[bool, tuple[FaultRule, ...]]:
    """``BANK_FAULTS``: unset/off, ``1``/``on``, or a JSON list of initial rules."""
    if raw is None:
        return False, ()
    switch = boolean_word(raw)
    if switch is not None:
        return switch, ()
    try:
        rules = json.loads(raw)
    except ValueError as exc:
        raise SettingsError(
            "BANK_FAULTS", f"must be 1/on, 0/off or a JSON list of fault rules: {exc}"
        ) from exc
    try:
        return True, tuple(parse_rules(rules))
    except InvalidRequest as exc:
        raise SettingsError("BANK_FAULTS", f"has a bad rule: {exc}") from exc
