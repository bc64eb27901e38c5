"""Advisory inter-process file locks (``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows).

A lock belongs to the open file behind one :class:`FileLock` object: two objects conflict even
inside one process (threads of a dask worker), and the operating system drops the lock when its
holder dies, so a process killed with ``kill -9`` never leaves a file locked. The lock file itself
stays on disk (deleting it would race with processes about to lock it).

Exclusive holders write ``"<pid> <host>"`` into the file so that a process that gives up waiting
can name who holds it (:func:`lock_owner`). Shared locks exist on POSIX only; on Windows a shared
lock is exclusive (correct, less concurrent).

On network file systems, ``flock`` is as reliable as the server's locking (NFSv4: yes).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType

__all__ = ["FileLock", "lock_owner"]

#: Windows locks this byte (beyond the owner text, so that it stays readable while locked).
_WINDOWS_BYTE = 1 << 20


def _try_lock(fd: int, shared: bool) -> bool:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, _WINDOWS_BYTE, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except (BlockingIOError, PermissionError):
        return False
    return True


def _unlock(fd: int) -> None:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, _WINDOWS_BYTE, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)


class FileLock:
    """One advisory lock on the file ``path`` (created if missing).

    Parameters
    ----------
    path
        The lock file.
    shared
        Take a shared (reader) lock instead of an exclusive one: any number of shared holders, or one
        exclusive holder.

    Raises
    ------
    PermissionError
        From :meth:`acquire`: the lock file cannot be created or opened for writing.
    """

    def __init__(self, path: str | os.PathLike[str], *, shared: bool = False) -> None:
        self.path = Path(path)
        self.shared = shared
        self._fd: int | None = None

    @property
    def locked(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; never waits."""
        if self._fd is not None:
            raise RuntimeError(f"the lock {self.path} is already held by this object")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            if not _try_lock(fd, self.shared):
                os.close(fd)
                return False
            if not self.shared:  # name the holder for processes that give up waiting
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
                os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def acquire(self, timeout: float | None = None) -> bool:
        """Wait for the lock: True once held, False after ``timeout`` seconds (None: no limit)."""
        deadline = None if timeout is None else time.monotonic() + max(0.0, float(timeout))
        pause = 0.005
        while not self.try_acquire():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            wait = pause if deadline is None else min(pause, max(0.0, deadline - time.monotonic()))
            time.sleep(wait)
            pause = min(pause * 2, 0.1)
        return True

    def release(self) -> None:
        """Drop the lock (no-op when not held)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            _unlock(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def __del__(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)


def lock_owner(path: str | os.PathLike[str]) -> str | None:
    """``"pid <pid> on <host>"`` of the last exclusive holder recorded in ``path`` (None: unknown)."""
    try:
        text = Path(path).read_text(errors="replace").split()
    except OSError:
        return None
    if len(text) >= 2 and text[0].isdigit():
        return f"pid {text[0]} on {text[1]}"
    return None
