"""Writing labels: tif, zarr, OME-Zarr label images (:func:`write_labels`).

Labels are written atomically (to a hidden temporary name, then renamed), so a file at the output
path is always complete, and an existing output is never replaced unless ``overwrite=True``.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from .files import LABELS_SUFFIXES
from .ome import axis_names, is_ome_zarr, ome_attrs

__all__ = ["write_labels"]

#: Largest chunk side of written zarr labels.
_CHUNK_SIDE = 1024


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
    meta = ome_attrs(dict(group.attrs))
    first = meta["multiscales"][0]
    version = str(meta.get("version") or first.get("version") or "0.4")
    zarr_format = group.metadata.zarr_format
    level = first["datasets"][0]
    level_array = group[level["path"]]
    if not isinstance(level_array, zarr.Array):
        raise ValueError(
            f"OME-Zarr image {image}: its first multiscale level {level['path']!r} is not an array"
        )
    image_shape = tuple(level_array.shape)
    axes = list(first.get("axes") or [{"name": n, "type": "space"} for n in "zyx"[-len(image_shape) :]])
    kinds = [kind for _, kind in axis_names(axes)]
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
        options["dimension_names"] = [name for name, _ in axis_names(axes)]
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
    meta = ome_attrs(attrs)
    names = [n for n in meta.get("labels", []) if n != name] + [name]
    if nested:
        version = ome_attrs(dict(root.attrs)).get("version", "0.5")
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
