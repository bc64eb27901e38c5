"""What an embedding store holds on disk: its root record and its arrays (see :mod:`.store` for the picture).

The root record (``zarr.json``'s attributes under :data:`ATTRS_KEY`) says which model, preprocessing,
image and tiling the store was made for. This module checks a record read from disk
(:func:`check_record`: a hand-edited or truncated record is refused with a clear message before any
model is loaded for it), compares a store's record with a request (:func:`differences`), and knows
the arrays a record describes: their shapes (:func:`expected_shapes`), how they are created
(:func:`create_arrays`) and opened (:func:`open_arrays`); and the content hash it records for each
input slice (:func:`slice_hash`), which tells whether a stored slice was made from the same pixels.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from ...errors import CorruptCacheError
from ..types import TileSpec
from .tiling import tile_windows

__all__ = [
    "ATTRS_KEY",
    "CACHE_DTYPES",
    "FORMAT_VERSION",
    "REBUILD",
    "check_record",
    "create_arrays",
    "differences",
    "expected_shapes",
    "hash_blocks",
    "is_embedding_store",
    "jsonable",
    "lookup",
    "open_arrays",
    "root_attrs",
    "slice_hash",
]

#: Version of the on-disk layout; a store of another version is not reused.
FORMAT_VERSION = 1
#: Key of the root attributes that marks a folder as a napari-sam embedding store.
ATTRS_KEY = "napari_sam_embeddings"
#: The feature dtypes a store may hold, by the name its record gives.
CACHE_DTYPES = {"float16": np.float16, "float32": np.float32}
#: How every message about a damaged store ends.
REBUILD = "rerun with --overwrite (napari-sam embed) or overwrite=True (compute_embeddings) to rebuild it"
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
_HEX64 = frozenset("0123456789abcdef")


# ---------------------------------------------------------------------------------------------- the record


def root_attrs(path: Path) -> dict[str, Any] | None:
    """The root record of the store at ``path``, or None when ``path`` holds no store's record."""
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


#: Root-attribute key of a SAM 2 frame store (:mod:`napari_sam.engine.embed.sam2_frames`): a folder
#: holding one is never taken, cleared or overwritten by the SAM 1 store.
SAM2_FRAMES_KEY = "napari_sam_sam2_frames"


def holds_sam2_frames(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder holding a SAM 2 frame store (reads one JSON file)."""
    try:
        doc = json.loads((Path(path) / "zarr.json").read_text())
    except (OSError, TypeError, ValueError):
        return False
    attrs = doc.get("attributes") if isinstance(doc, dict) else None
    return isinstance(attrs, dict) and SAM2_FRAMES_KEY in attrs


def is_embedding_store(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder holding a napari-sam embedding store (cheap: reads one JSON file)."""
    try:
        folder = Path(path)
        return folder.is_dir() and root_attrs(folder) is not None
    except (OSError, TypeError, ValueError):
        return False


def lookup(meta: Mapping[str, Any], dotted: str) -> Any:
    """The entry ``"a.b.c"`` of a nested record (None where a level is missing)."""
    value: Any = meta
    for part in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def jsonable(value: Any) -> Any:
    """Tuples → lists recursively, so metadata compares equal to what JSON gives back."""
    return json.loads(json.dumps(value))


def differences(have: Mapping[str, Any], meta: Mapping[str, Any]) -> list[str]:
    """The checked metadata entries in which a store's ``have`` differs from the requested ``meta``."""
    wanted = jsonable({**meta, "format_version": FORMAT_VERSION})
    diffs = []
    for key, what in _CHECKED.items():
        value, want = lookup(have, key), lookup(wanted, key)
        if value != want:
            diffs.append(f"{what}: cache has {value!r}, requested {want!r}")
    return diffs


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
        h.update(arr.data.cast("B"))
    if dtype is None:
        raise ValueError("hash_blocks needs at least one block")
    return int.from_bytes(h.digest(), "little")


# ---------------------------------------------------------------------------------------------- record checks


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_list(value: Any, length: int | None = None) -> TypeGuard[list[int]]:
    """Whether ``value`` is a list of ints (of ``length`` items)."""
    return (
        isinstance(value, list)
        and (length is None or len(value) == length)
        and all(_is_int(v) for v in value)
    )


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
    numbers = (
        isinstance(percentiles, list)
        and len(percentiles) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in percentiles)
    )
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
    """What is wrong with the entries of a root record that reading a cache relies on (None: nothing)."""
    if meta.get("cache_dtype") not in CACHE_DTYPES:
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
    shape = lookup(meta, "image.spatial_shape")
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


def check_record(folder: Path, meta: Mapping[str, Any]) -> None:
    """Check the root record ``meta`` of the store at ``folder`` before anything relies on it.

    Checked when a cache is opened, before any model is loaded for it: a hand-edited or truncated
    record is refused with a clear message instead of a ``KeyError`` (or a download of the wrong
    model) later.

    Raises
    ------
    CorruptCacheError
        A malformed ``model``, ``preprocessing``, ``image``, ``cache_dtype`` or ``feature_shape``
        entry, or a ``tiling`` entry that is not the tile grid of the image.
    """
    problem = _record_problem(meta)
    if problem is not None:
        raise CorruptCacheError(
            f"the embedding cache at {folder} has a damaged record: {problem} (was the record "
            f"edited?); {REBUILD}"
        )
    problem = _tiling_problem(meta)
    if problem is not None:
        raise CorruptCacheError(
            f"the embedding cache at {folder} has a tiling record that does not match its image and arrays: "
            f"{problem} "
            f"(was the record edited?); {REBUILD}"
        )
    if not _is_int(lookup(meta, "image.n_slices")) or not _int_list(meta.get("feature_shape"), 3):
        raise CorruptCacheError(
            f"the embedding cache at {folder} has a damaged record (image.n_slices "
            f"{lookup(meta, 'image.n_slices')!r}, feature_shape {meta.get('feature_shape')!r}); {REBUILD}"
        )


# ---------------------------------------------------------------------------------------------- the arrays


def expected_shapes(meta: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
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


def create_arrays(folder: Path, meta: Mapping[str, Any]) -> Any:
    """Create the arrays of a new store described by ``meta`` (a JSON record), then its root record.

    Every array is compressed (Zstandard level 1) with a CRC32C checksum per chunk, one chunk per
    slice (per tile); features are filled with NaN, sizes with 0, limits with NaN, flags with False.

    Returns
    -------
    zarr.Group
        The store's group, opened for writing.

    Raises
    ------
    ValueError
        ``meta["cache_dtype"]`` is not ``"float16"`` or ``"float32"``.
    OSError
        The folder cannot be written.
    """
    import zarr
    from zarr.codecs import Crc32cCodec, ZstdCodec

    n_slices = int(meta["image"]["n_slices"])
    feature_shape = tuple(int(v) for v in meta["feature_shape"])
    dtype_name = meta["cache_dtype"]
    if dtype_name not in CACHE_DTYPES:
        raise ValueError(f"cache_dtype must be 'float16' or 'float32', got {dtype_name!r}")
    tiling = meta.get("tiling")
    tiles = (len(tiling["windows"]),) if tiling else ()
    group = zarr.open_group(str(folder), mode="a", zarr_format=3)
    compressors = [ZstdCodec(level=1), Crc32cCodec()]
    group.create_array(
        "embeddings",
        shape=(n_slices, *tiles, *feature_shape),
        chunks=(1, *(1 for _ in tiles), *feature_shape),
        dtype=dtype_name,
        fill_value=np.nan,
        compressors=compressors,
    )
    for name in ("input_size", "original_size"):
        group.create_array(
            name,
            shape=(n_slices, *tiles, 2),
            chunks=(1, *tiles, 2),
            dtype="int32",
            fill_value=0,
            compressors=compressors,
        )
    for name in ("contrast_limits", "limit_residuals"):
        group.create_array(
            name,
            shape=(n_slices, 3, 2),
            chunks=(1, 3, 2),
            dtype="float64",
            fill_value=np.nan,
            compressors=compressors,
        )
    group.create_array(
        "slice_hash", shape=(n_slices,), chunks=(1,), dtype="uint64", fill_value=0, compressors=compressors
    )
    group.create_array(
        "done", shape=(n_slices,), chunks=(1,), dtype="bool", fill_value=False, compressors=compressors
    )
    if tiles:
        group.create_array(
            "tile_done",
            shape=(n_slices, *tiles),
            chunks=(1, *tiles),
            dtype="bool",
            fill_value=False,
            compressors=compressors,
        )
    # the marker goes last: a folder with it is a structurally complete store
    group.attrs[ATTRS_KEY] = meta
    return group


def open_arrays(folder: Path, group: Any, meta: Mapping[str, Any]) -> dict[str, Any]:
    """Open every array of the store and check it against the root record.

    Raises
    ------
    CorruptCacheError
        The record is malformed (a hand-edited ``tiling`` entry …, see :func:`check_record`), or an
        array is missing (an interrupted copy), unreadable or of another shape than the record says.
    """
    check_record(folder, meta)
    arrays = {}
    for name, shape in expected_shapes(meta).items():
        if not (folder / name / "zarr.json").is_file():
            raise CorruptCacheError(
                f"the embedding cache at {folder} is incomplete: its array {name!r} ({folder / name}) is "
                f"missing (an interrupted copy?); {REBUILD}"
            )
        try:
            array = group[name]
        except Exception as exc:
            raise CorruptCacheError(
                f"the embedding cache at {folder} is damaged: its array {name!r} cannot be opened ({exc}); "
                f"{REBUILD}"
            ) from exc
        if tuple(array.shape) != shape:
            raise CorruptCacheError(
                f"the embedding cache at {folder} is damaged: its array {name!r} has shape "
                f"{tuple(array.shape)}, the record says {shape}; {REBUILD}"
            )
        arrays[name] = array
    return arrays
