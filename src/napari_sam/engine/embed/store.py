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
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..._version import __version__
from ...errors import CacheLockedError, CacheMismatchError, CorruptCacheError, CorruptSliceError
from ..types import TileSpec
from .filelock import FileLock, lock_owner
from .tiling import tile_windows

__all__ = [
    "FORMAT_VERSION",
    "CorruptSliceError",
    "EmbeddingStore",
    "hash_blocks",
    "is_embedding_store",
    "open_store",
    "slice_hash",
]

#: Version of the on-disk layout; a store of another version is not reused.
FORMAT_VERSION = 1
#: Key of the root attributes that marks a folder as a napari-sam embedding store.
ATTRS_KEY = "napari_sam_embeddings"
_CACHE_DTYPES = {"float16": np.float16, "float32": np.float32}
#: Lock file of the whole store, and folder of the per-slice lock files (see the module docstring).
LOCK_FILE = ".napari_sam.lock"
SLICE_LOCKS = ".napari_sam_locks"
#: Metadata entries that must be equal for a store to be reused, with how a mismatch is described.
_CHECKED = {
    "format_version": "format version",
    "model.weights_sha256": "model weights",
    "model.image_size": "model input size",
    "feature_shape": "feature shape",
    "image.shape": "image shape",
    "image.dtype": "image dtype",
    "preprocessing": "preprocessing",
    "tiling.tile_size": "tile size",
    "tiling.halo": "tile halo",
    "cache_dtype": "cache dtype",
}


def slice_hash(array: np.ndarray) -> int:
    """Content hash of one input slice: 64-bit blake2b of its bytes, shape and dtype."""
    arr = np.ascontiguousarray(array)
    return hash_blocks(arr.shape, [arr])


def hash_blocks(shape: Sequence[int], blocks: Iterable[np.ndarray]) -> int:
    """:func:`slice_hash` of an array of ``shape`` read in pieces, without holding all of it.

    Parameters
    ----------
    shape
        The whole array's shape.
    blocks
        Consecutive pieces of the array in C order (row bands, say), of one dtype: their bytes put
        end to end are the array's bytes. Read one at a time.

    Returns
    -------
    int
        The same value :func:`slice_hash` gives for the whole array.
    """
    h = hashlib.blake2b(digest_size=8)
    dtype = None
    for block in blocks:
        arr = np.ascontiguousarray(block)
        if dtype is None:
            dtype = arr.dtype
            h.update(f"{tuple(int(v) for v in shape)}|{dtype.str}|".encode())
        elif arr.dtype != dtype:
            raise ValueError(f"blocks of one array must share a dtype, got {dtype} and {arr.dtype}")
        h.update(memoryview(arr).cast("B"))
    if dtype is None:
        raise ValueError("hash_blocks needs at least one block")
    return int.from_bytes(h.digest(), "little")


def _root_attrs(path: Path) -> dict[str, Any] | None:
    meta = path / "zarr.json"
    try:
        doc = json.loads(meta.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("node_type") != "group":
        return None
    attrs = doc.get("attributes", {})
    value = attrs.get(ATTRS_KEY) if isinstance(attrs, dict) else None
    return value if isinstance(value, dict) else None


def is_embedding_store(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder holding a napari-sam embedding store (cheap: reads one JSON file)."""
    try:
        folder = Path(path)
        return folder.is_dir() and _root_attrs(folder) is not None
    except (OSError, TypeError, ValueError):
        return False


def open_store(path: str | os.PathLike[str], mode: str = "r") -> EmbeddingStore:
    """Open an existing embedding store; ``mode`` ``"r"`` (read only) or ``"r+"``."""
    return EmbeddingStore.open(path, mode=mode)


def _lookup(meta: Mapping[str, Any], dotted: str) -> Any:
    value: Any = meta
    for part in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _jsonable(value: Any) -> Any:
    """Tuples → lists recursively, so metadata compares equal to what JSON gives back."""
    return json.loads(json.dumps(value))


def _check_writable(folder: Path) -> None:
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


def _differences(have: Mapping[str, Any], meta: Mapping[str, Any]) -> list[str]:
    """The checked metadata entries in which a store's ``have`` differs from the requested ``meta``."""
    wanted = _jsonable({**meta, "format_version": FORMAT_VERSION})
    diffs = []
    for key, what in _CHECKED.items():
        value, want = _lookup(have, key), _lookup(wanted, key)
        if value != want:
            diffs.append(f"{what}: cache has {value!r}, requested {want!r}")
    return diffs


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


_REBUILD = "rerun with --overwrite (napari-sam embed) or overwrite=True (compute_embeddings) to rebuild it"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_list(value: Any, length: int | None = None) -> bool:
    """Whether ``value`` is a list of ints (of ``length`` items)."""
    return (
        isinstance(value, list)
        and (length is None or len(value) == length)
        and all(_is_int(v) for v in value)
    )


_HEX64 = frozenset("0123456789abcdef")


def _model_problem(model: Any) -> str | None:
    """What is wrong with the root record's ``model`` entry (None: nothing)."""
    if not isinstance(model, Mapping):
        return f"model is {model!r}, not a mapping of name, weights_sha256 and image_size"
    name, sha, size = model.get("name"), model.get("weights_sha256"), model.get("image_size")
    if not isinstance(name, str) or not name:
        return f"model.name is {name!r}, not a model name"
    if not isinstance(sha, str) or len(sha) != 64 or not set(sha) <= _HEX64:
        return f"model.weights_sha256 is {sha!r}, not 64 hex digits"
    if not _is_int(size) or size <= 0:
        return f"model.image_size is {size!r}, not a positive integer"
    from ...model.registry import NANO_SHA256, OFFICIAL_WEIGHTS

    # a registered model's name with another registered model's weights: decoding by name would
    # load (or download) the wrong model; other names (a renamed model) are the caller's own
    owners = {NANO_SHA256: "nano", **{info.sha256: key for key, info in OFFICIAL_WEIGHTS.items()}}
    owner = owners.get(sha)
    if owner is not None and name in owners.values() and owner != name:
        return f"model.name is {name!r} but model.weights_sha256 is that of {owner!r}"
    return None


def _preprocessing_problem(prep: Any) -> str | None:
    """What is wrong with the root record's ``preprocessing`` entry (None: nothing)."""
    if not isinstance(prep, Mapping):
        return f"preprocessing is {prep!r}, not a mapping"
    mode = prep.get("normalize")
    if mode not in ("percentile", "contrast_limits", "none"):
        return f"preprocessing.normalize is {mode!r}, not 'percentile', 'contrast_limits' or 'none'"
    percentiles = prep.get("percentiles")
    numbers = isinstance(percentiles, list) and len(percentiles) == 2
    numbers = numbers and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in percentiles)
    if mode == "percentile" and not numbers:
        return f"preprocessing.percentiles is {percentiles!r}, not two numbers"
    axis, channel = prep.get("channel_axis"), prep.get("channel")
    if axis is not None and not _is_int(axis):
        return f"preprocessing.channel_axis is {axis!r}, not an integer or null"
    if channel is not None and not _int_list(channel):
        return f"preprocessing.channel is {channel!r}, not a list of channel numbers or null"
    return None


def _image_problem(image: Any) -> str | None:
    """What is wrong with the root record's ``image`` entry (None: nothing)."""
    if not isinstance(image, Mapping):
        return f"image is {image!r}, not a mapping"
    shape, spatial = image.get("shape"), image.get("spatial_shape")
    if not _int_list(shape) or not 2 <= len(shape) <= 4:
        return f"image.shape is {shape!r}, not 2 to 4 integers"
    if not _int_list(spatial) or len(spatial) not in (2, 3):
        return f"image.spatial_shape is {spatial!r}, not 2 or 3 integers"
    if not isinstance(image.get("is_volume"), bool) or image["is_volume"] != (len(spatial) == 3):
        return f"image.is_volume is {image.get('is_volume')!r} for a spatial shape of {spatial}"
    if not isinstance(image.get("dtype"), str):
        return f"image.dtype is {image.get('dtype')!r}, not a dtype name"
    return None


def _record_problem(meta: Mapping[str, Any]) -> str | None:
    """What is wrong with the entries of a root record that reading a cache relies on (None: nothing).

    Checked when a cache is opened, before any model is loaded for it: a hand-edited or truncated
    record is refused with a clear message instead of a ``KeyError`` (or a download of the wrong
    model) later.
    """
    if meta.get("cache_dtype") not in _CACHE_DTYPES:
        return f"cache_dtype is {meta.get('cache_dtype')!r}, not 'float16' or 'float32'"
    return (
        _model_problem(meta.get("model"))
        or _preprocessing_problem(meta.get("preprocessing"))
        or _image_problem(meta.get("image"))
    )


def _tiling_problem(meta: Mapping[str, Any]) -> str | None:
    """What is wrong with the root record's ``tiling`` entry (None: nothing)."""
    tiling = meta.get("tiling")
    if tiling is None:
        return None
    if not isinstance(tiling, Mapping):
        return f"it is {type(tiling).__name__} {tiling!r}, not a mapping or null"
    size, halo = tiling.get("tile_size"), tiling.get("halo")
    if not _is_int(size) or not _is_int(halo):
        return f"tile_size and halo must be integers, the record has {size!r} and {halo!r}"
    try:
        spec = TileSpec(size, halo)
    except ValueError as exc:
        return str(exc)
    shape = _lookup(meta, "image.spatial_shape")
    if not _int_list(shape) or len(shape) not in (2, 3):
        return f"the image's spatial_shape {shape!r} is not 2 or 3 integers"
    expected = tile_windows(shape[-2:], spec)
    grid = f"{shape[-2]} × {shape[-1]} image in tiles of {size} with halo {halo}"
    for key, want in (
        ("windows", [list(w.bounds) for w in expected]),
        ("cores", [list(w.core) for w in expected]),
    ):
        have = tiling.get(key)
        if not isinstance(have, list) or not all(_int_list(v, 4) for v in have):
            return f"{key} must be a list of [min_row, min_col, max_row, max_col] integers, not {have!r:.80}"
        if len(have) != len(want):
            return f"it lists {len(have)} {key} but a {grid} has {len(want)} tiles"
        if have != want:
            return f"its {key} are not the tiles of a {grid}"
    return None


def _expected_shapes(meta: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """The arrays a store described by ``meta`` holds, with their shapes (``meta`` checked first)."""
    n = int(meta["image"]["n_slices"])
    tiles = (len(meta["tiling"]["windows"]),) if meta.get("tiling") else ()
    shapes = {
        "embeddings": (n, *tiles, *(int(v) for v in meta["feature_shape"])),
        "input_size": (n, *tiles, 2),
        "original_size": (n, *tiles, 2),
        "contrast_limits": (n, 3, 2),
        "slice_hash": (n,),
        "done": (n,),
    }
    if meta.get("exact_limits") is True:
        shapes["limit_residuals"] = (n, 3, 2)
    if tiles:
        shapes["tile_done"] = (n, *tiles)
    return shapes


def _open_arrays(folder: Path, group: Any, meta: Mapping[str, Any]) -> dict[str, Any]:
    """Open every array of the store and check it against the root record.

    Raises
    ------
    CorruptCacheError
        The record is malformed (a hand-edited ``tiling`` entry …), or an array is missing (an
        interrupted copy), unreadable or of another shape than the record says.
    """
    problem = _record_problem(meta)
    if problem is not None:
        raise CorruptCacheError(
            f"the embedding cache at {folder} has a damaged record: {problem} (was the record "
            f"edited?); {_REBUILD}"
        )
    problem = _tiling_problem(meta)
    if problem is not None:
        raise CorruptCacheError(
            f"the embedding cache at {folder} has a tiling record that does not match its image and arrays: "
            f"{problem} "
            f"(was the record edited?); {_REBUILD}"
        )
    if not _is_int(_lookup(meta, "image.n_slices")) or not _int_list(meta.get("feature_shape"), 3):
        raise CorruptCacheError(
            f"the embedding cache at {folder} has a damaged record (image.n_slices "
            f"{_lookup(meta, 'image.n_slices')!r}, feature_shape {meta.get('feature_shape')!r}); {_REBUILD}"
        )
    arrays = {}
    for name, shape in _expected_shapes(meta).items():
        if not (folder / name / "zarr.json").is_file():
            raise CorruptCacheError(
                f"the embedding cache at {folder} is incomplete: its array {name!r} ({folder / name}) is "
                f"missing (an interrupted copy?); {_REBUILD}"
            )
        try:
            array = group[name]
        except Exception as exc:
            raise CorruptCacheError(
                f"the embedding cache at {folder} is damaged: its array {name!r} cannot be opened ({exc}); "
                f"{_REBUILD}"
            ) from exc
        if tuple(array.shape) != shape:
            raise CorruptCacheError(
                f"the embedding cache at {folder} is damaged: its array {name!r} has shape "
                f"{tuple(array.shape)}, the record says {shape}; {_REBUILD}"
            )
        arrays[name] = array
    return arrays


def _lock_new_folder(folder: Path, timeout: float | None) -> FileLock:
    """Make the store folder (refusing foreign folders) and take its exclusive lock."""
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
    return _store_lock(folder, shared=False, timeout=_lock_timeout(timeout))


def _lock_timeout(value: float | None) -> float | None:
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


def _entries(folder: Path) -> list[Path]:
    """What ``folder`` holds besides this module's lock files."""
    return [p for p in folder.iterdir() if p.name not in (LOCK_FILE, SLICE_LOCKS)]


#: The arrays a store may hold (see the module docstring): the folders it creates.
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


def _own_entries(folder: Path) -> list[Path]:
    """What in ``folder`` a store made: its root record, its array folders, write probes.

    Other files (a user's notes saved into the cache folder, say) are never this module's to delete.
    """
    return [
        p
        for p in _entries(folder)
        if p.name == "zarr.json" or p.name in STORE_ARRAYS or p.name.startswith(".napari_sam_write_test_")
    ]


def _store_lock(folder: Path, *, shared: bool, timeout: float | None) -> FileLock:
    """Take the lock of the whole store at ``folder`` (which must exist)."""
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
        self, path: Path, group: Any, meta: dict[str, Any], mode: str, lock_timeout: float | None = None
    ) -> None:
        self.path = path
        self._group = group
        self.meta = meta
        self.mode = mode
        self.lock_timeout = _lock_timeout(lock_timeout)
        self._arrays: dict[str, Any] = {}
        self._slice_locks: dict[int, FileLock] = {}
        self._writer_lock: FileLock | None = None
        self._reused: set[int] = set()

    def array(self, name: str) -> Any:
        """The zarr array ``name`` (opened once)."""
        if name not in self._arrays:
            self._arrays[name] = self._group[name]
        return self._arrays[name]

    # ------------------------------------------------------------------ opening / creating
    @classmethod
    def open(
        cls, path: str | os.PathLike[str], mode: str = "r", *, lock_timeout: float | None = None
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
            match the arrays (see :func:`_open_arrays`).
        """
        import zarr

        if mode not in ("r", "r+"):
            raise ValueError(f"mode must be 'r' or 'r+', got {mode!r}")
        folder = Path(path)
        if not folder.exists():
            raise FileNotFoundError(f"no embedding cache at {folder}")
        meta = _root_attrs(folder)
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
        store._arrays.update(_open_arrays(folder, group, meta))
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
        lock = _lock_new_folder(folder, lock_timeout)
        try:
            return cls._create_locked(folder, meta, overwrite, lock_timeout)
        finally:
            lock.release()

    @classmethod
    def _create_locked(
        cls, folder: Path, meta: Mapping[str, Any], overwrite: bool, lock_timeout: float | None
    ) -> EmbeddingStore:
        """:meth:`create`, with the store's exclusive lock held by the caller."""
        import zarr
        from zarr.codecs import Crc32cCodec, ZstdCodec

        if is_embedding_store(folder):
            if not overwrite:
                raise FileExistsError(
                    f"an embedding cache exists at {folder}; pass overwrite=True to replace it"
                )
            _check_writable(folder)
        # an old store, or the remains of a creation that was killed: what the store made is ours to
        # clear (lock files stay, and anything else in the folder is left alone); the root record
        # goes first, so that nobody takes the folder for a store while it is emptied
        (folder / "zarr.json").unlink(missing_ok=True)
        for entry in _own_entries(folder):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

        meta = _jsonable({**meta, "format_version": FORMAT_VERSION, "exact_limits": True})
        n_slices = int(meta["image"]["n_slices"])
        feature_shape = tuple(int(v) for v in meta["feature_shape"])
        dtype_name = meta["cache_dtype"]
        if dtype_name not in _CACHE_DTYPES:
            raise ValueError(f"cache_dtype must be 'float16' or 'float32', got {dtype_name!r}")
        tiling = meta.get("tiling")
        tiles = (len(tiling["windows"]),) if tiling else ()
        try:
            group = zarr.open_group(str(folder), mode="a", zarr_format=3)
            codecs = {"compressors": [ZstdCodec(level=1), Crc32cCodec()]}
            group.create_array(
                "embeddings",
                shape=(n_slices, *tiles, *feature_shape),
                chunks=(1, *(1 for _ in tiles), *feature_shape),
                dtype=dtype_name,
                fill_value=np.nan,
                **codecs,
            )
            for name in ("input_size", "original_size"):
                group.create_array(
                    name,
                    shape=(n_slices, *tiles, 2),
                    chunks=(1, *tiles, 2),
                    dtype="int32",
                    fill_value=0,
                    **codecs,
                )
            for name in ("contrast_limits", "limit_residuals"):
                group.create_array(
                    name, shape=(n_slices, 3, 2), chunks=(1, 3, 2), dtype="float64",
                    fill_value=np.nan, **codecs,
                )  # fmt: skip
            group.create_array(
                "slice_hash", shape=(n_slices,), chunks=(1,), dtype="uint64", fill_value=0, **codecs
            )
            group.create_array(
                "done", shape=(n_slices,), chunks=(1,), dtype="bool", fill_value=False, **codecs
            )
            if tiles:
                group.create_array(
                    "tile_done", shape=(n_slices, *tiles), chunks=(1, *tiles), dtype="bool",
                    fill_value=False, **codecs,
                )  # fmt: skip
            # the marker goes last: a folder with it is a structurally complete store
            group.attrs[ATTRS_KEY] = meta
        except OSError as exc:
            raise PermissionError(f"cannot write the embedding cache at {folder}: {exc}") from exc
        return cls(folder, group, meta, "r+", lock_timeout)

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

        def existing() -> EmbeddingStore | None:
            if overwrite or not is_embedding_store(folder):
                return None
            store = cls.open(folder, mode="r", lock_timeout=lock_timeout)
            store.validate(meta)
            return store

        store = existing()
        if store is not None:
            return store
        lock = _lock_new_folder(folder, lock_timeout)
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
        diffs = _differences(self.meta, meta)
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
        _check_writable(self.path)
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
        if z in self._slice_locks:
            return
        if not 0 <= z < self.n_slices:
            raise IndexError(f"slice {z} out of range for a cache of {self.n_slices} slice(s)")
        if self._writer_lock is None:
            self._writer_lock = _store_lock(self.path, shared=True, timeout=self.lock_timeout)
        try:
            folder = self.path / SLICE_LOCKS
            folder.mkdir(exist_ok=True)
            lock = FileLock(folder / str(z))
            if not lock.acquire(self.lock_timeout):
                who = lock_owner(lock.path) or "another process"
                raise CacheLockedError(
                    f"slice {z} of the embedding cache at {self.path} is being written by {who}; gave "
                    f"up after {self.lock_timeout} s — retry later, or use another cache= path"
                )
            self._slice_locks[z] = lock
            # nobody could replace the store while we held no lock at all: check it is still ours
            diffs = _differences(_root_attrs(self.path) or {}, self.meta)
            if diffs:
                raise CacheMismatchError(
                    f"the embedding cache at {self.path} was replaced by another process with other "
                    "parameters (" + "; ".join(diffs) + ")"
                )
        except BaseException:
            self._release_slice(z)
            raise

    def _release_slice(self, z: int) -> None:
        lock = self._slice_locks.pop(z, None)
        if lock is not None:
            lock.release()
        if not self._slice_locks and self._writer_lock is not None:
            self._writer_lock.release()
            self._writer_lock = None

    def release_locks(self) -> None:
        """Drop every lock this object holds (slices begun and not finished stay not done)."""
        for z in list(self._slice_locks):
            self._release_slice(z)
        self._reused.clear()
        if self._writer_lock is not None:
            self._writer_lock.release()
            self._writer_lock = None

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
            out = {
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
        if _lookup(self.meta, "preprocessing.normalize") not in ("percentile", "contrast_limits"):
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
        dtype = _CACHE_DTYPES[self.meta["cache_dtype"]]
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
            self._release_slice(z)

    def _check_residuals(self, limit_residuals: Any) -> None:
        """Refuse limits this store cannot record exactly (a store made before ``limit_residuals``)."""
        if self.exact_limits or limit_residuals is None or not np.any(np.asarray(limit_residuals)):
            return
        raise CacheMismatchError(
            f"the embedding cache at {self.path} was made by an older napari-sam that records intensity "
            "limits rounded to float64; this image's limits (64-bit integers beyond 2**53) need the "
            "exact record of this version; pass overwrite=True (--overwrite) to rebuild the cache"
        )

    def write_slice(
        self,
        z: int,
        features: np.ndarray,
        *,
        input_size: Any,
        original_size: Any,
        content_hash: int,
        contrast_limits: Any = None,
        limit_residuals: Any = None,
    ) -> None:
        """Write a whole slice: ``features`` ``([T,] C, h, w)``, sizes ``([T,] 2)``; then flag it done."""
        self.begin_slice(z)
        try:
            if self.n_tiles is None:
                self.write_tile(z, None, features, input_size, original_size)
            else:
                sizes_in = np.broadcast_to(np.asarray(input_size), (self.n_tiles, 2))
                sizes_orig = np.broadcast_to(np.asarray(original_size), (self.n_tiles, 2))
                for t in range(self.n_tiles):
                    self.write_tile(z, t, features[t], sizes_in[t], sizes_orig[t])
        except BaseException:
            self._release_slice(int(z))
            raise
        self.finish_slice(
            z, content_hash=content_hash, contrast_limits=contrast_limits, limit_residuals=limit_residuals
        )

    def nbytes_stored(self) -> int:
        """Bytes on disk of the whole store."""
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())

    def __repr__(self) -> str:
        done = int(self.done_mask().sum())
        return (
            f"EmbeddingStore({str(self.path)!r}, model={self.meta['model']['name']!r}, "
            f"slices={done}/{self.n_slices} done, tiles={self.n_tiles})"
        )
