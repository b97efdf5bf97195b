"""An async HTTP client for one bank, speaking the Bank API (bank/README.md).

Every answer from a bank falls in one of three classes, and the saga's safety
rests on telling them apart (docs/design.md, "The saga"):

- applied: the bank wrote (or had already written) the entry;
- rejected: a definitive 4xx; nothing was written and retrying will not change
  that, so it is returned as a value, never raised;
- unknown: the connection failed, timed out or the bank answered 5xx; the entry
  may or may not exist, so :class:`BankUnavailable` is raised and the caller
  retries (op ids make that safe) or settles it with :meth:`BankClient.void`.

One client keeps a pool of keep-alive connections
(:class:`orchestrator.http_pool.ConnectionPool`: llhttp, and TLS for an
``https://`` bank) so concurrent transfers share them and never block the
event loop. Not aiohttp, nor httpx: a worker spends much of its CPU in its
HTTP clients, and a profile of one put aiohttp's per-request machinery at a
fifth of it for the two bank calls of a transfer; the pool costs about a
third of that. A connection is opened on first use, so a client can be built
outside a running event loop.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol, Self
from urllib.parse import quote, urlencode

import msgspec

from envsettings.tracing import traceparent_header
from orchestrator import connection_errors
from orchestrator.http_pool import ConnectionPool, Endpoint
from orchestrator.settings import Settings

EntryKind = Literal["debit", "credit", "reversal"]
#: The two banks a transfer moves money between, by their role in it.
BankName = Literal["source", "target"]

logger = logging.getLogger(__name__)

#: Which environment variable says where each bank is, for messages that name it.
BANK_URL_VARIABLE = {"source": "SOURCE_BANK_URL", "target": "TARGET_BANK_URL"}

#: 4xx statuses that say "not now" rather than "no": retried like a 5xx.
_TRANSIENT_4XX = frozenset({408, 425, 429})

#: Pooled connections per bank: one per transfer in flight up to this many
#: (more requests than that wait for a connection).
MAX_CONNECTIONS = 64

#: Characters a path keeps as they are; any other is percent-encoded.
_PATH_SAFE = "/%:@!$&'()*+,;=~"


class BankError(RuntimeError):
    """A bank answered a request in a way its API does not allow (a bug or a misconfiguration)."""


class BankUnavailable(BankError):
    """The outcome is unknown: no answer, a timeout or a 5xx. Safe to retry with the same op id."""


class BankUnreachable(BankUnavailable):
    """No connection could be made at all (refused, no route, unknown host)."""


@dataclass(frozen=True)
class BankAnswer:
    """One HTTP answer, read in full: status, body and the URL it came from."""

    status_code: int
    content: bytes
    url: str

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON, with msgspec (1.0 µs on a bank answer, json.loads 3.2); ValueError if not."""
        return msgspec.json.decode(self.content)


class BankObserver(Protocol):
    """Told of every entry and void request's answer (a worker's metrics)."""

    def answered(self, bank: str, kind: str, answer: str, seconds: float) -> None:
        """``kind``: debit, credit, reversal or void; ``answer``: applied, rejected,
        voided, or unknown (no definitive answer: :class:`BankUnavailable`)."""


@dataclass(frozen=True)
class EntryOutcome:
    """The definitive answer to ``POST /entries``: applied (with its entry) or rejected."""

    status: Literal["applied", "rejected"]
    entry: dict[str, Any] | None = None
    code: str | None = None
    message: str | None = None

    @property
    def applied(self) -> bool:
        return self.status == "applied"


@dataclass(frozen=True)
class CancelNote:
    """Who cancels an op id and why, sent with its void (:meth:`BankClient.void`).

    The bank takes each as printable text of 1 to 200 characters, not only
    spaces; anything else is a 400 (a :class:`BankError`) that voids nothing.
    """

    by: str
    reason: str


@dataclass(frozen=True)
class Cancellation:
    """A void's cancel note as the bank keeps it: who, why, and when.

    ``at`` is the time the bank wrote the void, ISO-8601 UTC (``2026-01-31T12:00:00.000000Z``).
    """

    by: str
    reason: str
    at: str


@dataclass(frozen=True)
class VoidOutcome:
    """The answer of the void fence: the op id is now voided for good, or it was applied.

    ``cancelled`` is the note of the op id's void when it carries one: the
    note sent now if this call voided it, the first void's otherwise (voids
    never change, so a note sent to an op id voided without one is not kept).
    """

    state: Literal["applied", "voided"]
    entry: dict[str, Any] | None = None
    cancelled: Cancellation | None = None


class BankClient:
    """One bank at ``base_url``; ``name`` (e.g. "source") appears in every error message.

    ``tls`` is the client context for an ``https://`` bank (required there):
    :meth:`orchestrator.settings.Settings.tls_for` gives the configured one.
    With ``log_tls_failures`` a TLS failure is logged, once until TLS works again.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 5.0,
        name: str = "bank",
        tls: ssl.SSLContext | None = None,
        log_tls_failures: bool = False,
        observer: BankObserver | None = None,
    ) -> None:
        endpoint = Endpoint.parse(base_url)
        self.endpoint = endpoint
        self.base_url = endpoint.url
        self.name = name
        self._prefix = endpoint.prefix
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        #: What every request's head says after its request line.
        self._common_head = f"Host: {endpoint.netloc}\r\n{auth}".encode("latin-1")
        self._timeout = timeout
        self._pool = ConnectionPool(endpoint, tls=tls, max_idle=MAX_CONNECTIONS)
        self._slots: asyncio.Semaphore | None = None
        self._log_tls_failures = log_tls_failures
        #: The TLS failure last logged, until a request gets through again.
        self._tls_failure: str | None = None
        self._observer = observer

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._pool.close()

    # -- ledger writes --------------------------------------------------------

    async def post_entry(
        self, op_id: str, account_id: str, amount: int, kind: EntryKind
    ) -> EntryOutcome:
        """Apply an entry once per ``op_id``; a replay of the same request returns the same entry."""
        body = {"op_id": op_id, "account_id": account_id, "amount": amount, "kind": kind}
        started = time.perf_counter()
        try:
            response = await self._request("POST", "/entries", json=body)
        except BankUnavailable:
            self._observe(kind, "unknown", started)
            raise
        if response.status_code in (200, 201):
            outcome = EntryOutcome("applied", entry=_json(response))
        else:
            code, message = _error(response)
            outcome = EntryOutcome("rejected", code=code, message=message)
        self._observe(kind, outcome.status, started)
        return outcome

    async def void(self, op_id: str, *, cancel: CancelNote | None = None) -> VoidOutcome:
        """Fence ``op_id``: afterwards it is either applied (and says so) or can never be.

        ``cancel`` (an operator cancelling a transfer) is kept with the void if
        this call writes it; without it the request has no body, the saga's fence.
        """
        body = None if cancel is None else {"cancel": {"by": cancel.by, "reason": cancel.reason}}
        started = time.perf_counter()
        try:
            response = await self._request("POST", f"/entries/{op_id}/void", json=body)
            self._expect(response, 200)
        except BankError:
            self._observe("void", "unknown", started)
            raise
        outcome = _void_outcome(_json(response))
        self._observe("void", outcome.state, started)
        return outcome

    def _observe(self, kind: str, answer: str, started: float) -> None:
        if self._observer is not None:
            self._observer.answered(self.name, kind, answer, time.perf_counter() - started)

    # -- reads ------------------------------------------------------------------

    async def get_entry(self, op_id: str) -> dict[str, Any] | None:
        """``{"op_id", "state": "applied", "entry"}`` or ``{"op_id", "state": "voided"}``; None if unknown."""
        response = await self._request("GET", f"/entries/{op_id}")
        if response.status_code == 404:
            return None
        self._expect(response, 200)
        return _json(response)

    async def get_account(self, account_id: str) -> dict[str, Any] | None:
        response = await self._request("GET", f"/accounts/{account_id}")
        if response.status_code == 404:
            return None
        self._expect(response, 200)
        return _json(response)

    async def put_account(
        self, account_id: str, status: str, opening_balance: int | None = None
    ) -> dict[str, Any]:
        """Create or update an account; ``opening_balance`` only counts on create."""
        body: dict[str, Any] = {"status": status}
        if opening_balance is not None:
            body["opening_balance"] = opening_balance
        response = await self._request("PUT", f"/accounts/{account_id}", json=body)
        self._expect(response, 200, 201)
        return _json(response)

    async def list_accounts(self) -> list[dict[str, Any]]:
        response = await self._request("GET", "/accounts")
        self._expect(response, 200)
        accounts: list[dict[str, Any]] = _json(response)["accounts"]
        return accounts

    async def iter_entries(
        self, account_id: str | None = None, *, page_size: int = 500, after: int | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Every entry in ledger order (those with ``seq`` above ``after``, when given),
        following ``next_after`` from page to page."""
        while True:
            params: dict[str, Any] = {"limit": page_size}
            if account_id is not None:
                params["account_id"] = account_id
            if after is not None:
                params["after"] = after
            response = await self._request("GET", "/entries", params=params)
            self._expect(response, 200)
            page = _json(response)
            for entry in page["entries"]:
                yield entry
            after = page.get("next_after")
            if after is None or not page["entries"]:
                return

    async def metrics_text(self) -> str:
        """The bank's ``GET /metrics``: Prometheus's text format (bank/README.md, "Metrics")."""
        response = await self._request("GET", "/metrics")
        self._expect(response, 200)
        return response.text

    async def health(self) -> dict[str, Any]:
        response = await self._request("GET", "/health")
        self._expect(response, 200)
        return _json(response)

    # -- fault injection (banks started with BANK_FAULTS=1) --------------------

    async def set_faults(self, rules: list[dict[str, Any]]) -> None:
        """Replace the bank's fault rules (bank/README.md, "Fault injection")."""
        response = await self._request("PUT", "/admin/faults", json={"faults": rules})
        self._expect(response, 200, 204)

    async def clear_faults(self) -> None:
        """Drop every rule and release every held request."""
        response = await self._request("DELETE", "/admin/faults")
        self._expect(response, 200, 204)

    async def holds(self) -> list[dict[str, Any]]:
        """Requests the bank is holding now: ``{"op_id", "kind", "stage", "since"}``."""
        response = await self._request("GET", "/admin/holds")
        self._expect(response, 200)
        held: list[dict[str, Any]] = _json(response)["held"]
        return held

    async def release(self, op_id: str | None = None) -> int:
        """Let held requests go on (one op id, or all); returns how many were released."""
        response = await self._request("POST", "/admin/holds/release", json={"op_id": op_id})
        self._expect(response, 200)
        released: int = _json(response)["released"]
        return released

    # -- plumbing ---------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> BankAnswer:
        url = f"{self.base_url}{path}"
        target = quote(self._prefix + path, safe=_PATH_SAFE)
        if params:
            target += "?" + urlencode(params)
        head = b"%s %s HTTP/1.1\r\n%s" % (
            method.encode("latin-1"),
            target.encode("latin-1"),
            self._common_head,
        )
        body = b"" if json is None else msgspec.json.encode(json)
        if method not in ("GET", "HEAD"):
            # Every write says JSON, bodiless or not: the bank refuses any other (a web page's).
            head += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        head += traceparent_header() + b"\r\n"
        if self._slots is None:
            self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        try:
            async with self._slots, asyncio.timeout(self._timeout):
                try:
                    conn = await self._pool.take()
                except OSError as exc:
                    if self._log_tls_failures:
                        self._note_tls_failure(exc)
                    raise BankUnreachable(
                        f"{self.name} bank at {url} is unreachable: {exc!r}"
                    ) from exc
                status, content = await self._pool.exchange(conn, head, body)
        except TimeoutError as exc:
            raise BankUnavailable(
                f"{self.name} bank at {url} did not answer in time ({type(exc).__name__})"
            ) from exc
        except OSError as exc:
            raise BankUnavailable(f"{self.name} bank at {url} is unreachable: {exc!r}") from exc
        if self._tls_failure is not None:
            logger.info("%s bank: TLS works again", self.name)
            self._tls_failure = None
        answer = BankAnswer(status, content, url)
        if answer.status_code >= 500 or answer.status_code in _TRANSIENT_4XX:
            code, message = _error(answer)
            raise BankUnavailable(
                f"{self.name} bank at {url} answered {answer.status_code} {code}: {message}"
            )
        return answer

    def _note_tls_failure(self, exc: OSError) -> None:
        """Log a TLS failure once with its cause, not on every retry of every step.

        To the saga it is an unknown outcome like any failed connection; to
        whoever runs the worker it is a mistake to fix (a CA not trusted, a
        certificate expired), which a line per retry would bury.
        """
        variable = BANK_URL_VARIABLE.get(self.name, "")
        why = connection_errors.explain(exc, self.endpoint, variable)
        if why is not None and why != self._tls_failure:
            logger.error("%s bank: %s (retried like any failed connection)", self.name, why)
            self._tls_failure = why

    def _expect(self, response: BankAnswer, *statuses: int) -> None:
        if response.status_code not in statuses:
            code, message = _error(response)
            raise BankError(
                f"{self.name} bank at {response.url} answered "
                f"{response.status_code} {code}: {message}"
            )


def bank_clients(
    settings: Settings, *, log_tls_failures: bool = False, observer: BankObserver | None = None
) -> tuple[BankClient, BankClient]:
    """The source and the target bank's clients as ``settings`` describe them.

    Named "source" and "target", the names every error message carries. The
    caller owns them: use them with ``async with`` or close them with ``aclose``.
    ``log_tls_failures`` is for a worker, whose log is where a TLS mistake is
    read; a command says it in its own one-line refusal instead. ``observer``
    hears every entry and void request's answer (a worker's metrics).
    """
    return (
        bank_client(settings, "source", log_tls_failures=log_tls_failures, observer=observer),
        bank_client(settings, "target", log_tls_failures=log_tls_failures, observer=observer),
    )


def bank_client(
    settings: Settings,
    name: BankName,
    *,
    log_tls_failures: bool = False,
    observer: BankObserver | None = None,
) -> BankClient:
    """The client of one bank as ``settings`` describe it, named ``name``."""
    url = settings.source_bank_url if name == "source" else settings.target_bank_url
    return BankClient(
        url,
        token=settings.bank_token,
        timeout=settings.bank_timeout,
        name=name,
        tls=settings.tls_for(url),
        log_tls_failures=log_tls_failures,
        observer=observer,
    )


def _json(response: BankAnswer) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise BankError(
            f"bank at {response.url} answered {response.status_code} without a JSON object body"
        )
    return body


def _error(response: BankAnswer) -> tuple[str, str]:
    """``(code, message)`` of a Bank API error body, tolerating bodies that are not one."""
    try:
        body = response.json()
        error = body["error"]
        return str(error.get("code", "error")), str(error.get("message", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"http_{response.status_code}", response.text[:200]


def _void_outcome(body: dict[str, Any]) -> VoidOutcome:
    state = body.get("state")
    if state == "voided":
        return VoidOutcome("voided", cancelled=_cancellation(body.get("cancelled")))
    if state == "applied":
        return VoidOutcome("applied", entry=body.get("entry"))
    raise BankError(f"void answered an unknown state {state!r}")


def _cancellation(value: object) -> Cancellation | None:
    """A void answer's ``cancelled`` (absent: None); BankError if it is not ``{by, reason, at}``."""
    if value is None:
        return None
    if isinstance(value, dict):
        by, reason, at = (value.get(name) for name in ("by", "reason", "at"))
        if isinstance(by, str) and isinstance(reason, str) and isinstance(at, str):
            return Cancellation(by, reason, at)
    raise BankError(f"void answered a malformed cancelled {value!r:.200}")
