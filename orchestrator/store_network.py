"""The request channel to the promise store: keep-alive HTTP/1.1, lean on CPU.

This plugs into the SDK's ``Network`` seam (``Resonate(network=...)``) in
place of its aiohttp-based ``HttpConnection``, and speaks the same protocol:
one JSON envelope ``POST /``'d, one JSON envelope back, whatever the status.

Why not the SDK's: a transfer costs its worker six store requests and its
caller two, all small, and the SDK's aiohttp connection spends over a third
of a loaded worker's CPU on them. Requests go over
:class:`orchestrator.http_pool.ConnectionPool` instead (keep-alive HTTP/1.1,
llhttp, TLS for an ``https://`` store), at about a third of that cost.

Failure handling matches the SDK's connection on purpose, because the SDK
relies on it: a request that cannot be delivered or answered is sent again
with backoff until it is, so a worker rides out a store restart; any HTTP
status is a normal answer; after :meth:`stop` every send fails with
``ConnectorError``. The backoff is shorter than the SDK's default ladder
(1 s doubling to 60 s): a store restart here takes a second or two, and a
worker that waits a minute for it holds every in-flight transfer that long.
Capped at a second, a store that is back is found within a second, at the
cost of one failed connect per second per waiting request while it is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl

from resonate_base.error import ConnectorError

from orchestrator.http_pool import ConnectionPool, Endpoint

logger = logging.getLogger(__name__)

#: Resend ladder after a failed request: first retry after this many seconds...
RETRY_INITIAL_SECONDS = 0.05
#: ...doubling up to this cap, retrying for as long as the connection runs.
RETRY_MAX_SECONDS = 1.0
#: A request unanswered this long is treated as lost (and sent again); the default of
#: ``STORE_REQUEST_TIMEOUT``. The store answers once its commit is synced, well under
#: a second; a connection that hangs (a blackholed link) must not hold the SDK's
#: refresh loop, which checks its handles one request at a time, for minutes.
DEFAULT_REQUEST_TIMEOUT_SECONDS = 30.0
#: A request the store does not answer is logged as a warning on its first resend and
#: every this many resends after (about every 10 s at the 1 s cap), at debug otherwise.
WARN_EVERY_ATTEMPTS = 10


def retry_delay(attempt: int) -> float:
    """Seconds to wait before resend number ``attempt + 1``."""
    return min(RETRY_INITIAL_SECONDS * 2.0**attempt, RETRY_MAX_SECONDS)


class StoreNetwork:
    """``Network`` for a Resonate HTTP server at ``url``: ``POST /`` over pooled connections.

    ``token`` adds ``Authorization: Bearer <token>`` to every request; a request
    unanswered after ``request_timeout`` seconds is sent again. ``tls`` is the
    client context for an ``https://`` store (required there). The
    ``headers`` the SDK passes to :meth:`send` (the request's routing origin)
    are for connectors that shard by it; the store reads the origin from the
    envelope itself, so they are not sent.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT_SECONDS,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        endpoint = Endpoint.parse(url)
        self.url = endpoint.url
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        self._head_prefix = (
            f"POST {endpoint.prefix}/ HTTP/1.1\r\nHost: {endpoint.netloc}\r\n{auth}"
            "Content-Type: application/json\r\nContent-Length: "
        ).encode()
        self._pool = ConnectionPool(endpoint, tls=tls)
        self._request_timeout = request_timeout
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        self._stopped.clear()

    async def stop(self) -> None:
        self._stopped.set()
        self._pool.close()

    def reconnect(self) -> None:
        """Drop every connection, in use or idle: they went where the push stream went.

        Called when the push channel found its stream silent: the request
        connections to the same store most likely hang the same way, and a
        request on one would wait out ``request_timeout``. Requests in flight
        on them are sent again on fresh connections, as after any lost answer.
        """
        self._pool.close()

    async def send(self, req: str, headers: dict[str, str] | None = None) -> str:
        """POST ``req``; return the response body. Retries until answered or stopped."""
        body = req.encode()
        head = self._head_prefix + b"%d\r\n\r\n" % len(body)
        attempt = waits = 0
        while True:
            if self._stopped.is_set():
                raise ConnectorError(RuntimeError("the store connection has been stopped"))
            reused = self._pool.has_idle
            try:
                return (await self._exchange(head, body)).decode()
            except (OSError, TimeoutError) as exc:
                if self._stopped.is_set():
                    raise ConnectorError(exc) from exc
                if reused and attempt == 0:
                    # An idle keep-alive connection the server had already closed:
                    # not a store outage, so try a fresh connection at once.
                    attempt = 1
                    continue
                delay = retry_delay(attempt)
                # Every waiting request retries; one line each per ~10 s of outage, not per try.
                log = logger.warning if waits % WARN_EVERY_ATTEMPTS == 0 else logger.debug
                log("store request failed, resending in %.2fs: %s", delay, exc)
                waits += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped.wait(), delay)
                attempt += 1

    async def _exchange(self, head: bytes, body: bytes) -> bytes:
        conn = await self._pool.take()
        async with asyncio.timeout(self._request_timeout):
            _, response = await self._pool.exchange(conn, head, body)
        return response
