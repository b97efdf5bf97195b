"""A process clock the campaign steps forward and back, with libfaketime (Debian's faketime).

The process is started with libfaketime preloaded and told to read its offset
from a file on every clock call (``FAKETIME_TIMESTAMP_FILE`` with
``FAKETIME_NO_CACHE``), so writing ``+12`` to that file steps its clock 12 s
ahead at once, and ``+0`` steps it back. The process's code does not change.

libfaketime moves ``CLOCK_MONOTONIC`` with the wall clock: 0.9.10 breaks
Python's ``time.sleep`` (EINVAL from ``clock_nanosleep``) when told to leave
the monotonic clock alone. So a step moves ``time.time`` and
``time.monotonic`` together, and a step back also holds the monotonic clock
back, which a real kernel never does: a harsher test than an NTP step.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Where Debian installs the library (the faketime package).
LIBFAKETIME_PATHS = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
)


def libfaketime() -> str | None:
    """The library's path, or None when faketime is not installed."""
    configured = os.environ.get("CHAOS_LIBFAKETIME")
    candidates = (configured,) if configured else LIBFAKETIME_PATHS
    return next((path for path in candidates if path and Path(path).is_file()), None)


class SteppedClock:
    """The offset file of one process's clock; :meth:`env` is what the process is started with."""

    def __init__(self, offset_file: Path, library: str) -> None:
        self.offset_file = offset_file
        self.library = library
        self.offset = 0.0
        self._write()

    def env(self) -> dict[str, str]:
        return {
            "LD_PRELOAD": self.library,
            "FAKETIME_TIMESTAMP_FILE": str(self.offset_file),
            "FAKETIME_NO_CACHE": "1",
        }

    def step(self, seconds: float) -> None:
        """Move the clock by ``seconds`` (back when negative) from where it is now."""
        self.offset += seconds
        self._write()

    def reset(self) -> None:
        self.offset = 0.0
        self._write()

    def _write(self) -> None:
        self.offset_file.parent.mkdir(parents=True, exist_ok=True)
        # Written whole and renamed: the process never reads half a line.
        partial = self.offset_file.with_suffix(".tmp")
        partial.write_text(f"{self.offset:+.3f}\n")
        partial.replace(self.offset_file)
