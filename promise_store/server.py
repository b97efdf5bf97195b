"""The served front door: the Resonate HTTP protocol over one journaled state.

* ``POST /`` -- one request envelope in, one response envelope out. A request
  the store processed answers HTTP 200 whatever its protocol status (the
  envelope's ``head.status`` carries it, which is what the SDK reads); a
  request it could not process (bad JSON, no envelope, unknown kind, invalid
  fields, too large, bad token) answers the matching 4xx with an error envelope.
* ``GET /poll/{group}/{pid}`` -- server-sent events: each ``data:`` line is one
  ``execute`` or ``unblock`` message for that listener (see ``delivery``).
* ``GET /health`` -- 200 ``{"status": "ok"}``.

A background tick (every ``tick_interval``, sooner when a timeout is due)
fires timeouts and lease expiries, journaling the ticks that change state.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging

import msgspec
from aiohttp import web
from resonate.connections.local import OutgoingMessage

from promise_store.config import Settings
from promise_store.delivery import Delivery, Mailboxes
from promise_store.protocol import error_envelope, handle
from promise_store.rules import next_deadline
from promise_store.state import JournaledState

logger = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 10.0

STORE = web.AppKey("store", JournaledState)
MAILBOXES = web.AppKey("mailboxes", Mailboxes)
SETTINGS = web.AppKey("settings", Settings)
TICKER = web.AppKey("ticker", asyncio.Task[None])


def build_app(store: JournaledState, settings: Settings) -> web.Application:
    """The aiohttp application; it closes ``store`` on cleanup."""
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[STORE] = store
    app[MAILBOXES] = Mailboxes()
    app[SETTINGS] = settings
    app.router.add_post("/", post_request)
    app.router.add_get("/poll/{group}/{pid}", poll)
    app.router.add_get("/health", health)
    app.on_startup.append(_start_ticker)
    app.on_shutdown.append(_close_listeners)
    app.on_cleanup.append(_stop)
    return app


def _authorized(request: web.Request) -> bool:
    token = request.app[SETTINGS].token
    if token is None:
        return True
    given = request.headers.get("Authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


def _envelope_response(status: int, body: bytes) -> web.Response:
    return web.Response(status=status, body=body, content_type="application/json")


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def post_request(request: web.Request) -> web.Response:
    if not _authorized(request):
        return _envelope_response(401, error_envelope(401, "missing or wrong bearer token"))
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[SETTINGS].max_body_bytes
        return _envelope_response(413, error_envelope(413, f"request body exceeds {limit} bytes"))
    answer = await handle(request.app[STORE], raw)
    _route(request.app[MAILBOXES], answer.outgoing)
    return _envelope_response(answer.http_status, answer.body)


async def poll(request: web.Request) -> web.StreamResponse:
    if not _authorized(request):
        raise web.HTTPUnauthorized(text="missing or wrong bearer token")
    group, pid = request.match_info["group"], request.match_info["pid"]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    mailboxes = request.app[MAILBOXES]
    listener = mailboxes.connect(group, pid)
    logger.info("listener connected: %s/%s", group, pid)
    unsent: list[Delivery] = []
    try:
        await response.write(b": connected\n\n")
        while True:
            try:
                delivery = await asyncio.wait_for(listener.queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if delivery is None:
                break
            try:
                await response.write(f"data: {delivery.payload}\n\n".encode())
            except (ConnectionError, RuntimeError):
                unsent.append(delivery)
                raise
    except (ConnectionError, RuntimeError):
        pass  # the client went away; what it did not receive is routed again below
    finally:
        mailboxes.disconnect(listener, unsent)
        logger.info("listener gone: %s/%s", group, pid)
    return response


def _route(mailboxes: Mailboxes, messages: list[OutgoingMessage]) -> None:
    for message in messages:
        mailboxes.route(message.address, msgspec.json.encode(message.message).decode())


async def _tick_loop(app: web.Application) -> None:
    store, mailboxes = app[STORE], app[MAILBOXES]
    interval = app[SETTINGS].tick_interval
    while True:
        try:
            _route(mailboxes, await store.tick())
        except Exception:
            logger.exception("tick failed")
        deadline = next_deadline(store.state)
        wait = interval
        if deadline is not None:
            wait = min(interval, max((deadline - store.clock()) / 1000, 0.01))
        await asyncio.sleep(wait)


async def _start_ticker(app: web.Application) -> None:
    app[TICKER] = asyncio.create_task(_tick_loop(app))


async def _close_listeners(app: web.Application) -> None:
    app[MAILBOXES].close_all()


async def _stop(app: web.Application) -> None:
    ticker = app[TICKER]
    ticker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await ticker
    await app[STORE].close()
    logger.info("store closed")
