"""The orchestrator's configuration, read once from the environment.

Every part of crossbank is configured by environment variables with working
defaults, so the worker, the CLI, compose and the tests all start the
orchestrator the same way. Parsing is strict: a bad
value fails at start-up with the variable's name, not later mid-transfer.
"""

from __future__ import annotations

import getpass
import os
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from envsettings import (
    SettingsError,
    integer,
    number,
    optional_path,
    optional_string,
    path,
    string,
    url,
)
from envsettings.tls import ClientTls, client_context
from orchestrator.store_network import DEFAULT_REQUEST_TIMEOUT_SECONDS

DEFAULT_STORE_PATH = "./data/promises.db"
DEFAULT_SOURCE_BANK_URL = "http://127.0.0.1:5001"
DEFAULT_TARGET_BANK_URL = "http://127.0.0.1:5002"
DEFAULT_GROUP = "crossbank-workers"


@dataclass(frozen=True)
class Settings:
    """Where the banks and the promise store are, and how patient the saga is.

    ``resonate_url`` is a served promise store, ``resonate_pg_dsn`` Resonate's
    own server on Postgres (``resonate.sql`` applied to that database); at most
    one is set, and neither means the embedded store at ``store_path``.
    ``step_attempts`` is how many times a bank step is tried before its outcome
    is settled with the bank's void fence; between tries the saga waits
    ``step_backoff`` seconds, doubling up to ``step_backoff_max``.
    ``attention_after`` is how long a transfer may keep compensating (a reversal
    that the source bank will not yet accept) before it is flagged.
    ``push_idle_timeout`` and ``push_max_lifetime`` bound the push channel (see
    :mod:`orchestrator.push`); ``worker_health_file``, when set, is where a worker
    says whether it can receive work (see :mod:`orchestrator.health_file`).
    ``store_request_timeout`` is how long a request to the served store may go
    unanswered before it is sent again (see :mod:`orchestrator.store_network`).
    ``pg_warn_every`` is how often a repeated warning of the Postgres connector
    is shown while the database is down (see :mod:`orchestrator.repeated_warnings`).
    ``tls`` is what an ``https://`` bank or store is verified against, and the
    certificate presented to one that asks (see :mod:`envsettings.tls`).
    ``saga_versions`` are the saga versions a worker carries (empty: all this
    code has) and ``saga_version`` the one new transfers start on (None: the
    newest); :mod:`orchestrator.saga_versions` says what they mean.
    ``operator`` names whoever runs an operator's command (cancel, retry), in
    the record it leaves.
    """

    resonate_url: str | None = None
    resonate_pg_dsn: str | None = None
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
    push_idle_timeout: float = 6.0
    push_max_lifetime: float = 3600.0
    worker_health_file: Path | None = None
    pg_warn_every: float = 10.0
    store_request_timeout: float = DEFAULT_REQUEST_TIMEOUT_SECONDS
    tls: ClientTls = field(default_factory=ClientTls)
    saga_versions: tuple[int, ...] = ()
    saga_version: int | None = None
    operator: str = field(default_factory=lambda: default_operator())

    def tls_for(self, url: str) -> ssl.SSLContext | None:
        """The client TLS context for ``url``: the configured one for ``https://``, else None."""
        return client_context(self.tls) if url.startswith("https://") else None

    @property
    def served(self) -> bool:
        """Whether workers run the transfers (a served store or Postgres), not this process."""
        return self.resonate_url is not None or self.resonate_pg_dsn is not None

    def store_name(self) -> str:
        """Where transfers are kept, for a log line or a message (no password shown)."""
        if self.resonate_pg_dsn is not None:
            return f"Resonate on Postgres {redact_dsn(self.resonate_pg_dsn)}"
        return self.resonate_url or f"embedded store {self.store_path}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        """Build settings from ``env``; a malformed value raises
        :class:`envsettings.SettingsError` naming it."""
        resonate_url, resonate_pg_dsn = url(env, "RESONATE_URL"), _pg_dsn(env)
        if resonate_url is not None and resonate_pg_dsn is not None:
            raise SettingsError(
                "RESONATE_PG_DSN",
                "and RESONATE_URL are both set: choose one backend (RESONATE_URL for crossbank's "
                "promise store, RESONATE_PG_DSN for Resonate on Postgres)",
            )
        return cls(
            resonate_url=resonate_url,
            resonate_pg_dsn=resonate_pg_dsn,
            resonate_token=optional_string(env, "RESONATE_TOKEN"),
            store_path=path(env, "STORE_PATH", DEFAULT_STORE_PATH),
            source_bank_url=url(env, "SOURCE_BANK_URL") or DEFAULT_SOURCE_BANK_URL,
            target_bank_url=url(env, "TARGET_BANK_URL") or DEFAULT_TARGET_BANK_URL,
            bank_token=optional_string(env, "BANK_TOKEN"),
            group=string(env, "WORKER_GROUP", DEFAULT_GROUP),
            lease_ttl=number(env, "LEASE_TTL", 15.0, low=1.0),
            step_attempts=integer(env, "STEP_ATTEMPTS", 5, low=1),
            step_backoff=integer(env, "STEP_BACKOFF", 1, low=0),
            step_backoff_max=integer(env, "STEP_BACKOFF_MAX", 30, low=0),
            bank_timeout=number(env, "BANK_TIMEOUT", 5.0, low=0.01),
            attention_after=number(env, "ATTENTION_AFTER", 300.0, low=0.0),
            push_idle_timeout=number(env, "PUSH_IDLE_TIMEOUT", 6.0, low=0.5),
            push_max_lifetime=number(env, "PUSH_MAX_LIFETIME", 3600.0, low=1.0),
            worker_health_file=optional_path(env, "WORKER_HEALTH_FILE"),
            pg_warn_every=number(env, "PG_WARN_EVERY", 10.0, low=0.1),
            store_request_timeout=number(
                env, "STORE_REQUEST_TIMEOUT", DEFAULT_REQUEST_TIMEOUT_SECONDS, low=0.1, high=3600.0
            ),
            tls=ClientTls.from_env(env),
            saga_versions=_versions(env, "SAGA_VERSIONS"),
            saga_version=_version(env, "SAGA_VERSION"),
            operator=optional_string(env, "CROSSBANK_OPERATOR") or default_operator(),
        )

    def to_env(self) -> dict[str, str]:
        """The environment :meth:`from_env` reads back as these settings.

        Every variable is given, unset ones as ``""`` (which ``from_env`` reads
        as unset), so a child process started with it sees these settings and
        none of its parent's.
        """
        return {
            "RESONATE_URL": self.resonate_url or "",
            "RESONATE_PG_DSN": self.resonate_pg_dsn or "",
            "RESONATE_TOKEN": self.resonate_token or "",
            "STORE_PATH": str(self.store_path),
            "SOURCE_BANK_URL": self.source_bank_url,
            "TARGET_BANK_URL": self.target_bank_url,
            "BANK_TOKEN": self.bank_token or "",
            "WORKER_GROUP": self.group,
            "LEASE_TTL": repr(self.lease_ttl),
            "STEP_ATTEMPTS": str(self.step_attempts),
            "STEP_BACKOFF": str(self.step_backoff),
            "STEP_BACKOFF_MAX": str(self.step_backoff_max),
            "BANK_TIMEOUT": repr(self.bank_timeout),
            "ATTENTION_AFTER": repr(self.attention_after),
            "PUSH_IDLE_TIMEOUT": repr(self.push_idle_timeout),
            "PUSH_MAX_LIFETIME": repr(self.push_max_lifetime),
            "WORKER_HEALTH_FILE": str(self.worker_health_file or ""),
            "PG_WARN_EVERY": repr(self.pg_warn_every),
            "STORE_REQUEST_TIMEOUT": repr(self.store_request_timeout),
            **self.tls.to_env(),
            "SAGA_VERSIONS": ",".join(str(v) for v in self.saga_versions),
            "SAGA_VERSION": str(self.saga_version or ""),
            "CROSSBANK_OPERATOR": self.operator,
        }


def default_operator() -> str:
    """Who runs this process, when ``CROSSBANK_OPERATOR`` does not say: ``user@host``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container's)
        user = f"uid-{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def _versions(env: Mapping[str, str], name: str) -> tuple[int, ...]:
    """A comma-separated list of saga versions (positive integers); empty when unset."""
    text = optional_string(env, name)
    if text is None:
        return ()
    versions = []
    for part in text.split(","):
        if not part.strip().isdigit() or int(part) < 1:
            raise SettingsError(
                name, f"must be saga versions separated by commas, like 1,2; got {text!r}"
            )
        versions.append(int(part))
    return tuple(sorted(set(versions)))


def _version(env: Mapping[str, str], name: str) -> int | None:
    """One saga version (a positive integer), or None when unset."""
    versions = _versions(env, name)
    if len(versions) > 1:
        raise SettingsError(name, f"must be one saga version, got {env[name]!r}")
    return versions[0] if versions else None


def _pg_dsn(env: Mapping[str, str]) -> str | None:
    """``RESONATE_PG_DSN``: a ``postgresql://`` (or ``postgres://``) URL, as libpq reads it."""
    value = optional_string(env, "RESONATE_PG_DSN")
    if value is not None and urlsplit(value).scheme not in ("postgresql", "postgres"):
        raise SettingsError(
            "RESONATE_PG_DSN",
            f"must be a postgresql:// URL, got {redact_dsn(value)!r}",
        )
    return value


def redact_dsn(dsn: str) -> str:
    """``dsn`` with its password, if any, replaced by ``***``: safe to print or log."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{host}").geturl()
