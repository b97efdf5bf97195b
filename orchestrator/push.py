"""The push channel: the event stream on which the store hands a process its work and results.

This fills the SDK's ``Source`` seam (``Resonate(sources=[...])``) in place of
its ``SSEConnection``, and speaks the same protocol: ``GET /poll/{group}/{pid}``,
one ``data:`` line per message, addresses ``poll://uni@group/pid`` and
``poll://any@group`` (the SDK's own helpers mint them).

Why a channel of our own: the SDK's listening loop runs in an aiohttp session
with aiohttp's default total timeout of 300 s and retries only
``aiohttp.ClientError``; the ``TimeoutError`` that ends every stream at 300 s
is not one, so the loop ends with no log line and no reconnect, and the worker
never hears of work again. This channel:

* reconnects after any error, timeout or end of stream, for as long as it
  runs, on the store link's short ladder (50 ms doubling to 1 s), and says in
  the log why it lost the stream and when it has it back;
* has no total timeout. A dead link (a store that vanished without closing
  the connection) is noticed by silence instead: the store writes a keepalive
  comment every 2 s, so ``idle_timeout`` seconds without a byte end the
  stream, and the same bound applies to connecting and to the response head;
* reconnects on purpose every ``max_lifetime`` seconds, so a stream that went
  wrong in a way nobody noticed is replaced anyway. The new stream opens
  before the old one is let go: the store then ends the old one itself, after
  the messages it had already written, and holds anything meant for the pid
  in between, so a planned reconnect loses nothing (the old stream is read
  for at most ``idle_timeout`` more seconds).

Each of ``watchers`` (the worker's :class:`~orchestrator.health_file.HealthFile`,
its :class:`~orchestrator.metrics.WorkerMetrics`) is told whenever the stream
opens or is lost, and again now and then while it stays open.

What a lost stream carried is gone with it (a result pushed into a dead
connection, say). So once a stream is back after a loss, ``on_reopened`` is
called: the runtime asks the store again about everything its handles still
wait for (:func:`orchestrator.runtime.ask_again`), rather than leaving them to
the next refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from resonate.connections.sse import SseFramer, resolve_target, unicast

from orchestrator.store_network import RETRY_MAX_SECONDS, WARN_EVERY_ATTEMPTS, retry_delay

logger = logging.getLogger(__name__)

#: What the log says each time the stream opens; callers wait for it to know a
#: worker is listening (``orchestrator.local.supervisor.WORKER_READY_LOG``).
OPENED_LOG = "SSE connection established"


@dataclass(frozen=True)
class PushLimits:
    """How long the stream may be silent, and how long one stream may live (seconds)."""

    idle_timeout: float = 6.0
    max_lifetime: float = 3600.0


class StreamRefused(ConnectionError):
    """The store answered the ``GET /poll`` with something other than 200."""


class ChannelWatcher(Protocol):
    """Told when the push channel is open (and again while it stays so), and when it is lost."""

    def connected(self) -> None: ...

    def disconnected(self, reason: str) -> None: ...


class EveryChannel:
    """Tells ``watchers`` a worker can receive work only while every one of its channels is open.

    A worker that carries several saga versions has one push channel per
    version's group (:func:`orchestrator.runtime.open_workers`); losing any of
    them means a version's transfers no longer reach it, so its health file and
    its ``push_channel_up`` gauge say so until that channel is back.
    """

    def __init__(self, watchers: Sequence[ChannelWatcher], count: int) -> None:
        self._watchers = list(watchers)
        self._open = [False] * count

    def channel(self, index: int) -> ChannelWatcher:
        """The watcher to hand channel ``index``."""
        return _OneOf(self, index)

    def _connected(self, index: int) -> None:
        self._open[index] = True
        if all(self._open):
            for watcher in self._watchers:
                watcher.connected()

    def _disconnected(self, index: int, reason: str) -> None:
        self._open[index] = False
        for watcher in self._watchers:
            watcher.disconnected(reason)


@dataclass(frozen=True)
class _OneOf:
    every: EveryChannel
    index: int

    def connected(self) -> None:
        self.every._connected(self.index)

    def disconnected(self, reason: str) -> None:
        self.every._disconnected(self.index, reason)


class PushChannel:
    """``Source`` for a Resonate server at ``url``: one long-lived SSE stream, kept open."""

    def __init__(
        self,
        url: str,
        *,
        pid: str,
        group: str,
        token: str | None = None,
        limits: PushLimits | None = None,
        watchers: Sequence[ChannelWatcher] = (),
        tls: ssl.SSLContext | None = None,
        on_reopened: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.url = f"{url.rstrip('/')}/poll/{group}/{pid}"
        #: aiohttp's default (verify against the system's CAs) when None.
        self._tls: ssl.SSLContext | bool = tls if tls is not None else True
        self.limits = limits or PushLimits()
        self._unicast = unicast(group, pid)
        self._headers = {"Accept": "text/event-stream"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._watchers = tuple(watchers)
        self._on_reopened = on_reopened
        self._callbacks: list[Callable[[str], None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._runner: asyncio.Task[None] | None = None
        self._draining: set[asyncio.Task[None]] = set()

    # -- Source ---------------------------------------------------------------------

    def unicast(self) -> str:
        return self._unicast

    def resolve_target(self, target: str) -> str:
        return resolve_target(target)

    def recv(self, callback: Callable[[str], None]) -> None:
        self._callbacks.append(callback)

    async def start(self) -> None:
        idle = self.limits.idle_timeout
        timeout = aiohttp.ClientTimeout(total=None, connect=idle, sock_connect=idle, sock_read=idle)
        self._session = aiohttp.ClientSession(timeout=timeout)
        self._runner = asyncio.create_task(self._run(), name=f"push channel {self.url}")

    async def stop(self) -> None:
        tasks = [task for task in (self._runner, *self._draining) if task is not None]
        self._runner = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
        for watcher in self._watchers:
            watcher.disconnected("the worker is stopping")

    # -- the loop -------------------------------------------------------------------

    async def _run(self) -> None:
        """Open, read, and open again, whatever happens, until cancelled by :meth:`stop`."""
        loop = asyncio.get_running_loop()
        attempt = 0
        lost: tuple[str, float] | None = None  # why and when the last stream was lost
        while True:
            try:
                response = await self._open()
            except Exception as exc:
                why = self._describe(exc)
                lost = lost or (why, loop.time())
                delay = retry_delay(attempt)
                log = logger.warning if attempt % WARN_EVERY_ATTEMPTS == 0 else logger.debug
                log(
                    "push channel: cannot open %s (%s); trying again in %.2fs", self.url, why, delay
                )
                await asyncio.sleep(delay)
                attempt += 1
                continue
            if lost is None:
                logger.info("%s: push channel open at %s", OPENED_LOG, self.url)
            else:
                why, since = lost
                logger.info(
                    "%s: push channel back at %s after %.1fs without it (lost: %s)",
                    OPENED_LOG,
                    self.url,
                    loop.time() - since,
                    why,
                )
                self._catch_up()
            opened = loop.time()
            reading = asyncio.create_task(self._read(response))
            try:
                ended = await self._stay_open(reading, until=opened + self.limits.max_lifetime)
            except asyncio.CancelledError:
                reading.cancel()
                raise
            if ended:
                why = self._describe(reading.exception())
                lost = (why, loop.time())
                logger.warning("push channel lost (%s); reconnecting", why)
                for watcher in self._watchers:
                    watcher.disconnected(why)
                # A stream that ends as soon as it opens backs off like a failed open.
                attempt = 0 if loop.time() - opened >= RETRY_MAX_SECONDS else attempt + 1
                await asyncio.sleep(retry_delay(attempt))
            else:
                lost = None
                logger.info(
                    "push channel open for %gs (PUSH_MAX_LIFETIME): reconnecting on purpose",
                    self.limits.max_lifetime,
                )
                self._drain(reading)
                attempt = 0

    async def _open(self) -> aiohttp.ClientResponse:
        assert self._session is not None
        response = await self._session.get(self.url, headers=self._headers, ssl=self._tls)
        if response.status != 200:
            text = (await response.text())[:200]
            response.release()
            raise StreamRefused(f"HTTP {response.status}: {text}")
        return response

    async def _stay_open(self, reading: asyncio.Task[None], *, until: float) -> bool:
        """Wait while ``reading`` runs, telling the watchers it is open; True if it ended before ``until``."""
        loop = asyncio.get_running_loop()
        refresh = self.limits.idle_timeout / 3
        while (left := until - loop.time()) > 0:
            for watcher in self._watchers:
                watcher.connected()
            done, _ = await asyncio.wait({reading}, timeout=min(refresh, left))
            if done:
                return True
        return reading.done()

    async def _read(self, response: aiohttp.ClientResponse) -> None:
        """Hand every ``data:`` payload to the callbacks until the stream ends or fails."""
        framer = SseFramer()
        try:
            async for chunk in response.content.iter_any():
                for data in framer.feed(chunk):
                    for callback in list(self._callbacks):
                        try:
                            callback(data)
                        except Exception:
                            # One message the SDK could not take must not end the stream.
                            logger.exception("push channel: a message handler failed")
        finally:
            response.close()

    def _catch_up(self) -> None:
        """Run ``on_reopened`` beside the stream (never in its way); a failure is logged."""
        if self._on_reopened is None:
            return

        async def catch_up() -> None:
            assert self._on_reopened is not None
            try:
                await self._on_reopened()
            except Exception:
                logger.exception("push channel: catching up after a lost stream failed")

        task = asyncio.create_task(catch_up())
        self._draining.add(task)
        task.add_done_callback(self._draining.discard)

    def _drain(self, reading: asyncio.Task[None]) -> None:
        """Let a replaced stream deliver what it still has, for at most ``idle_timeout``."""

        async def drain() -> None:
            done, _ = await asyncio.wait({reading}, timeout=self.limits.idle_timeout)
            if not done:
                reading.cancel()
            with contextlib.suppress(BaseException):
                await reading

        task = asyncio.create_task(drain())
        self._draining.add(task)
        task.add_done_callback(self._draining.discard)

    def _describe(self, exc: BaseException | None) -> str:
        """Why a stream ended or did not open, in words a log reader can act on."""
        if exc is None:
            return "the store ended the stream"
        if isinstance(exc, TimeoutError):
            return f"nothing from the store for {self.limits.idle_timeout:g}s (PUSH_IDLE_TIMEOUT)"
        if isinstance(exc, aiohttp.ClientPayloadError):
            return "the connection to the store broke mid-stream"
        detail = str(exc)
        return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
