"""Power cuts for real: data files on a filesystem that forgets what was not synced.

A :class:`PowerFs` mounts :mod:`chaos.powerfs` over a directory (its BASE)
at a mount point, in a process of its own. :meth:`PowerFs.cut` is the moment
the power goes: that process is killed with every unsynced byte it held, the
mount is detached, and a fresh one is mounted over BASE, which holds just what
was synced. The caller kills the programs using the mount first, as the power
cut kills them too, and starts them again after.

Mounting needs ``/dev/fuse``, ``fusermount3`` and libfuse 3 (Debian:
``fuse3``); :func:`why_no_power_cuts` says what is missing, and a campaign
then skips its power cuts (recording that reason) instead of failing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

#: How long a mount may take to appear.
MOUNT_TIMEOUT_S = 10.0


def why_no_power_cuts() -> str | None:
    """None when this process can mount the power-cut filesystem, else why not."""
    if not os.path.exists("/dev/fuse"):
        return "there is no /dev/fuse (FUSE is not available here)"
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "/dev/fuse is not open to this user (run as root)"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is not installed (Debian: fuse3)"
    try:
        import mfusepy  # noqa: F401  (loads libfuse when imported)
    except (ImportError, OSError) as exc:
        return f"mfusepy cannot load libfuse 3 ({exc}; Debian: fuse3)"
    return None


class PowerFs:
    """The power-cut filesystem over ``base``, mounted at ``mountpoint`` (see the module)."""

    def __init__(self, base: Path, mountpoint: Path, *, log_path: Path | None = None) -> None:
        self.base = base
        self.mountpoint = mountpoint
        self.log_path = log_path
        self.cuts = 0
        self._process: subprocess.Popen[bytes] | None = None

    def mount(self) -> PowerFs:
        self.base.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab") if self.log_path is not None else subprocess.DEVNULL
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "chaos.powerfs", str(self.base), str(self.mountpoint)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            if log is not subprocess.DEVNULL:
                log.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + MOUNT_TIMEOUT_S
        while not os.path.ismount(self.mountpoint):
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"the power-cut filesystem at {self.mountpoint} exited "
                    f"({self._process.returncode}) before it was mounted"
                )
            if time.monotonic() > deadline:
                self.unmount()
                raise RuntimeError(f"{self.mountpoint} was not mounted in {MOUNT_TIMEOUT_S:g}s")
            time.sleep(0.02)
        return self

    def cut(self) -> None:
        """Lose every unsynced byte, then mount BASE again as the disk left it."""
        self.unmount()
        self.cuts += 1
        self.mount()

    def unmount(self) -> None:
        """Kill the filesystem's process (its held bytes go with it) and detach the mount."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait()
        # Lazy: a program still holding a file there gets errors, not a hang.
        with contextlib.suppress(subprocess.CalledProcessError):
            subprocess.run(
                ["fusermount3", "-u", "-z", str(self.mountpoint)],
                check=True,
                capture_output=True,
            )
