"""Reading images: tif / OME-TIFF, zarr / OME-Zarr, png / jpg, npy, in napari order (:func:`read_image`).

Big files stay on disk: uncompressed tifs are memory-mapped, compressed ones and zarr arrays come back
as lazy dask / zarr arrays that read a slice when it is asked for.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import NotAnImageError
from .files import IMAGE_SUFFIXES, is_zarr_dir
from .ome import axis_names, ome_attrs

__all__ = ["read_image"]

#: Compressed tifs up to this size are read into memory; bigger ones are read lazily.
_EAGER_TIF_BYTES = 256 << 20
_SPATIAL = "ZYX"


def _napari_order(array: Any, axes: str, path: Path) -> Any:
    """Reorder ``array`` with one-letter ``axes`` to ``([Z,] Y, X[, C])``.

    ``Z``, ``Y``, ``X`` are space; ``C`` / ``S`` channels; any other letter (time, unknown) must be of
    length 1 — except one such axis in an image without ``Z``, taken as the stack axis. Length-1 axes
    other than ``Y`` / ``X`` are dropped. Numpy inputs give numpy views; others a lazy dask array.
    """
    if len(axes) != array.ndim:
        return array
    shape = array.shape
    letters = ["C" if a in "CS" else a if a in _SPATIAL else "?" for a in axes.upper()]
    keep = [i for i in range(array.ndim) if letters[i] in "YX" or shape[i] > 1]
    unknown = [i for i in keep if letters[i] == "?"]
    if len(unknown) == 1 and "Z" not in (letters[i] for i in keep):
        letters[unknown[0]] = "Z"
        unknown = []
    kept = [letters[i] for i in keep]
    if unknown or kept.count("Z") > 1 or kept.count("C") > 1:
        raise NotAnImageError(
            f"{path}: axes {axes} with shape {shape}: only (Z, Y, X) stacks with an optional channel "
            "axis are supported; split the other axes into separate files"
        )
    order = sorted(keep, key=lambda i: "ZYXC".index(letters[i]))
    if len(keep) == array.ndim and order == keep:
        return array
    if not isinstance(array, np.ndarray):
        array = _as_dask(array)
    index = tuple(slice(None) if i in keep else 0 for i in range(array.ndim))
    squeezed = array[index]
    return squeezed.transpose([keep.index(i) for i in order])


def _as_dask(array: Any) -> Any:
    import dask.array as da

    if isinstance(array, da.Array):
        return array
    chunks = (1,) * (array.ndim - 2) + tuple(array.shape[-2:]) if array.ndim > 2 else array.shape
    return da.from_array(array, chunks=chunks)


def _read_tif(path: Path) -> Any:
    import struct

    import tifffile

    # a truncated or damaged file fails in tifffile's parser (TiffFileError, struct.error) or when its
    # pixels are read (ValueError: fewer bytes than the header promises)
    broken = (tifffile.TiffFileError, struct.error, ValueError, IndexError, EOFError)
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes = series.axes
            nbytes = int(np.prod(series.shape)) * np.dtype(series.dtype).itemsize
            ordered = tif.is_ome or tif.is_imagej
    except broken as exc:
        raise NotAnImageError(f"{path} is not a readable TIFF image: {exc}") from exc
    try:
        array: Any = tifffile.memmap(path, mode="r", series=0, level=0)
    except ValueError:  # compressed, not contiguous, or shorter than its header says
        try:
            eager = nbytes <= _EAGER_TIF_BYTES
            array = tifffile.imread(path, series=0, level=0) if eager else _lazy_tif(path)
        except broken as exc:
            raise NotAnImageError(f"{path} is not a readable TIFF image (truncated?): {exc}") from exc
    # OME / ImageJ tifs name their axes; plain tifs keep tifffile's order (as napari shows them)
    return _napari_order(array, axes, path) if ordered else array


def _lazy_tif(path: Path) -> Any:
    """A big compressed tif as a dask array of one chunk per plane, read through tifffile's zarr store."""
    import dask.array as da
    import tifffile
    import zarr

    try:
        source = zarr.open_array(tifffile.imread(path, aszarr=True, series=0, level=0), mode="r")
    except Exception:  # tifffile older than 2025.5 has no zarr 3 store: read it whole
        return tifffile.imread(path, series=0, level=0)
    chunks = (1,) * (source.ndim - 2) + tuple(source.shape[-2:])
    return da.from_zarr(source, chunks=chunks)


def _embedding_store(node: Any) -> bool:
    names = set(node.array_keys()) if hasattr(node, "array_keys") else set()
    return {"embeddings", "done"} <= names


def _read_zarr(path: Path) -> Any:
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:
        raise NotAnImageError(f"{path} is not a readable zarr store: {exc}") from exc
    if isinstance(node, zarr.Array):
        return node
    if _embedding_store(node):
        raise NotAnImageError(f"{path} is a napari-sam embedding cache, not an image")
    meta = ome_attrs(dict(node.attrs))
    multiscales = meta.get("multiscales")
    if multiscales:
        first = multiscales[0]
        level = first["datasets"][0]["path"]
        array = node[level]
        if not isinstance(array, zarr.Array):
            raise NotAnImageError(f"{path}: the first OME-Zarr multiscale level {level!r} is not an array")
        axes = axis_names(first.get("axes", []))
        if len(axes) != array.ndim:
            return array
        letters = "".join(
            name.upper()
            if kind == "space" and name.upper() in _SPATIAL
            else "C"
            if kind == "channel"
            else "T"
            for name, kind in axes
        )
        return _napari_order(array, letters, path)
    arrays = sorted(node.array_keys())
    if len(arrays) == 1:
        return node[arrays[0]]
    if not arrays:
        raise NotAnImageError(f"{path} is a zarr group without arrays or OME-Zarr multiscales metadata")
    raise NotAnImageError(
        f"{path} is a zarr group with several arrays ({', '.join(arrays)}) and no OME-Zarr metadata; "
        f"pass the array's own path, e.g. {path / arrays[0]}"
    )


def _read_picture(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as picture:
            if picture.mode in ("P", "PA", "CMYK", "YCbCr"):
                picture = picture.convert("RGBA" if "A" in picture.mode else "RGB")
            return np.asarray(picture)
    except UnidentifiedImageError as exc:
        raise NotAnImageError(f"{path} is not a readable {path.suffix} image: {exc}") from exc


def read_image(path: str | os.PathLike[str]) -> Any:
    """Open an image file, lazily where the format allows.

    Parameters
    ----------
    path
        A tif / OME-TIFF (``.tif``, ``.tiff``), a zarr array or OME-Zarr image (``.zarr`` folder; the
        first, full-resolution multiscale level), a ``.png`` / ``.jpg`` picture or a ``.npy`` file.

    Returns
    -------
    numpy.ndarray, numpy.memmap, dask.array.Array or zarr.Array
        ``(Y, X)``, ``(Z, Y, X)``, ``(Y, X, C)`` or ``(Z, Y, X, C)`` in the file's dtype. OME axes are
        honoured (channels moved last, length-1 time / channel axes dropped). Uncompressed tifs are
        memory-mapped; compressed tifs over 256 MiB and zarr stores are read only when indexed.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    NotAnImageError
        A ``ValueError``: the file is not an image of a supported format, or has unsupported axes.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> import tifffile
    >>> from napari_sam.io import read_image
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     stack = np.arange(5 * 4 * 6, dtype=np.uint16).reshape(5, 4, 6)  # (Z, Y, X)
    ...     tifffile.imwrite(f"{tmp}/stack.tif", stack, photometric="minisblack")
    ...     image = read_image(f"{tmp}/stack.tif")
    ...     print(image.shape, image.dtype, int(image[4, 3, 5]))
    (5, 4, 6) uint16 119
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file or folder path, got {type(path).__name__}")
    source = Path(path).expanduser()
    if not source.exists():
        raise FileNotFoundError(f"image not found: {source}")
    suffix = source.suffix.lower()
    if suffix == ".zarr" or is_zarr_dir(source):
        return _read_zarr(source)
    if source.is_dir():
        raise NotAnImageError(f"{source} is a folder, not an image (pass its files, or a .zarr store)")
    if suffix in (".tif", ".tiff"):
        return _read_tif(source)
    if suffix in (".png", ".jpg", ".jpeg"):
        return _read_picture(source)
    if suffix == ".npy":
        try:
            return np.load(source, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            raise NotAnImageError(f"{source} is not a readable .npy array: {exc}") from exc
    raise NotAnImageError(
        f"{source}: unsupported image format {source.suffix or '(no suffix)'!r}; "
        f"expected one of {', '.join(IMAGE_SUFFIXES)}"
    )
