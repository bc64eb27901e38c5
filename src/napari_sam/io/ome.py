"""OME-NGFF metadata of zarr groups: whether a folder is an OME-Zarr image, its attributes and axes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["axis_names", "is_ome_zarr", "ome_attrs"]


def ome_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
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
    return isinstance(node, zarr.Group) and bool(ome_attrs(dict(node.attrs)).get("multiscales"))


def axis_names(axes: Sequence[Any]) -> list[tuple[str, str]]:
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
