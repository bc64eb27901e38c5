"""napari reader: our embedding caches and OME-Zarr projects (an image with its labels).

Other paths get ``None``, so napari asks other readers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

LayerData = tuple[Any, ...]
PathLike = str | os.PathLike[str]


def _single(path: PathLike | Sequence[PathLike]) -> Path | None:
    """The one path of ``path`` (a path, or a list of one), or None for several."""
    if isinstance(path, (str, os.PathLike)):
        return Path(path)
    return Path(path[0]) if len(path) == 1 else None


def _one_folder(path: PathLike | Sequence[PathLike]) -> Path:
    """The one path a reader opens, or ValueError for several (napari calls a reader only after
    :func:`get_reader` took the paths, and it takes one)."""
    source = _single(path)
    if source is None:
        raise ValueError(f"napari-sam's readers open one folder at a time, got {path!r}")
    return source


def get_reader(path: PathLike | Sequence[PathLike]) -> Callable[[Any], list[LayerData]] | None:
    """The napari ``get_reader`` hook: a reader for an embedding cache folder or an OME-Zarr image."""
    source = _single(path)
    if source is None or not source.is_dir():
        return None
    from .engine.embed.store import is_embedding_store
    from .io import is_ome_zarr

    if is_embedding_store(source):
        return read_embedding_cache
    if is_ome_zarr(source):
        return read_project
    return None


def read_embedding_cache(path: PathLike | Sequence[PathLike]) -> list[LayerData]:
    """Open an embedding cache: later embeddings of an image of its shape read from (and write to) it.

    A cache holds no pixels, so no layer is added (napari's ``[(None,)]``); a message says which
    image shape it serves.
    """
    from ._napari.embeddings import remember_cache
    from .engine.embed.store import open_store

    source = _one_folder(path)
    store = open_store(source)
    meta = store.meta
    shape = tuple(int(s) for s in meta["image"]["spatial_shape"])
    remember_cache(shape, str(source))
    _inform(
        f"embedding cache {source.name} ({meta['model']['name']}, {store.done_mask().sum()} of "
        f"{len(store.done_mask())} slices done) will be used for images of shape {shape}"
    )
    return [(None,)]


def _inform(text: str) -> None:
    try:
        from napari.utils.notifications import show_info
    except ImportError:  # pragma: no cover - the reader is only called from napari
        return
    show_info(text)


def read_project(path: PathLike | Sequence[PathLike]) -> list[LayerData]:
    """An OME-Zarr image and the label images listed in its ``labels`` group, as napari layers."""
    import zarr

    from .io import read_image

    source = _one_folder(path)
    layers: list[LayerData] = [(read_image(source), {"name": source.stem}, "image")]
    labels_dir = source / "labels"
    if labels_dir.is_dir():
        group = zarr.open_group(str(labels_dir), mode="r")
        attrs: dict[str, Any] = dict(group.attrs)  # JSON as the file has it
        names = (attrs.get("ome") or attrs).get("labels") or []
        for name in names:
            layers.append((read_image(labels_dir / name), {"name": name}, "labels"))
    return layers
