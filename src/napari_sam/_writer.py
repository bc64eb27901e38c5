"""napari writer: a Labels layer to tif, zarr or OME-Zarr labels (see :func:`napari_sam.io.write_labels`).

napari asks before replacing a file; an existing OME-Zarr image receives the labels under
``labels/<layer name>`` without its image data being touched.
"""

from __future__ import annotations

from typing import Any


def write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """The npe2 single-layer writer for labels; returns the paths written."""
    from .io import write_labels as write

    name = str(meta.get("name") or "segmentation")
    written = write(path, data, overwrite=True, name=name)
    return [str(written)]
