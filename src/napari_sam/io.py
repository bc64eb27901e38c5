"""Image and labels files: read tif / OME-TIFF, zarr / OME-Zarr, png / jpg; write labels as tif or zarr.

Images are returned in napari order: ``(Y, X)``, ``(Z, Y, X)``, with a channel axis last when there is
one (``(…, C)``). Big files stay on disk: uncompressed tifs are memory-mapped, compressed ones and
zarr arrays come back as lazy dask / zarr arrays that read a slice when it is asked for.

Labels are written atomically (to a hidden temporary name, then renamed), so a file at the output
path is always complete, and an existing output is never replaced unless ``overwrite=True``.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import NotAnImageError

__all__ = [
    "IMAGE_SUFFIXES",
    "LABELS_SUFFIXES",
    "OUTPUT_RECORD_SUFFIX",
    "NotAnImageError",
    "find_images",
    "image_name",
    "is_ome_zarr",
    "output_record",
    "read_image",
    "write_labels",
]

#: File name endings :func:`read_image` understands (lower case).
IMAGE_SUFFIXES = (".tif", ".tiff", ".zarr", ".png", ".jpg", ".jpeg", ".npy")
#: The record beside every output of the batch commands: ``<output>.napari-sam.json``.
OUTPUT_RECORD_SUFFIX = ".napari-sam.json"
#: File name endings :func:`write_labels` writes.
LABELS_SUFFIXES = (".tif", ".tiff", ".zarr")
#: Compressed tifs up to this size are read into memory; bigger ones are read lazily.
_EAGER_TIF_BYTES = 256 << 20
#: Largest chunk side of written zarr labels.
_CHUNK_SIDE = 1024
_SPATIAL = "ZYX"


# ---------------------------------------------------------------------------------------------- names


def image_name(path: str | os.PathLike[str]) -> str:
    """The name of an image file without its format suffix (``cells.ome.tif`` → ``cells``)."""
    name = Path(path).name
    lower = name.lower()
    for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr", *IMAGE_SUFFIXES):
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(name).stem or name


def _is_zarr_dir(path: Path) -> bool:
    return path.is_dir() and any((path / key).is_file() for key in ("zarr.json", ".zgroup", ".zarray"))


def _looks_like_image(path: Path) -> bool:
    if path.name.startswith("."):
        return False
    if path.suffix.lower() == ".zarr" or _is_zarr_dir(path):
        from .engine.embed.store import is_embedding_store

        return path.is_dir() and not is_embedding_store(path)
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def output_record(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The record the batch commands wrote beside the output ``path``, or None when there is none.

    ``napari-sam segment`` writes ``<output>.napari-sam.json`` beside every labels file or folder it
    writes (see :mod:`napari_sam.batch`); a record that cannot be read, or that names another
    file, counts as none.

    Parameters
    ----------
    path
        A file or folder that may be an output.

    Returns
    -------
    dict or None
        The record's fields (``output``, ``input``, ``command``, ``written_by`` …).
    """
    target = Path(path)
    try:
        data = json.loads(target.with_name(target.name + OUTPUT_RECORD_SUFFIX).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or "napari_sam_output" not in data or data.get("output") != target.name:
        return None
    return data


def find_images(inputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand inputs to image paths: files as given, folders to the images directly inside them.

    A folder that is itself a zarr store (``*.zarr``, or one holding ``zarr.json`` / ``.zgroup`` /
    ``.zarray``) is one image; embedding caches and the outputs of earlier ``napari-sam segment``
    runs (files with a record, see :func:`output_record`) inside a folder are left out. Files given
    explicitly are kept whatever their suffix (reading them reports what is wrong); inside folders
    only files with an image suffix are taken, sorted by name.

    Parameters
    ----------
    inputs
        Image files and folders, in any order.

    Returns
    -------
    list of pathlib.Path
        The images, in the order given (a folder's images sorted by name).

    Raises
    ------
    FileNotFoundError
        An input does not exist.
    ValueError
        A folder contains no images.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from napari_sam.io import find_images, write_labels
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = write_labels(Path(tmp) / "b.tif", np.ones((8, 8), np.uint32))
    ...     np.save(Path(tmp) / "a.npy", np.zeros((8, 8)))
    ...     _ = (Path(tmp) / "notes.txt").write_text("not an image")
    ...     print([path.name for path in find_images([tmp])])
    ['a.npy', 'b.tif']
    """
    found: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"input not found: {path}")
        if path.is_dir() and not (path.suffix.lower() == ".zarr" or _is_zarr_dir(path)):
            found.extend(_folder_images(path))
        else:
            found.append(path)
    return found


def _folder_images(folder: Path) -> list[Path]:
    """The images directly inside ``folder``, sorted, without the outputs of earlier runs."""
    candidates = sorted(p for p in folder.iterdir() if _looks_like_image(p))
    images = [p for p in candidates if output_record(p) is None]
    if images:
        return images
    if candidates:
        outputs = ", ".join(p.name for p in candidates[:3]) + (" …" if len(candidates) > 3 else "")
        raise ValueError(f"folder {folder} holds no images, only labels written by napari-sam ({outputs})")
    raise ValueError(f"folder {folder} holds no images (looked for {', '.join(IMAGE_SUFFIXES)})")


# ---------------------------------------------------------------------------------------------- reading


def _ome_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """The OME-NGFF metadata of a group's attributes (0.5 nests it under ``"ome"``)."""
    ome = attrs.get("ome")
    return dict(ome) if isinstance(ome, dict) else dict(attrs)


def is_ome_zarr(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an OME-Zarr image group (it has ``multiscales`` metadata)."""
    root = Path(path)
    if not root.is_dir():
        return False
    import zarr

    try:
        node = zarr.open(str(root), mode="r")
    except Exception:
        return False
    return isinstance(node, zarr.Group) and bool(_ome_attrs(dict(node.attrs)).get("multiscales"))


def _axis_names(axes: Sequence[Any]) -> list[tuple[str, str]]:
    """OME-NGFF axes (strings in 0.3, dicts in 0.4+) → ``[(name, type), …]``."""
    out = []
    for axis in axes:
        if isinstance(axis, str):
            name, kind = axis.lower(), ""
        else:
            name, kind = str(axis.get("name", "")).lower(), str(axis.get("type", "")).lower()
        if not kind:
            kind = {"t": "time", "c": "channel"}.get(name, "space")
        out.append((name, kind))
    return out


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
        source = zarr.open(tifffile.imread(path, aszarr=True, series=0, level=0), mode="r")
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
    meta = _ome_attrs(dict(node.attrs))
    multiscales = meta.get("multiscales")
    if multiscales:
        first = multiscales[0]
        array = node[first["datasets"][0]["path"]]
        axes = _axis_names(first.get("axes", []))
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
    if suffix == ".zarr" or _is_zarr_dir(source):
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


# ---------------------------------------------------------------------------------------------- writing


def _check_labels(labels: Any) -> Any:
    if not hasattr(labels, "shape") or not hasattr(labels, "dtype"):
        labels = np.asarray(labels)
    dtype = np.dtype(labels.dtype)
    if dtype == np.bool_:
        labels = labels.astype(np.uint8)
    elif not np.issubdtype(dtype, np.integer):
        raise TypeError(f"labels must be an integer (or bool) array, got dtype {dtype}")
    if labels.ndim not in (2, 3):
        raise ValueError(f"labels must be 2D (Y, X) or 3D (Z, Y, X), got shape {labels.shape}")
    if 0 in labels.shape:
        raise ValueError(f"labels are empty: shape {labels.shape}")
    return labels


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:8]}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _replace(tmp: Path, path: Path) -> None:
    """Move the finished ``tmp`` to ``path``, replacing what is there (only called when allowed)."""
    if path.exists() and path.is_dir():
        old = _temporary(path)
        path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


def _write_tif(path: Path, labels: Any) -> None:
    import tifffile

    data = np.asarray(labels)
    tifffile.imwrite(
        path,
        data,
        compression="zlib",
        metadata={"axes": "ZYX" if data.ndim == 3 else "YX"},
        photometric="minisblack",
    )


def _chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (1,) * (len(shape) - 2) + tuple(min(s, _CHUNK_SIDE) for s in shape[-2:])


def _fill(array: Any, labels: Any) -> None:
    """Copy ``labels`` into the zarr ``array`` one 2D plane at a time (dask inputs computed per plane)."""
    for index in np.ndindex(*labels.shape[:-2]):
        array[index] = np.asarray(labels[index])


def _write_zarr_array(path: Path, labels: Any) -> None:
    import zarr

    array = zarr.create_array(
        store=str(path),
        shape=labels.shape,
        chunks=_chunks(labels.shape),
        dtype=labels.dtype,
        fill_value=0,
        dimension_names=("z", "y", "x")[-labels.ndim :],
        zarr_format=3,
    )
    _fill(array, labels)


def _write_ome_labels(path: Path, labels: Any, image: Path, name: str, source: str) -> None:
    """Write ``labels`` as an OME-Zarr label image group at ``path``, matching the image at ``image``.

    The label image has the image's zarr format, NGFF version, axes and level-0 transformations;
    its non-spatial axes (time, channel) have length 1, as the NGFF layout recommends.
    """
    import zarr

    group = zarr.open_group(str(image), mode="r")
    meta = _ome_attrs(dict(group.attrs))
    first = meta["multiscales"][0]
    version = str(meta.get("version") or first.get("version") or "0.4")
    zarr_format = group.metadata.zarr_format
    level = first["datasets"][0]
    image_shape = tuple(group[level["path"]].shape)
    axes = list(first.get("axes") or [{"name": n, "type": "space"} for n in "zyx"[-len(image_shape) :]])
    kinds = [kind for _, kind in _axis_names(axes)]
    if len(kinds) != len(image_shape):
        raise ValueError(f"OME-Zarr image {image}: {len(axes)} axes for a {len(image_shape)}D array")
    shape = tuple(n if kind == "space" else 1 for n, kind in zip(image_shape, kinds, strict=True))
    if tuple(n for n in labels.shape if n > 1) != tuple(n for n in shape if n > 1):
        spatial = tuple(n for n, kind in zip(image_shape, kinds, strict=True) if kind == "space")
        raise ValueError(
            f"labels of shape {tuple(labels.shape)} do not fit the OME-Zarr image {image} "
            f"(spatial shape {spatial})"
        )
    labels = labels.reshape(shape)
    multiscale: dict[str, Any] = {
        "name": name,
        "axes": axes,
        "datasets": [{"path": "0", "coordinateTransformations": level.get("coordinateTransformations")}],
    }
    if not multiscale["datasets"][0]["coordinateTransformations"]:
        multiscale["datasets"][0]["coordinateTransformations"] = [
            {"type": "scale", "scale": [1.0] * len(shape)}
        ]
    image_label = {"version": version, "source": {"image": source}}
    options: dict[str, Any] = {}
    if zarr_format == 2:
        multiscale["version"] = version
        attrs: dict[str, Any] = {"multiscales": [multiscale], "image-label": image_label}
        options["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
    else:
        del image_label["version"]
        attrs = {"ome": {"version": version, "multiscales": [multiscale], "image-label": image_label}}
        options["dimension_names"] = [name for name, _ in _axis_names(axes)]
    out = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    out.attrs.update(attrs)
    array = out.create_array(
        "0", shape=shape, chunks=_chunks(shape), dtype=labels.dtype, fill_value=0, **options
    )
    _fill(array, labels)


def _add_to_labels_group(image: Path, labels: Any, name: str, overwrite: bool) -> Path:
    """Write ``labels`` into ``image/labels/name`` and list it in ``image/labels``'s metadata."""
    import zarr

    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"name must be a plain folder name, got {name!r}")
    root = zarr.open_group(str(image), mode="r")
    zarr_format = root.metadata.zarr_format
    target = image / "labels" / name
    if target.exists() and not overwrite:
        raise FileExistsError(f"labels {target} already exist; pass overwrite=True to replace them")
    container = zarr.open_group(str(image / "labels"), mode="a", zarr_format=zarr_format)
    tmp = _temporary(target)
    try:
        _write_ome_labels(tmp, labels, image, name, "../../")
        _replace(tmp, target)
    finally:
        if tmp.exists():
            _remove(tmp)
    attrs = dict(container.attrs)
    nested = "ome" in attrs or zarr_format == 3
    meta = _ome_attrs(attrs)
    names = [n for n in meta.get("labels", []) if n != name] + [name]
    if nested:
        version = _ome_attrs(dict(root.attrs)).get("version", "0.5")
        container.attrs.update({"ome": {**meta, "version": version, "labels": names}})
    else:
        container.attrs.update({"labels": names})
    return target


def write_labels(
    path: str | os.PathLike[str],
    labels: Any,
    *,
    overwrite: bool = False,
    like: str | os.PathLike[str] | None = None,
    name: str = "segmentation",
) -> Path:
    """Write a labels array to ``path``; the format follows its suffix.

    Parameters
    ----------
    path
        ``*.tif`` / ``*.tiff``: a zlib-compressed tif. ``*.zarr``: a zarr v3 array chunked one slice
        (and at most 1024 × 1024 pixels) per chunk — or OME-Zarr labels, see ``like``. When ``path``
        is an existing OME-Zarr image, the labels go *into* it as ``path/labels/<name>/`` (a
        multiscales group with ``image-label`` metadata, listed in ``path/labels``); the image data
        are not touched.
    labels
        ``(Y, X)`` or ``(Z, Y, X)`` integer (or bool) numpy / dask / zarr array, 0 = background.
    overwrite
        Replace an existing output. Without it an existing output is an error: user labels are
        never lost silently.
    like
        The image the labels belong to. When it is an OME-Zarr image and ``path`` ends in ``.zarr``,
        ``path`` becomes an OME-Zarr label image beside it (same zarr format, NGFF version, spatial
        axes and scale), with ``image-label.source`` pointing at the image.
    name
        Name of the labels inside an OME-Zarr image (``labels/<name>``) and of the label image.

    Returns
    -------
    pathlib.Path
        Where the labels are: ``path``, or ``path/labels/<name>`` for an OME-Zarr image.

    Raises
    ------
    FileExistsError
        The output exists and ``overwrite`` is False.
    ValueError, TypeError
        Unsupported suffix, or labels that are not a 2D / 3D integer array.
    PermissionError
        The output folder is not writable.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from napari_sam.io import read_image, write_labels
    >>> labels = np.zeros((3, 64, 64), np.uint32)
    >>> labels[1, 10:20, 10:30] = 7
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     print(write_labels(f"{tmp}/stack_labels.tif", labels).name)
    ...     print(read_image(f"{tmp}/stack_labels.tif").shape)
    ...     print(write_labels(f"{tmp}/stack_labels.zarr", labels).name)  # zarr v3, chunked by slice
    ...     try:
    ...         write_labels(f"{tmp}/stack_labels.tif", labels)
    ...     except FileExistsError:
    ...         print("kept: pass overwrite=True to replace")
    stack_labels.tif
    (3, 64, 64)
    stack_labels.zarr
    kept: pass overwrite=True to replace
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path ending in .tif or .zarr, got {type(path).__name__}")
    target = Path(path).expanduser()
    labels = _check_labels(labels)
    suffix = target.suffix.lower()
    if suffix not in LABELS_SUFFIXES:
        raise ValueError(
            f"path must end in {', '.join(LABELS_SUFFIXES)} to choose the labels format, got {target.name!r}"
        )
    if suffix == ".zarr" and is_ome_zarr(target):
        return _add_to_labels_group(target, labels, name, overwrite)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists; pass overwrite=True to replace it")
    if not target.parent.is_dir():
        raise FileNotFoundError(f"output folder does not exist: {target.parent}")
    tmp = _temporary(target)
    try:
        if suffix in (".tif", ".tiff"):
            _write_tif(tmp, labels)
        elif like is not None and is_ome_zarr(like):
            source = os.path.relpath(Path(like).expanduser().resolve(), target.resolve())
            _write_ome_labels(tmp, labels, Path(like).expanduser(), name, Path(source).as_posix())
        else:
            _write_zarr_array(tmp, labels)
        _replace(tmp, target)
    finally:
        if tmp.exists():
            _remove(tmp)
    return target
