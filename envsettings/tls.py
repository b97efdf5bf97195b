"""TLS from the environment: how every part verifies the servers it calls and serves its own.

Clients (workers, the CLI, the console's reads) verify certificates and host
names by default, against the system's CAs; ``SSL_CERT_FILE`` and
``SSL_CERT_DIR`` work as they do for any Python program (``ssl`` reads them).
Two settings add to that:

- ``TLS_CA_FILE``: a PEM bundle of private CAs to trust as well;
- ``TLS_CLIENT_CERT`` and ``TLS_CLIENT_KEY``: a certificate to present to a
  server that requires mutual TLS.

A server (a bank, the promise store, the console) serves TLS when given a
certificate and its key (``TLS_CERT_FILE`` and ``TLS_KEY_FILE``, or the
console's ``CONSOLE_``-prefixed names); with ``TLS_CLIENT_CA_FILE`` it also
requires each client to present a certificate signed by that CA.

Every file is read when the settings are, so a missing, unreadable or
malformed one stops the part at start-up with a :class:`SettingsError`
naming the variable, never later on a connection.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from envsettings import SettingsError, optional_path

#: Oldest protocol any part speaks or accepts.
MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


@dataclass(frozen=True)
class ClientTls:
    """What a client trusts beyond the system's CAs, and the certificate it may present."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ClientTls:
        """``TLS_CA_FILE``, ``TLS_CLIENT_CERT`` and ``TLS_CLIENT_KEY``; each file is checked now."""
        tls = cls(
            ca_file=optional_path(env, "TLS_CA_FILE"),
            cert_file=optional_path(env, "TLS_CLIENT_CERT"),
            key_file=optional_path(env, "TLS_CLIENT_KEY"),
        )
        _pair("TLS_CLIENT_CERT", tls.cert_file, "TLS_CLIENT_KEY", tls.key_file)
        client_context(tls)  # a bad file is refused here, naming its variable
        return tls

    def to_env(self) -> dict[str, str]:
        """The variables :meth:`from_env` reads back as these settings (unset ones as "")."""
        return {
            "TLS_CA_FILE": str(self.ca_file or ""),
            "TLS_CLIENT_CERT": str(self.cert_file or ""),
            "TLS_CLIENT_KEY": str(self.key_file or ""),
        }


@dataclass(frozen=True)
class ServerTls:
    """The certificate a server presents, and the CA its clients' certificates must chain to."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    #: The prefix of the variables these came from ("" or "CONSOLE_"), for messages.
    prefix: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str], prefix: str = "") -> ServerTls | None:
        """``{prefix}TLS_CERT_FILE``, ``{prefix}TLS_KEY_FILE`` and ``{prefix}TLS_CLIENT_CA_FILE``;
        None (plain HTTP) when no certificate is set."""
        cert_name, key_name = f"{prefix}TLS_CERT_FILE", f"{prefix}TLS_KEY_FILE"
        cert, key = optional_path(env, cert_name), optional_path(env, key_name)
        client_ca = optional_path(env, f"{prefix}TLS_CLIENT_CA_FILE")
        _pair(cert_name, cert, key_name, key)
        if cert is None or key is None:
            if client_ca is not None:
                raise SettingsError(
                    f"{prefix}TLS_CLIENT_CA_FILE", f"needs {cert_name} and {key_name} set too"
                )
            return None
        tls = cls(cert, key, client_ca, prefix)
        server_context(tls)  # a bad file is refused here, naming its variable
        return tls

    @property
    def mutual(self) -> bool:
        return self.client_ca_file is not None


@functools.cache
def client_context(tls: ClientTls = ClientTls()) -> ssl.SSLContext:
    """A verifying client context: the system's CAs, ``SSL_CERT_FILE``, and ``tls``'s own.

    Built once per settings and shared: loading the system's CAs costs
    milliseconds, and one context serves every connection of a process.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = MINIMUM_VERSION
    if tls.ca_file is not None:
        ca = _readable("TLS_CA_FILE", tls.ca_file)
        _load("TLS_CA_FILE", ca, lambda: context.load_verify_locations(ca))
    if tls.cert_file is not None and tls.key_file is not None:
        cert = _readable("TLS_CLIENT_CERT", tls.cert_file)
        key = _readable("TLS_CLIENT_KEY", tls.key_file)
        _load("TLS_CLIENT_CERT", cert, lambda: context.load_cert_chain(cert, key))
    return context


@functools.cache
def server_context(tls: ServerTls) -> ssl.SSLContext:
    """A server context presenting ``tls``'s certificate (and, when mutual, asking for one)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = MINIMUM_VERSION
    cert_name = f"{tls.prefix}TLS_CERT_FILE"
    cert = _readable(cert_name, tls.cert_file)
    key = _readable(f"{tls.prefix}TLS_KEY_FILE", tls.key_file)
    _load(cert_name, cert, lambda: context.load_cert_chain(cert, key))
    if tls.client_ca_file is not None:
        ca_name = f"{tls.prefix}TLS_CLIENT_CA_FILE"
        ca = _readable(ca_name, tls.client_ca_file)
        _load(ca_name, ca, lambda: context.load_verify_locations(ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _pair(first: str, a: Path | None, second: str, b: Path | None) -> None:
    if (a is None) != (b is None):
        given, missing = (first, second) if b is None else (second, first)
        raise SettingsError(missing, f"must be set with {given}")


def _readable(variable: str, path: Path) -> Path:
    """``path``, once it is known to be a file this process can read."""
    try:
        with path.open("rb"):
            return path
    except FileNotFoundError:
        raise SettingsError(variable, f"names a file that does not exist: {path}") from None
    except PermissionError:
        raise SettingsError(variable, f"names a file this process may not read: {path}") from None
    except OSError as exc:
        raise SettingsError(variable, f"names {path}, which cannot be read: {exc}") from None


def _load(variable: str, path: Path, load: Callable[[], object]) -> None:
    """Run ``load`` (which reads ``path``), turning a failure into a SettingsError."""
    try:
        load()
    except (ssl.SSLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or str(exc)
        raise SettingsError(
            variable, f"names {path}, which holds no usable certificate or key ({reason})"
        ) from None
