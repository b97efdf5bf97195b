"""The request channel to the promise store: keep-alive HTTP/1.1, lean on CPU.

This plugs into the SDK's ``Network`` seam (``Resonate(network=...)``) in
place of its aiohttp-based ``HttpConnection``, and speaks the same protocol:
one JSON envelope ``POST /``'d, one JSON envelope back, whatever the status.

Why a connection of our own: a transfer costs its worker six store requests
and its caller two, all small. Profiles of a loaded worker put the aiohttp
client's per-request machinery at over a third of the worker's CPU, and on a
machine whose cores are all busy that is throughput lost. This class keeps
only what the store link needs: a pool of persistent connections, a request
written in one ``write``, and the response parsed by llhttp (``httptools``,
the C parser uvicorn uses), so chunked or unusual responses from another
Resonate server are handled correctly rather than by a hand parser. It costs
about a third of the CPU per request.

Failure handling matches the SDK's connection on purpose, because the SDK
relies on it: a request that cannot be delivered or answered is sent again
with backoff until it is, so a worker rides out a store restart; any HTTP
status is a normal answer; after :meth:`stop` every send fails with
``ConnectorError``. The backoff is shorter than the SDK's default ladder
(1 s doubling to 60 s): a store restart here takes a second or two, and a
worker that waits a minute for it holds every in-flight transfer that long.
Capped at a second, a store that is back is found within a second, at the
cost of one failed connect per second per waiting request while it is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from urllib.parse import urlsplit

import httptools
from resonate_base.error import ConnectorError

logger = logging.getLogger(__name__)

#: Resend ladder after a failed request: first retry after this many seconds...
RETRY_INITIAL_SECONDS = 0.05
#: ...doubling up to this cap, retrying for as long as the connection runs.
RETRY_MAX_SECONDS = 1.0
#: A request unanswered this long is treated as lost (and sent again); the default of
#: ``STORE_REQUEST_TIMEOUT``. The store answers once its commit is synced, well under
#: a second; a connection that hangs (a blackholed link) must not hold the SDK's
#: refresh loop, which checks its handles one request at a time, for minutes.
DEFAULT_REQUEST_TIMEOUT_SECONDS = 30.0
#: A request the store does not answer is logged as a warning on its first resend and
#: every this many resends after (about every 10 s at the 1 s cap), at debug otherwise.
WARN_EVERY_ATTEMPTS = 10
#: Idle connections kept for reuse; beyond this, a returned connection is closed.
MAX_IDLE_CONNECTIONS = 64


class ResponseLost(ConnectionError):
    """The connection ended, or sent something unparseable, before a whole response."""


def retry_delay(attempt: int) -> float:
    """Seconds to wait before resend number ``attempt + 1``."""
    return min(RETRY_INITIAL_SECONDS * 2.0**attempt, RETRY_MAX_SECONDS)


class _Connection(asyncio.Protocol):
    """One TCP connection carrying one request at a time (no pipelining)."""

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
            self._fail(ResponseLost(f"unparseable response from the store: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if exc is None and self._ends_with_connection:
            self._answer()  # the end of the stream is the end of the body
        self._fail(ResponseLost(f"the store closed the connection: {exc or 'EOF'}"))

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
        assert self._waiter is None
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


class StoreNetwork:
    """``Network`` for a Resonate HTTP server at ``url``: ``POST /`` over pooled connections.

    ``token`` adds ``Authorization: Bearer <token>`` to every request; a request
    unanswered after ``request_timeout`` seconds is sent again. The
    ``headers`` the SDK passes to :meth:`send` (the request's routing origin)
    are for connectors that shard by it; the store reads the origin from the
    envelope itself, so they are not sent.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT_SECONDS,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the promise store URL must be http://host[:port], got {url!r}")
        self.url = url
        self._host = parts.hostname
        self._port = parts.port or 80
        path = parts.path.rstrip("/") + "/"
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        self._head_prefix = (
            f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n{auth}"
            "Content-Type: application/json\r\nContent-Length: "
        ).encode()
        self._pool = ConnectionPool(self._host, self._port)
        self._request_timeout = request_timeout
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        self._stopped.clear()

    async def stop(self) -> None:
        self._stopped.set()
        self._pool.close()

    async def send(self, req: str, headers: dict[str, str] | None = None) -> str:
        """POST ``req``; return the response body. Retries until answered or stopped."""
        body = req.encode()
        head = self._head_prefix + b"%d\r\n\r\n" % len(body)
        attempt = waits = 0
        while True:
            if self._stopped.is_set():
                raise ConnectorError(RuntimeError("the store connection has been stopped"))
            reused = self._pool.has_idle
            try:
                return (await self._exchange(head, body)).decode()
            except (OSError, TimeoutError) as exc:
                if self._stopped.is_set():
                    raise ConnectorError(exc) from exc
                if reused and attempt == 0:
                    # An idle keep-alive connection the server had already closed:
                    # not a store outage, so try a fresh connection at once.
                    attempt = 1
                    continue
                delay = retry_delay(attempt)
                # Every waiting request retries; one line each per ~10 s of outage, not per try.
                log = logger.warning if waits % WARN_EVERY_ATTEMPTS == 0 else logger.debug
                log("store request failed, resending in %.2fs: %s", delay, exc)
                waits += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped.wait(), delay)
                attempt += 1

    async def _exchange(self, head: bytes, body: bytes) -> bytes:
        conn = await self._pool.take()
        async with asyncio.timeout(self._request_timeout):
            _, response = await self._pool.exchange(conn, head, body)
        return response


class ConnectionPool:
    """Keep-alive HTTP/1.1 connections to one ``host:port``, one request at a time each.

    Shared by the store link and the bank client (both small JSON requests on
    a hot path). :meth:`take` gives an idle connection or opens one (an
    ``OSError`` then means none could be made); :meth:`exchange` sends one
    request on it and puts it back for reuse. Nothing is retried here: the
    caller decides what a failure means.
    """

    def __init__(self, host: str, port: int, *, max_idle: int = MAX_IDLE_CONNECTIONS) -> None:
        self.host = host
        self.port = port
        self._max_idle = max_idle
        self._idle: list[_Connection] = []

    @property
    def has_idle(self) -> bool:
        return bool(self._idle)

    async def take(self) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:  # else closed by the server while idle
                return conn
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Connection, self.host, self.port)
        return conn

    async def exchange(self, conn: _Connection, head: bytes, body: bytes) -> tuple[int, bytes]:
        """``(status, body)`` of one request on ``conn``; ``conn`` is closed if it fails."""
        try:
            response = await conn.request(head, body)
        except BaseException:
            conn.close()
            raise
        if not conn.closed and len(self._idle) < self._max_idle:
            self._idle.append(conn)
        else:
            conn.close()
        return conn.status, response

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
