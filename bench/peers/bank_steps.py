"""The one bank call every peer's saga steps make: ``POST /entries``.

Three outcomes, as DESIGN.md defines a step: applied, rejected (a definitive
4xx answer, returned as a value so it is checkpointed and never retried), or
unknown (connection error, timeout, 5xx), raised so the durable runtime
retries it. Every peer uses this same function, so differences in the
figures come from the runtimes, not from the bank client.

The HTTP client is aiohttp by default, the library crossbank's own bank client
(``orchestrator/bank_client.py``) uses; ``BENCH_HTTP_CLIENT=httpx`` switches
every peer to httpx. On this kind of machine the client's CPU cost per
request differs about fivefold between the two, so the peers must use the
same one as crossbank for the comparison to be about the runtimes.
"""

from __future__ import annotations

import os
from typing import Any, Protocol, TypedDict

import httpx

TIMEOUT_SECONDS = 10.0
DEFAULT_CLIENT = "aiohttp"
"""The same library as crossbank's bank client."""


class StepResult(TypedDict):
    """A checkpointable step outcome: plain JSON for every runtime's serializer."""

    outcome: str
    """``applied`` or ``rejected``."""
    code: str | None
    """The bank's error code when rejected."""


class OutcomeUnknown(RuntimeError):
    """The bank's answer was not definitive; the step must be retried."""


class BankHttp(Protocol):
    """POST JSON, get (status, parsed body or None); transport errors raise OutcomeUnknown."""

    async def post_json(self, url: str, body: dict[str, Any]) -> tuple[int, Any]: ...

    async def aclose(self) -> None: ...

    async def __aenter__(self) -> BankHttp: ...

    async def __aexit__(self, *exc: object) -> None: ...


class HttpxBank:
    """A pooled httpx client: connections are reused across steps."""

    def __init__(self, headers: dict[str, str], pool: int) -> None:
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(TIMEOUT_SECONDS),
            limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
        )

    async def post_json(self, url: str, body: dict[str, Any]) -> tuple[int, Any]:
        try:
            response = await self._client.post(url, json=body)
        except httpx.HTTPError as exc:
            raise OutcomeUnknown(f"{url}: {type(exc).__name__}: {exc}") from exc
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, None

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> HttpxBank:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AiohttpBank:
    """A pooled aiohttp session; created lazily so it binds to the running loop."""

    def __init__(self, headers: dict[str, str], pool: int) -> None:
        self._headers = headers
        self._pool = pool
        self._session: Any = None

    async def post_json(self, url: str, body: dict[str, Any]) -> tuple[int, Any]:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS),
                connector=aiohttp.TCPConnector(limit=self._pool),
            )
        try:
            async with self._session.post(url, json=body) as response:
                try:
                    return int(response.status), await response.json(content_type=None)
                except ValueError:
                    return int(response.status), None
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise OutcomeUnknown(f"{url}: {type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> AiohttpBank:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def client(token: str | None, pool: int = 64) -> BankHttp:
    """The bank client every peer uses; ``BENCH_HTTP_CLIENT`` picks httpx or aiohttp."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    kind = client_name()
    if kind == "httpx":
        return HttpxBank(headers, pool)
    if kind == "aiohttp":
        return AiohttpBank(headers, pool)
    raise ValueError(f"BENCH_HTTP_CLIENT must be 'httpx' or 'aiohttp', got {kind!r}")


def client_name() -> str:
    return os.environ.get("BENCH_HTTP_CLIENT", DEFAULT_CLIENT)


async def post_entry(
    http: BankHttp, bank_url: str, op_id: str, account_id: str, amount: int, kind: str
) -> StepResult:
    status, body = await http.post_json(
        f"{bank_url}/entries",
        {"op_id": op_id, "account_id": account_id, "amount": amount, "kind": kind},
    )
    if status in (200, 201):
        return {"outcome": "applied", "code": None}
    if 400 <= status < 500 and status not in (408, 429):
        try:
            code = str(body["error"]["code"])
        except (KeyError, TypeError):
            code = f"http_{status}"
        return {"outcome": "rejected", "code": code}
    raise OutcomeUnknown(f"{kind} {op_id}: HTTP {status}")
