"""The one bank call every peer's saga steps make: ``POST /entries``.

Three outcomes, as the saga defines a step (docs/design.md): applied, rejected (a definitive
4xx answer, returned as a value so it is checkpointed and never retried), or
unknown (connection error, timeout, 5xx), raised so the durable runtime
retries it. Every peer uses this same function, so differences in the
figures come from the runtimes, not from the bank client.

The HTTP client is the one crossbank's own bank client
(``orchestrator/bank_client.py``) uses: keep-alive connections parsed by llhttp
(``orchestrator.http_pool.ConnectionPool``). On this kind of machine the
client's CPU cost per request differs several times over between HTTP
libraries, so the peers must use the same one as crossbank for the comparison
to be about the runtimes.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict
from urllib.parse import urlsplit

import msgspec

from orchestrator.http_pool import ConnectionPool, Endpoint

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
    """Pooled keep-alive connections per bank, opened on first use.

    ``post_json`` answers (status, parsed body or None); a transport error or a
    timeout raises :class:`OutcomeUnknown`. At most ``pool`` requests at once.
    """

    def __init__(self, headers: dict[str, str], pool: int) -> None:
        self._head_lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self._size = pool
        self._pools: dict[str, ConnectionPool] = {}
        self._slots: asyncio.Semaphore | None = None

    async def post_json(self, url: str, body: dict[str, Any]) -> tuple[int, Any]:
        parts = urlsplit(url)
        pool = self._pools.get(parts.netloc)
        if pool is None:
            pool = ConnectionPool(Endpoint.parse(url), max_idle=self._size)
            self._pools[parts.netloc] = pool
        payload = msgspec.json.encode(body)
        head = (
            f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n{self._head_lines}"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        ).encode("latin-1")
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._size)
        try:
            async with self._slots, asyncio.timeout(TIMEOUT_SECONDS):
                status, content = await pool.exchange(await pool.take(), head, payload)
        except OSError as exc:  # a refused or broken connection, a timeout
            raise OutcomeUnknown(f"{url}: {type(exc).__name__}: {exc}") from exc
        try:
            return status, msgspec.json.decode(content)
        except msgspec.DecodeError:
            return status, None

    async def aclose(self) -> None:
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.close()

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
