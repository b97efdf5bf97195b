"""A TCP fault proxy per network link, so the campaign can cut one link alone.

Every worker reaches the store, each bank (and Postgres) through its own
proxy, and the campaign's client reaches the store through one too; the
parts' code does not change, only the URLs they are given. The injector sets
a proxy's mode while a fault lasts:

- ``pass``: bytes flow both ways (the normal state);
- ``partition``: nothing flows either way on any connection, old or new (new
  ones are accepted, as the kernel does, and then hang); the connections held
  during the cut are reset when it heals, as a peer that timed out would;
- ``oneway``: requests still reach the server, its answers are dropped (the
  write happens, the caller never hears); reset when it heals;
- ``blackhole``: every connection, open or new, hangs: nothing passes, and
  nothing ever closes it, not even once the link heals (only connections
  opened after that work): the caller must give up by itself;
- ``reset``: every connection, open or new, is reset at once.

The proxies run on their own event loop in a thread, so they keep forwarding
while the campaign's loop is busy (or blocked starting a process).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

PASS, PARTITION, ONEWAY, BLACKHOLE, RESET = "pass", "partition", "oneway", "blackhole", "reset"
MODES = (PASS, PARTITION, ONEWAY, BLACKHOLE, RESET)
#: Modes that stop data on connections already open, and so spoil them for after.
_SPOILS_OPEN = frozenset({PARTITION, ONEWAY})
_CHUNK = 65536


@dataclass(eq=False)
class _Connection:
    """One accepted connection and, once connected, its upstream half."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    #: Set once a fault dropped data on it: it is reset when the fault heals.
    spoiled: bool = False
    #: Caught by a blackhole: it passes nothing, for good, until the caller closes it.
    swallowed: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                _reset(writer)
        for task in self.tasks:
            task.cancel()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (linger 0), the way a crashed or timed-out peer's kernel does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class LinkProxy:
    """Listens on a free port of 127.0.0.1 and forwards to ``upstream_port``; see the module."""

    def __init__(self, name: str, upstream_port: int) -> None:
        self.name = name
        self.upstream_port = upstream_port
        self.mode = PASS
        self.port = 0
        #: What the proxy did, for tests and reports: connections accepted, connections
        #: reset, connections held hanging, bytes dropped.
        self.connections_seen = 0
        self.resets = 0
        self.hung = 0
        self.dropped_bytes = 0
        self._open: set[_Connection] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"a proxy mode is one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode
        for conn in list(self._open):
            if conn.swallowed:
                continue
            if mode == RESET or (mode == PASS and (conn.spoiled or conn.upstream is None)):
                self._drop(conn)
            elif mode == BLACKHOLE:
                conn.swallowed = True
                self.hung += 1
            elif mode in _SPOILS_OPEN:
                conn.spoiled = True

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._open):
            self._drop(conn)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    def _drop(self, conn: _Connection) -> None:
        if conn in self._open:
            self.resets += 1
        self._open.discard(conn)
        conn.abort()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_seen += 1
        conn = _Connection(writer)
        if self.mode == RESET:
            self.resets += 1
            _reset(writer)
            return
        self._open.add(conn)
        try:
            if self.mode in (PARTITION, BLACKHOLE):
                self.hung += 1
            while self.mode in (PARTITION, BLACKHOLE):  # accepted, then nothing: it hangs
                conn.spoiled = True
                conn.swallowed = conn.swallowed or self.mode == BLACKHOLE
                await asyncio.sleep(0.05)
            if conn.swallowed:
                await self._swallow(conn, reader)
                return
            if conn not in self._open:
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except (OSError, asyncio.CancelledError):
            self._drop(conn)
            return
        conn.upstream = up_writer
        if self.mode == ONEWAY:
            conn.spoiled = True
        conn.tasks = [
            asyncio.create_task(self._pump(conn, reader, up_writer, upstream=True)),
            asyncio.create_task(self._pump(conn, up_reader, writer, upstream=False)),
        ]
        await asyncio.gather(*conn.tasks, return_exceptions=True)
        self._open.discard(conn)
        for half in (writer, up_writer):
            with contextlib.suppress(Exception):
                half.close()

    async def _swallow(self, conn: _Connection, reader: asyncio.StreamReader) -> None:
        """Read and drop what the caller sends until it gives up and closes."""
        with contextlib.suppress(OSError):
            while chunk := await reader.read(_CHUNK):
                self.dropped_bytes += len(chunk)
        self._open.discard(conn)
        conn.client.close()

    async def _pump(
        self,
        conn: _Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        upstream: bool,
    ) -> None:
        try:
            while chunk := await reader.read(_CHUNK):
                if not conn.swallowed and self._lets_through(upstream):
                    writer.write(chunk)
                    await writer.drain()
                else:
                    conn.spoiled = True
                    self.dropped_bytes += len(chunk)
            with contextlib.suppress(OSError):
                if writer.can_write_eof():
                    writer.write_eof()
        except (OSError, asyncio.IncompleteReadError):
            self._drop(conn)

    def _lets_through(self, upstream: bool) -> bool:
        if self.mode == PARTITION:
            return False
        if self.mode == ONEWAY:
            return upstream
        return True


class ProxySet:
    """Named link proxies on one event loop in a daemon thread; thread-safe to drive."""

    def __init__(self) -> None:
        self.proxies: dict[str, LinkProxy] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="proxies")
        self._thread.start()

    def add(self, name: str, upstream_port: int) -> LinkProxy:
        """A started proxy for link ``name`` in front of ``upstream_port``."""
        proxy = LinkProxy(name, upstream_port)
        self._call(proxy.start()).result(10)
        self.proxies[name] = proxy
        return proxy

    def set_mode_soon(self, name: str, mode: str) -> Future[None]:
        """Change a link's mode from any thread (await it with ``asyncio.wrap_future``)."""
        return self._call(self.proxies[name].set_mode(mode))

    def set_mode(self, name: str, mode: str) -> None:
        self.set_mode_soon(name, mode).result(10)

    def heal_all(self) -> None:
        for name in self.proxies:
            self.set_mode(name, PASS)

    def close(self) -> None:
        if not self._loop.is_running():
            return
        for proxy in self.proxies.values():
            with contextlib.suppress(Exception):
                self._call(proxy.stop()).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def _call(self, coro: Coroutine[Any, Any, None]) -> Future[None]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)
