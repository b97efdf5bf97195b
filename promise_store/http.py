"""The store's HTTP/1.1 server: asyncio protocol, llhttp parser, nothing else.

Why not a web framework: every transfer costs the store about eight small
``POST /`` requests. Under load, profiles put aiohttp's per-request machinery
(request and response objects, routing, streams, middleware hooks) at over
half of the store's CPU -- more than the state machine and the journal
together -- on a machine where that CPU is taken from the banks and workers.
Four fixed routes need none of it. uvicorn, on the same parser, serving the
same routes as a bare ASGI app cost 18% more store CPU per transfer. Parsing
stays in a proven parser (``httptools``, llhttp, the one uvicorn uses); this
module only frames requests and responses and bounds what a client can make
it hold.

What it does: persistent connections (HTTP/1.1 keep-alive, HTTP/1.0 close),
requests on one connection answered in order, ``Content-Length`` and chunked
request bodies, chunked streaming responses (server-sent events) with write
back-pressure, ``HEAD``, and ``Expect: 100-continue`` once the request's head
has passed every check and every earlier request on the connection is
answered.

What it bounds (:class:`Limits`, each a setting of the served store): the
request head, URL and body sizes and the JSON nesting depth; requests read
ahead of their answers (past that, it stops reading the connection until the
client reads what it asked for); connections (past the cap, the one that has
waited longest on its client is closed); and time -- a head must arrive
within ``header_timeout`` of its first byte, a body within ``body_timeout``,
and a connection waiting on its client (for a request, or to read an answer)
is closed after ``idle_timeout``. A request over a limit is refused in order
with its status (``413``, ``414``, ``431``, ``408``, ``400``), and the connection
is closed, after a short linger so the refusal reaches a client still
sending. Nothing is read past a limit: a body too large is refused from its
``Content-Length`` (or as soon as a chunked one passes the limit), not read.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import json
import logging
import math
import resource
import ssl
import struct
import termios
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus

import httptools

logger = logging.getLogger(__name__)

#: The parser is fed at most this much at a time, so that a limit or a paused
#: connection stops it within this many bytes of the point it applies.
FEED_BYTES = 8192
#: Connections asyncio accepts per wake-up of the listening socket. Until the
#: cap sees them (a loop iteration or two later) they hold descriptors over
#: it, so the batch is small...
ACCEPT_BATCH = 32
#: ...and the kernel's queue of connections waiting to be accepted is not:
#: a burst of connects past the batch waits there instead of being dropped.
LISTEN_BACKLOG = 1024
#: At the cap, how many of the connections waiting longest on their clients are
#: looked at for one whose client has sent nothing the server has not read.
EVICTION_LOOKS = 16
#: Descriptors kept free of connections: accepted sockets the cap has not
#: turned away yet (up to three batches), and the journal, logs and loop.
FD_RESERVE = 3 * ACCEPT_BATCH + 64
#: After a refusal, the client's input is read and dropped for at most this
#: long, so a client still sending sees the refusal instead of a reset.
LINGER_SECONDS = 2.0
#: An accept that fails for want of descriptors is logged at most this often.
RESOURCE_ERROR_LOG_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Limits:
    """What one client may make the server hold, and for how long (see the README)."""

    #: The request line and headers together.
    max_header_bytes: int = 16 << 10
    max_url_bytes: int = 4096
    max_body_bytes: int = 1 << 20
    #: Requests read on one connection and not yet answered.
    max_pipelined: int = 4
    max_connections: int = 1000
    idle_timeout: float = 60.0
    header_timeout: float = 10.0
    body_timeout: float = 30.0


@dataclass(slots=True)
class Request:
    method: str
    path: str
    #: Header names lower-cased; a repeated header keeps its last value.
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    #: The URL's query string, undecoded ("" for none).
    query: str = ""
    #: The client's address, as the connection reports it ("" when unknown).
    client: str = ""
    #: When its last byte was read (``time.perf_counter()``): what an answer's time counts from.
    received_at: float = 0.0

    @property
    def media_type(self) -> str:
        """The ``Content-Type`` without its parameters, lower-cased ("" when none)."""
        return self.headers.get("content-type", "").partition(";")[0].strip().lower()


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    #: More header lines, as (name, value) pairs; names and values must not hold CR or LF.
    headers: tuple[tuple[str, str], ...] = ()


class Stream:
    """A chunked response the handler writes piece by piece (server-sent events)."""

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection

    async def start(self, status: int, headers: dict[str, str]) -> None:
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self._connection.streaming = True
        await self._connection.write(
            f"HTTP/1.1 {status} {_reason(status)}\r\n{lines}Transfer-Encoding: chunked\r\n\r\n".encode()
        )

    async def write(self, data: bytes) -> None:
        """Send one chunk; raises ``ConnectionError`` once the client is gone."""
        await self._connection.write(b"%x\r\n%s\r\n" % (len(data), data))

    async def end(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self._connection.write(b"0\r\n\r\n")


#: A route: the parsed request and a stream to use instead of returning a
#: Response; returns the response, or None when it answered on the stream.
Handler = Callable[[Request, Stream], Awaitable[Response | None]]
#: A check of a request's method, path and headers before its body is read:
#: a refusal to send instead of reading on, or None.
HeadCheck = Callable[[Request], Response | None]
#: The body of an error answer the server makes itself: (status, message) -> bytes.
ErrorBody = Callable[[int, str], bytes]
#: Told the status of each request the server refuses itself (a limit, or ``check_head``).
Refused = Callable[[int], None]


def plain_error(status: int, message: str) -> bytes:
    return json.dumps({"error": message}).encode()


_REASONS = {status.value: status.phrase for status in HTTPStatus}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _reason(status: int) -> str:
    return _REASONS.get(status, "Unknown")


class _Refusal(Exception):
    """An answer the server makes itself; raised from a parser callback to stop parsing."""

    def __init__(self, response: Response, *, head_only: bool = False) -> None:
        super().__init__(response.status)
        self.response = response
        #: The refused request was a ``HEAD``: the answer has no body.
        self.head_only = head_only


# What the connection is reading.
_BETWEEN, _HEAD, _BODY, _REFUSED = range(4)


class _Connection(asyncio.Protocol):
    """One client connection: parse requests, answer them one at a time, in order."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._limits = server.limits
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url: list[bytes] = []
        self._url_bytes = 0
        #: Bytes of the current head: exact when it is complete (URL and headers);
        #: while it arrives, what was fed since its first byte (at most one feed over).
        self._head_bytes = 0
        self._fed_head_bytes = 0
        self._request: Request | None = None
        self._client = ""
        self._body: list[bytes] = []
        self._body_bytes = 0
        self._reading = _BETWEEN
        #: When the current reading state began, or the connection last went idle.
        self._since = time.monotonic()
        #: Requests read (or refused) and not yet answered.
        self._unanswered = 0
        self._queue: asyncio.Queue[Request | _Refusal] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        #: Reading is paused until answers are written (back-pressure)...
        self._paused = False
        #: ...with the rest of the last read, not yet fed to the parser.
        self._unfed: memoryview | None = None
        #: A ``100 Continue`` that waits until every earlier request is answered.
        self._continue_owed = False
        self._writable = asyncio.Event()
        self._writable.set()
        self._blocked_since: float | None = None
        self._lingering_since: float | None = None
        self._closed = False
        self._in_handler = False
        #: The handler answers on a stream: it runs until the client goes.
        self.streaming = False

    # -- asyncio.Protocol -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self._client = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if self._server.admit(self):
            self._worker = asyncio.get_running_loop().create_task(self._serve())
        else:
            self._answer_at_once(503, "too many connections; try again")

    def has_unread_input(self) -> bool:
        """Whether bytes from the client wait in the kernel, not read yet (``FIONREAD``)."""
        sock = self._transport.get_extra_info("socket") if self._transport is not None else None
        if sock is None:
            return False
        try:
            waiting = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0" * 4)
        except OSError:
            return False
        return bool(struct.unpack("i", waiting)[0])

    def data_received(self, data: bytes) -> None:
        if self._reading == _REFUSED:
            return  # lingering: dropped unread
        if len(data) <= FEED_BYTES:
            self._feed_piece(data)
        else:
            self._feed(memoryview(data))

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop serving; a request already being handled still runs to the end.

        Its state change may be applied already, and the messages it produced
        (a task to execute, a promise settled) must still be routed, so only an
        idle connection or an event stream is cancelled.
        """
        self._closed = True
        self._writable.set()
        self._server.forget(self)
        if self._worker is not None and (self.streaming or not self._in_handler):
            self._worker.cancel()

    def pause_writing(self) -> None:
        self._writable.clear()
        self._blocked_since = time.monotonic()

    def resume_writing(self) -> None:
        self._writable.set()
        self._blocked_since = None

    # -- feeding the parser -----------------------------------------------------

    def _feed(self, data: memoryview) -> None:
        for start in range(0, len(data), FEED_BYTES):
            if self._reading == _REFUSED:
                return
            if self._paused:
                self._unfed = data[start:]
                return
            self._feed_piece(data[start : start + FEED_BYTES])

    def _feed_piece(self, piece: bytes | memoryview) -> None:
        try:
            self._parser.feed_data(piece)
        except httptools.HttpParserCallbackError as exc:
            refusal = exc.__context__
            if not isinstance(refusal, _Refusal):
                raise
            self._refuse(refusal.response)
            return
        except httptools.HttpParserUpgrade:
            self._refuse(self._error(400, "upgrades are not supported"))
            return
        except httptools.HttpParserError as exc:
            self._refuse(self._error(400, f"bad HTTP request: {exc}"))
            return
        if self._reading == _HEAD:
            self._fed_head_bytes += len(piece)
            if self._fed_head_bytes > self._limits.max_header_bytes + FEED_BYTES:
                self._refuse(self._too_long_a_head())

    # -- httptools callbacks ------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url, self._url_bytes = [], 0
        self._head_bytes = self._fed_head_bytes = 0
        self._request = Request(method="", path="")
        self._body, self._body_bytes = [], 0
        self._reading, self._since = _HEAD, time.monotonic()

    def on_url(self, url: bytes) -> None:
        self._url_bytes += len(url)
        if self._url_bytes > self._limits.max_url_bytes:
            limit = self._limits.max_url_bytes
            raise _Refusal(self._error(414, f"the URL exceeds {limit} bytes"))
        self._url.append(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self._request is not None
        self._head_bytes += len(name) + len(value) + 4
        self._request.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        request = self._request
        assert request is not None
        if self._head_bytes + self._url_bytes > self._limits.max_header_bytes:
            raise _Refusal(self._too_long_a_head())
        length = request.headers.get("content-length")
        if length is not None and int(length) > self._limits.max_body_bytes:
            raise _Refusal(self._too_large_a_body())
        request.method = self._parser.get_method().decode("latin-1")
        try:
            url = httptools.parse_url(b"".join(self._url))
        except httptools.HttpParserInvalidURLError:
            raise _Refusal(self._error(400, "bad URL")) from None
        request.path = url.path.decode("latin-1")
        request.query = (url.query or b"").decode("latin-1")
        request.client = self._client
        refusal = self._server.check_head(request)
        if refusal is not None:
            raise _Refusal(refusal)
        self._reading, self._since = _BODY, time.monotonic()
        if (
            request.headers.get("expect", "").lower() == "100-continue"
            and self._parser.get_http_version() == "1.1"
        ):
            if self._unanswered == 0:
                self._send_continue()
            else:
                self._continue_owed = True

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self._limits.max_body_bytes:
            raise _Refusal(self._too_large_a_body())
        self._body.append(body)

    def on_message_complete(self) -> None:
        request, self._request = self._request, None
        assert request is not None
        request.body = b"".join(self._body)
        self._body = []
        self._reading = _BETWEEN
        # The body came without waiting for a 100 Continue: none is owed any more.
        self._continue_owed = False
        if not self._parser.should_keep_alive():
            request.headers["connection"] = "close"
        request.received_at = time.perf_counter()
        self._enqueue(request)

    # -- queueing and back-pressure ---------------------------------------------

    def _enqueue(self, item: Request | _Refusal) -> None:
        self._unanswered += 1
        if self._unanswered == 1:
            self._server.evictable.pop(self, None)
        self._queue.put_nowait(item)
        if self._unanswered >= self._limits.max_pipelined:
            self._pause()

    def _pause(self) -> None:
        if not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def _answered(self) -> None:
        """One more answer is written: go idle, owe no ``100 Continue``, read on."""
        self._unanswered -= 1
        if self._closed:
            return
        now = time.monotonic()
        if self._unanswered == 0:
            self._server.evictable[self] = None
            if self._reading == _BETWEEN:
                self._since = now
            if self._continue_owed:
                self._continue_owed = False
                self._send_continue()
        if self._paused and self._unanswered < self._limits.max_pipelined:
            self._paused = False
            if self._reading in (_HEAD, _BODY):
                self._since = now  # the client waited on us, not we on it
            unfed, self._unfed = self._unfed, None
            if unfed is not None:
                self._feed(unfed)
            if not self._paused and self._reading != _REFUSED and not self._closed:
                assert self._transport is not None
                self._transport.resume_reading()

    def _send_continue(self) -> None:
        assert self._transport is not None
        self._transport.write(_CONTINUE)
        self._since = time.monotonic()  # the body's time starts now

    # -- refusing -----------------------------------------------------------------

    def _error(self, status: int, message: str) -> Response:
        return Response(status, self._server.error_body(status, message))

    def _too_long_a_head(self) -> Response:
        return self._error(431, f"the request head exceeds {self._limits.max_header_bytes} bytes")

    def _too_large_a_body(self) -> Response:
        return self._error(413, f"request body exceeds {self._limits.max_body_bytes} bytes")

    def _refuse(self, response: Response) -> None:
        """Stop reading; answer ``response`` after every earlier request, then close."""
        head_only = self._request is not None and self._request.method == "HEAD"
        self._reading = _REFUSED
        self._unfed, self._request, self._body = None, None, []
        self._continue_owed = False
        self._pause()
        self._enqueue(_Refusal(response, head_only=head_only))
        if self._server.refused is not None:
            self._server.refused(response.status)

    def _answer_at_once(self, status: int, message: str) -> None:
        if self._transport is not None:
            response = self._error(status, message)
            self._transport.write(_head(response, closing=True) + response.body)
        self.close()

    def _linger(self) -> None:
        """Half-close after a refusal, dropping what the client still sends for a moment."""
        assert self._transport is not None
        self._lingering_since = time.monotonic()
        if self._transport.can_write_eof():
            self._transport.write_eof()
        self._paused = False
        self._transport.resume_reading()

    # -- timeouts -------------------------------------------------------------------

    def check_deadlines(self, now: float) -> None:
        """Give up on a client that is too slow to send, or to read, or is idle too long."""
        limits = self._limits
        if self._lingering_since is not None:
            if now - self._lingering_since > LINGER_SECONDS:
                self.abort()
        elif self._blocked_since is not None and now - self._blocked_since > limits.idle_timeout:
            self.abort()  # it does not read what it asked for
        elif self._paused:
            pass  # waiting on us, not on the client
        elif self._reading == _HEAD and now - self._since > limits.header_timeout:
            timeout = limits.header_timeout
            self._refuse(self._error(408, f"the request head took over {timeout:g}s"))
        elif (
            self._reading == _BODY
            and not self._continue_owed
            and now - self._since > limits.body_timeout
        ):
            self._refuse(self._error(408, f"the request body took over {limits.body_timeout:g}s"))
        elif (
            self._reading == _BETWEEN
            and self._unanswered == 0
            and now - self._since > limits.idle_timeout
        ):
            self.close()

    # -- answering ------------------------------------------------------------

    async def _serve(self) -> None:
        while True:
            item = await self._queue.get()
            if isinstance(item, _Refusal):
                body = b"" if item.head_only else item.response.body
                try:
                    await self.write(_head(item.response, closing=True) + body)
                except ConnectionError:
                    return
                self._linger()
                return
            request = item
            stream = Stream(self)
            self._server.request_began()
            self._in_handler = True
            try:
                response = await self._server.handler(request, stream)
            except ConnectionError:
                return
            except Exception:
                logger.exception("handler failed for %s %s", request.method, request.path)
                response = Response(500, b'{"error": "internal error"}')
            finally:
                self._in_handler = False
                self._server.request_ended()
            if self._closed:
                return
            closing = request.headers.get("connection", "").lower() == "close"
            if response is None:  # answered on the stream, which cannot be followed
                await stream.end()
                closing = True
            else:
                body = b"" if request.method == "HEAD" else response.body
                try:
                    await self.write(_head(response, closing) + body)
                except ConnectionError:
                    return
            if closing:
                self.close()
                return
            self._answered()

    async def write(self, data: bytes) -> None:
        if self._closed or self._transport is None or self._transport.is_closing():
            raise ConnectionResetError("the client has gone")
        self._transport.write(data)
        if not self._writable.is_set():
            await self._writable.wait()
            if self._closed:
                raise ConnectionResetError("the client has gone")

    def close(self) -> None:
        self._closed = True
        self._server.forget(self)
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        """Close without flushing: for a client that does not read."""
        self._closed = True
        self._server.forget(self)
        if self._transport is not None:
            self._transport.abort()


def _head(response: Response, closing: bool) -> bytes:
    connection = "Connection: close\r\n" if closing else ""
    more = "".join(f"{name}: {value}\r\n" for name, value in response.headers)
    return (
        f"HTTP/1.1 {response.status} {_reason(response.status)}\r\n"
        f"Content-Type: {response.content_type}\r\n{more}"
        f"Content-Length: {len(response.body)}\r\n{connection}\r\n"
    ).encode()


def connection_cap(wanted: int) -> int:
    """``wanted``, or fewer when the open-file limit could not hold that many connections."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    room = max(1, soft - FD_RESERVE)
    if room < wanted:
        logger.warning(
            "the open-file limit (%d) leaves room for %d connections, not %d", soft, room, wanted
        )
        return room
    return wanted


def _no_resource_error_flood(loop: asyncio.AbstractEventLoop) -> None:
    """Log a failed accept for want of descriptors once in a while, not a line per try.

    asyncio retries such an accept up to :data:`ACCEPT_BATCH` times per wake-up
    and reports each one; the connection cap keeps the store clear of the
    limit, so this is for descriptors something else took.
    """
    previous = loop.get_exception_handler()
    last_logged = -math.inf

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        nonlocal last_logged
        if context.get("message") == "socket.accept() out of system resource":
            now = time.monotonic()
            if now - last_logged >= RESOURCE_ERROR_LOG_SECONDS:
                last_logged = now
                logger.error("cannot accept connections: %s", context.get("exception"))
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


class Server:
    """Serve ``handler`` on ``host:port`` within ``limits`` until :meth:`close_connections`.

    ``check_head`` sees each request before its body is read (say, for a
    token) and may refuse it; ``error_body`` shapes the answers the server
    makes itself (refusals over a limit); ``refused`` is told the status of
    each such refusal (for metrics: those requests never reach ``handler``).
    """

    def __init__(
        self,
        handler: Handler,
        *,
        limits: Limits | None = None,
        check_head: HeadCheck | None = None,
        error_body: ErrorBody = plain_error,
        refused: Refused | None = None,
    ) -> None:
        self.handler = handler
        self.limits = limits or Limits()
        self.check_head: HeadCheck = check_head or (lambda request: None)
        self.error_body = error_body
        self.refused = refused
        self.max_connections = self.limits.max_connections
        self.connections: set[_Connection] = set()
        #: Connections with nothing to answer, longest waiting on their client first.
        self.evictable: dict[_Connection, None] = {}
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self, host: str, port: int, *, tls: ssl.SSLContext | None = None) -> int:
        """Listen (over TLS with ``tls``); returns the port (useful when ``port`` is 0).

        A TLS handshake must end within ``header_timeout``, like a request's head.
        """
        loop = asyncio.get_running_loop()
        self.max_connections = connection_cap(self.limits.max_connections)
        _no_resource_error_flood(loop)
        self._server = await loop.create_server(
            lambda: _Connection(self),
            host,
            port,
            backlog=ACCEPT_BATCH,
            ssl=tls,
            ssl_handshake_timeout=self.limits.header_timeout if tls is not None else None,
        )
        for listening in self._server.sockets:
            # asyncio uses one number for its batch and the kernel's queue; a second
            # listen() on the same socket (through a duplicate) enlarges only the queue.
            with listening.dup() as same_socket:
                same_socket.listen(LISTEN_BACKLOG)
        self._sweeper = loop.create_task(self._sweep())
        sockets = self._server.sockets
        return int(sockets[0].getsockname()[1]) if sockets else port

    def admit(self, connection: _Connection) -> bool:
        """Count a new connection in; at the cap, close the one waiting longest on its client.

        Returns False when every connection is busy (being answered or
        streaming), so there is none to close: the new one is turned away.
        """
        if len(self.connections) >= self.max_connections:
            idle = self._most_idle()
            if idle is None:
                return False
            idle.close()
        self.connections.add(connection)
        self.evictable[connection] = None
        return True

    def _most_idle(self) -> _Connection | None:
        """The connection waiting longest on its client, passing over those whose request
        is already here and unread.

        A burst of connects is accepted a batch at a time before the loop reads
        what the first ones sent: a page that connected just before a flood of
        idle sockets would otherwise be closed with its request unread.
        """
        oldest = None
        for connection in itertools.islice(self.evictable, EVICTION_LOOKS):
            oldest = oldest or connection
            if not connection.has_unread_input():
                return connection
        return oldest

    def forget(self, connection: _Connection) -> None:
        self.connections.discard(connection)
        self.evictable.pop(connection, None)

    async def _sweep(self) -> None:
        limits = self.limits
        shortest = min(limits.idle_timeout, limits.header_timeout, limits.body_timeout)
        interval = min(1.0, max(0.05, shortest / 4))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for connection in list(self.connections):
                connection.check_deadlines(now)

    def request_began(self) -> None:
        self._in_flight += 1
        self._idle.clear()

    def request_ended(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()

    async def drained(self) -> None:
        """Return once no request is in flight."""
        await self._idle.wait()

    def stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()

    def close_connections(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for connection in list(self.connections):
            connection.close()
