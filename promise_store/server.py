"""The served front door: the Resonate HTTP protocol over one journaled state.

* ``POST /`` -- one request envelope in, one response envelope out. A request
  the store processed answers HTTP 200 whatever its protocol status (the
  envelope's ``head.status`` carries it, which is what the SDK reads); a
  request it could not process (bad JSON, no envelope, unknown kind, invalid
  fields, too large, bad token) answers the matching 4xx with an error envelope.
* ``GET /poll/{group}/{pid}`` -- server-sent events: each ``data:`` line is one
  ``execute`` or ``unblock`` message for that listener (see ``delivery``).
* ``GET /health`` -- 200 ``{"status": "ok"}``; 200 ``{"status": "degraded",
  "reason"}`` when a snapshot was skipped (the store serves, its journal
  grows); 503 ``{"status": "failing", "reason"}`` when the journal cannot be
  written, so a supervisor restarts it.
* ``GET /metrics`` -- Prometheus's text format (``metrics``); like every route
  but ``/health``, it needs the token and an allowed ``Host``.

A background tick (every ``tick_interval``, sooner when a timeout is due)
fires timeouts and lease expiries, journaling the ticks that change state, and
offers work a listener sat on to the rest of its group (see ``delivery``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import signal
import time
from typing import Any

import msgspec
from resonate.connections.local import OutgoingMessage

from envsettings.tls import server_context
from promise_store.config import Settings
from promise_store.delivery import Delivery, Mailboxes
from promise_store.http import Request, Response, Server, Stream
from promise_store.metrics import CONTENT_TYPE_LATEST, StoreMetrics
from promise_store.protocol import error_envelope, handle
from promise_store.rules import next_deadline
from promise_store.state import JournaledState

logger = logging.getLogger(__name__)

#: A listener's stream carries a comment at least this often, so a client hears silence
#: (a dead connection) within a few of these (``PUSH_IDLE_TIMEOUT``, 6 s, on the client).
KEEPALIVE_SECONDS = 2.0

#: How long a graceful stop waits for requests in flight before closing the store.
SHUTDOWN_GRACE_SECONDS = 5.0

_HEALTHY = Response(200, b'{"status": "ok"}')


def health(store: JournaledState) -> Response:
    """``/health``: not 200 when the store cannot write; degraded (200) when a snapshot failed."""
    failure = store.write_failure
    if failure is not None:
        return Response(503, msgspec.json.encode({"status": "failing", "reason": failure}))
    skipped = store.snapshot_failure
    if skipped is not None:
        return Response(200, msgspec.json.encode({"status": "degraded", "reason": skipped}))
    return _HEALTHY


class StoreService:
    """The store's routes over :mod:`promise_store.http`, plus the firing tick."""

    def __init__(self, store: JournaledState, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.mailboxes = Mailboxes(
            reoffer_after=settings.reoffer_after, max_watched=settings.max_watched_offers
        )
        self.metrics = StoreMetrics(store, self.mailboxes)
        self.http = Server(
            self.route,
            limits=settings.limits,
            check_head=self._check_head,
            error_body=error_envelope,
            refused=self.metrics.refused,
        )
        self._expected_auth = f"Bearer {settings.token}".encode() if settings.token else None
        self._ticker: asyncio.Task[None] | None = None

    def _check_head(self, request: Request) -> Response | None:
        """Refuse, before the body is read, what a web page could send and what lacks the token.

        ``/health`` needs neither. A page on another site can reach the store
        through a browser under a name of its own (DNS rebinding) and POST
        ``text/plain`` without asking; it cannot send ``application/json``
        to another origin without a CORS preflight, which the store never grants.
        """
        if request.path == "/health":
            return None
        if not self.settings.allowed_hosts.allows(request.headers.get("host")):
            message = "this store does not answer to that Host (ALLOWED_HOSTS)"
            return Response(400, error_envelope(400, message))
        if request.method == "POST" and request.media_type != "application/json":
            return Response(415, error_envelope(415, "send Content-Type: application/json"))
        if self._authorized(request):
            return None
        return Response(401, error_envelope(401, "missing or wrong bearer token"))

    async def start(self) -> int:
        """Listen on the configured address and start ticking; returns the port."""
        tls = server_context(self.settings.tls) if self.settings.tls is not None else None
        port = await self.http.start(self.settings.host, self.settings.port, tls=tls)
        self._ticker = asyncio.create_task(self._tick_loop())
        return port

    async def stop(self) -> None:
        """Stop listening, end the event streams, let requests in flight finish, close the store."""
        self.http.stop_listening()
        self.mailboxes.close_all()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SHUTDOWN_GRACE_SECONDS):
                await self.http.drained()
        self.http.close_connections()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        await self.store.close()
        logger.info("store closed")

    async def route(self, request: Request, stream: Stream) -> Response | None:
        path, method = request.path, request.method
        if path == "/health":
            return health(self.store) if method in ("GET", "HEAD") else _not_allowed("GET")
        if path == "/":
            return await self.post_request(request) if method == "POST" else _not_allowed("POST")
        if path == "/metrics":
            if method not in ("GET", "HEAD"):
                return _not_allowed("GET")
            return Response(200, await self.metrics.render(), content_type=CONTENT_TYPE_LATEST)
        if path.startswith("/poll/"):
            parts = path.split("/")
            if len(parts) != 4 or not parts[2] or not parts[3]:
                return Response(404, b'{"error": "use /poll/{group}/{pid}"}')
            if method != "GET":
                return _not_allowed("GET")
            return await self.poll(request, stream, parts[2], parts[3])
        return Response(404, b'{"error": "not found"}')

    def _authorized(self, request: Request) -> bool:
        if self._expected_auth is None:
            return True
        given = request.headers.get("authorization", "").encode("latin-1")
        return hmac.compare_digest(given, self._expected_auth)

    async def post_request(self, request: Request) -> Response:
        """One envelope in, one out (the token was checked on the head, by ``_check_head``)."""
        answer = await handle(self.store, request.body, max_depth=self.settings.max_json_depth)
        _route(self.mailboxes, answer.outgoing)
        self.metrics.answered(answer.kind, answer.status, time.perf_counter() - request.received_at)
        return Response(answer.http_status, answer.body)

    async def poll(self, request: Request, stream: Stream, group: str, pid: str) -> Response | None:
        """Stream ``execute``/``unblock`` messages (the token was checked on the head)."""
        await stream.start(200, {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        listener = self.mailboxes.connect(group, pid)
        logger.info("listener connected: %s/%s", group, pid)
        unsent: list[Delivery] = []
        try:
            await stream.write(b": connected\n\n")
            while True:
                try:
                    delivery = await asyncio.wait_for(listener.queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    await stream.write(b": keepalive\n\n")
                    continue
                if delivery is None:
                    return None
                try:
                    await stream.write(f"data: {delivery.payload}\n\n".encode())
                except BaseException:
                    unsent.append(delivery)  # routed again below
                    raise
        except ConnectionError:
            return None  # the client went away
        finally:
            self.mailboxes.disconnect(listener, unsent)
            logger.info("listener gone: %s/%s", group, pid)

    async def _tick_loop(self) -> None:
        store, mailboxes = self.store, self.mailboxes
        interval = self.settings.tick_interval
        while True:
            try:
                _route(mailboxes, await store.tick())
            except Exception:
                logger.exception("tick failed")
            try:
                mailboxes.reoffer_due(self._awaits_acquire)
            except Exception:
                logger.exception("offering unclaimed work again failed")
            deadline = next_deadline(store.state)
            wait = interval
            if deadline is not None:
                wait = min(interval, max((deadline - store.clock()) / 1000, 0.01))
            reoffer = mailboxes.seconds_until_reoffer()
            if reoffer is not None:
                wait = min(wait, max(reoffer, 0.01))
            await asyncio.sleep(wait)

    def _awaits_acquire(self, task_id: str, version: int) -> bool:
        task = self.store.state.tasks.get(task_id)
        return task is not None and task.state == "pending" and task.version == version


def _not_allowed(allowed: str) -> Response:
    return Response(405, f'{{"error": "method not allowed; use {allowed}"}}'.encode())


async def serve(store: JournaledState, settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully (see :meth:`StoreService.stop`)."""
    service = StoreService(store, settings)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await service.start()
    await stopping.wait()
    logger.info("stopping")
    await service.stop()


def _route(mailboxes: Mailboxes, messages: list[OutgoingMessage]) -> None:
    for message in messages:
        mailboxes.route(
            message.address,
            msgspec.json.encode(message.message).decode(),
            task=_execute_task(message.message),
        )


def _execute_task(message: Any) -> tuple[str, int] | None:
    """``(task id, version)`` of an ``execute`` message, else ``None``."""
    if not isinstance(message, dict) or message.get("kind") != "execute":
        return None
    data = message.get("data")
    task = data.get("task") if isinstance(data, dict) else None
    if not isinstance(task, dict):
        return None
    task_id, version = task.get("id"), task.get("version")
    if isinstance(task_id, str) and isinstance(version, int) and not isinstance(version, bool):
        return task_id, version
    return None
