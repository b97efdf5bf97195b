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
| ``POST /api/transfers/{id}/cancel`` ``{"reason"}`` | cancels it unless its credit applied (``crossbank cancel ID --reason ...``) |
| ``POST /api/transfers/{id}/retry`` | its next attempt now, if it waits between two (``crossbank retry ID``) |
| ``POST /api/accounts`` ``{"bank", "account", "action": "open"|"close"}`` | local demo only |
| ``POST /api/workers/kill`` ``{"transfer_id", "reason"?}``, ``POST /api/workers/start`` | local demo only |
| ``POST /api/faults/hold-credit`` ``{"transfer_id"?, "reason"?}``, ``POST /api/faults/release`` | local demo only |

Cancel and retry answer 200 with what came of them, as ``crossbank cancel``
and ``crossbank retry`` print it (:class:`orchestrator.operations.Done`:
``outcome``, ``message``, ``took_effect``, ``record_error``), with ``by`` and
``cli``; ``took_effect`` false is an answer too (too late, finished, not
waiting), not an error. Input they cannot take (an id no transfer can have, a
reason that is empty, longer than 200 characters or not printable, a body
that is not a JSON object) is a 400 that changes nothing. A bank or the store
that fails mid-way is a 503 "not confirmed" (a void whose answer was lost may
have applied): sending the same cancel again is safe, and says.

Each operator action (cancel, retry, and the demo's kill, hold and release)
leaves a record (:mod:`orchestrator.operator_log`) that ``crossbank status ID``
and ``crossbank audit --actions`` show. Its ``by`` is the console's operator,
:attr:`Settings.operator` (``CROSSBANK_OPERATOR``, else ``user@host`` of the
console's process) followed by `` (console)``: the console cannot tell one
holder of its token from another, so a page never names who it is. A record is
written once the action is done; if it cannot be, the answer's ``record_error``
says why beside the action's own outcome. A kill the console refused (no live
worker runs the transfer) did nothing and leaves no record. A hold of
"the next credit" names no transfer (the record says ``(target bank)``); a
hold of one transfer's credit, and a release of a held credit, name that
transfer.

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
import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from http.cookies import CookieError, SimpleCookie
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from resonate.error import ResonateError, ServerError

from envsettings import SettingsError
from envsettings.tls import server_context
from orchestrator import audit, operations, operator_log
from orchestrator.bank_client import BankError, bank_clients
from orchestrator.cli import commands
from orchestrator.cli.operate import MAX_REASON
from orchestrator.console.config import ConsoleSettings, console_operator
from orchestrator.console.feed import Feed
from orchestrator.console.gather import Reader, WorkersProbe
from orchestrator.console.local import ActionRefused, LocalControl, status_directory_workers
from orchestrator.console.throttle import LoginThrottle, retry_after
from orchestrator.money import AmountError
from orchestrator.runtime import resonate_session
from orchestrator.settings import Settings
from orchestrator.transfers import InvalidTransferRequest, check_transfer_id
from promise_store.http import Request, Response, Server, Stream

if TYPE_CHECKING:
    from resonate.resonate import Resonate

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
#: ``POST /api/transfers/{id}/{action}``: an operator's action on one transfer.
_TRANSFER_ACTION = re.compile(r"/api/transfers/([^/]*)/([a-z]+)")
#: What the record of a demo hold or release that names no transfer says instead.
TARGET_BANK = "(target bank)"

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
        #: Who the records of this console's actions name (module docstring).
        self.operator = console_operator(settings.operator)
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
        #: ``POST /api/transfers/{id}/{action}``.
        self._on_transfer: dict[str, Callable[[str, Request], Awaitable[Response]]] = {
            "cancel": self.cancel,
            "retry": self.retry,
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
                if handler is None and (found := _TRANSFER_ACTION.fullmatch(request.path)):
                    action = self._on_transfer.get(found[2])
                    if action is not None:
                        return await action(found[1], request)
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

    async def cancel(self, transfer_id: str, request: Request) -> Response:
        """``crossbank cancel ID --reason ...``: the saga's fence, with the operator's note."""
        transfer_id = _transfer_id(transfer_id)
        reason = _reason(_json_body(request), required=True)
        assert reason is not None
        cli = shlex.join(["crossbank", "cancel", transfer_id, "--reason", reason])
        try:
            async with commands.open_banks(self.settings) as (source, target):
                done = await operations.cancel_transfer(
                    self._resonate(), source, target, transfer_id, by=self.operator, reason=reason
                )
        except (BankError, ResonateError) as exc:
            # A void whose answer was lost, or a store that failed after the void, may have
            # cancelled it all the same: say so, never "not done". Sending it again is safe:
            # the bank keeps the first note, and the same note answers as this one's.
            why = str(exc) if isinstance(exc, BankError) else self._store(exc)
            return json_error(
                503,
                "unavailable",
                f"cancel not confirmed: {why}; sending it again is safe, and "
                f"crossbank status {transfer_id} shows whether it took effect",
                cli=cli,
            )
        return self._done(done, cli)

    async def retry(self, transfer_id: str, request: Request) -> Response:
        """``crossbank retry ID``: end the sleep between two attempts, if it sleeps."""
        transfer_id = _transfer_id(transfer_id)
        if request.body.strip():
            _json_body(request)  # nothing to give, but what is given must be a JSON object
        cli = shlex.join(["crossbank", "retry", transfer_id])
        try:
            done = await operations.retry_transfer(self._resonate(), transfer_id, by=self.operator)
        except ResonateError as exc:
            return json_error(
                503, "unavailable", f"retry not confirmed: {self._store(exc)}", cli=cli
            )
        return self._done(done, cli)

    def _done(self, done: operations.Done, cli: str) -> Response:
        if done.took_effect:
            assert self.reader is not None
            self.reader.track(done.transfer_id)
            self.wake()
        message = done.message
        if done.record_error is not None:
            message += f" (warning: the operator record could not be written: {done.record_error})"
        return json_response(
            {**done.to_json(), "message": message, "by": self.operator, "cli": cli}
        )

    def _store(self, exc: ResonateError) -> str:
        kept_in = commands.kept_in(self.settings)
        if isinstance(exc, ServerError):
            return f"the {kept_in} answered an error: {exc}"
        return f"the {kept_in} could not be reached: {exc}"

    def _resonate(self) -> Resonate:
        assert self.reader is not None
        return self.reader.resonate

    async def keep(
        self,
        action: operator_log.Action,
        transfer_id: str,
        *,
        reason: str | None,
        outcome: str,
    ) -> str | None:
        """Write the operator record of an action that happened; why it could not be, if not.

        The action is done whatever the store says now (the bank or the process decided
        it): a record that cannot be written is reported beside it, never in its place.
        """
        entry = operator_log.now_action(
            action, transfer_id, by=self.operator, reason=reason, outcome=outcome
        )
        try:
            await operator_log.record(self._resonate(), entry)
        except Exception as exc:
            logger.warning(
                "console: the record of %s %s was not written: %s", action, transfer_id, exc
            )
            return str(exc) or type(exc).__name__
        return None

    async def kill_worker(self, request: Request) -> Response:
        local = self._need_local()
        body = _json_body(request)
        transfer_id = _text(body, "transfer_id")
        reason = _reason(body, required=False)
        try:
            killed = await local.kill_worker_running(transfer_id)
        except ActionRefused as exc:
            return json_error(409, "refused", str(exc))
        self.wake()
        message = (
            f"SIGKILL {killed['worker']} (pid {killed['pid']}), which was running {transfer_id}"
        )
        record_error = await self.keep("kill", transfer_id, reason=reason, outcome=message)
        return json_response(
            {
                **killed,
                "message": message,
                "cli": f"kill -9 {killed['pid']}",
                "by": self.operator,
                "record_error": record_error,
            }
        )

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
        body = _json_body(request)
        transfer_id = body.get("transfer_id") or None
        if transfer_id is not None:
            transfer_id = _transfer_id(transfer_id)
        reason = _reason(body, required=False)
        done = await local.hold_next_credit(transfer_id)
        self.wake()
        rules = json.dumps({"faults": done["faults"]})
        message = (
            "the target bank will hold the next credit it receives"
            if transfer_id is None
            else f"the target bank will hold the credit of {transfer_id} when it comes"
        )
        record_error = await self.keep(
            "hold", transfer_id or TARGET_BANK, reason=reason, outcome=message
        )
        return json_response(
            {
                "message": message,
                "cli": f"curl -X PUT {self.settings.target_bank_url}/admin/faults "
                f"-H 'Content-Type: application/json' -d '{rules}'",
                "by": self.operator,
                "record_error": record_error,
            }
        )

    async def release(self, request: Request) -> Response:
        local = self._need_local()
        done = await local.release_holds()
        self.wake()
        released: list[str] = done["released"]
        message = "the target bank's fault rules are cleared and its held requests go on"
        if released:
            message += f" ({', '.join(released)})"
        held: dict[
            str, list[str]
        ] = {}  # the transfers whose requests it held, each recorded as released
        for op in released:
            parsed = audit.split_op_id(op)
            if parsed is not None:
                held.setdefault(parsed[0], []).append(op)
        errors = [
            await self.keep(
                "release",
                transfer_id,
                reason=None,
                outcome=f"released {', '.join(ops)}, held at the target bank",
            )
            for transfer_id, ops in held.items()
        ] or [await self.keep("release", TARGET_BANK, reason=None, outcome=message)]
        return json_response(
            {
                "message": message,
                "released": released,
                "cli": f"curl -X DELETE {self.settings.target_bank_url}/admin/faults "
                "-H 'Content-Type: application/json'",
                "by": self.operator,
                "record_error": next((e for e in errors if e is not None), None),
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


def _transfer_id(value: object) -> str:
    """A transfer id from a path or a body, or a 400 that names what an id may be."""
    try:
        return check_transfer_id(value)
    except InvalidTransferRequest as exc:
        raise Refused(400, "invalid_request", str(exc)) from None


def _reason(body: dict[str, Any], *, required: bool) -> str | None:
    """``reason``: what a bank keeps with a cancel, as ``crossbank cancel --reason`` takes it."""
    value = body.get("reason")
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise Refused(
            400, "invalid_request", f"reason is required: why, in 1 to {MAX_REASON} characters"
        )
    if len(value) > MAX_REASON:
        raise Refused(
            400,
            "invalid_request",
            f"reason is {len(value)} characters long; at most {MAX_REASON}",
        )
    if not value.isprintable():
        raise Refused(
            400,
            "invalid_request",
            "reason must be printable text on one line (no control characters)",
        )
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
