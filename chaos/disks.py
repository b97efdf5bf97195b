"""Small filesystems the campaign creates for a part's files, fills, frees and removes.

A bank's ledger or the store's journal lives on its own tmpfs of a few MB
mounted under the run's work dir, so "the disk is full" is a real ENOSPC
from the kernel, not a simulation in the part's code. Mounting needs root;
:func:`why_no_disks` says why it cannot be done, and a campaign then skips
the disk faults (recording that reason) instead of failing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from pathlib import Path

#: The filler file's name on a full disk; removing it gives the space back.
FILLER = ".chaos-filler"
_CHUNK = 1 << 20


def why_no_disks() -> str | None:
    """None when this process can mount small filesystems, else why not."""
    if os.geteuid() != 0:
        return "mounting a small filesystem needs root"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "mount/umount are not installed"
    return None


class SmallDisk:
    """A tmpfs of ``size_mb`` MB at ``path`` (created on :meth:`mount`, gone after :meth:`unmount`)."""

    def __init__(self, path: Path, size_mb: int) -> None:
        self.path = path
        self.size_mb = size_mb
        self.mounted = False

    def mount(self) -> SmallDisk:
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "mount",
                "-t",
                "tmpfs",
                "-o",
                f"size={self.size_mb}m,mode=0755",
                "tmpfs",
                str(self.path),
            ],
            check=True,
            capture_output=True,
        )
        self.mounted = True
        return self

    def fill(self) -> int:
        """Write a filler file until the kernel says ENOSPC; return the bytes it took."""
        written = 0
        block = b"\0" * _CHUNK
        with (self.path / FILLER).open("ab", buffering=0) as filler:
            size = len(block)
            while size:
                try:
                    written += filler.write(block[:size])
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    size //= 2
        return written

    def free(self) -> None:
        (self.path / FILLER).unlink(missing_ok=True)

    def is_full(self) -> bool:
        return (self.path / FILLER).exists()

    def unmount(self) -> None:
        if not self.mounted:
            return
        with contextlib.suppress(subprocess.CalledProcessError):
            subprocess.run(["umount", "-l", str(self.path)], check=True, capture_output=True)
        self.mounted = False
