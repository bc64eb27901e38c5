"""Image and labels files: read tif / OME-TIFF, zarr / OME-Zarr, png / jpg; write labels as tif or zarr.

Images are returned in napari order: ``(Y, X)``, ``(Z, Y, X)``, with a channel axis last when there is
one (``(…, C)``). Big files stay on disk: uncompressed tifs are memory-mapped, compressed ones and
zarr arrays come back as lazy dask / zarr arrays that read a slice when it is asked for.

Labels are written atomically (to a hidden temporary name, then renamed), so a file at the output
path is always complete, and an existing output is never replaced unless ``overwrite=True``.

The package's modules: :mod:`.files` (which files are images, names, output records), :mod:`.ome`
(OME-NGFF metadata), :mod:`.reading` (:func:`read_image`), :mod:`.writing` (:func:`write_labels`).
"""

from __future__ import annotations

from ..errors import NotAnImageError
from .files import (
    IMAGE_SUFFIXES,
    LABELS_SUFFIXES,
    OUTPUT_RECORD_SUFFIX,
    find_images,
    image_name,
    output_record,
)
from .ome import is_ome_zarr
from .reading import read_image
from .writing import write_labels

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
