"""The folder of an embedding store: its lock files, who holds them, and what in it a store made.

Writers of one store coordinate through advisory file locks (:mod:`.filelock`, released by the
operating system when a process dies)::

      .napari_sam.lock         shared by every process writing slices, exclusive while a process
                               creates or replaces (``overwrite``) the store
      .napari_sam_locks/<z>    exclusive while slice ``z`` is written

A process that gives up waiting raises :class:`~napari_sam.errors.CacheLockedError` naming the
holders. How long it waits is ``lock_timeout`` (seconds; None: as long as the holder lives), or the
environment variable ``NAPARI_SAM_LOCK_TIMEOUT`` (:func:`resolve_lock_timeout`).
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from ...errors import CacheLockedError
from .filelock import FileLock, lock_owner
from .store_layout import is_embedding_store

__all__ = [
    "LOCK_FILE",
    "SLICE_LOCKS",
    "STORE_ARRAYS",
    "SliceLocks",
    "check_writable",
    "clear_own_entries",
    "lock_new_folder",
    "resolve_lock_timeout",
    "store_lock",
]

#: Lock file of the whole store, and folder of the per-slice lock files (see the module docstring).
LOCK_FILE = ".napari_sam.lock"
SLICE_LOCKS = ".napari_sam_locks"
#: The arrays a store may hold (see :mod:`.store`): the folders it creates.
STORE_ARRAYS = (
    "embeddings",
    "input_size",
    "original_size",
    "contrast_limits",
    "limit_residuals",
    "slice_hash",
    "tile_done",
    "done",
)


def resolve_lock_timeout(value: float | None) -> float | None:
    """``value``, or ``NAPARI_SAM_LOCK_TIMEOUT`` (seconds) when None and set."""
    if value is not None:
        return float(value)
    text = os.environ.get("NAPARI_SAM_LOCK_TIMEOUT", "").strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        raise ValueError(f"NAPARI_SAM_LOCK_TIMEOUT must be a number of seconds, got {text!r}") from None


def check_writable(folder: Path) -> None:
    """Raise PermissionError unless a file can be created in ``folder``."""
    # unique per call: threads of one process (a dask worker) may probe the same folder at once
    probe = folder / f".napari_sam_write_test_{os.getpid()}_{uuid.uuid4().hex}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise PermissionError(
            f"cannot write the embedding cache at {folder}: {exc.strerror or exc}; choose a writable "
            "cache= folder"
        ) from exc


def _entries(folder: Path) -> list[Path]:
    """What ``folder`` holds besides this module's lock files."""
    return [p for p in folder.iterdir() if p.name not in (LOCK_FILE, SLICE_LOCKS)]


def _own_entries(folder: Path) -> list[Path]:
    """What in ``folder`` a store made: its root record, its array folders, write probes.

    Other files (a user's notes saved into the cache folder, say) are never this module's to delete.
    """
    return [
        p
        for p in _entries(folder)
        if p.name == "zarr.json" or p.name in STORE_ARRAYS or p.name.startswith(".napari_sam_write_test_")
    ]


def clear_own_entries(folder: Path) -> None:
    """Delete what a store made in ``folder`` (an old store, or the remains of a killed creation).

    Lock files stay, and anything else in the folder is left alone; the root record goes first, so
    that nobody takes the folder for a store while it is emptied.
    """
    (folder / "zarr.json").unlink(missing_ok=True)
    for entry in _own_entries(folder):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _slice_owners(folder: Path) -> list[tuple[int, str]]:
    """``(z, holder)`` of the slices of the store at ``folder`` locked right now (slow: tries each)."""
    owners = []
    for path in sorted((folder / SLICE_LOCKS).glob("*")):
        probe = FileLock(path, shared=True)
        try:
            if probe.try_acquire():
                probe.release()
                continue
        except OSError:
            continue
        if path.name.isdigit():
            owners.append((int(path.name), lock_owner(path) or "another process"))
    return owners


def store_lock(folder: Path, *, shared: bool, timeout: float | None) -> FileLock:
    """Take the lock of the whole store at ``folder`` (which must exist).

    Raises
    ------
    PermissionError
        The lock file cannot be made (a read-only folder).
    CacheLockedError
        Not acquired within ``timeout`` seconds; names the slices being written and their holders,
        or the process creating or replacing the store.
    """
    lock = FileLock(folder / LOCK_FILE, shared=shared)
    try:
        acquired = lock.acquire(timeout)
    except OSError as exc:
        raise PermissionError(
            f"cannot write the embedding cache at {folder}: {exc.strerror or exc}; choose a writable "
            "cache= folder"
        ) from exc
    if not acquired:
        busy = _slice_owners(folder)
        if busy:
            owners = ", ".join(sorted({who for _, who in busy}))
            doing = f"is being written by {owners} (slices {[z for z, _ in busy]})"
        else:
            doing = f"is being created or replaced by {lock_owner(lock.path) or 'another process'}"
        raise CacheLockedError(
            f"the embedding cache at {folder} {doing}; gave up after {timeout} s — retry later, or use "
            "another cache= path"
        )
    return lock


def lock_new_folder(folder: Path, timeout: float | None) -> FileLock:
    """Make the store folder (refusing foreign folders) and take its exclusive lock.

    Raises
    ------
    FileExistsError
        ``folder`` exists and is not a store (nor the remains of a killed creation of one).
    PermissionError, CacheLockedError
        As :func:`store_lock`.
    """
    # a folder holding our lock file but no store is the remains of a killed creation: ours
    foreign = folder.exists() and (
        not folder.is_dir()
        or (not is_embedding_store(folder) and not (folder / LOCK_FILE).exists() and _entries(folder))
    )
    if foreign:
        raise FileExistsError(
            f"{folder} exists and is not a napari-sam embedding cache; it is left alone — "
            "choose another cache= path"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PermissionError(
            f"cannot create the embedding cache folder {folder}: {exc.strerror or exc}"
        ) from exc
    return store_lock(folder, shared=False, timeout=resolve_lock_timeout(timeout))


class SliceLocks:
    """The locks one store object holds while it writes: slice locks, and the shared store lock
    beside them (held while any slice lock is, so that nobody replaces the store meanwhile).

    Parameters
    ----------
    folder
        The store's folder.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._slices: dict[int, FileLock] = {}
        self._writer: FileLock | None = None

    def __contains__(self, z: int) -> bool:
        return z in self._slices

    def acquire(self, z: int, timeout: float | None) -> None:
        """Take the lock of slice ``z`` (and the shared store lock first, when none is held).

        Raises
        ------
        CacheLockedError
            Either lock was not acquired within ``timeout`` seconds; names the holder.
        """
        if self._writer is None:
            self._writer = store_lock(self.folder, shared=True, timeout=timeout)
        try:
            folder = self.folder / SLICE_LOCKS
            folder.mkdir(exist_ok=True)
            lock = FileLock(folder / str(z))
            if not lock.acquire(timeout):
                who = lock_owner(lock.path) or "another process"
                raise CacheLockedError(
                    f"slice {z} of the embedding cache at {self.folder} is being written by {who}; gave "
                    f"up after {timeout} s — retry later, or use another cache= path"
                )
        except BaseException:
            self.release(z)
            raise
        self._slices[z] = lock

    def release(self, z: int) -> None:
        """Drop the lock of slice ``z`` (if held), and the store lock with the last slice lock."""
        lock = self._slices.pop(z, None)
        if lock is not None:
            lock.release()
        if not self._slices and self._writer is not None:
            self._writer.release()
            self._writer = None

    def release_all(self) -> None:
        """Drop every lock held."""
        for z in list(self._slices):
            self.release(z)
        if self._writer is not None:
            self._writer.release()
            self._writer = None
