"""A worker's health file: whether it can receive work, for its container's healthcheck.

A worker that cannot hear the store is alive but useless, and nothing outside
the process can tell: the store's ``/health`` still answers, and the worker's
requests still work. So while its push channel is connected the worker keeps
a small JSON file up to date (``WORKER_HEALTH_FILE``), and the healthcheck
(``deploy/healthcheck.py --worker``) judges that file, not the store:

* ``{"push": "connected", "fresh_until": T, ...}`` -- healthy until wall-clock
  time ``T``; the worker moves ``T`` forward while the channel stays open, so a
  worker whose event loop is stuck, or that died, goes stale by itself;
* ``{"push": "disconnected", "reason": ..., "since": T}`` -- unhealthy, and why.

A file rather than a port: nothing to listen on, nothing to secure, and the
healthcheck runs in the same container, so it sees the same file and clock.
Each write replaces the file whole (write a temporary file, then rename), so
the healthcheck never reads half of one.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class HealthFile:
    """Writes the worker's push-channel state to ``path``; ``fresh_for`` seconds per refresh."""

    def __init__(self, path: Path, *, fresh_for: float) -> None:
        self.path = path
        self.fresh_for = fresh_for
        self._failing = False

    def connected(self) -> None:
        """The push channel is open: healthy for the next ``fresh_for`` seconds."""
        self._write({"push": "connected", "fresh_until": time.time() + self.fresh_for})

    def disconnected(self, reason: str) -> None:
        """The push channel is down (``reason``): unhealthy until :meth:`connected`."""
        self._write({"push": "disconnected", "reason": reason, "since": time.time()})

    def _write(self, status: dict[str, Any]) -> None:
        status["pid"] = os.getpid()
        try:
            replace_json(self.path, status)
        except OSError as exc:
            # The worker keeps working; its healthcheck will say it is unhealthy.
            if not self._failing:
                logger.warning("cannot write the health file %s: %s", self.path, exc)
            self._failing = True
        else:
            self._failing = False


def replace_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` whole (a temporary file, then a rename): no reader sees half."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary.write_text(json.dumps(data))
    os.replace(temporary, path)


def judge(path: Path, now: float | None = None) -> tuple[bool, str]:
    """``(healthy, why)`` from the health file at ``path`` (see the module docstring)."""
    now = time.time() if now is None else now
    try:
        status = json.loads(path.read_text())
    except FileNotFoundError:
        return False, f"no health file at {path} yet (the push channel never opened)"
    except (OSError, ValueError) as exc:
        return False, f"unreadable health file {path}: {exc}"
    if not isinstance(status, dict):
        return False, f"unreadable health file {path}: not a JSON object"
    if status.get("push") == "disconnected":
        since = status.get("since")
        down = f" for {now - since:.0f}s" if isinstance(since, (int, float)) else ""
        return False, f"push channel down{down}: {status.get('reason', 'no reason given')}"
    fresh_until = status.get("fresh_until")
    if status.get("push") != "connected" or not isinstance(fresh_until, (int, float)):
        return False, f"unreadable health file {path}: {status!r}"
    if now > fresh_until:
        return (
            False,
            f"health file stale by {now - fresh_until:.0f}s: the worker stopped updating it",
        )
    return True, "push channel connected"
