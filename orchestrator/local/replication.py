"""A Postgres primary with a streaming standby, and a failover from one to the other.

What "highly available through Postgres's own replicas" means for Resonate
on Postgres, run for real on this machine: two :class:`PrivatePostgres`
servers, the second a ``pg_basebackup`` copy of the first that streams its
WAL. Workers and clients are given one multi-host DSN
(:meth:`ReplicatedPostgres.dsn`: both hosts, ``target_session_attrs=read-write``),
so libpq connects to whichever of the two takes writes, and a failover needs
no change to anyone's settings.

``mode`` is the replication a deployment chooses:

- ``sync``: ``synchronous_standby_names`` names the standby and
  ``synchronous_commit=on``: a commit returns only once the standby has the
  WAL on disk, so a promoted standby has every write the primary acknowledged.
- ``async``: Postgres's default; a commit returns at once, and the standby may
  lag. A failover loses whatever it had not received.

:meth:`ReplicatedPostgres.hold_replication` stops the primary's WAL sender
(SIGSTOP): the standby falls behind, as behind a slow or cut replication
link, so a test can fail over at the worst moment on purpose rather than by
luck. (Stopping the standby's receiver instead would not do: the kernel still
takes the WAL into its socket buffer, and it is read once let go.) A failover
kills the primary's whole process group, the held sender with it, as when its
machine dies.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psycopg

from orchestrator.local.postgres import SUPERUSER, PostgresUnavailable, PrivatePostgres

SYNC = "sync"
ASYNC = "async"
MODES = (SYNC, ASYNC)
#: The standby's name on the primary (``application_name``, ``synchronous_standby_names``).
STANDBY_NAME = "standby"
#: How long the standby may take to stream from the primary once started.
STREAMING_TIMEOUT_S = 30.0


class ReplicatedPostgres:
    """A primary on ``ports[0]``, its standby on ``ports[1]``; ``start``, then ``fail_over``."""

    def __init__(self, ports: tuple[int, int], *, mode: str, log_dir: Path) -> None:
        if mode not in MODES:
            raise ValueError(f"replication mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        self.primary = PrivatePostgres(ports[0], log_path=log_dir / "postgres-primary.log")
        self.standby = PrivatePostgres(
            ports[1],
            log_path=log_dir / "postgres-standby.log",
            standby_of=self.primary,
            standby_name=STANDBY_NAME,
        )

    def start(self, database: str) -> str:
        """Both servers, ``database`` (resonate.sql applied) on both; its multi-host DSN."""
        self.primary.start()
        self.primary.create_database(database)
        self.standby.start()
        if self.mode == SYNC:
            with psycopg.connect(self.primary.dsn("postgres"), autocommit=True) as admin:
                admin.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{STANDBY_NAME}'")
                admin.execute("SELECT pg_reload_conf()")
        self._wait_streaming()
        return self.dsn(database)

    def dsn(self, database: str) -> str:
        """Both hosts; libpq tries them in order and keeps the one that takes writes."""
        hosts = f"127.0.0.1:{self.primary.port},127.0.0.1:{self.standby.port}"
        return f"postgresql://{SUPERUSER}@{hosts}/{database}?target_session_attrs=read-write"

    def _wait_streaming(self) -> None:
        """Until the primary sees its standby streaming, synchronously in ``sync`` mode."""
        wanted = "sync" if self.mode == SYNC else "async"
        deadline = time.monotonic() + STREAMING_TIMEOUT_S
        with psycopg.connect(self.primary.dsn("postgres"), autocommit=True) as admin:
            while True:
                row = admin.execute(
                    "SELECT state, sync_state FROM pg_stat_replication WHERE application_name = %s",
                    (STANDBY_NAME,),
                ).fetchone()
                if row == ("streaming", wanted):
                    return
                if time.monotonic() > deadline:
                    raise PostgresUnavailable(
                        f"the standby is not streaming ({wanted}) after "
                        f"{STREAMING_TIMEOUT_S:g}s: {row}"
                    )
                time.sleep(0.1)

    def hold_replication(self) -> None:
        """Stop the primary's WAL sender: from now on the standby lags (see the module)."""
        with psycopg.connect(self.primary.dsn("postgres"), autocommit=True) as admin:
            row = admin.execute(
                "SELECT pid FROM pg_stat_replication WHERE application_name = %s",
                (STANDBY_NAME,),
            ).fetchone()
        if row is None:
            raise PostgresUnavailable("the primary has no WAL sender to hold")
        os.kill(int(row[0]), signal.SIGSTOP)

    def fail_over(self) -> None:
        """The primary dies (SIGKILL); the standby is promoted."""
        process = self.primary.process
        if process is not None and process.poll() is None:
            # The postmaster and every backend at once, as when its machine dies: a
            # WAL sender left alive would still catch the standby up.
            os.killpg(process.pid, signal.SIGKILL)
        self.primary.kill()
        self.standby.promote()

    def stop(self) -> None:
        self.standby.stop()
        self.primary.stop()
