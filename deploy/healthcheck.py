"""Container healthcheck: exit 0 when the service answers ``GET /health``, else 1.

The slim base image has no curl, so this is the healthcheck every crossbank
image runs. With no argument it asks the service in this container (on
``$PORT``); with ``--store`` it asks the promise store the worker depends on
(``$RESONATE_URL``), since a worker that cannot reach its store can do nothing.
A worker on the embedded store (no ``RESONATE_URL``) is healthy while it runs.
"""

import os
import sys
import urllib.request


def health_url(argv: list[str]) -> str | None:
    if "--store" in argv:
        store = os.environ.get("RESONATE_URL", "").strip().rstrip("/")
        return f"{store}/health" if store else None
    return f"http://127.0.0.1:{os.environ.get('PORT', '8080')}/health"


def main() -> int:
    url = health_url(sys.argv[1:])
    if url is None:
        return 0
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
