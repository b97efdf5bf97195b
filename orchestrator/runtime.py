"""Build the Resonate instance a process needs: a worker, a send-only client, or embedded.

- Served store (``RESONATE_URL`` set):
  - ``role="worker"`` joins ``settings.group`` with a push channel
    (:mod:`orchestrator.push`) that stays open for as long as it runs, keeps
    its health file (``WORKER_HEALTH_FILE``, when set), registers
    the saga and executes transfers the store dispatches to the group;
  - ``role="client"`` creates promises and waits for their results, and never
    joins the workers' group, so killing a worker really takes a saga away
    from where it ran. It listens on a push channel of its own, in a group of
    its own (``{group}-client-{random}``) that no work is ever dispatched to:
    the store pushes each result the moment it settles, instead of the client
    finding it up to a polling interval later (a quarter of a second was most
    of a transfer's latency at concurrency 1).
- Resonate on Postgres (``RESONATE_PG_DSN`` set): the same two roles, with
  :class:`resonate_pg.PostgresConnection` as both the request channel and the
  push source (``resonate.sql``'s stored procedures are the server). Each
  connection also advances the database's timers (``process_timeouts()``) on
  every wake, which is what brings a dead worker's transfers back one lease
  after it died; that needs a role allowed to call it (orchestrator/README.md,
  "Resonate on Postgres"). Once the database answers again after a failed
  exchange (a restart, a failover), the process asks about every result it
  waits for (:func:`ask_again`).
- Embedded store (neither): one process runs the saga and waits
  for it, over the promise store's file at ``settings.store_path``, whatever
  the role.

Call :func:`open_resonate` inside a running event loop and pair it with
:func:`close_resonate`, or use :func:`resonate_session`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
import weakref
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Literal

from resonate.error import ResonateError, ServerError
from resonate.heartbeat import AsyncHeartbeat
from resonate.resonate import DEFAULT_SUBSCRIPTION_REFRESH_SECS, Resonate

from envsettings.tracing import start_tracing
from orchestrator.bank_client import bank_clients
from orchestrator.health_file import HealthFile
from orchestrator.metrics import WorkerMetrics
from orchestrator.push import ChannelWatcher, EveryChannel, PushChannel, PushLimits
from orchestrator.repeated_warnings import limit_repeated_warnings
from orchestrator.saga import SAGA_NAME, SagaDeps
from orchestrator.saga_versions import SagaBody, carried, group_for
from orchestrator.settings import Settings
from orchestrator.store_network import StoreNetwork

Role = Literal["worker", "client"]

#: How often a client re-registers for each still-pending transfer. Results are
#: pushed; this only covers a push lost with a dropped connection (the store
#: keeps listeners across its restarts). Each round is one store write per
#: pending transfer: at 1 s it cost a third of the throughput at concurrency 32.
CLIENT_POLL_SECONDS = 10.0

#: Bank clients opened for each Resonate instance, closed by close_resonate.
_opened: weakref.WeakKeyDictionary[Resonate, SagaDeps] = weakref.WeakKeyDictionary()


def open_resonate(
    settings: Settings, *, role: Role, metrics: WorkerMetrics | None = None
) -> Resonate:
    """A started Resonate for ``role`` (see the module docstring); needs a running loop.

    ``metrics`` (a worker's) counts what its sagas do and whether its push channel is open.
    A worker's carries the saga versions of ``settings``; on a served store or
    Postgres, where each version has a group of its own, a worker that
    carries more than one needs :func:`open_workers`.
    """
    if role not in ("worker", "client"):
        raise ValueError(f"role must be 'worker' or 'client', got {role!r}")
    bodies = carried(settings)  # a bad SAGA_VERSIONS is refused before anything opens
    if role == "worker" and settings.served and len(bodies) > 1:
        raise ValueError("a worker that carries several saga versions opens one per version")
    version = next(iter(bodies))
    return _open(settings, role, group_for(settings.group, version), bodies, metrics)


def open_workers(settings: Settings, metrics: WorkerMetrics | None = None) -> list[Resonate]:
    """A worker's Resonates: one per saga version it carries (one in all with the embedded store).

    On a served store or Postgres each version's transfers go to a group of
    their own (:func:`orchestrator.saga_versions.group_for`), and a Resonate
    joins one group; the embedded store runs whatever its one process starts.
    """
    metrics = metrics or WorkerMetrics(attention_after=settings.attention_after)
    bodies = carried(settings)
    if not settings.served:
        return [_open(settings, "worker", settings.group, bodies, metrics)]
    every = EveryChannel(channel_watchers(settings, metrics), len(bodies))
    return [
        _open(
            settings,
            "worker",
            group_for(settings.group, version),
            {version: body},
            metrics,
            every.channel(index),
        )
        for index, (version, body) in enumerate(bodies.items())
    ]


def channel_watchers(settings: Settings, metrics: WorkerMetrics) -> list[ChannelWatcher]:
    """Who hears whether a worker's push channels are open: its metrics, and its health file."""
    watchers: list[ChannelWatcher] = [metrics]
    if settings.worker_health_file is not None:
        watchers.append(
            HealthFile(settings.worker_health_file, fresh_for=settings.push_idle_timeout)
        )
    return watchers


def _open(
    settings: Settings,
    role: Role,
    group: str,
    bodies: dict[int, SagaBody],
    metrics: WorkerMetrics | None,
    watcher: ChannelWatcher | None = None,
) -> Resonate:
    """One started Resonate in ``group`` (a worker's) that runs ``bodies``, by version;
    a served worker's push channel reports to ``watcher``."""
    metrics = metrics or WorkerMetrics(attention_after=settings.attention_after)
    start_tracing(f"crossbank-{role}")  # when OTEL_* asks for it: envsettings.tracing
    ttl = timedelta(seconds=settings.lease_ttl)
    if settings.resonate_pg_dsn is not None:
        group = group if role == "worker" else client_group(settings)
        limit_repeated_warnings(settings.pg_warn_every)
        refresh_secs = (
            CLIENT_POLL_SECONDS if role == "client" else DEFAULT_SUBSCRIPTION_REFRESH_SECS
        )
        resonate = _on_postgres(
            settings.resonate_pg_dsn, group, ttl, settings.store_request_timeout, refresh_secs
        )
        if role == "client":
            return resonate
    elif settings.resonate_url is None:
        from promise_store.embedded import EmbeddedStore

        # The store advertises the same pid the SDK leases tasks under.
        pid = uuid.uuid4().hex
        store = EmbeddedStore(settings.store_path, pid=pid, group=settings.group)
        resonate = Resonate(network=store, pid=pid, group=settings.group, ttl=ttl)
        first_beat_after_an_interval(resonate)
    elif role == "worker":
        if watcher is None:
            watcher = EveryChannel(channel_watchers(settings, metrics), 1).channel(0)
        resonate = _served(settings, group, ttl, watchers=[watcher])
        first_beat_after_an_interval(resonate)
    else:
        return _served(settings, client_group(settings), ttl, refresh_secs=CLIENT_POLL_SECONDS)
    deps = saga_deps(settings, metrics)
    for version, body in bodies.items():
        resonate.register(body, name=SAGA_NAME, version=version)
    resonate.with_dependency(deps)
    _opened[resonate] = deps
    return resonate


class FirstBeatAfterAnInterval(AsyncHeartbeat):
    """The SDK's heartbeat, but its loop waits one interval before its first beat.

    The SDK starts the loop when a task is acquired and beats at once; the
    acquire has just set that lease, so the beat renews nothing. At one
    transfer in flight the loop starts and stops with every transfer: that
    beat was one store write (journaled and synced) in every 9.4 a transfer
    made. Waiting one interval (half the lease, the SDK's own) still renews
    every lease before it runs out.
    """

    def _ensure_loop_running(self) -> None:
        if self._handle is None:
            self._handle = asyncio.create_task(self._after_an_interval())

    async def _after_an_interval(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self._sleeper(self.interval_ms / 1000)
            await self._run()


def first_beat_after_an_interval(resonate: Resonate) -> None:
    """Make ``resonate``'s heartbeat a :class:`FirstBeatAfterAnInterval` (if it is the SDK's)."""
    heartbeat = getattr(resonate, "_heartbeat", None)
    if type(heartbeat) is AsyncHeartbeat:
        heartbeat.__class__ = FirstBeatAfterAnInterval


def _served(
    settings: Settings,
    group: str,
    ttl: timedelta,
    *,
    watchers: Sequence[ChannelWatcher] = (),
    refresh_secs: float = DEFAULT_SUBSCRIPTION_REFRESH_SECS,
) -> Resonate:
    """A Resonate on the served store: requests over :class:`StoreNetwork`, pushes
    over :class:`PushChannel`.

    Both reconnect on a short ladder (see :mod:`orchestrator.store_network`),
    so a restarted store has its workers back within a second of answering.
    """
    assert settings.resonate_url is not None
    url, token = settings.resonate_url, settings.resonate_token
    tls = settings.tls_for(url)
    pid = uuid.uuid4().hex
    network = StoreNetwork(
        url, token=token, request_timeout=settings.store_request_timeout, tls=tls
    )
    resonate: Resonate | None = None

    async def catch_up() -> None:
        """The push stream was lost and is back: so is the path to the store."""
        network.reconnect()
        if resonate is not None:
            await ask_again(resonate)

    push = PushChannel(
        url,
        pid=pid,
        group=group,
        token=token,
        tls=tls,
        limits=PushLimits(settings.push_idle_timeout, settings.push_max_lifetime),
        watchers=watchers,
        on_reopened=catch_up,
    )
    resonate = Resonate(
        network=network,
        sources=[push],
        pid=pid,
        group=group,
        ttl=ttl,
        token=token,
        subscription_refresh_secs=refresh_secs,
    )
    return resonate


async def ask_again(resonate: Resonate) -> None:
    """Ask the store about every result this process still waits for, now.

    What the SDK's refresh loop does every ``subscription_refresh_secs``
    (10 s for a client), done at once when the push stream comes back after a
    loss: a result pushed while the stream was dead never arrived. Each
    question registers the listener again and settles the handle if the
    promise is done. The SDK is pinned; tests/promise_store/test_sdk_guard.py
    checks the internals this reads.
    """
    for promise_id, subscription in list(resonate._runtime.subs.items()):
        if subscription.settled():
            continue
        try:
            record = await resonate._observe(promise_id)
        except ServerError as exc:
            if exc.code == 404:
                resonate._settle_subscription_gone(promise_id, subscription, exc.message)
            continue
        except ResonateError:
            continue  # the refresh loop asks again later
        if record.state != "pending":
            resonate._settle_and_cleanup(promise_id, subscription, record.state, record.value)


def _on_postgres(
    dsn: str, group: str, ttl: timedelta, query_timeout: float, refresh_secs: float
) -> Resonate:
    """A Resonate whose server is the database at ``dsn`` (``resonate.sql`` applied).

    Every query gives up after ``query_timeout`` seconds (``STORE_REQUEST_TIMEOUT``,
    the same bound as a request to the served store). Once the database answers
    again after a failure, the process asks about every result it waits for.
    """
    from orchestrator.postgres_connection import BoundedSessions, RecoveringConnection

    pid = uuid.uuid4().hex
    sessions = BoundedSessions(dsn, query_timeout=query_timeout)
    connection = RecoveringConnection(sessions=sessions, pid=pid, group=group)
    resonate = Resonate(
        network=connection,
        sources=[connection],
        pid=pid,
        group=group,
        ttl=ttl,
        subscription_refresh_secs=refresh_secs,
    )
    connection.on_back = functools.partial(ask_again, resonate)
    return resonate


def client_group(settings: Settings) -> str:
    """A group only this client is in: results reach it, work is never sent to it."""
    return f"{settings.group}-client-{uuid.uuid4().hex[:12]}"


def saga_deps(settings: Settings, metrics: WorkerMetrics) -> SagaDeps:
    """One pooled client per bank, shared by every transfer this process runs."""
    source, target = bank_clients(settings, log_tls_failures=True, observer=metrics)
    return SagaDeps(source=source, target=target, settings=settings, metrics=metrics)


#: How long a send-only client lets the SDK's work in flight finish before it stops.
CLIENT_DRAIN_SECONDS = 1.0


async def close_resonate(resonate: Resonate) -> None:
    """Stop ``resonate`` (joining what it is running) and close the bank clients it used.

    A send-only client (no saga of its own to run) first lets the SDK's
    background work finish, for up to :data:`CLIENT_DRAIN_SECONDS`: the SDK
    stops its connections before it joins that work, so a start that returned
    at once (``crossbank transfer --no-wait``) had its listener's registration
    fail on a closed connection, with a warning about nothing. The SDK is
    pinned; tests/promise_store/test_sdk_guard.py checks what this reads.
    """
    if resonate not in _opened:
        in_flight = set(resonate._runtime.bg_tasks)
        if in_flight:
            await asyncio.wait(in_flight, timeout=CLIENT_DRAIN_SECONDS)
    try:
        await resonate.stop()
    finally:
        deps = _opened.pop(resonate, None)
        if deps is not None:
            await deps.source.aclose()
            await deps.target.aclose()


@contextlib.asynccontextmanager
async def resonate_session(settings: Settings, *, role: Role) -> AsyncIterator[Resonate]:
    """``async with resonate_session(settings, role="client") as resonate: ...``."""
    resonate = open_resonate(settings, role=role)
    try:
        yield resonate
    finally:
        await close_resonate(resonate)
