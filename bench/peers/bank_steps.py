"""The one bank call every peer's saga steps make: ``POST /entries``.

Three outcomes, as DESIGN.md defines a step: applied, rejected (a definitive
4xx answer, returned as a value so it is checkpointed and never retried), or
unknown (connection error, timeout, 5xx), raised so the durable runtime
retries it. Every peer uses this same function, so differences in the
figures come from the runtimes, not from the bank client.

The HTTP client is aiohttp, the library crossbank's own bank client
(``orchestrator/bank_client.py``) uses. On this kind of machine the client's
CPU cost per request differs about fivefold between HTTP libraries, so the
peers must use the same one as crossbank for the comparison to be about the
runtimes.
"""

from __future__ import annotations

from typing import Any, TypedDict

import aiohttp

TIMEOUT_SECONDS = 10.0


class StepResult(TypedDict):
    """A checkpointable step outcome: plain JSON for every runtime's serializer."""

    outcome: str
    """``applied`` or ``rejected``."""
    code: str | None
    """The bank's error code when rejected."""


class OutcomeUnknown(RuntimeError):
    """The bank's answer was not definitive; the step must be retried."""


class BankHttp:
    """A pooled aiohttp session; created lazily so it binds to the running loop.

    ``post_json`` answers (status, parsed body or None); a transport error or a
    timeout raises :class:`OutcomeUnknown`.
    """

    def __init__(self, headers: dict[str, str], pool: int) -> None:
        self._headers = headers
        self._pool = pool
        self._session: aiohttp.ClientSession | None = None

    async def post_json(self, url: str, body: dict[str, Any]) -> tuple[int, Any]:
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

    async def __aenter__(self) -> BankHttp:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def client(token: str | None, pool: int = 64) -> BankHttp:
    """The bank client every peer uses: one pool of ``pool`` keep-alive connections."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return BankHttp(headers, pool)


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
