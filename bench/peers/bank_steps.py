"""The one bank call every peer's saga steps make: ``POST /entries``.

Three outcomes, as DESIGN.md defines a step: applied, rejected (a definitive
4xx answer, returned as a value so it is checkpointed and never retried), or
unknown (connection error, timeout, 5xx), raised so the durable runtime
retries it. Every peer uses this same function, so differences in the
figures come from the runtimes, not from the bank client.
"""

from __future__ import annotations

from typing import TypedDict

import httpx


class StepResult(TypedDict):
    """A checkpointable step outcome: plain JSON for every runtime's serializer."""

    outcome: str
    """``applied`` or ``rejected``."""
    code: str | None
    """The bank's error code when rejected."""


class OutcomeUnknown(RuntimeError):
    """The bank's answer was not definitive; the step must be retried."""


def client(token: str | None, concurrency: int = 64) -> httpx.AsyncClient:
    """A pooled client: connections are reused across steps, as any real peer would."""
    return httpx.AsyncClient(
        headers={"Authorization": f"Bearer {token}"} if token else {},
        timeout=httpx.Timeout(10.0),
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
    )


async def post_entry(
    http: httpx.AsyncClient, bank_url: str, op_id: str, account_id: str, amount: int, kind: str
) -> StepResult:
    try:
        response = await http.post(
            f"{bank_url}/entries",
            json={"op_id": op_id, "account_id": account_id, "amount": amount, "kind": kind},
        )
    except httpx.HTTPError as exc:
        raise OutcomeUnknown(f"{kind} {op_id}: {type(exc).__name__}: {exc}") from exc
    if response.status_code in (200, 201):
        return {"outcome": "applied", "code": None}
    if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
        try:
            code = str(response.json()["error"]["code"])
        except (ValueError, KeyError, TypeError):
            code = f"http_{response.status_code}"
        return {"outcome": "rejected", "code": code}
    raise OutcomeUnknown(f"{kind} {op_id}: HTTP {response.status_code}")
