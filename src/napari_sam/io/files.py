"""Image and output names: which files are images (:func:`find_images`), an image's name without its
suffix (:func:`image_name`), and the record beside an output of the batch commands (:func:`output_record`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "IMAGE_SUFFIXES",
    "LABELS_SUFFIXES",
    "OUTPUT_RECORD_SUFFIX",
    "find_images",
    "image_name",
    "is_zarr_dir",
    "output_record",
]

#: File name endings :func:`~napari_sam.io.read_image` understands (lower case).
IMAGE_SUFFIXES = (".tif", ".tiff", ".zarr", ".png", ".jpg", ".jpeg", ".npy")
#: The record beside every output of the batch commands: ``<output>.napari-sam.json``.
OUTPUT_RECORD_SUFFIX = ".napari-sam.json"
#: File name endings :func:`~napari_sam.io.write_labels` writes.
LABELS_SUFFIXES = (".tif", ".tiff", ".zarr")


def image_name(path: str | os.PathLike[str]) -> str:
    """The name of an image file without its format suffix (``cells.ome.tif`` → ``cells``)."""
    name = Path(path).name
    lower = name.lower()
    for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr", *IMAGE_SUFFIXES):
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(name).stem or name


def is_zarr_dir(path: Path) -> bool:
    """Whether ``path`` is a folder holding a zarr store (``zarr.json``, ``.zgroup`` or ``.zarray``)."""
    return path.is_dir() and any((path / key).is_file() for key in ("zarr.json", ".zgroup", ".zarray"))


def _looks_like_image(path: Path) -> bool:
    if path.name.startswith("."):
        return False
    if path.suffix.lower() == ".zarr" or is_zarr_dir(path):
        from ..engine.embed.store import is_embedding_store

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
        if path.is_dir() and not (path.suffix.lower() == ".zarr" or is_zarr_dir(path)):
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
