"""Which host names a server answers to: what keeps a web page from using it through DNS rebinding.

A page on another site can make a browser send requests to 127.0.0.1 under
a name the page's owner controls (DNS rebinding: the name first resolves to
their server, then to 127.0.0.1). The browser then treats the local server as
that site's own, and every request carries that name in ``Host``. A server
that answers only to the names it is really reached by refuses all of them.

``ALLOWED_HOSTS`` (``CONSOLE_ALLOWED_HOSTS`` for the console) lists those
names, comma-separated; ``127.0.0.1``, ``localhost`` and ``::1`` are always
among them, and so is the address the server listens on when that is one
address (not ``0.0.0.0``). ``*`` turns the check off, for a server behind a
proxy that checks names itself. A request with no ``Host`` at all (an
HTTP/1.0 client) is not a browser's and passes. ``/health`` is never checked:
it tells nothing, and orchestrators probe it by address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from envsettings import SettingsError, optional_string

#: The names every local server answers to.
LOCAL_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
#: Listening addresses that stand for every interface: no single name to add.
_WILDCARDS = frozenset({"0.0.0.0", "::", ""})


@dataclass(frozen=True)
class AllowedHosts:
    """The host names a server answers to (any, when ``any_host``)."""

    names: frozenset[str] = LOCAL_NAMES
    any_host: bool = False

    def allows(self, host_header: str | None) -> bool:
        """Whether a request whose ``Host`` header is ``host_header`` is for this server."""
        if self.any_host or host_header is None:
            return True
        name = host_name(host_header)
        return name is not None and name in self.names

    def allows_origin(self, origin: str | None) -> bool:
        """Whether a browser's ``Origin`` header names a page served under one of these names.

        No ``Origin`` (a client that is not a browser) passes; ``null`` (a
        sandboxed or file page) does not.
        """
        if origin is None or self.any_host:
            return True
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        return parts.hostname.rstrip(".").lower() in self.names


def allowed_hosts(env: Mapping[str, str], variable: str, *, listening_on: str) -> AllowedHosts:
    """``variable`` (a comma-separated list, or ``*``) read from ``env``, plus the local names."""
    raw = optional_string(env, variable)
    names = set(LOCAL_NAMES)
    if listening_on.strip("[]") not in _WILDCARDS:
        names.add(_normal(listening_on.strip("[]")))
    if raw is None:
        return AllowedHosts(frozenset(names))
    if raw == "*":
        return AllowedHosts(frozenset(names), any_host=True)
    for given in raw.split(","):
        name = _normal(given.strip())
        if not name or (any(char in name for char in "/:@ ") and not _is_ipv6(name)):
            raise SettingsError(
                variable, f"must list host names separated by commas, or be *, got {raw!r}"
            )
        names.add(name)
    return AllowedHosts(frozenset(names))


def host_name(host_header: str) -> str | None:
    """The name in a ``Host`` header (``name``, ``name:port``, ``[v6]:port``); None if malformed."""
    value = host_header.strip()
    if value.startswith("["):
        end = value.find("]")
        if end == -1:
            return None
        name, rest = value[1:end], value[end + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
        return _normal(name) if _is_ipv6(name) else None
    name, _, port = value.partition(":")
    if port and not port.isdigit():
        return None
    return _normal(name) or None


def _normal(name: str) -> str:
    return name.rstrip(".").lower()


def _is_ipv6(name: str) -> bool:
    try:
        return ipaddress.ip_address(name).version == 6
    except ValueError:
        return False
