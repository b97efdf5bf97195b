"""The console's HTTP server: the page, its live feed (server-sent events), and its actions.

aiohttp's server, because everything the console reads is already asyncio
(the bank clients, the Resonate client): one event loop polls the banks and
the store every ``CONSOLE_POLL_INTERVAL`` seconds, and pushes the sections
that changed to every open page (:mod:`orchestrator.console.feed`). The
browser never polls; it fetches a transfer's timeline when a person opens it
or when the feed says that transfer changed.

| call | answers |
| --- | --- |
| ``GET /`` and ``/static/*`` | the page (its own HTML, script and styles, from the package) |
| ``GET /health`` | 200 ``{"status": "ok"}``, no token needed |
| ``GET /api/session`` | whether a token is needed and given, read-only, local |
| ``POST /api/login`` ``{"token"}`` | sets the session cookie when the token is right |
| ``GET /api/state`` | every section now |
| ``GET /api/events`` | the live feed (``text/event-stream``) |
| ``GET /api/transfers/{id}`` | one transfer as ``crossbank status`` has it |
| ``POST /api/transfers`` ``{"from", "to", "amount", "id"?}`` | starts a transfer (``crossbank transfer ... --no-wait``) |
| ``POST /api/accounts`` ``{"bank", "account", "action": "open"|"close"}`` | local demo only |
| ``POST /api/workers/kill`` ``{"transfer_id"}``, ``POST /api/workers/start`` | local demo only |
| ``POST /api/faults/hold-credit``, ``POST /api/faults/release`` | local demo only |

With a token (``CONSOLE_TOKEN``, else ``BANK_TOKEN``, else ``RESONATE_TOKEN``)
every ``/api`` call but ``session`` and ``login`` needs it, as a bearer token
or the session cookie ``login`` sets (HttpOnly, SameSite=Strict). Actions take
JSON only, which a page from another origin cannot send without asking.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from importlib import resources
from typing import Any

from aiohttp import web

from envsettings import SettingsError
from orchestrator.bank_client import BankError, bank_clients
from orchestrator.cli import commands
from orchestrator.console.config import ConsoleSettings
from orchestrator.console.feed import Feed, TooManyClients
from orchestrator.console.gather import Reader, WorkersProbe
from orchestrator.console.local import ActionRefused, LocalControl, status_directory_workers
from orchestrator.money import AmountError
from orchestrator.runtime import resonate_session
from orchestrator.settings import Settings

logger = logging.getLogger("orchestrator.console")

COOKIE = "crossbank_console"
#: How soon a page that went away frees its place among CONSOLE_MAX_CLIENTS, in seconds.
GONE_CHECK_SECONDS = 1.0
#: Largest request body an action takes.
MAX_BODY = 16 * 1024
#: The page's files, by name, and their types.
STATIC_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_ACCOUNT = re.compile(r"[A-Za-z0-9._:@~+-]{1,128}")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def needs_served_store(settings: Settings) -> None:
    """Refuse the embedded store: its file belongs to whichever single process runs transfers."""
    if not settings.served:
        raise commands.CliError(
            "the console needs a served promise store (RESONATE_URL) or Resonate on Postgres "
            "(RESONATE_PG_DSN): the embedded store's file is held by the one process that runs "
            "transfers"
        )


class Console:
    """One console: its settings, what it reads, its feed, and (in the demo) its hands."""

    def __init__(
        self, settings: Settings, console: ConsoleSettings, local: LocalControl | None = None
    ) -> None:
        needs_served_store(settings)
        self.settings = settings
        self.console = console
        self.local = local
        self.feed = Feed(max_clients=console.max_clients, queue_size=console.client_queue)
        self.reader: Reader | None = None
        self._wake = asyncio.Event()
        self.address: str | None = None

    # -- running ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, ready: Callable[[str], None] | None = None) -> None:
        """Serve until ``stop`` is set; ``ready`` gets the page's address once it listens."""
        readers = replace(self.settings, bank_timeout=self.console.read_timeout)
        source, target = bank_clients(readers)
        async with source, target, resonate_session(self.settings, role="client") as resonate:
            self.reader = Reader(
                self.settings,
                self.console,
                resonate,
                source,
                target,
                workers=self._workers_probe(),
                local=self.local is not None,
            )
            runner = web.AppRunner(self.app(), shutdown_timeout=1.0, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, self.console.host, self.console.port)
            await site.start()
            port = _bound_port(site, self.console.port)
            self.address = f"http://{self.console.host}:{port}"
            poller = asyncio.create_task(self._poll())
            if ready is not None:
                ready(self.address)
            try:
                await stop.wait()
            finally:
                poller.cancel()
                for subscriber in list(self.feed.subscribers):
                    subscriber.dropped = True
                    subscriber.offer("")
                await runner.cleanup()

    def _workers_probe(self) -> WorkersProbe | None:
        """The local demo's processes; else the status files in CONSOLE_WORKER_STATUS_DIR."""
        if self.local is not None:
            return self.local.workers
        directory = self.console.worker_status_dir
        if directory is None:
            return None

        async def from_directory() -> dict[str, Any]:
            return await asyncio.to_thread(status_directory_workers, directory)

        return from_directory

    async def _poll(self) -> None:
        """Read every section, publish what changed, sleep; sooner after an action."""
        assert self.reader is not None
        while True:
            try:
                self.feed.publish(await self.reader.snapshot())
            except Exception:
                logger.exception("console: reading the banks and the store failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.console.poll_interval)

    def wake(self) -> None:
        """Poll now: an action just changed something."""
        self._wake.set()

    # -- the app --------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._guard])
        app.add_routes(
            [
                web.get("/", self.page),
                web.get("/static/{name}", self.static),
                web.get("/health", self.health),
                web.get("/api/session", self.session),
                web.post("/api/login", self.login),
                web.get("/api/state", self.state),
                web.get("/api/events", self.events),
                web.get("/api/transfers/{transfer_id}", self.transfer),
                web.post("/api/transfers", self.start_transfer),
                web.post("/api/accounts", self.account),
                web.post("/api/workers/kill", self.kill_worker),
                web.post("/api/workers/start", self.start_worker),
                web.post("/api/faults/hold-credit", self.hold_credit),
                web.post("/api/faults/release", self.release),
            ]
        )
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The token on ``/api``, JSON-only actions, and the page's security headers."""
        open_paths = ("/api/session", "/api/login")
        guarded = request.path.startswith("/api/") and request.path not in open_paths
        if guarded and not self.authorized(request):
            return _error(401, "unauthorized", "this console needs its token (CONSOLE_TOKEN)")
        if request.method == "POST":
            if request.content_type != "application/json":
                return _error(415, "json_only", "actions take a JSON body")
            if request.path not in open_paths and self.console.read_only:
                return _error(403, "read_only", "this console is read-only (CONSOLE_READ_ONLY)")
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            return _error(exc.status, "http_error", exc.reason)
        except (commands.CliError, BankError) as exc:  # a bank or the store not answering an action
            return _error(503, "unavailable", str(exc))
        except Exception as exc:
            logger.exception("console: %s %s failed", request.method, request.path)
            return _error(500, "unexpected", f"unexpected error: {type(exc).__name__}: {exc}")
        if not response.prepared:
            response.headers.update(SECURITY_HEADERS)
        return response

    def authorized(self, request: web.Request) -> bool:
        token = self.console.token
        if token is None:
            return True
        given = request.headers.get("Authorization", "")
        if given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), token.encode()):
            return True
        cookie = request.cookies.get(COOKIE, "")
        return hmac.compare_digest(cookie.encode(), self._session_value().encode())

    def _session_value(self) -> str:
        assert self.console.token is not None
        return hmac.new(
            self.console.token.encode(), b"crossbank console", hashlib.sha256
        ).hexdigest()

    # -- the page -------------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.StreamResponse:
        return _static_file("index.html")

    async def static(self, request: web.Request) -> web.StreamResponse:
        return _static_file(request.match_info["name"])

    async def health(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "ok"})

    async def session(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {
                "needs_token": self.console.token is not None,
                "authorized": self.authorized(request),
                "read_only": self.console.read_only,
                "local": self.local is not None,
            }
        )

    async def login(self, request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        token = body.get("token")
        if self.console.token is None:
            return web.json_response({"authorized": True})
        if not isinstance(token, str) or not hmac.compare_digest(
            token.encode(), self.console.token.encode()
        ):
            return _error(401, "unauthorized", "that is not this console's token")
        response = web.json_response({"authorized": True})
        response.set_cookie(COOKIE, self._session_value(), httponly=True, samesite="Strict")
        return response

    async def state(self, request: web.Request) -> web.StreamResponse:
        """The latest state; right after start-up, the first poll's, once it is in."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.feed.published.wait(), 2 * self.console.read_timeout)
        return web.json_response({"sections": self.feed.state})

    async def events(self, request: web.Request) -> web.StreamResponse:
        try:
            subscriber = self.feed.subscribe()
        except TooManyClients as exc:
            return _error(503, "too_many_clients", str(exc))
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        try:
            await response.prepare(request)
            await response.write(b"retry: 1000\n\n")
            quiet_since = time.monotonic()
            while not _gone(request):
                try:
                    event = await asyncio.wait_for(subscriber.queue.get(), GONE_CHECK_SECONDS)
                except TimeoutError:
                    if time.monotonic() - quiet_since >= self.console.keepalive:
                        await response.write(b": keepalive\n\n")
                        quiet_since = time.monotonic()
                    continue
                if subscriber.dropped or not event:
                    break
                await response.write(event.encode())
                quiet_since = time.monotonic()
        except (ConnectionResetError, RuntimeError):
            pass  # the page went away
        finally:
            self.feed.unsubscribe(subscriber)
        return response

    async def transfer(self, request: web.Request) -> web.StreamResponse:
        assert self.reader is not None
        transfer_id = request.match_info["transfer_id"]
        try:
            detail = await asyncio.wait_for(
                self.reader.detail(transfer_id), timeout=self.console.read_timeout * 2
            )
        except commands.CliError as exc:
            return _error(503, "unavailable", str(exc))
        except TimeoutError:
            return _error(
                503, "unavailable", f"the {commands.kept_in(self.settings)} did not answer in time"
            )
        if detail is None:
            return _error(
                404,
                "unknown_transfer",
                f"no transfer {transfer_id} in the {commands.kept_in(self.settings)}",
            )
        return web.json_response(detail)

    # -- actions --------------------------------------------------------------------------

    async def start_transfer(self, request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        source, target, amount = _text(body, "from"), _text(body, "to"), _text(body, "amount")
        transfer_id = body.get("id") or None
        if transfer_id is not None and not isinstance(transfer_id, str):
            return _error(400, "invalid_request", "id must be a string")
        cli = f"crossbank transfer --from {source} --to {target} --amount {amount}"
        cli += f" --id {transfer_id}" if transfer_id else ""
        cli += " --no-wait"
        try:
            reply = await commands.transfer_command(
                self.settings,
                source=source,
                target=target,
                amount=amount,
                transfer_id=transfer_id,
                wait=False,
            )
        except (commands.CliError, AmountError, SettingsError) as exc:
            return _error(400, "refused", str(exc), cli=cli)
        started = str(reply.data["transfer_id"])
        assert self.reader is not None
        self.reader.track(started)
        self.wake()
        return web.json_response({"transfer_id": started, "message": reply.human, "cli": cli})

    async def account(self, request: web.Request) -> web.StreamResponse:
        self._need_local()
        body = await _json_body(request)
        bank, account, action = _text(body, "bank"), _text(body, "account"), _text(body, "action")
        if bank not in ("source", "target") or action not in ("open", "close"):
            return _error(400, "invalid_request", "bank is source or target; action open or close")
        if not _ACCOUNT.fullmatch(account):
            return _error(400, "invalid_request", f"{account!r} is not a valid account id")
        cli = f"crossbank accounts {action} {account} --bank {bank}"
        try:
            reply = await commands.account_command(
                self.settings, account, bank=bank, action=action, opening=None
            )
        except commands.CliError as exc:
            return _error(400, "refused", str(exc), cli=cli)
        self.wake()
        return web.json_response({"message": reply.human, "cli": cli})

    async def kill_worker(self, request: web.Request) -> web.StreamResponse:
        local = self._need_local()
        transfer_id = _text(await _json_body(request), "transfer_id")
        try:
            killed = await local.kill_worker_running(transfer_id)
        except ActionRefused as exc:
            return _error(409, "refused", str(exc))
        self.wake()
        message = (
            f"SIGKILL {killed['worker']} (pid {killed['pid']}), which was running {transfer_id}"
        )
        return web.json_response({**killed, "message": message, "cli": f"kill -9 {killed['pid']}"})

    async def start_worker(self, request: web.Request) -> web.StreamResponse:
        local = self._need_local()
        started = await local.start_worker()
        self.wake()
        message = f"{started['worker']} is up (pid {started['pid']}) and listening for work"
        env = (
            f"RESONATE_URL={self.settings.resonate_url}"
            if self.settings.resonate_url
            else "RESONATE_PG_DSN=..."
        )
        return web.json_response({**started, "message": message, "cli": f"{env} crossbank worker"})

    async def hold_credit(self, request: web.Request) -> web.StreamResponse:
        local = self._need_local()
        done = await local.hold_next_credit()
        self.wake()
        rules = json.dumps({"faults": done["faults"]})
        return web.json_response(
            {
                "message": "the target bank will hold the next credit it receives",
                "cli": f"curl -X PUT {self.settings.target_bank_url}/admin/faults -d '{rules}'",
            }
        )

    async def release(self, request: web.Request) -> web.StreamResponse:
        local = self._need_local()
        await local.release_holds()
        self.wake()
        return web.json_response(
            {
                "message": "the target bank's fault rules are cleared and its held requests go on",
                "cli": f"curl -X DELETE {self.settings.target_bank_url}/admin/faults",
            }
        )

    def _need_local(self) -> LocalControl:
        if self.local is None:
            raise web.HTTPForbidden(reason="only a console started by the local demo can do this")
        return self.local


def _gone(request: web.Request) -> bool:
    """The page closed its connection (a reload, a closed tab): its slot is free again."""
    transport = request.transport
    return transport is None or transport.is_closing()


def _error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    response = web.json_response(
        {"error": {"code": code, "message": message}, **extra}, status=status
    )
    response.headers.update(SECURITY_HEADERS)
    return response


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(reason="the body is not JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(reason="the body must be a JSON object")
    return body


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise web.HTTPBadRequest(reason=f"{name} is required (a string)")
    return value


def _static_file(name: str) -> web.StreamResponse:
    suffix = name[name.rfind(".") :] if "." in name else ""
    folder = resources.files("orchestrator.console") / "static"
    if suffix not in STATIC_TYPES or "/" in name or name.startswith("."):
        raise web.HTTPNotFound(reason=f"no file {name}")
    path = folder / name
    if not path.is_file():
        raise web.HTTPNotFound(reason=f"no file {name}")
    return web.Response(body=path.read_bytes(), content_type=STATIC_TYPES[suffix], charset="utf-8")


def _bound_port(site: web.TCPSite, asked: int) -> int:
    """The port the site listens on (``asked``, or the kernel's choice when ``asked`` is 0)."""
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    return int(sockets[0].getsockname()[1]) if sockets else asked
