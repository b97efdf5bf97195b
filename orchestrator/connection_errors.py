"""Why a connection to a bank or the store failed, in one line that names the setting to fix.

A user who gets TLS wrong meets one of a few failures, each of which a bare
exception describes badly ("[SSL: CERTIFICATE_VERIFY_FAILED]", "Server
disconnected"): a certificate from a CA the client does not trust, one made
for another host name, one that expired, an ``https://`` URL for a server
that speaks plain HTTP, and an ``http://`` URL for one that speaks TLS (which
closes the connection without a word). :func:`explain` turns each into a
sentence; :func:`speaks_tls` and :func:`speaks_plain_http` tell the last two
apart from a server that is simply gone, by trying the other protocol.
"""

from __future__ import annotations

import asyncio
import ssl

from orchestrator.http_pool import Endpoint

#: OpenSSL's verification codes (``X509_V_ERR_*``) that mean "not signed by a CA you trust".
_UNTRUSTED = frozenset({2, 18, 19, 20, 21, 27})
_EXPIRED = 10
_NOT_YET_VALID = 9
#: The name, or the IP address, is not one the certificate was made for.
_WRONG_HOST = frozenset({62, 64})
#: How long the handshake that tells a TLS server apart may take.
PROBE_SECONDS = 2.0


def explain(exc: BaseException, endpoint: Endpoint, variable: str) -> str | None:
    """A sentence for a TLS failure reaching ``endpoint`` (set by ``variable``); None otherwise."""
    cause = _tls_cause(exc)
    if isinstance(cause, ssl.SSLCertVerificationError):
        code = cause.verify_code
        if code in _UNTRUSTED:
            return (
                f"the certificate of {endpoint.url} ({variable}) is signed by a CA this client "
                f"does not trust ({cause.verify_message}); trust its CA with TLS_CA_FILE "
                "or SSL_CERT_FILE"
            )
        if code in _WRONG_HOST:
            return (
                f"the certificate of {endpoint.url} ({variable}) is not for {endpoint.host}: "
                f"put a name the certificate has in {variable}, or make it one for "
                f"{endpoint.host}"
            )
        if code == _EXPIRED:
            return f"the certificate of {endpoint.url} ({variable}) has expired; renew it"
        if code == _NOT_YET_VALID:
            return (
                f"the certificate of {endpoint.url} ({variable}) is not valid yet; "
                "check both machines' clocks"
            )
        return (
            f"the certificate of {endpoint.url} ({variable}) failed verification: "
            f"{cause.verify_message}"
        )
    if isinstance(cause, ssl.SSLError):
        if cause.reason in (
            "WRONG_VERSION_NUMBER",
            "RECORD_LAYER_FAILURE",
            "PACKET_LENGTH_TOO_LONG",
        ):
            return plain_http_message(endpoint, variable)
        return f"TLS with {endpoint.url} ({variable}) failed: {cause.reason or cause}"
    return None


def speaks_tls_message(endpoint: Endpoint, variable: str) -> str:
    secure = endpoint.url.replace("http://", "https://", 1)
    return f"{endpoint.url} ({variable}) speaks TLS, not plain HTTP: use {secure} in {variable}"


def plain_http_message(endpoint: Endpoint, variable: str) -> str:
    plain = endpoint.url.replace("https://", "http://", 1)
    return (
        f"{endpoint.url} ({variable}) does not speak TLS: "
        f"use {plain} in {variable}, or give the server a certificate"
    )


async def speaks_tls(endpoint: Endpoint) -> bool:
    """Whether the server at ``endpoint`` completes a TLS handshake (its certificate unchecked).

    For telling an ``http://`` URL that points at a TLS port from a server
    that is down: nothing is sent after the handshake.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        async with asyncio.timeout(PROBE_SECONDS):
            _, writer = await asyncio.open_connection(
                endpoint.host, endpoint.port, ssl=context, server_hostname=endpoint.host
            )
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


async def speaks_plain_http(endpoint: Endpoint) -> bool:
    """Whether the server at ``endpoint`` answers a plain HTTP request with an HTTP status line."""
    try:
        async with asyncio.timeout(PROBE_SECONDS):
            reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
            try:
                writer.write(b"HEAD / HTTP/1.0\r\n\r\n")
                first = await reader.read(5)
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return False
    return first == b"HTTP/"


def _tls_cause(exc: BaseException | None) -> BaseException | None:
    """The ``ssl`` error behind ``exc`` (itself, or one in its chain of causes)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, ssl.SSLError):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None
