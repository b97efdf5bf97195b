"""A filesystem that forgets what was not synced: what a power cut leaves on a disk.

``python -m chaos.powerfs BASE MOUNTPOINT`` mounts BASE at MOUNTPOINT (FUSE,
through ``mfusepy`` over libfuse 3) and passes every call through, except
that a file's written bytes are kept in this process's memory, page by page,
until the file is synced: ``fsync`` and ``fdatasync`` write a file's held
pages (and its size) to BASE and sync them there. What BASE holds is, at
every moment, exactly what a disk that keeps the syncs it reports would hold
after losing power. So a power cut is: SIGKILL the programs using the mount
and this process, unmount, mount again: the held bytes are gone with the
process, as the page cache goes with the machine (:class:`PowerFs` in
:mod:`chaos.powercut` does that).

It is the model of LazyFS, the FUSE filesystem Jepsen uses, reduced to what
a test of SQLite files needs, and adversarial the same way: no unsynced byte
survives, whereas a real machine might have written some of them back.
Creating, renaming and deleting files, and making directories, reach BASE at
once, as if every directory were synced after each change: SQLite syncs its
data and journal files, and what these tests look for is data it did not
sync. Locks are the kernel's own (no ``lock`` operation is given), so they
work between the programs on this machine, as on any local disk.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from mfusepy import FUSE, FuseOSError, Operations

#: The unit bytes are held in: one page of the kernel's cache.
PAGE = 4096


@dataclass
class Held:
    """A file's bytes written and not yet synced: whole pages, and its size as written."""

    size: int
    pages: dict[int, bytes] = field(default_factory=dict)


class ForgetfulPassthrough(Operations):  # type: ignore[misc]
    """Passthrough to ``base`` with unsynced writes held in memory (see the module)."""

    use_ns = True

    def __init__(self, base: str) -> None:
        self.base = os.path.realpath(base)
        self._lock = threading.RLock()
        #: Files with unsynced bytes, by path within the mount.
        self._held: dict[str, Held] = {}
        #: One descriptor on BASE per open file handle.
        self._fds: dict[int, int] = {}
        self._next_fh = 1

    def _real(self, path: str) -> str:
        return os.path.join(self.base, path.lstrip("/"))

    # -- metadata: straight through, durable at once ----------------------------------

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        try:
            st = os.lstat(self._real(path))
        except OSError as exc:
            raise FuseOSError(exc.errno) from None
        # ``use_ns``: the times are integer nanoseconds.
        attrs: dict[str, Any] = {
            "st_mode": st.st_mode,
            "st_nlink": st.st_nlink,
            "st_uid": st.st_uid,
            "st_gid": st.st_gid,
            "st_size": st.st_size,
            "st_atime": st.st_atime_ns,
            "st_mtime": st.st_mtime_ns,
            "st_ctime": st.st_ctime_ns,
        }
        with self._lock:
            held = self._held.get(path)
            if held is not None:
                attrs["st_size"] = held.size
        return attrs

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._real(path))]

    def access(self, path: str, amode: int) -> int:
        if not os.access(self._real(path), amode):
            raise FuseOSError(errno.EACCES)
        return 0

    def chmod(self, path: str, mode: int) -> int:
        os.chmod(self._real(path), mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        os.chown(self._real(path), uid, gid)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        if times is None:
            os.utime(self._real(path))
        else:
            os.utime(self._real(path), ns=times)
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        os.mkdir(self._real(path), mode)
        return 0

    def rmdir(self, path: str) -> int:
        os.rmdir(self._real(path))
        return 0

    def unlink(self, path: str) -> int:
        with self._lock:
            os.unlink(self._real(path))
            self._held.pop(path, None)
        return 0

    def rename(self, old: str, new: str) -> int:
        with self._lock:
            os.rename(self._real(old), self._real(new))
            held = self._held.pop(old, None)
            self._held.pop(new, None)
            if held is not None:
                self._held[new] = held
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        st = os.statvfs(self._real(path))
        return {
            key: getattr(st, key)
            for key in (
                "f_bavail",
                "f_bfree",
                "f_blocks",
                "f_bsize",
                "f_favail",
                "f_ffree",
                "f_files",
                "f_flag",
                "f_frsize",
                "f_namemax",
            )
        }

    # -- file handles -----------------------------------------------------------------

    def open(self, path: str, flags: int) -> int:
        # Every handle can read BASE; nothing is written there but by a sync.
        return self._handle(os.open(self._real(path), os.O_RDWR))

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        fd = os.open(self._real(path), os.O_RDWR | os.O_CREAT, mode)
        return self._handle(fd)

    def _handle(self, fd: int) -> int:
        with self._lock:
            fh, self._next_fh = self._next_fh, self._next_fh + 1
            self._fds[fh] = fd
            return fh

    def release(self, path: str, fh: int) -> int:
        with self._lock:
            fd = self._fds.pop(fh, None)
        if fd is not None:
            os.close(fd)
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0  # close() syncs nothing: the bytes stay held

    # -- data: held until synced ------------------------------------------------------

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        with self._lock:
            fd = self._fds[fh]
            held = self._held.get(path)
            if held is None:
                return os.pread(fd, size, offset)
            end = min(offset + size, held.size)
            chunks = []
            position = offset
            while position < end:
                index, within = divmod(position, PAGE)
                take = min(PAGE - within, end - position)
                page = held.pages.get(index)
                if page is None:
                    page = os.pread(fd, PAGE, index * PAGE).ljust(PAGE, b"\0")
                chunks.append(page[within : within + take])
                position += take
            return b"".join(chunks)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        with self._lock:
            fd = self._fds[fh]
            held = self._held_of(path, fd)
            self._reserve(held, offset, len(data))
            position, rest = offset, memoryview(data)
            while rest:
                index, within = divmod(position, PAGE)
                take = min(PAGE - within, len(rest))
                page = bytearray(self._page(held, fd, index))
                page[within : within + take] = rest[:take]
                held.pages[index] = bytes(page)
                position += take
                rest = rest[take:]
            held.size = max(held.size, offset + len(data))
        return len(data)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        with self._lock:
            fd = self._fds[fh] if fh is not None else os.open(self._real(path), os.O_RDWR)
            try:
                held = self._held_of(path, fd)
                if length < held.size:
                    last = (length + PAGE - 1) // PAGE
                    for index in [i for i in held.pages if i >= last]:
                        del held.pages[index]
                    if length % PAGE:
                        index = length // PAGE
                        page = self._page(held, fd, index)
                        held.pages[index] = page[: length % PAGE].ljust(PAGE, b"\0")
                held.size = length
            finally:
                if fh is None:
                    os.close(fd)
        return 0

    def fallocate(self, path: str, mode: int, offset: int, size: int, fh: int) -> int:
        raise FuseOSError(errno.EOPNOTSUPP)  # SQLite falls back to writing

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        with self._lock:
            fd = self._fds[fh]
            held = self._held.pop(path, None)
            if held is not None:
                os.ftruncate(fd, held.size)
                for index, page in sorted(held.pages.items()):
                    start = index * PAGE
                    if start < held.size:
                        os.pwrite(fd, page[: held.size - start], start)
            if datasync:
                os.fdatasync(fd)
            else:
                os.fsync(fd)
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        return 0  # directory changes reach BASE at once

    def _reserve(self, held: Held, offset: int, length: int) -> None:
        """Refuse a write BASE could not take at the next sync (ENOSPC now, as a disk would).

        Held pages take no room on BASE until a sync, so without this check a
        full disk would only show at ``fsync``, not at ``write`` as it does on
        a real filesystem.
        """
        first, last = offset // PAGE, (offset + length - 1) // PAGE
        new_pages = sum(1 for index in range(first, last + 1) if index not in held.pages)
        pending = sum(len(h.pages) for h in self._held.values()) + new_pages
        st = os.statvfs(self.base)
        if pending * PAGE > st.f_bavail * st.f_frsize:
            raise FuseOSError(errno.ENOSPC)

    def _held_of(self, path: str, fd: int) -> Held:
        held = self._held.get(path)
        if held is None:
            held = self._held[path] = Held(size=os.fstat(fd).st_size)
        return held

    @staticmethod
    def _page(held: Held, fd: int, index: int) -> bytes:
        page = held.pages.get(index)
        if page is not None:
            return page
        return os.pread(fd, PAGE, index * PAGE).ljust(PAGE, b"\0")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m chaos.powerfs BASE MOUNTPOINT", file=sys.stderr)
        return 2
    base, mountpoint = argv
    print(f"powerfs: {base} at {mountpoint}; unsynced bytes are held in memory", flush=True)
    FUSE(ForgetfulPassthrough(base), mountpoint, foreground=True, nothreads=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
