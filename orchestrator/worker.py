"""The worker process: executes transfer sagas until told to stop.

``python -m orchestrator.worker`` (or ``crossbank worker``) reads
:class:`~orchestrator.settings.Settings` from the environment, joins the
workers' group of each saga version it carries (``SAGA_VERSIONS``, default
all; :mod:`orchestrator.saga_versions`) and runs whatever transfers the store
hands it, many at once on one event loop. Any number of workers may share a
group; when one dies, the store gives its transfers to another once their
leases (``LEASE_TTL``) expire.

With ``WORKER_STATUS_FILE`` set, the worker also keeps that file saying which
transfers it is running now (``{"pid", "running": [transfer ids], "at"}``,
rewritten within ``WORKER_STATUS_EVERY`` seconds of a change), so the console
can name the worker that runs a transfer, on either backend. With
``WORKER_STATUS_DIR`` instead, the file is ``<hostname>-<pid>.json`` in that
directory: one name per worker however many share it (compose's workers and
its console share one volume; the console reads it as
``CONSOLE_WORKER_STATUS_DIR``).

SIGTERM or SIGINT stops it gracefully: no new work is taken, running steps
get up to ``lease_ttl`` seconds to finish, and anything still unfinished is
left to the store to hand to another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from resonate.resonate import Resonate

from envsettings import SettingsError, number, optional_path
from envsettings.logs import configure_logging as configure_log_output
from orchestrator.health_file import replace_json
from orchestrator.metrics import WorkerMetrics, metrics_address
from orchestrator.runtime import close_resonate, open_workers
from orchestrator.saga_versions import carried, group_for
from orchestrator.settings import Settings
from orchestrator.tracing import StepLogContext

logger = logging.getLogger("orchestrator.worker")
#: A worker's log lines with ``LOG_FORMAT`` text (the default).
TEXT_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


#: Seconds between two looks at which transfers the worker runs (``WORKER_STATUS_EVERY``).
DEFAULT_STATUS_EVERY = 0.2
#: The status file is rewritten at least this often even when nothing changed, so
#: its ``at`` says the worker is alive.
STATUS_REFRESH_SECONDS = 5.0


def status_settings(env: Mapping[str, str] = os.environ) -> tuple[Path | None, float]:
    """The status file (``WORKER_STATUS_FILE``, or a name of its own in
    ``WORKER_STATUS_DIR``; neither: none kept) and ``WORKER_STATUS_EVERY`` (seconds)."""
    every = number(env, "WORKER_STATUS_EVERY", DEFAULT_STATUS_EVERY, low=0.05, high=60.0)
    file, directory = (
        optional_path(env, "WORKER_STATUS_FILE"),
        optional_path(env, "WORKER_STATUS_DIR"),
    )
    if file is not None and directory is not None:
        raise SettingsError(
            "WORKER_STATUS_DIR",
            "is set with WORKER_STATUS_FILE: set WORKER_STATUS_FILE or WORKER_STATUS_DIR, not both",
        )
    if directory is not None:
        file = directory / f"{socket.gethostname()}-{os.getpid()}.json"
    return file, every


def running_transfers(resonate: Resonate) -> list[str]:
    """The transfers whose tasks this worker holds a lease on now.

    The SDK keeps every task it runs in its heartbeat's ``active_tasks`` (a
    task's id is its root promise's id, which is the transfer id); the SDK is
    pinned, and tests/console check this against a running worker.
    """
    active = getattr(getattr(resonate, "_heartbeat", None), "active_tasks", None)
    if not isinstance(active, dict):
        return []
    return sorted(task_id for task_id in active if ":" not in task_id)


async def _keep_status(resonates: list[Resonate], path: Path, every: float) -> None:
    """Rewrite ``path`` whenever the running transfers change (and now and then anyway)."""
    last: list[str] | None = None
    written = 0.0
    while True:
        running = sorted(t for resonate in resonates for t in running_transfers(resonate))
        if running != last or time.monotonic() - written > STATUS_REFRESH_SECONDS:
            try:
                replace_json(path, {"pid": os.getpid(), "running": running, "at": time.time()})
            except OSError as exc:
                logger.warning("cannot write the status file %s: %s", path, exc)
            last, written = running, time.monotonic()
        await asyncio.sleep(every)


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set (or SIGTERM/SIGINT arrives when ``stop`` is None)."""
    stop = stop or _stop_on_signals()
    status_file, status_every = status_settings()
    if settings.resonate_pg_dsn is not None:
        await _check_database(settings.resonate_pg_dsn, settings.bank_timeout)
    metrics = WorkerMetrics(attention_after=settings.attention_after)
    resonates = open_workers(settings, metrics)
    metrics.running = lambda: sum(len(running_transfers(r)) for r in resonates)
    address = metrics_address()
    if address is not None:
        metrics.serve(address)
    keeper = (
        asyncio.create_task(_keep_status(resonates, status_file, status_every))
        if status_file is not None
        else None
    )
    where = settings.store_name()
    versions = list(carried(settings))
    logger.info(
        "worker %d ready: saga versions %s (groups %s) store=%s source=%s target=%s lease=%ss",
        os.getpid(),
        ", ".join(map(str, versions)),
        ", ".join(group_for(settings.group, v) for v in versions),
        where,
        settings.source_bank_url,
        settings.target_bank_url,
        settings.lease_ttl,
    )
    await stop.wait()
    logger.info("worker %d stopping", os.getpid())
    if keeper is not None:
        keeper.cancel()
    if status_file is not None:
        # Gone on purpose: no file left to show it as a dead worker. A killed
        # worker's file stays, and goes stale (the console shows it dead).
        with contextlib.suppress(OSError):
            status_file.unlink()
    try:
        await asyncio.wait_for(
            asyncio.gather(*(close_resonate(r) for r in resonates)), timeout=settings.lease_ttl
        )
    except TimeoutError:
        logger.warning(
            "worker %d: transfers still running after %ss; their leases will lapse "
            "and another worker will finish them",
            os.getpid(),
            settings.lease_ttl,
        )
    logger.info("worker %d stopped", os.getpid())


class DatabaseWithoutSchema(Exception):
    """``RESONATE_PG_DSN`` names a database without resonate.sql: nothing to wait for."""


async def _check_database(dsn: str, connect_timeout: float) -> None:
    """Say in one line why Postgres cannot serve this worker yet; refuse a database
    without the schema. An unreachable one is waited for: the connector retries it."""
    from orchestrator.postgres_check import (
        DatabaseNotReady,
        SchemaMissing,
        check_resonate_database,
    )

    try:
        await check_resonate_database(dsn, connect_timeout=connect_timeout)
    except SchemaMissing as exc:
        raise DatabaseWithoutSchema(str(exc)) from None
    except DatabaseNotReady as exc:
        logger.warning("%s; waiting for it", exc)


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    return stop


def configure_logging() -> None:
    """One line per transfer start and finish; the SDK's and aiohttp's chatter
    only at ``LOG_LEVEL=DEBUG``; the store connection's state always. Lines of
    text, or JSON objects with ``LOG_FORMAT=json`` (:mod:`envsettings.logs`);
    a bad ``LOG_FORMAT`` raises :class:`~envsettings.SettingsError`."""
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    configure_log_output(level, TEXT_LOG_FORMAT, stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        handler.addFilter(StepLogContext())  # lines logged inside a step name its transfer
    if level != "DEBUG":
        for noisy in ("aiohttp", "resonate"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        # Whether the worker hears the store (and why not) is always worth a line.
        logging.getLogger("orchestrator.push").setLevel(logging.INFO)
        logging.getLogger("resonate_pg").setLevel(logging.INFO)


def main() -> None:
    """Entry point of ``python -m orchestrator.worker`` and ``crossbank worker``."""
    try:
        configure_logging()
        settings = Settings.from_env()
        status_settings()  # a bad WORKER_STATUS_* value is refused now, naming it
        metrics_address()  # and so is a bad METRICS_PORT
    except SettingsError as exc:
        sys.exit(f"crossbank worker: {exc}")
    try:
        asyncio.run(run_worker(settings))
    except (DatabaseWithoutSchema, SettingsError) as exc:
        sys.exit(f"crossbank worker: {exc}")


if __name__ == "__main__":
    main()
