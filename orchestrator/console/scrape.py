"""Reads one bank's ``GET /metrics`` for the console's charts, as the bank client reaches the bank.

:class:`orchestrator.bank_client.BankClient` speaks the Bank API's JSON;
``/metrics`` answers Prometheus's text, so the console asks for it itself,
on a keep-alive connection of its own (:mod:`orchestrator.http_pool`) with
what every bank call carries: the bank's ``Host``, its bearer token
(``BANK_TOKEN``) and, for an ``https://`` bank, the same TLS context.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import quote

from orchestrator.http_pool import ConnectionPool, Endpoint


class ScrapeFailed(RuntimeError):
    """No ``/metrics`` from this bank now: why, in words for the page."""


class MetricsScraper:
    """``GET /metrics`` of the bank at ``base_url``; one request at a time (one poll)."""

    def __init__(
        self,
        base_url: str,
        *,
        name: str,
        token: str | None,
        tls: ssl.SSLContext | None,
        timeout: float,
    ) -> None:
        endpoint = Endpoint.parse(base_url)
        self.name = name
        self.url = f"{endpoint.url}/metrics"
        self.timeout = timeout
        self._pool = ConnectionPool(endpoint, tls=tls, max_idle=1)
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        target = quote(f"{endpoint.prefix}/metrics", safe="/%:@!$&'()*+,;=~")
        self._head = (
            f"GET {target} HTTP/1.1\r\nHost: {endpoint.netloc}\r\n{auth}Accept: text/plain\r\n\r\n"
        ).encode("latin-1")

    async def text(self) -> str:
        """The metrics text; :class:`ScrapeFailed` if the bank does not give it now."""
        try:
            async with asyncio.timeout(self.timeout):
                conn = await self._pool.take()
                status, body = await self._pool.exchange(conn, self._head, b"")
        except TimeoutError:
            raise ScrapeFailed(
                f"{self.name} bank at {self.url} did not answer within {self.timeout:g}s"
            ) from None
        except OSError as exc:  # refused, reset, TLS refused: ssl.SSLError is an OSError
            raise ScrapeFailed(f"{self.name} bank at {self.url} is unreachable: {exc}") from None
        if status != 200:
            snippet = body[:200].decode("utf-8", errors="replace")
            raise ScrapeFailed(f"{self.name} bank at {self.url} answered {status}: {snippet}")
        return body.decode("utf-8", errors="replace")

    def close(self) -> None:
        self._pool.close()
