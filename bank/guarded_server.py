"""waitress, bounded against idle, slow and oversized clients.

This is the one module that reaches into waitress internals (``connection.py``
reads one more, the channel behind ``waitress.client_disconnected``). waitress
3.0.2 (pinned) stops accepting at ``connection_limit`` and closes a
connection only after ``channel_timeout`` seconds with no byte at all, so
idle connections, or slowloris ones that send a byte every few seconds, lock
every other client out. Its settings cannot say "a request's headers must
arrive within N seconds" or "at the cap, close an idle connection instead of
refusing new ones", so three small subclasses add that, relying on these
internals (``tests/bank/test_waitress_internals.py`` checks each, and the
version, so an upgrade fails loudly instead of quietly unbounding the bank):

- ``TcpWSGIServer``: ``readable()`` decides whether to accept and runs
  ``maintenance(now)`` every ``adj.cleanup_interval`` s; ``handle_accept()``
  builds one ``channel_class``; ``active_channels`` maps fds to channels;
  ``accepting``; ``next_channel_cleanup``.
- ``HTTPChannel``: ``requests`` (handed to the app, not yet answered),
  ``request`` (the one being received, or None), ``creation_time`` and
  ``last_activity`` (``time.time()``), ``total_outbufs_len``, ``will_close`` (the main loop
  closes the socket on its next turn), ``parser_class``, ``error_task_class``.
- ``HTTPRequestParser(adj)``: ``received(data)``, ``headers_finished``,
  ``completed``, ``error``, ``expect_continue``.
- ``ErrorTask.execute()``: ``request.error`` (``code``, ``reason``, ``body``),
  ``status``, ``response_headers``, ``content_length``,
  ``set_close_on_finish()``, ``write()``.

TLS is added the same way, since waitress has none: :class:`TlsChannel`
wraps each accepted socket with the ``ssl`` module and overrides the two
places waitress touches the socket, ``handle_read`` (``recv``) and ``send``,
which are the ``wasyncore.dispatcher`` methods every byte goes through.

Bodies are bounded with waitress's own settings: ``max_request_body_size``
refuses a declared or chunked body over the app's limit as soon as the
headers say so, and ``inbuf_overflow`` above that limit keeps every body in
memory, so nothing a client sends is ever written to temp disk.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask

log = logging.getLogger("bank")


@dataclass(frozen=True)
class ConnectionLimits:
    """What one client connection may hold and for how long (``bank/README.md``)."""

    max_connections: int
    idle_timeout: int
    header_timeout: int
    body_timeout: int
    max_header_bytes: int
    max_body_bytes: int


class TimedParser(HTTPRequestParser):  # type: ignore[misc]
    """A request parser that remembers when the request started and its headers ended."""

    def __init__(self, adj: Adjustments) -> None:
        super().__init__(adj)
        self.started = time.monotonic()
        self.headers_done: float | None = None

    def received(self, data: bytes) -> int:
        consumed: int = super().received(data)
        if self.headers_finished and self.headers_done is None:
            self.headers_done = time.monotonic()
        if self.error is not None:
            # waitress would still send "100 Continue" and read the body of a
            # request it has already refused.
            self.expect_continue = False
        return consumed


class JsonErrorTask(ErrorTask):  # type: ignore[misc]
    """waitress's own refusals (413, 431, 400 ...) as the bank's JSON error envelope."""

    def execute(self) -> None:
        error = self.request.error
        code, message = describe_error(
            error.code, f"{error.reason}: {error.body}", self.channel.adj
        )
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


def describe_error(status: int, detail: str, adj: Adjustments) -> tuple[str, str]:
    """The error code and message for a request waitress refused before the app saw it."""
    if status == 413:
        return "body_too_large", f"body: larger than {adj.max_request_body_size - 1} bytes"
    if status == 431:
        limit = adj.max_request_header_size - 1
        return "headers_too_large", f"request line and headers: larger than {limit} bytes"
    codes = {400: "bad_request", 500: "internal_error", 501: "not_implemented"}
    return codes.get(status, f"http_{status}"), detail


class GuardedChannel(HTTPChannel):  # type: ignore[misc]
    """A connection that knows whether closing it would lose an answer, and its read deadlines."""

    parser_class = TimedParser
    error_task_class = JsonErrorTask

    def idle(self) -> bool:
        """Nothing handed to the app and nothing left to send: closing it loses no answer.

        A request still being received counts as idle: the app has not seen it.
        """
        return not (self.requests or self.total_outbufs_len or self.will_close)

    def read_overdue(self, now: float, limits: ConnectionLimits) -> bool:
        """The request being received has missed its header or body deadline."""
        request = self.request
        if request is None or self.requests or request.completed:
            return False
        if request.headers_done is None:
            return bool(now - request.started > limits.header_timeout)
        return bool(now - request.headers_done > limits.body_timeout)


class TlsChannel(GuardedChannel):
    """A :class:`GuardedChannel` over TLS: the accepted socket, wrapped by the ``ssl`` module.

    The handshake happens inside the first reads (``do_handshake_on_connect``
    is off, the socket non-blocking), so a client that never finishes it
    holds its connection only until the idle timeout, like any idle one.
    Three things differ from a plain socket, and each is handled here:

    - a TLS read or write may need the other direction first
      (``SSLWantReadError``, ``SSLWantWriteError``): both mean "not now";
    - decrypted bytes can wait inside the TLS object where ``poll()`` cannot
      see them, so a read continues while ``pending()`` says so;
    - one TLS connection must not be read and written by two threads at
      once, and waitress writes from its task threads while the main loop
      reads: a lock per channel takes the TLS calls one at a time (reads
      never block, so it is held for microseconds).
    """

    def __init__(
        self,
        server: GuardedServer,
        sock: socket.socket,
        addr: Any,
        adj: Adjustments,
        map: dict[int, Any] | None = None,
    ) -> None:
        assert server.tls is not None
        self._tls_lock = threading.Lock()
        wrapped = server.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        super().__init__(server, wrapped, addr, adj, map)

    def handle_read(self) -> None:
        while True:
            try:
                with self._tls_lock:
                    data = self.socket.recv(self.adj.recv_bytes)
                    more = self.socket.pending() > 0
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return  # the handshake or a record is under way: wait for the socket
            except (ssl.SSLError, OSError) as exc:
                # Not TLS (plain HTTP to this port, say), a failed handshake, or a reset.
                log.debug("TLS connection from %s closed: %s", self.addr, exc)
                self.handle_close()
                return
            if not data:
                self.handle_close()  # the client closed the connection
                return
            self.last_activity = time.time()
            self.received(data)
            if not more:
                return

    def send(self, data: bytes, do_close: bool = True) -> int:
        try:
            with self._tls_lock:
                sent: int = self.socket.send(data)
                return sent
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return 0  # like EWOULDBLOCK: tried again when the socket is writable
        except (ssl.SSLError, OSError):
            if do_close:
                self.handle_close()
            return 0


class GuardedServer(TcpWSGIServer):  # type: ignore[misc]
    """waitress's TCP server with a connection cap that makes room instead of locking out.

    Below the cap it accepts as usual. At the cap it still accepts while some
    connection is idle, and closes the least recently active idle one for each
    connection it accepts; only when every connection is busy with a request
    does it stop accepting (new clients wait in the listen backlog). Once a
    second, connections whose headers or body are late are closed.
    """

    channel_class = GuardedChannel
    next_channel_cleanup: float

    def __init__(
        self,
        application: Any,
        limits: ConnectionLimits,
        tls: ssl.SSLContext | None = None,
        **adjustments: Any,
    ) -> None:
        self.limits = limits
        #: Serve TLS with this context (each connection a :class:`TlsChannel`), or plain HTTP.
        self.tls = tls
        if tls is not None:
            self.channel_class = TlsChannel
        self._evicted = 0
        self._overdue = 0
        self._full_warned = False
        super().__init__(
            application,
            adj=Adjustments(**adjustments_for(limits), **adjustments),
        )

    def readable(self) -> bool:
        now = time.time()
        if now >= self.next_channel_cleanup:
            self.next_channel_cleanup = now + self.adj.cleanup_interval
            self.maintenance(now)
        return bool(self.accepting) and self._can_make_room()

    def handle_accept(self) -> None:
        super().handle_accept()
        if len(self.active_channels) <= self.limits.max_connections:
            return
        live = self._live_channels()
        if len(live) > self.limits.max_connections:
            newest = max(live, key=lambda channel: channel.creation_time)
            idle = [channel for channel in live if channel is not newest and channel.idle()]
            if idle:
                min(idle, key=lambda channel: channel.last_activity).will_close = True
                self._evicted += 1

    def maintenance(self, now: float) -> None:
        """waitress's idle timeout, then the header and body deadlines; log what was closed."""
        super().maintenance(now)
        monotonic = time.monotonic()
        for channel in list(self.active_channels.values()):
            if not channel.will_close and channel.read_overdue(monotonic, self.limits):
                channel.will_close = True
                self._overdue += 1
        if self._overdue:
            log.info("closed %d connections whose request was late", self._overdue)
            self._overdue = 0
        if self._evicted:
            log.info(
                "at the connection cap (%d): closed %d idle connections to make room",
                self.limits.max_connections,
                self._evicted,
            )
            self._evicted = 0

    def _live_channels(self) -> list[GuardedChannel]:
        return [channel for channel in self.active_channels.values() if not channel.will_close]

    def _can_make_room(self) -> bool:
        if len(self.active_channels) < self.limits.max_connections:
            self._full_warned = False
            return True
        live = self._live_channels()
        if len(live) < self.limits.max_connections or any(channel.idle() for channel in live):
            self._full_warned = False
            return True
        if not self._full_warned:
            log.warning(
                "all %d connections are busy with requests: not accepting until one ends",
                len(live),
            )
            self._full_warned = True
        return False


def adjustments_for(limits: ConnectionLimits) -> dict[str, Any]:
    """waitress settings that enforce ``limits`` (waitress refuses at ``>=``, hence the +1)."""
    return {
        "connection_limit": limits.max_connections,
        "channel_timeout": limits.idle_timeout,
        "cleanup_interval": 1,
        "max_request_header_size": limits.max_header_bytes + 1,
        "max_request_body_size": limits.max_body_bytes + 1,
        "inbuf_overflow": 2 * (limits.max_header_bytes + limits.max_body_bytes),
        # select() cannot watch descriptors above 1023; poll() can.
        "asyncore_use_poll": True,
    }
