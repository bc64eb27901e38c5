"""The on-disk embedding cache: one zarr v3 directory per image (2D images are stored as one slice).

Layout (``Z`` slices, ``T`` tiles per slice when tiled, ``(C, h, w)`` the encoder's feature shape,
``(256, 64, 64)`` for the official models and nano)::

    cache.zarr/
      zarr.json                root attributes under the key ``"napari_sam_embeddings"``:
                               format_version, library_version, model {name, weights_sha256, image_size},
                               preprocessing {...}, image {shape, dtype, n_slices}, tiling
                               {tile_size, halo, windows} or null, feature_shape, cache_dtype
      embeddings/              (Z, [T,] C, h, w) float16 (float32 opt-in); one chunk per slice (per tile)
      input_size/              (Z, [T,] 2) int32 (rows, cols) of the resized image inside the model input
      original_size/           (Z, [T,] 2) int32 (rows, cols) of the slice (of the tile)
      contrast_limits/         (Z, 3, 2) float64 intensities mapped to 0 / 255 per channel (NaN: unused)
      limit_residuals/         (Z, 3, 2) float64 what rounding to float64 left out of contrast_limits
                               (non-zero only for 64-bit integers beyond 2**53; NaN: unused); in
                               stores whose root record has "exact_limits": true (older stores
                               lack it and were normalised with the rounded limits)
      slice_hash/              (Z,) uint64 content hash of each input slice (blake2b of bytes, shape, dtype)
      tile_done/               (Z, T) bool, tiled stores only: tiles written (resume inside a large slice)
      done/                    (Z,) bool, set last, after everything else of the slice is written

Every chunk carries a CRC32C checksum and the small per-slice arrays have one chunk per slice, so a
process killed in the middle of a write leaves at worst one torn chunk: its checksum fails (or its
``done`` flag is still False) and the slice is recomputed. Features are filled with NaN where never
written, so a missing chunk file is detected too.

Several processes may use one cache at once (two users, dask workers embedding parts of one stack).
Readers take no lock. Writers coordinate through advisory file locks (:mod:`.filelock`;
``flock``, released by the operating system when a process dies, so ``kill -9`` never leaves a
cache locked)::

      .napari_sam.lock         shared by every process writing slices, exclusive while a process
                               creates or replaces (``overwrite``) the store
      .napari_sam_locks/<z>    exclusive while slice ``z`` is written

A process about to write a slice that another one is writing waits, then reuses that slice if it
holds the same content (so two runs on one stack compute each slice once): see
:meth:`EmbeddingStore.begin_slice`. ``lock_timeout`` (seconds; default: wait as long as the holder
lives) turns a long wait into :class:`~napari_sam.errors.CacheLockedError`, which names the cache,
the slice and the holding process; the environment variable ``NAPARI_SAM_LOCK_TIMEOUT`` sets it for
every store not given one (``compute_embeddings``, ``napari-sam embed`` …). A store replaced by
another process (``overwrite=True``) with other parameters is noticed at the next slice:
:class:`~napari_sam.errors.CacheMismatchError`.

This module holds :class:`EmbeddingStore` (open, create, lock, read and write slices); the root record,
its checks and the arrays it describes are in :mod:`.store_layout`, the folder's locks in
:mod:`.store_locks`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..._version import __version__
from ...errors import CacheMismatchError, CorruptSliceError
from .store_layout import (
    ATTRS_KEY,
    CACHE_DTYPES,
    FORMAT_VERSION,
    create_arrays,
    differences,
    hash_blocks,
    holds_sam2_frames,
    is_embedding_store,
    jsonable,
    lookup,
    open_arrays,
    root_attrs,
    slice_hash,
)
from .store_locks import (
    SliceLocks,
    check_writable,
    clear_own_entries,
    lock_new_folder,
    resolve_lock_timeout,
)

__all__ = [
    "FORMAT_VERSION",
    "CorruptSliceError",
    "EmbeddingStore",
    "hash_blocks",
    "is_embedding_store",
    "open_store",
    "slice_hash",
]

#: How a store is opened: ``"r"`` read only, ``"r+"`` read and write.
StoreMode = Literal["r", "r+"]


def open_store(path: str | os.PathLike[str], mode: StoreMode = "r") -> EmbeddingStore:
    """Open an existing embedding store; ``mode`` ``"r"`` (read only) or ``"r+"``."""
    return EmbeddingStore.open(path, mode=mode)


def _sizes_problem(input_size: np.ndarray, original_size: np.ndarray) -> str | None:
    """What is wrong with recorded ``([T,] 2)`` sizes (None: nothing): a lost chunk reads as 0."""
    for name, sizes in (("input_size", input_size), ("original_size", original_size)):
        if not (np.asarray(sizes) > 0).all():
            return f"its {name} {np.asarray(sizes).tolist()} holds a zero size"
    return None


def _per_channel(values: Any) -> np.ndarray:
    """Per-channel ``(low, high)`` pairs (or None) → the ``(3, 2)`` float64 record, NaN where unused."""
    out = np.full((3, 2), np.nan)
    if values is not None:
        arr = np.asarray(values, dtype=np.float64).reshape(-1, 2)
        out[: arr.shape[0]] = arr
    return out


class EmbeddingStore:
    """A zarr v3 embedding cache (see the module docstring for the layout).

    Use :meth:`create` or :meth:`open` (or :func:`open_store`). Many processes may write one store
    at once (slice locks, see the module docstring); one object is not thread-safe for writing.

    Attributes
    ----------
    path
        The store's folder.
    meta
        The root attributes (JSON values).
    lock_timeout
        Seconds to wait for a slice (or the store) that another process is writing before raising
        :class:`~napari_sam.errors.CacheLockedError`; None (default) takes ``NAPARI_SAM_LOCK_TIMEOUT``
        from the environment, or else waits as long as that process lives.
    """

    def __init__(
        self, path: Path, group: Any, meta: dict[str, Any], mode: StoreMode, lock_timeout: float | None = None
    ) -> None:
        self.path = path
        self._group = group
        self.meta = meta
        self.mode = mode
        self.lock_timeout = resolve_lock_timeout(lock_timeout)
        self._arrays: dict[str, Any] = {}
        self._locks = SliceLocks(path)
        self._reused: set[int] = set()

    def array(self, name: str) -> Any:
        """The zarr array ``name`` (opened once)."""
        if name not in self._arrays:
            self._arrays[name] = self._group[name]
        return self._arrays[name]

    # ------------------------------------------------------------------ opening / creating
    @classmethod
    def open(
        cls, path: str | os.PathLike[str], mode: StoreMode = "r", *, lock_timeout: float | None = None
    ) -> EmbeddingStore:
        """Open an existing store (no lock taken: see the module docstring).

        Raises
        ------
        FileNotFoundError
            No folder at ``path``.
        ValueError
            The folder is not a napari-sam embedding store, or ``mode`` is not ``"r"`` / ``"r+"``.
        CacheMismatchError
            The store was written in another format version.
        CorruptCacheError
            The record is damaged (a malformed ``model``, ``preprocessing``, ``image`` entry …), an
            array is missing, unreadable or of the wrong shape, or the ``tiling`` record does not
            match the arrays (see :func:`.store_layout.open_arrays`).
        """
        import zarr

        if mode not in ("r", "r+"):
            raise ValueError(f"mode must be 'r' or 'r+', got {mode!r}")
        folder = Path(path)
        if not folder.exists():
            raise FileNotFoundError(f"no embedding cache at {folder}")
        meta = root_attrs(folder)
        if meta is None:
            raise ValueError(f"{folder} is not a napari-sam embedding cache (no {ATTRS_KEY!r} attributes)")
        version = meta.get("format_version")
        if version != FORMAT_VERSION:
            raise CacheMismatchError(
                f"the embedding cache at {folder} was written in another format (format version: cache "
                f"has {version!r}, napari-sam {__version__} reads {FORMAT_VERSION}); pass overwrite=True to "
                "recompute it, or use the napari-sam version that wrote it"
            )
        group = zarr.open_group(str(folder), mode=mode, zarr_format=3)
        store = cls(folder, group, meta, mode, lock_timeout)
        store._arrays.update(open_arrays(folder, group, meta))
        return store

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        meta: Mapping[str, Any],
        *,
        overwrite: bool = False,
        lock_timeout: float | None = None,
    ) -> EmbeddingStore:
        """Create an empty store described by ``meta``.

        Parameters
        ----------
        meta
            Root attributes; must hold ``image.n_slices``, ``feature_shape`` ``[C, h, w]``,
            ``cache_dtype`` (``"float16"`` / ``"float32"``) and ``tiling`` (None or a dict with
            ``windows``). ``format_version`` is added.
        overwrite
            Replace an existing store at ``path`` (after the processes writing it have finished their
            slices). A folder that is not a napari-sam store is never deleted, and when a store is
            replaced (or the remains of a killed creation are cleared) only what a store creates —
            its root ``zarr.json`` and its array folders — is removed; other files stay.
        lock_timeout
            See the class attributes.

        Raises
        ------
        FileExistsError
            ``path`` exists (and is not replaced).
        PermissionError
            ``path`` cannot be written.
        CacheLockedError
            Other processes kept the store locked for longer than ``lock_timeout``.
        """
        folder = Path(path)
        lock = lock_new_folder(folder, lock_timeout)
        try:
            return cls._create_locked(folder, meta, overwrite, lock_timeout)
        finally:
            lock.release()

    @classmethod
    def _create_locked(
        cls, folder: Path, meta: Mapping[str, Any], overwrite: bool, lock_timeout: float | None
    ) -> EmbeddingStore:
        """:meth:`create`, with the store's exclusive lock held by the caller."""
        if is_embedding_store(folder):
            if not overwrite:
                raise FileExistsError(
                    f"an embedding cache exists at {folder}; pass overwrite=True to replace it"
                )
            check_writable(folder)
        clear_own_entries(folder)
        record: dict[str, Any] = jsonable({**meta, "format_version": FORMAT_VERSION, "exact_limits": True})
        try:
            group = create_arrays(folder, record)
        except OSError as exc:
            raise PermissionError(f"cannot write the embedding cache at {folder}: {exc}") from exc
        return cls(folder, group, record, "r+", lock_timeout)

    @classmethod
    def open_or_create(
        cls,
        path: str | os.PathLike[str],
        meta: Mapping[str, Any],
        *,
        overwrite: bool = False,
        lock_timeout: float | None = None,
    ) -> EmbeddingStore:
        """Open the store at ``path`` if it matches ``meta`` (see :meth:`validate`), else create it.

        With ``overwrite``, an existing store is always replaced by an empty one. Two processes
        calling this at once on a new ``path`` make one store: the second waits for the first.

        Raises
        ------
        CacheMismatchError
            The existing store belongs to another model, preprocessing or image (and not
            ``overwrite``).
        CacheLockedError
            Other processes kept the store locked for longer than ``lock_timeout``.
        """
        folder = Path(path)
        if holds_sam2_frames(folder):  # never cleared for a SAM 1 store, even with overwrite
            raise CacheMismatchError(
                f"{folder} holds a SAM 2 frame store, not SAM 1 embeddings: give the SAM 1 cache another "
                "folder (or delete this one yourself)"
            )

        def existing() -> EmbeddingStore | None:
            if overwrite or not is_embedding_store(folder):
                return None
            store = cls.open(folder, mode="r", lock_timeout=lock_timeout)
            store.validate(meta)
            return store

        store = existing()
        if store is not None:
            return store
        lock = lock_new_folder(folder, lock_timeout)
        try:
            store = existing()  # made by another process meanwhile?
            return store if store is not None else cls._create_locked(folder, meta, overwrite, lock_timeout)
        finally:
            lock.release()

    def validate(self, meta: Mapping[str, Any]) -> None:
        """Check that this store was made for ``meta`` (model weights, preprocessing, image, tiling).

        Raises
        ------
        CacheMismatchError
            Listing every difference.
        """
        diffs = differences(self.meta, meta)
        if diffs:
            raise CacheMismatchError(
                f"the embedding cache at {self.path} was made for another image, model or preprocessing ("
                + "; ".join(diffs)
                + "); pass overwrite=True to replace it, or use another cache= path"
            )

    def writable(self) -> EmbeddingStore:
        """This store opened for writing (checks that its folder can be written)."""
        if self.mode == "r+":
            return self
        check_writable(self.path)
        return EmbeddingStore.open(self.path, mode="r+", lock_timeout=self.lock_timeout)

    # ------------------------------------------------------------------ locks
    def lock_slice(self, z: int) -> None:
        """Take the write lock of slice ``z`` for this object (no-op when it holds it already).

        Waits while another process (or another store object) writes slice ``z``, up to
        ``lock_timeout``. Released by :meth:`finish_slice` or :meth:`release_locks`.

        Raises
        ------
        CacheLockedError
            The wait took longer than ``lock_timeout``; names the holder.
        CacheMismatchError
            Another process replaced the store by one with other parameters meanwhile.
        """
        z = int(z)
        if z in self._locks:
            return
        if not 0 <= z < self.n_slices:
            raise IndexError(f"slice {z} out of range for a cache of {self.n_slices} slice(s)")
        self._locks.acquire(z, self.lock_timeout)
        try:
            # nobody could replace the store while we held no lock at all: check it is still ours
            diffs = differences(root_attrs(self.path) or {}, self.meta)
            if diffs:
                raise CacheMismatchError(
                    f"the embedding cache at {self.path} was replaced by another process with other "
                    "parameters (" + "; ".join(diffs) + ")"
                )
        except BaseException:
            self._locks.release(z)
            raise

    def release_locks(self) -> None:
        """Drop every lock this object holds (slices begun and not finished stay not done)."""
        self._locks.release_all()
        self._reused.clear()

    # ------------------------------------------------------------------ shape
    @property
    def n_slices(self) -> int:
        return int(self.meta["image"]["n_slices"])

    @property
    def tiling(self) -> dict[str, Any] | None:
        return self.meta.get("tiling")

    @property
    def n_tiles(self) -> int | None:
        """Tiles per slice, or None when the store is not tiled."""
        return len(self.tiling["windows"]) if self.tiling else None

    @property
    def exact_limits(self) -> bool:
        """Whether the store records limit residuals (stores made before that array was added do not)."""
        return self.meta.get("exact_limits") is True

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        c, h, w = (int(v) for v in self.meta["feature_shape"])
        return c, h, w

    # ------------------------------------------------------------------ status
    def _read_small(self, name: str, z: int) -> np.ndarray:
        return np.asarray(self.array(name)[z])

    def done_mask(self) -> np.ndarray:
        """``(Z,)`` bool: slices completely written. A torn flag reads as False."""
        arr = self.array("done")
        try:
            return np.asarray(arr[:], dtype=bool)
        except Exception:  # a torn chunk: read flag by flag
            out = np.zeros(self.n_slices, dtype=bool)
            for z in range(self.n_slices):
                try:
                    out[z] = bool(arr[z])
                except Exception:
                    out[z] = False
            return out

    @property
    def is_complete(self) -> bool:
        return bool(self.done_mask().all())

    def stored_hash(self, z: int) -> int | None:
        """The recorded content hash of slice ``z`` (None when unreadable)."""
        try:
            return int(self._read_small("slice_hash", z))
        except Exception:
            return None

    def verify_slice(self, z: int) -> bool:
        """Whether slice ``z`` is marked done and every one of its chunks reads back intact."""
        try:
            self.check_slice(z)
        except CorruptSliceError:
            return False
        return True

    def check_slice(self, z: int) -> None:
        """Read every chunk of slice ``z`` back, one tile at a time (a tiled slice is never held whole).

        Raises
        ------
        CorruptSliceError
            As :meth:`read_slice`: the slice is not done, a chunk fails its checksum or was never
            written.
        """
        if self.n_tiles is None:
            self.read_slice(z)
            return
        self.read_slice(z, tile=0)  # the flag, the per-slice arrays and the first tile
        try:
            sizes = [np.asarray(self.array(name)[int(z)]) for name in ("input_size", "original_size")]
        except Exception as exc:
            raise CorruptSliceError(
                f"slice {z} of the embedding cache {self.path} is damaged: {exc}"
            ) from exc
        problem = _sizes_problem(*sizes)
        if problem is not None:
            raise CorruptSliceError(f"slice {z} of the embedding cache {self.path} is damaged: {problem}")
        for t in range(1, self.n_tiles):
            try:
                features = np.asarray(self.array("embeddings")[int(z), t])
            except Exception as exc:
                raise CorruptSliceError(
                    f"slice {z} of the embedding cache {self.path} is damaged: tile {t}: {exc}"
                ) from exc
            if np.isnan(features).any():
                raise CorruptSliceError(
                    f"slice {z} of the embedding cache {self.path} has missing chunks (tile {t})"
                )

    # ------------------------------------------------------------------ reading / writing
    def read_slice(self, z: int, tile: int | None = None) -> dict[str, Any]:
        """Read slice ``z`` (or one of its tiles).

        Returns
        -------
        dict
            ``features`` ``([T,] C, h, w)`` (one tile: ``(C, h, w)``) float32 numpy, ``input_size`` and
            ``original_size`` ``([T,] 2)`` int, ``contrast_limits`` ``(3, 2)`` float64 (NaN: unused),
            ``limit_residuals`` ``(3, 2)`` float64 (None in stores older than that array), ``hash``
            int.

        Raises
        ------
        CorruptSliceError
            The slice is not done, a chunk fails its checksum or was never written.
        """
        z = int(z)
        if not 0 <= z < self.n_slices:
            raise IndexError(f"slice {z} out of range for a cache of {self.n_slices} slice(s)")
        try:
            if not bool(self._read_small("done", z)):
                raise CorruptSliceError(f"slice {z} of the embedding cache {self.path} is not computed")
            index: tuple[int, ...] = (z,) if tile is None else (z, int(tile))
            features = np.asarray(self.array("embeddings")[index])
            out: dict[str, Any] = {
                "input_size": np.asarray(self.array("input_size")[index]).astype(int),
                "original_size": np.asarray(self.array("original_size")[index]).astype(int),
                "contrast_limits": self._read_small("contrast_limits", z),
                "limit_residuals": self._read_small("limit_residuals", z) if self.exact_limits else None,
                "hash": int(self._read_small("slice_hash", z)),
            }
        except CorruptSliceError:
            raise
        except Exception as exc:
            raise CorruptSliceError(
                f"slice {z} of the embedding cache {self.path} is damaged: {exc}"
            ) from exc
        if np.isnan(features).any():
            raise CorruptSliceError(f"slice {z} of the embedding cache {self.path} has missing chunks")
        problem = _sizes_problem(out["input_size"], out["original_size"]) or self._limits_problem(
            out["contrast_limits"], out["limit_residuals"]
        )
        if problem is not None:
            raise CorruptSliceError(
                f"slice {z} of the embedding cache {self.path} is damaged: {problem} (a lost chunk?)"
            )
        out["features"] = features.astype(np.float32)
        return out

    def _limits_problem(self, limits: np.ndarray, residuals: np.ndarray | None) -> str | None:
        """What is wrong with a done slice's recorded limits (None: nothing).

        A slice normalised by percentiles or contrast limits has finite limits for its first channel
        (a lost ``contrast_limits`` chunk reads as NaN) and, in a store that records them, finite
        residuals wherever it has limits.
        """
        if lookup(self.meta, "preprocessing.normalize") not in ("percentile", "contrast_limits"):
            return None
        used = np.isfinite(limits).all(axis=1)
        if not used[0]:
            return "its intensity limits (contrast_limits) are missing"
        if residuals is not None and not np.isfinite(residuals[used]).all():
            return "the residuals of its intensity limits (limit_residuals) are missing"
        return None

    def begin_slice(self, z: int, content_hash: int | None = None) -> np.ndarray | None:
        """Lock slice ``z`` (:meth:`lock_slice`) and mark it as not done before (re)writing it.

        For a tiled store, tiles already written for the same content (an interrupted slice) are kept:
        returns the ``(T,)`` bool mask of those (intact, same ``content_hash``), else None. When the
        slice is done already with ``content_hash`` (another process wrote it while this one waited
        for its lock), nothing is changed and an all-True mask is returned (``(1,)`` if not tiled):
        :meth:`finish_slice` then only releases the lock.
        """
        z = int(z)
        self.lock_slice(z)
        self._reused.discard(z)
        if content_hash is not None and self.stored_hash(z) == content_hash and self.verify_slice(z):
            self._reused.add(z)
            return np.ones(self.n_tiles or 1, dtype=bool)
        self.array("done")[z] = False
        if self.n_tiles is None or content_hash is None:
            return None
        keep = np.zeros(self.n_tiles, dtype=bool)
        if self.stored_hash(z) == content_hash:
            try:
                keep = np.asarray(self.array("tile_done")[z], dtype=bool)
            except Exception:
                keep[:] = False
            for t in np.flatnonzero(keep):
                try:
                    intact = not np.isnan(np.asarray(self.array("embeddings")[z, int(t)])).any()
                    sizes = [np.asarray(self.array(n)[z, int(t)]) for n in ("input_size", "original_size")]
                    intact = intact and _sizes_problem(*sizes) is None
                except Exception:
                    intact = False
                keep[t] = intact
        else:
            self.array("tile_done")[z] = keep
            self.array("slice_hash")[z] = np.uint64(content_hash)
        return keep

    def write_tile(
        self, z: int, tile: int | None, features: np.ndarray, input_size: Any, original_size: Any
    ) -> None:
        """Write the features of slice ``z`` (of one of its tiles): ``(C, h, w)`` float."""
        index: tuple[int, ...] = (int(z),) if tile is None else (int(z), int(tile))
        dtype = CACHE_DTYPES[self.meta["cache_dtype"]]
        self.array("embeddings")[index] = np.asarray(features, dtype=dtype)
        self.array("input_size")[index] = np.asarray(input_size, dtype=np.int32)
        self.array("original_size")[index] = np.asarray(original_size, dtype=np.int32)
        if tile is not None:
            self.array("tile_done")[index] = True

    def finish_slice(
        self, z: int, *, content_hash: int, contrast_limits: Any, limit_residuals: Any = None
    ) -> None:
        """Record the slice's limits and hash, flag it done (the last write of a slice), unlock it.

        ``limit_residuals`` (per channel, what float64 rounding left out of ``contrast_limits``;
        None: nothing) are recorded beside the limits, as zeros where None.
        """
        z = int(z)
        try:
            if z not in self._reused:
                self._check_residuals(limit_residuals)
                limits = _per_channel(contrast_limits)
                self.array("contrast_limits")[z] = limits
                if self.exact_limits:
                    rest = _per_channel(limit_residuals)
                    rest[np.isfinite(limits) & np.isnan(rest)] = 0.0
                    self.array("limit_residuals")[z] = rest
                self.array("slice_hash")[z] = np.uint64(content_hash)
                self.array("done")[z] = True
        finally:
            self._reused.discard(z)
            self._locks.release(z)

    def _check_residuals(self, limit_residuals: Any) -> None:
        """Refuse limits this store cannot record exactly (a store made before ``limit_residuals``)."""
        if self.exact_limits or limit_residuals is None or not np.any(np.asarray(limit_residuals)):
            return
        raise CacheMismatchError(
            f"the embedding cache at {self.path} was made by an older napari-sam that records intensity "
            "limits rounded to float64; this image's limits (64-bit integers beyond 2**53) need the "
            "exact record of this version; pass overwrite=True (--overwrite) to rebuild the cache"
        )

    def __repr__(self) -> str:
        done = int(self.done_mask().sum())
        return (
            f"EmbeddingStore({str(self.path)!r}, model={self.meta['model']['name']!r}, "
            f"slices={done}/{self.n_slices} done, tiles={self.n_tiles})"
        )
