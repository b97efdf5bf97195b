"""The console's HTTP server: the page, its live feed (server-sent events), and its actions.

It runs on the same bounded HTTP/1.1 server as the promise store
(:mod:`promise_store.http`): connections, idle and slow clients, request
sizes and pipelining all have limits (``CONSOLE_MAX_CONNECTIONS``,
``CONSOLE_IDLE_TIMEOUT``, ...), a slow or idle client never locks out a
well-formed one, a failed accept for want of file descriptors is logged
once in a while rather than per try, and TLS comes from
``CONSOLE_TLS_CERT_FILE`` and ``CONSOLE_TLS_KEY_FILE``. One event loop polls
the banks and the store every ``CONSOLE_POLL_INTERVAL`` seconds and pushes
the sections that changed to every open page (:mod:`orchestrator.console.feed`).
The browser never polls; it fetches a transfer's timeline when a person
opens it or when the feed says that transfer changed.

| call | answers |
| --- | --- |
| ``GET /`` and ``/static/*`` | the page (its own HTML, script and styles, from the package) |
| ``GET /health`` | 200 ``{"status": "ok"}``, no token needed |
| ``GET /login?code=...`` | a one-time link: sets the session cookie, then shows the page |
| ``GET /api/session`` | whether a token is needed and given, read-only, local |
| ``POST /api/login`` ``{"token"}`` | sets the session cookie when the token is right (throttled) |
| ``GET /api/state`` | every section now |
| ``GET /api/events`` | the live feed (``text/event-stream``) |
| ``GET /api/transfers/{id}`` | one transfer as ``crossbank status`` has it |
| ``POST /api/transfers`` ``{"from", "to", "amount", "id"?}`` | starts a transfer (``crossbank transfer ... --no-wait``) |
| ``POST /api/accounts`` ``{"bank", "account", "action": "open"|"close"}`` | local demo only |
| ``POST /api/workers/kill`` ``{"transfer_id"}``, ``POST /api/workers/start`` | local demo only |
| ``POST /api/faults/hold-credit``, ``POST /api/faults/release`` | local demo only |

No page on another site can act through a browser: every request must be
addressed to a name the console serves (``Host``, ``CONSOLE_ALLOWED_HOSTS``),
and an action must come from one of its own pages (``Origin``) with a JSON
body, which another origin cannot send without asking. With a token
(``CONSOLE_TOKEN``, else ``BANK_TOKEN``, else ``RESONATE_TOKEN``) every
``/api`` call but ``session`` and ``login`` needs it, as a bearer token or
the session cookie ``login`` sets (HttpOnly, SameSite=Strict, Secure over TLS).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from http.cookies import CookieError, SimpleCookie
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from envsettings import SettingsError
from envsettings.tls import server_context
from orchestrator.bank_client import BankError, bank_clients
from orchestrator.cli import commands
from orchestrator.console.config import ConsoleSettings
from orchestrator.console.feed import Feed
from orchestrator.console.gather import Reader, WorkersProbe
from orchestrator.console.local import ActionRefused, LocalControl, status_directory_workers
from orchestrator.console.throttle import LoginThrottle, retry_after
from orchestrator.money import AmountError
from orchestrator.runtime import resonate_session
from orchestrator.settings import Settings
from promise_store.http import Request, Response, Server, Stream

logger = logging.getLogger("orchestrator.console")

COOKIE = "crossbank_console"
#: The page's files, by name, and their types.
STATIC_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
SECURITY_HEADERS = (
    ("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; base-uri 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)
#: Paths anyone may call: health probes, and what a page needs before it has the token.
OPEN_PATHS = frozenset({"/health", "/api/session", "/api/login", "/login"})
#: One-time login links kept at once (the oldest is forgotten first).
MAX_LOGIN_CODES = 16
_ACCOUNT = re.compile(r"[A-Za-z0-9._:@~+-]{1,128}")

Handler = Callable[[Request], Awaitable[Response]]


class Refused(Exception):
    """An action the console will not do, answered as a JSON error."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.response = json_error(status, code, message, **extra)


def needs_served_store(settings: Settings) -> None:
    """Refuse the embedded store: its file belongs to whichever single process runs transfers."""
    if not settings.served:
        raise commands.CliError(
            "the console needs a served promise store (RESONATE_URL) or Resonate on Postgres "
            "(RESONATE_PG_DSN): the embedded store's file is held by the one process that runs "
            "transfers"
        )


@dataclass(frozen=True)
class Listening:
    """Where a console serves, and a one-time link that logs a browser in."""

    address: str
    login_link: str | None


class Console:
    """One console: its settings, what it reads, its feed, and (in the demo) its hands."""

    def __init__(
        self, settings: Settings, console: ConsoleSettings, local: LocalControl | None = None
    ) -> None:
        needs_served_store(settings)
        self.settings = settings
        self.console = console
        self.local = local
        self.feed = Feed(
            max_clients=console.max_clients,
            queue_size=console.client_queue,
            max_per_holder=console.max_clients_per_holder,
        )
        self.reader: Reader | None = None
        self.throttle = LoginThrottle()
        self._login_codes: dict[str, None] = {}
        self._wake = asyncio.Event()
        self.address: str | None = None
        self._get: dict[str, Handler] = {
            "/": self.page,
            "/health": self.health,
            "/login": self.login_link,
            "/api/session": self.session,
            "/api/state": self.state,
        }
        self._post: dict[str, Handler] = {
            "/api/login": self.login,
            "/api/transfers": self.start_transfer,
            "/api/accounts": self.account,
            "/api/workers/kill": self.kill_worker,
            "/api/workers/start": self.start_worker,
            "/api/faults/hold-credit": self.hold_credit,
            "/api/faults/release": self.release,
        }

    # -- running ------------------------------------------------------------------------

    async def run(
        self, stop: asyncio.Event, ready: Callable[[Listening], None] | None = None
    ) -> None:
        """Serve until ``stop`` is set; ``ready`` learns where, once it listens."""
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
            http = Server(
                self.route,
                limits=self.console.limits,
                check_head=self.check_head,
                error_body=_error_body,
            )
            tls = server_context(self.console.tls) if self.console.tls is not None else None
            port = await http.start(self.console.host, self.console.port, tls=tls)
            self.address = f"{self.console.scheme}://{self.console.host}:{port}"
            poller = asyncio.create_task(self._poll())
            if ready is not None:
                ready(Listening(self.address, self.new_login_link()))
            try:
                await stop.wait()
            finally:
                poller.cancel()
                http.stop_listening()
                for subscriber in list(self.feed.subscribers):
                    self.feed.unsubscribe(subscriber).drop()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await http.drained()
                http.close_connections()

    def new_login_link(self) -> str | None:
        """A link that logs one browser in, once (None when the console needs no token)."""
        if self.console.token is None or self.address is None:
            return None
        code = secrets.token_urlsafe(24)
        self._login_codes[code] = None
        while len(self._login_codes) > MAX_LOGIN_CODES:
            del self._login_codes[next(iter(self._login_codes))]
        return f"{self.address}/login?code={code}"

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

    # -- what every request passes first -------------------------------------------------

    def check_head(self, request: Request) -> Response | None:
        """Refuse, before a body is read, what a web page could send and what lacks the token."""
        if request.path == "/health":
            return None
        allowed = self.console.allowed_hosts
        if not allowed.allows(request.headers.get("host")):
            return json_error(
                400,
                "unknown_host",
                "this console does not answer to that Host (CONSOLE_ALLOWED_HOSTS)",
            )
        if request.method == "POST":
            if not allowed.allows_origin(request.headers.get("origin")):
                return json_error(403, "foreign_origin", "actions come from the console's own page")
            if request.media_type != "application/json":
                return json_error(415, "json_only", "actions take a JSON body")
            if request.path not in OPEN_PATHS and self.console.read_only:
                return json_error(403, "read_only", "this console is read-only (CONSOLE_READ_ONLY)")
        guarded = request.path.startswith("/api/") and request.path not in OPEN_PATHS
        if guarded and not self.authorized(request):
            return json_error(401, "unauthorized", "this console needs its token (CONSOLE_TOKEN)")
        return None

    def authorized(self, request: Request) -> bool:
        token = self.console.token
        if token is None:
            return True
        given = request.headers.get("authorization", "")
        if given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), token.encode()):
            return True
        cookie = _cookie(request, COOKIE)
        return hmac.compare_digest(cookie.encode(), self._session_value().encode())

    def _holder(self, request: Request) -> str:
        """Who a stream belongs to: the credential it came with, else the client's address."""
        given = request.headers.get("authorization") or _cookie(request, COOKIE)
        if self.console.token is not None and given:
            return hashlib.sha256(given.encode()).hexdigest()
        return request.client

    def _session_value(self) -> str:
        assert self.console.token is not None
        return hmac.new(
            self.console.token.encode(), b"crossbank console", hashlib.sha256
        ).hexdigest()

    def _session_cookie(self) -> tuple[str, str]:
        secure = "; Secure" if self.console.tls is not None else ""
        value = f"{COOKIE}={self._session_value()}; Path=/; HttpOnly; SameSite=Strict{secure}"
        return ("Set-Cookie", value)

    # -- routing ----------------------------------------------------------------------------

    async def route(self, request: Request, stream: Stream) -> Response | None:
        """Dispatch one request; a refusal or failure becomes a JSON error, never a crash."""
        try:
            if request.method in ("GET", "HEAD"):
                if request.path == "/api/events":
                    await self.events(request, stream)
                    return None
                if request.path.startswith("/static/"):
                    return _static_file(request.path.removeprefix("/static/"))
                if request.path.startswith("/api/transfers/"):
                    return await self.transfer(request.path.removeprefix("/api/transfers/"))
                handler = self._get.get(request.path)
            elif request.method == "POST":
                handler = self._post.get(request.path)
            else:
                return json_error(405, "method_not_allowed", "use GET or POST")
            if handler is None:
                return json_error(404, "not_found", f"no {request.method} {request.path}")
            return await handler(request)
        except Refused as exc:
            return exc.response
        except (commands.CliError, BankError) as exc:  # a bank or the store not answering
            return json_error(503, "unavailable", str(exc))
        except Exception as exc:
            logger.exception("console: %s %s failed", request.method, request.path)
            return json_error(500, "unexpected", f"unexpected error: {type(exc).__name__}: {exc}")

    # -- the page -------------------------------------------------------------------------

    async def page(self, request: Request) -> Response:
        return _static_file("index.html")

    async def health(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    async def login_link(self, request: Request) -> Response:
        """``/login?code=``: a link printed when the console started; it works once."""
        code = (parse_qs(request.query).get("code") or [""])[0]
        if self.console.token is None or code not in self._login_codes:
            return Response(
                401,
                b"This login link was used already, or is not this console's. "
                b"Open the console's address and give its token.\n",
                content_type="text/plain; charset=utf-8",
                headers=SECURITY_HEADERS,
            )
        del self._login_codes[code]
        return Response(
            303,
            b"",
            content_type="text/plain; charset=utf-8",
            headers=(("Location", "/"), self._session_cookie(), *SECURITY_HEADERS),
        )

    async def session(self, request: Request) -> Response:
        return json_response(
            {
                "needs_token": self.console.token is not None,
                "authorized": self.authorized(request),
                "read_only": self.console.read_only,
                "local": self.local is not None,
            }
        )

    async def login(self, request: Request) -> Response:
        if self.console.token is None:
            return json_response({"authorized": True})
        wait = self.throttle.wait(request.client)
        if wait > 0:
            response = json_error(
                429, "too_many_attempts", "too many wrong tokens; wait before trying again"
            )
            return replace(
                response, headers=(("Retry-After", retry_after(wait)), *response.headers)
            )
        token = _json_body(request).get("token")
        if not isinstance(token, str) or not hmac.compare_digest(
            token.encode(), self.console.token.encode()
        ):
            self.throttle.failed(request.client)
            return json_error(401, "unauthorized", "that is not this console's token")
        self.throttle.succeeded(request.client)
        return json_response({"authorized": True}, headers=(self._session_cookie(),))

    async def state(self, request: Request) -> Response:
        """The latest state; right after start-up, the first poll's, once it is in."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.feed.published.wait(), 2 * self.console.read_timeout)
        return json_response({"sections": self.feed.state})

    async def events(self, request: Request, stream: Stream) -> None:
        """The live feed, until the page goes, falls behind, or gives its place to a newer one."""
        subscriber = self.feed.subscribe(self._holder(request))
        try:
            await stream.start(
                200,
                {
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-store",
                    "X-Accel-Buffering": "no",
                },
            )
            await stream.write(b"retry: 1000\n\n")
            while True:
                try:
                    event = await asyncio.wait_for(subscriber.queue.get(), self.console.keepalive)
                except TimeoutError:
                    await stream.write(b": keepalive\n\n")
                    continue
                if subscriber.dropped or not event:
                    return
                await stream.write(event.encode())
        except ConnectionError:
            return  # the page went away
        finally:
            self.feed.unsubscribe(subscriber)

    async def transfer(self, transfer_id: str) -> Response:
        assert self.reader is not None
        kept_in = commands.kept_in(self.settings)
        try:
            detail = await asyncio.wait_for(
                self.reader.detail(transfer_id), timeout=self.console.read_timeout * 2
            )
        except commands.CliError as exc:
            return json_error(503, "unavailable", str(exc))
        except TimeoutError:
            return json_error(503, "unavailable", f"the {kept_in} did not answer in time")
        if detail is None:
            return json_error(
                404, "unknown_transfer", f"no transfer {transfer_id} in the {kept_in}"
            )
        return json_response(detail)

    # -- actions --------------------------------------------------------------------------

    async def start_transfer(self, request: Request) -> Response:
        body = _json_body(request)
        source, target, amount = _text(body, "from"), _text(body, "to"), _text(body, "amount")
        transfer_id = body.get("id") or None
        if transfer_id is not None and not isinstance(transfer_id, str):
            return json_error(400, "invalid_request", "id must be a string")
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
            return json_error(400, "refused", str(exc), cli=cli)
        started = str(reply.data["transfer_id"])
        assert self.reader is not None
        self.reader.track(started)
        self.wake()
        return json_response({"transfer_id": started, "message": reply.human, "cli": cli})

    async def account(self, request: Request) -> Response:
        self._need_local()
        body = _json_body(request)
        bank, account, action = _text(body, "bank"), _text(body, "account"), _text(body, "action")
        if bank not in ("source", "target") or action not in ("open", "close"):
            return json_error(
                400, "invalid_request", "bank is source or target; action open or close"
            )
        if not _ACCOUNT.fullmatch(account):
            return json_error(400, "invalid_request", f"{account!r} is not a valid account id")
        cli = f"crossbank accounts {action} {account} --bank {bank}"
        try:
            reply = await commands.account_command(
                self.settings, account, bank=bank, action=action, opening=None
            )
        except commands.CliError as exc:
            return json_error(400, "refused", str(exc), cli=cli)
        self.wake()
        return json_response({"message": reply.human, "cli": cli})

    async def kill_worker(self, request: Request) -> Response:
        local = self._need_local()
        transfer_id = _text(_json_body(request), "transfer_id")
        try:
            killed = await local.kill_worker_running(transfer_id)
        except ActionRefused as exc:
            return json_error(409, "refused", str(exc))
        self.wake()
        message = (
            f"SIGKILL {killed['worker']} (pid {killed['pid']}), which was running {transfer_id}"
        )
        return json_response({**killed, "message": message, "cli": f"kill -9 {killed['pid']}"})

    async def start_worker(self, request: Request) -> Response:
        local = self._need_local()
        started = await local.start_worker()
        self.wake()
        message = f"{started['worker']} is up (pid {started['pid']}) and listening for work"
        env = (
            f"RESONATE_URL={self.settings.resonate_url}"
            if self.settings.resonate_url
            else "RESONATE_PG_DSN=..."
        )
        return json_response({**started, "message": message, "cli": f"{env} crossbank worker"})

    async def hold_credit(self, request: Request) -> Response:
        local = self._need_local()
        done = await local.hold_next_credit()
        self.wake()
        rules = json.dumps({"faults": done["faults"]})
        return json_response(
            {
                "message": "the target bank will hold the next credit it receives",
                "cli": f"curl -X PUT {self.settings.target_bank_url}/admin/faults "
                f"-H 'Content-Type: application/json' -d '{rules}'",
            }
        )

    async def release(self, request: Request) -> Response:
        local = self._need_local()
        await local.release_holds()
        self.wake()
        return json_response(
            {
                "message": "the target bank's fault rules are cleared and its held requests go on",
                "cli": f"curl -X DELETE {self.settings.target_bank_url}/admin/faults "
                "-H 'Content-Type: application/json'",
            }
        )

    def _need_local(self) -> LocalControl:
        if self.local is None:
            raise Refused(403, "http_error", "only a console started by the local demo can do this")
        return self.local


def json_response(
    data: Any, status: int = 200, headers: tuple[tuple[str, str], ...] = ()
) -> Response:
    return Response(status, json.dumps(data).encode(), headers=(*headers, *SECURITY_HEADERS))


def json_error(status: int, code: str, message: str, **extra: Any) -> Response:
    return json_response({"error": {"code": code, "message": message}, **extra}, status)


def _error_body(status: int, message: str) -> bytes:
    """The answers the HTTP server makes itself (a body too large, a head too slow)."""
    return json.dumps({"error": {"code": f"http_{status}", "message": message}}).encode()


def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(request.body)
    except ValueError:
        raise Refused(400, "http_error", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise Refused(400, "http_error", "the body must be a JSON object")
    return body


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise Refused(400, "http_error", f"{name} is required (a string)")
    return value


def _cookie(request: Request, name: str) -> str:
    jar = SimpleCookie()
    with contextlib.suppress(CookieError):
        jar.load(request.headers.get("cookie", ""))
    morsel = jar.get(name)
    return morsel.value if morsel is not None else ""


def _static_file(name: str) -> Response:
    suffix = name[name.rfind(".") :] if "." in name else ""
    folder = resources.files("orchestrator.console") / "static"
    if suffix not in STATIC_TYPES or "/" in name or name.startswith("."):
        return json_error(404, "http_error", f"no file {name}")
    path = folder / name
    if not path.is_file():
        return json_error(404, "http_error", f"no file {name}")
    return Response(
        200,
        path.read_bytes(),
        content_type=f"{STATIC_TYPES[suffix]}; charset=utf-8",
        headers=SECURITY_HEADERS,
    )
