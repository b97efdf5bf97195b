"""A pool of keep-alive HTTP/1.1 connections to one server, plain or TLS, lean on CPU.

Both hot links of a worker go through it: every bank call
(:mod:`orchestrator.bank_client`) and every request to a served promise
store (:mod:`orchestrator.store_network`), all small JSON requests. Profiles
of a loaded worker put aiohttp's per-request machinery at over a third of
its CPU; this pool keeps only what those links need and costs about a third
of that per request:

- persistent connections, one request at a time each (no pipelining), taken
  from an idle list or opened on demand;
- a request written in one ``write``;
- the response parsed by llhttp (``httptools``, the C parser uvicorn uses),
  so chunked, interim (``100 Continue``) or close-delimited responses are
  handled the way the standard says, not by a hand parser;
- TLS by the standard ``ssl`` module: an ``https://`` endpoint's connections
  are wrapped by asyncio with the context the caller gives (certificates and
  host names verified unless that context says otherwise).

Nothing is retried here: the caller decides what a failure means.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

#: Idle connections kept for reuse by default; beyond this, a returned connection is closed.
MAX_IDLE_CONNECTIONS = 64


class ResponseLost(ConnectionError):
    """The connection ended, or sent something unparseable, before a whole response."""


@dataclass(frozen=True)
class Endpoint:
    """Where an ``http://`` or ``https://`` URL points, as a pool and its requests need it."""

    url: str
    host: str
    port: int
    #: What every request's ``Host`` header says.
    netloc: str
    #: The URL's path, without a trailing ``/``, put in front of every request's path.
    prefix: str
    tls: bool

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """The endpoint of ``url``; ValueError unless it is ``http(s)://host[:port][/path]``."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http:// or https:// URL with a host, got {url!r}")
        tls = parts.scheme == "https"
        return cls(
            url=url.rstrip("/"),
            host=parts.hostname,
            port=parts.port or (443 if tls else 80),
            netloc=parts.netloc,
            prefix=parts.path.rstrip("/"),
            tls=tls,
        )


class HttpConnection(asyncio.Protocol):
    """One connection carrying one request at a time."""

    #: The status of the last whole response.
    status = 0

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._body: list[bytes] = []
        #: The response has a Content-Length or is chunked...
        self._framed = False
        #: ...or not, and its body is everything until the server closes.
        self._ends_with_connection = False
        self._waiter: asyncio.Future[bytes] | None = None
        self.closed = False

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ResponseLost(f"unparseable response: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if exc is None and self._ends_with_connection:
            self._answer()  # the end of the stream is the end of the body
        self._fail(ResponseLost(f"the server closed the connection: {exc or 'EOF'}"))

    # -- httptools callbacks --------------------------------------------------------

    def on_message_begin(self) -> None:
        self._body, self._framed, self._ends_with_connection = [], False, False

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self._framed = True

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        self._ends_with_connection = not self._framed and status >= 200 and status not in (204, 304)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._parser.get_status_code() < 200:
            return  # an interim answer (100 Continue, 103 Early Hints): the real one follows
        self._answer()

    def _answer(self) -> None:
        self.status = self._parser.get_status_code()
        self._ends_with_connection = False
        body, self._body = b"".join(self._body), []
        if not self._parser.should_keep_alive():
            self.close()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(body)

    # -- use ------------------------------------------------------------------------

    def request(self, head: bytes, body: bytes) -> asyncio.Future[bytes]:
        """Send one request; the future gets the response body (any status, in :attr:`status`)."""
        assert self._transport is not None
        assert self._waiter is None, "one request at a time on a connection"
        if self.closed or self._transport.is_closing():
            raise ResponseLost("the connection is closed")
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(head + body)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


class ConnectionPool:
    """Keep-alive connections to one :class:`Endpoint`.

    :meth:`take` gives an idle connection or opens one (an ``OSError``, an
    ``ssl.SSLError`` among them, then means none could be made);
    :meth:`exchange` sends one request on it and puts it back for reuse.
    ``tls`` is the context for an ``https://`` endpoint (required there,
    refused for ``http://``).
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        tls: ssl.SSLContext | None = None,
        max_idle: int = MAX_IDLE_CONNECTIONS,
    ) -> None:
        if endpoint.tls != (tls is not None):
            raise ValueError(
                f"{endpoint.url}: an https:// URL needs a TLS context and an http:// URL takes none"
            )
        self.endpoint = endpoint
        self._tls = tls
        self._max_idle = max_idle
        self._idle: list[HttpConnection] = []
        #: Connections taken and not yet given back, so :meth:`close` reaches them too.
        self._busy: set[HttpConnection] = set()

    @property
    def has_idle(self) -> bool:
        return bool(self._idle)

    async def take(self) -> HttpConnection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:  # else closed by the server while idle
                self._busy.add(conn)
                return conn
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(
            HttpConnection,
            self.endpoint.host,
            self.endpoint.port,
            ssl=self._tls,
            server_hostname=self.endpoint.host if self._tls is not None else None,
        )
        self._busy.add(conn)
        return conn

    async def exchange(self, conn: HttpConnection, head: bytes, body: bytes) -> tuple[int, bytes]:
        """``(status, body)`` of one request on ``conn``; ``conn`` is closed if it fails."""
        try:
            response = await conn.request(head, body)
        except BaseException:
            conn.close()
            raise
        finally:
            self._busy.discard(conn)
        if not conn.closed and len(self._idle) < self._max_idle:
            self._idle.append(conn)
        else:
            conn.close()
        return conn.status, response

    def close(self) -> None:
        """Close every connection, idle or in use: a request on one fails with ResponseLost.

        The pool stays usable: the next :meth:`take` opens a fresh connection.
        """
        idle, self._idle = self._idle, []
        busy, self._busy = self._busy, set()
        for conn in (*idle, *busy):
            conn.close()
