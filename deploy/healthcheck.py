"""Container healthcheck: exit 0 when this container's part can do its job, else 1.

The slim base image has no curl, so this is the healthcheck every crossbank
image runs.

* No argument: the service in this container answers ``GET /health`` (on
  ``$PORT``; over https when it serves TLS, ``$TLS_CERT_FILE``).
* ``--console``: the console answers ``GET /health`` (on ``$CONSOLE_PORT``;
  https with ``$CONSOLE_TLS_CERT_FILE``).
* ``--worker``: the worker can receive work. Its push channel is open, as its
  health file (``$WORKER_HEALTH_FILE``, kept by the worker: see
  ``orchestrator/health_file.py``) says and has said recently. Asking the
  store's ``/health`` is not enough: a worker whose channel died is deaf to
  work while the store answers. Without ``WORKER_HEALTH_FILE`` it falls back to
  the store's ``/health``; on Resonate on Postgres (``RESONATE_PG_DSN``), the
  database answers with the schema in place; a worker on the embedded store
  is healthy while it runs.
"""

import os
import ssl
import sys
import urllib.request
from pathlib import Path


def answers(url: str, tls: ssl.SSLContext | None = None) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=2, context=tls) as response:
            return response.status == 200, f"{url}: HTTP {response.status}"
    except OSError as exc:
        return False, f"{url}: {exc}"


def own_health(port_variable: str, default_port: str, prefix: str = "") -> tuple[bool, str]:
    """This container's own service, on 127.0.0.1: over TLS when it serves TLS.

    The certificate is checked against ``TLS_CA_FILE`` when one is set (the
    certificates made for compose name 127.0.0.1 too); with mutual TLS the
    service's own certificate is presented, as a client's would be.
    """
    port = os.environ.get(port_variable, default_port)
    cert = os.environ.get(f"{prefix}TLS_CERT_FILE", "").strip()
    if not cert:
        return answers(f"http://127.0.0.1:{port}/health")
    ca = os.environ.get("TLS_CA_FILE", "").strip()
    tls = ssl.create_default_context(cafile=ca or None)
    if not ca:
        tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
    if os.environ.get(f"{prefix}TLS_CLIENT_CA_FILE", "").strip():
        tls.load_cert_chain(cert, os.environ.get(f"{prefix}TLS_KEY_FILE", "").strip())
    return answers(f"https://127.0.0.1:{port}/health", tls)


def database_answers(dsn: str) -> tuple[bool, str]:
    """Resonate on Postgres: the worker's database takes a connection and a query."""
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=2) as connection:
            connection.execute("SELECT resonate.get_schema_version()")
    except psycopg.Error as exc:
        return False, f"RESONATE_PG_DSN: {str(exc).strip().splitlines()[-1]}"
    return True, "Resonate on Postgres answers"


def worker_health() -> tuple[bool, str]:
    dsn = os.environ.get("RESONATE_PG_DSN", "").strip()
    if dsn:
        return database_answers(dsn)
    store = os.environ.get("RESONATE_URL", "").strip().rstrip("/")
    if not store:
        return True, "embedded store"
    health_file = os.environ.get("WORKER_HEALTH_FILE", "").strip()
    if not health_file:
        ca = os.environ.get("TLS_CA_FILE", "").strip() or None
        tls = ssl.create_default_context(cafile=ca) if store.startswith("https://") else None
        return answers(f"{store}/health", tls)
    from orchestrator.health_file import judge

    return judge(Path(health_file))


def main(argv: list[str]) -> int:
    if "--worker" in argv:
        healthy, why = worker_health()
    elif "--console" in argv:
        healthy, why = own_health("CONSOLE_PORT", "8090", prefix="CONSOLE_")
    else:
        healthy, why = own_health("PORT", "8080")
    if not healthy:
        print(f"unhealthy: {why}", file=sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
