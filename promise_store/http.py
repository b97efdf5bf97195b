"""The store's HTTP/1.1 server: asyncio protocol, llhttp parser, nothing else.

Why not a web framework: every transfer costs the store about eight small
``POST /`` requests. Under load, profiles put aiohttp's per-request machinery
(request and response objects, routing, streams, middleware hooks) at over
half of the store's CPU -- more than the state machine and the journal
together -- on a machine where that CPU is taken from the banks and workers.
Three fixed routes need none of it. Parsing stays in a proven parser
(``httptools``, llhttp, the one uvicorn uses); this module only frames
requests and responses.

What it does: persistent connections (HTTP/1.1 keep-alive, HTTP/1.0 close),
requests on one connection answered in order, ``Content-Length`` and chunked
request bodies, a body-size limit answered after the body is read (so the
connection stays usable), chunked streaming responses (server-sent events)
with write back-pressure, and a 400 plus close for anything unparseable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus

import httptools

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Request:
    method: str
    path: str
    #: Header names lower-cased; a repeated header keeps its last value.
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    #: The body was longer than the server's limit and was not kept.
    too_large: bool = False


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"


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


_REASONS = {status.value: status.phrase for status in HTTPStatus}


def _reason(status: int) -> str:
    return _REASONS.get(status, "Unknown")


class _Connection(asyncio.Protocol):
    """One client connection: parse requests, answer them one at a time, in order."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._header_name = b""
        self._request: Request | None = None
        self._body: list[bytes] = []
        self._body_size = 0
        self._queue: asyncio.Queue[Request] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self._closed = False
        self._in_handler = False
        #: The handler answers on a stream: it runs until the client goes.
        self.streaming = False

    # -- asyncio.Protocol -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._server.connections.add(self)
        self._worker = asyncio.get_running_loop().create_task(self._serve())

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(b"upgrades are not supported")
        except httptools.HttpParserError as exc:
            self._refuse(f"bad HTTP request: {exc}".encode())

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop serving; a request already being handled still runs to the end.

        Its state change may be applied already, and the messages it produced
        (a task to execute, a promise settled) must still be routed, so only an
        idle connection or an event stream is cancelled.
        """
        self._closed = True
        self._writable.set()
        self._server.connections.discard(self)
        if self._worker is not None and (self.streaming or not self._in_handler):
            self._worker.cancel()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # -- httptools callbacks ------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._request = Request(method="", path="")
        self._body, self._body_size = [], 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self._request is not None
        self._request.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        assert self._request is not None
        if self._request.headers.get("expect", "").lower() == "100-continue":
            assert self._transport is not None
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size <= self._server.max_body_bytes:
            self._body.append(body)

    def on_message_complete(self) -> None:
        request, self._request = self._request, None
        assert request is not None
        request.method = self._parser.get_method().decode("latin-1")
        request.path = httptools.parse_url(self._url).path.decode("latin-1")
        request.too_large = self._body_size > self._server.max_body_bytes
        request.body = b"" if request.too_large else b"".join(self._body)
        if not self._parser.should_keep_alive():
            request.headers["connection"] = "close"
        self._queue.put_nowait(request)

    # -- answering ------------------------------------------------------------

    async def _serve(self) -> None:
        while True:
            request = await self._queue.get()
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
                try:
                    await self.write(_head(response, closing) + response.body)
                except ConnectionError:
                    return
            if closing:
                self.close()
                return

    async def write(self, data: bytes) -> None:
        if self._closed or self._transport is None or self._transport.is_closing():
            raise ConnectionResetError("the client has gone")
        self._transport.write(data)
        if not self._writable.is_set():
            await self._writable.wait()
            if self._closed:
                raise ConnectionResetError("the client has gone")

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _refuse(self, message: bytes) -> None:
        """Answer 400 to a request that cannot be parsed, then hang up."""
        if self._transport is not None and not self._transport.is_closing():
            body = b'{"error": "%s"}' % message.replace(b'"', b"'")
            self._transport.write(_head(Response(400, body), closing=True) + body)
        self.close()


def _head(response: Response, closing: bool) -> bytes:
    connection = "Connection: close\r\n" if closing else ""
    return (
        f"HTTP/1.1 {response.status} {_reason(response.status)}\r\n"
        f"Content-Type: {response.content_type}\r\n"
        f"Content-Length: {len(response.body)}\r\n{connection}\r\n"
    ).encode()


class Server:
    """Serve ``handler`` on ``host:port`` until :meth:`close`."""

    def __init__(self, handler: Handler, *, max_body_bytes: int) -> None:
        self.handler = handler
        self.max_body_bytes = max_body_bytes
        self.connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the port (useful when ``port`` is 0)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port)
        sockets = self._server.sockets
        return int(sockets[0].getsockname()[1]) if sockets else port

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
        for connection in list(self.connections):
            connection.close()
